#!/usr/bin/env python3
"""gen_llama.py: golden fixtures for tests/test-llama.c from HF transformers +
PEFT in fp32, on tiny random-weight models of the LLaMA family.

For each case it writes tests/fixtures/engine/<case>/:
  config.json, model.safetensors (or shards + index)   the HF base model
  adapter/adapter_config.json, adapter_model.safetensors  a PEFT adapter with
                                 non-zero lora_B (so lora_A grads are non-trivial)
  golden.safetensors            ids (B, T), labels (HF, unshifted), logits,
                                loss, grad.<PEFT key> for every LoRA tensor,
                                steps.ids/labels (S, B, T), steps.loss (S),
                                steps.norm (S), steps.lr (S), final.logits,
                                and in "full" cases fullgrad.<HF key>
Scalars used to train (lr, betas, ...) are tensors "hp.*" so the C test
reads them instead of repeating them.

    python3 tests/gen/gen_llama.py [CASE ...]      (default: every case)
"""
import copy, json, math, os, shutil, sys, zlib
import torch
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          MistralConfig, MistralForCausalLM, get_cosine_schedule_with_warmup)
from peft import LoraConfig, get_peft_model

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "engine"))
B, T, STEPS = 2, 12, 10
HP = dict(lr=5e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, max_grad_norm=1.0,
          warmup=2, total=STEPS)


def randomize(model, gen, scale=1.0):
    """scale: of the matrices' spread (1/sqrt of the width over 32 keeps a
    wider model's activations, and its fp32 rounding, at the small ones')."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name or "lm_head" in name:
                p.copy_(0.3 * scale * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.15 * scale * torch.randn(p.shape, generator=gen))


def round_to(model, dtype):
    """Round every weight through dtype so the fp32 reference uses exactly the
    values the saved low-precision file holds."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).float())


def batch(gen, V, T=T):
    ids = torch.randint(0, V, (B, T), generator=gen)
    labels = ids.clone()
    labels[0, :3] = -100          # a masked prompt
    labels[1, 7] = -100
    return ids, labels


def peft_key(name):
    return name.replace(".default", "")


def make(case, model_cls, cfg, lora, dtype=torch.float32, shard=None, full=False, v4_config=False,
         seq=T, scale=1.0):
    if len(sys.argv) > 1 and case not in sys.argv[1:]:
        return
    seed = zlib.crc32(case.encode())
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    d = os.path.join(ROOT, case)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    base = model_cls(cfg).float().eval()
    randomize(base, gen, scale)
    round_to(base, dtype)
    kw = dict(max_shard_size=shard) if shard else {}
    # save a copy: .to(dtype) would also round buffers such as RoPE's inv_freq
    copy.deepcopy(base).to(dtype).save_pretrained(d, **kw)
    for f in ("generation_config.json",):
        if os.path.exists(os.path.join(d, f)):
            os.remove(os.path.join(d, f))
    if v4_config:   # the transformers v4 spelling: rope_theta / rope_scaling at top level
        c = json.load(open(os.path.join(d, "config.json")))
        rp = c.pop("rope_parameters")
        c["rope_theta"] = rp.pop("rope_theta")
        c["rope_scaling"] = rp if rp.get("rope_type") != "default" else None
        json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=2, sort_keys=True)

    out = {}
    V = cfg.vocab_size
    ids, labels = batch(gen, V, seq)
    out["ids"] = ids.to(torch.int32)
    out["labels"] = labels.to(torch.int32)

    if full:   # every weight trainable: gradients of the base model
        fm = copy.deepcopy(base).train()
        loss = fm(input_ids=ids, labels=labels).loss
        loss.backward()
        for n, p in fm.named_parameters():
            out["fullgrad." + n] = p.grad.detach().clone()
        out["full.loss"] = loss.detach().reshape(1)

    pcfg = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], target_modules=lora["targets"],
                      lora_dropout=0.0, use_rslora=lora.get("rslora", False), task_type="CAUSAL_LM")
    model = get_peft_model(copy.deepcopy(base), pcfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(os.path.join(d, "adapter"))
    os.remove(os.path.join(d, "adapter", "README.md"))
    model.train()
    res = model(input_ids=ids, labels=labels)
    out["logits"] = res.logits.detach().clone()
    out["loss"] = res.loss.detach().reshape(1)
    res.loss.backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    for n, p in params:
        out["grad." + peft_key(n)] = p.grad.detach().clone()
    model.zero_grad()

    # 10 AdamW steps: warmup + cosine, clipping, weight decay, a new batch each step
    opt = torch.optim.AdamW([p for _, p in params], lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]),
                            eps=HP["eps"], weight_decay=HP["weight_decay"])
    sched = get_cosine_schedule_with_warmup(opt, HP["warmup"], HP["total"])
    sids, slabels, losses, norms, lrs = [], [], [], [], []
    for s in range(STEPS):
        i, l = batch(gen, V, seq)
        sids.append(i)
        slabels.append(l)
        lrs.append(opt.param_groups[0]["lr"])
        loss = model(input_ids=i, labels=l).loss
        losses.append(loss.item())
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_([p for _, p in params], HP["max_grad_norm"]).item())
        opt.step()
        sched.step()
        opt.zero_grad()
    out["steps.ids"] = torch.stack(sids).to(torch.int32)
    out["steps.labels"] = torch.stack(slabels).to(torch.int32)
    out["steps.loss"] = torch.tensor(losses, dtype=torch.float64)
    out["steps.norm"] = torch.tensor(norms, dtype=torch.float64)
    out["steps.lr"] = torch.tensor(lrs, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        out["final.logits"] = model(input_ids=ids).logits.detach().clone()
    for k, v in HP.items():
        out["hp." + k] = torch.tensor([v], dtype=torch.float64)
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(d, "golden.safetensors"),
              metadata={"generator": "tests/gen/gen_llama.py", "torch": torch.__version__})
    print(f"{case}: loss {out['loss'].item():.5f}, {len(params)} LoRA tensors, "
          f"steps {losses[0]:.4f} -> {losses[-1]:.4f}")


# LLaMA with GQA and llama3 rope_scaling, sharded F32, LoRA on every linear layer
make("llama_gqa", LlamaForCausalLM,
     LlamaConfig(vocab_size=160, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                 num_attention_heads=6, num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-5,
                 max_position_embeddings=64, rope_theta=500000.0,
                 rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
     dict(r=4, alpha=8, targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
     shard="60KB")
# Qwen2: q/k/v biases, BF16 weights, rsLoRA on attention
make("qwen2_bias", Qwen2ForCausalLM,
     Qwen2Config(vocab_size=150, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                 max_position_embeddings=128),
     dict(r=4, alpha=16, targets=["q_proj", "k_proj", "v_proj", "o_proj"], rslora=True),
     dtype=torch.bfloat16)
# tied embeddings, MHA, F16 weights, v4-style config, PEFT's default q/v targets;
# also the full fine-tuning gradients
make("llama_tied", LlamaForCausalLM,
     LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=56, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4, rms_norm_eps=1e-6,
                 max_position_embeddings=32, tie_word_embeddings=True),
     dict(r=8, alpha=16, targets=["q_proj", "v_proj"]),
     dtype=torch.float16, full=True, v4_config=True)
# Mistral (same block; sliding_window larger than T)
make("mistral", MistralForCausalLM,
     MistralConfig(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=1, head_dim=8, sliding_window=64,
                   max_position_embeddings=64),
     dict(r=2, alpha=4, targets=["gate_proj", "up_proj", "down_proj"]))
# head size 64 and 80 tokens: the shapes of the CUDA backend's tensor-core
# attention (a full 64-row tile, a partial one, GQA) in its bf16 run
make("llama_hs64", LlamaForCausalLM,
     LlamaConfig(vocab_size=96, hidden_size=128, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1, head_dim=64, rms_norm_eps=1e-5,
                 max_position_embeddings=128),
     dict(r=4, alpha=8, targets=["q_proj", "k_proj", "v_proj", "o_proj"]),
     dtype=torch.bfloat16, seq=80, scale=0.5)
