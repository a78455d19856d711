#!/usr/bin/env python3
"""gen_ops.py: reference values for every op of lib/backend.h, from PyTorch
autograd (and transformers for RoPE tables and LR schedules), written to
tests/fixtures/engine/ops.safetensors for tests/test-ops.c.

Each case "<op>.<tensor>" holds inputs, the upstream gradient "dout" and the
outputs/gradients torch computes; shapes are deliberately odd. Scalars
(eps, scale, ...) are one-element tensors so the C test reads them too.

    python3 tests/gen/gen_ops.py      # rewrites the fixture
"""
import math, os, sys
import torch
from safetensors.torch import save_file

torch.manual_seed(1234)
torch.set_default_dtype(torch.float32)
out = {}


def put(name, t):
    out[name] = t.detach().contiguous().clone()


def scalar(name, v, dtype=torch.float32):
    out[name] = torch.tensor([v], dtype=dtype)


def leaf(*shape, s=1.0):
    return (torch.randn(*shape) * s).requires_grad_(True)


# ---- linear (with bias), odd sizes --------------------------------------------------
N, C, OC = 7, 13, 11
x, w, b = leaf(N, C), leaf(OC, C, s=0.3), leaf(OC)
y = x @ w.T + b
dout = torch.randn(N, OC)
y.backward(dout)
for k, v in dict(x=x, w=w, b=b, y=y, dout=dout, dx=x.grad, dw=w.grad, db=b.grad).items():
    put("linear." + k, v)

# ---- RMSNorm (as transformers' LlamaRMSNorm) -----------------------------------------
from transformers.models.llama.modeling_llama import LlamaRMSNorm
N, C, eps = 5, 19, 1e-5
norm = LlamaRMSNorm(C, eps=eps)
with torch.no_grad():
    norm.weight.copy_(torch.randn(C))
x = leaf(N, C, s=2.0)
y = norm(x)
dout = torch.randn(N, C)
y.backward(dout)
for k, v in dict(x=x, w=norm.weight, y=y, dout=dout, dx=x.grad, dw=norm.weight.grad).items():
    put("rmsnorm." + k, v)
scalar("rmsnorm.eps", eps)

# ---- LoRA branches (PEFT formula, dropout 0): y_i = base_i + scale_i * (x A_i^T) B_i^T ---
# A group of branches shares x (q, k, v read the same ln1): dx sums them.
def lora_case(tag, N, C, branches):
    """branches: list of (OC, r, scale)"""
    x = leaf(N, C)
    loss = 0
    for i, (OC, r, scale) in enumerate(branches):
        A, B = leaf(r, C, s=0.5), leaf(OC, r, s=0.5)
        base = torch.randn(N, OC)
        y = base + scale * (x @ A.T) @ B.T
        dout = torch.randn(N, OC)
        loss = loss + (y * dout).sum()
        for k, v in dict(A=A, B=B, base=base, y=y, dout=dout).items():
            put(f"{tag}.{k}{i}", v)
        scalar(f"{tag}.scale{i}", scale)
        branches[i] = (A, B)
    loss.backward()
    put(f"{tag}.x", x)
    put(f"{tag}.dx", x.grad)
    for i, (A, B) in enumerate(branches):
        put(f"{tag}.dA{i}", A.grad)
        put(f"{tag}.dB{i}", B.grad)


lora_case("lora", 6, 10, [(9, 3, 2.5)])

# ---- RoPE: transformers' rotary embedding + apply_rotary_pos_emb ------------------------
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb


def rope_case(tag, B, T, NH, HS, theta, scaling):
    cfg = LlamaConfig(hidden_size=NH * HS, num_attention_heads=NH, head_dim=HS,
                      max_position_embeddings=4096, rope_theta=theta, rope_scaling=scaling)
    emb = LlamaRotaryEmbedding(cfg)
    pos = torch.arange(T)[None, :]
    x = leaf(B, T, NH, HS)
    cos, sin = emb(x, pos)                   # (1, T, HS)
    # apply_rotary_pos_emb wants (B, NH, T, HS)
    y, _ = apply_rotary_pos_emb(x.transpose(1, 2), x.transpose(1, 2), cos, sin)
    y = y.transpose(1, 2)
    dout = torch.randn(B, T, NH, HS)
    y.backward(dout)
    for k, v in dict(x=x, y=y, dout=dout, dx=x.grad, cos=cos[0, :, :HS // 2],
                     sin=sin[0, :, :HS // 2]).items():
        put(tag + "." + k, v)
    scalar(tag + ".theta", theta)
    if scaling:
        scalar(tag + ".factor", scaling["factor"])
        scalar(tag + ".low_freq_factor", scaling["low_freq_factor"])
        scalar(tag + ".high_freq_factor", scaling["high_freq_factor"])
        scalar(tag + ".original_max_pos", scaling["original_max_position_embeddings"])


rope_case("rope", 2, 5, 3, 8, 10000.0, None)
# llama3 scaling with a short original context so all three bands occur
rope_case("rope3", 1, 37, 2, 16, 500000.0,
          {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
           "high_freq_factor": 4.0, "original_max_position_embeddings": 64})

# ---- causal attention with GQA (eager formula as modeling_llama) -----------------------
def attention_case(tag, B, T, NH, NKV, HS):
    q, k, v = leaf(B, T, NH, HS), leaf(B, T, NKV, HS), leaf(B, T, NKV, HS)
    rep = NH // NKV
    qh = q.transpose(1, 2)
    kh = k.transpose(1, 2).repeat_interleave(rep, dim=1)
    vh = v.transpose(1, 2).repeat_interleave(rep, dim=1)
    s = qh @ kh.transpose(-1, -2) / math.sqrt(HS)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    s = s.masked_fill(mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    o = (p @ vh).transpose(1, 2).contiguous()        # (B, T, NH, HS)
    dout = torch.randn(B, T, NH, HS)
    o.backward(dout)
    for kk, vv in dict(q=q, k=k, v=v, y=o, dout=dout, dq=q.grad, dk=k.grad, dv=v.grad).items():
        put(tag + "." + kk, vv)
    scalar(tag + ".nh", NH, torch.int32)
    scalar(tag + ".nkv", NKV, torch.int32)


attention_case("attn", 2, 7, 4, 2, 6)
attention_case("attn1", 1, 5, 3, 3, 5)          # MHA, odd head size
attention_case("attnq", 3, 4, 6, 1, 4)          # MQA

# ---- SwiGLU --------------------------------------------------------------------------
g, u = leaf(37, s=3.0), leaf(37)
y = torch.nn.functional.silu(g) * u
dout = torch.randn(37)
y.backward(dout)
for k, v in dict(gate=g, up=u, y=y, dout=dout, dgate=g.grad, dup=u.grad).items():
    put("swiglu." + k, v)

# ---- cross-entropy with ignore index, mean over non-ignored ------------------------------
N, V = 6, 23
logits = leaf(N, V, s=3.0)
tg = torch.randint(0, V, (N,))
tg[1] = -100
tg[4] = -100
losses = torch.nn.functional.cross_entropy(logits, tg, ignore_index=-100, reduction="none")
loss = torch.nn.functional.cross_entropy(logits, tg, ignore_index=-100)
loss.backward()
put("ce.logits", logits)
out["ce.targets"] = tg.to(torch.int32)
put("ce.losses", losses)
put("ce.loss", loss.reshape(1))
put("ce.dlogits", logits.grad)

# ---- embedding ------------------------------------------------------------------------------
V, C, N = 11, 5, 9
wte = leaf(V, C)
ids = torch.randint(0, V, (N,))
ids[3] = ids[7]                                      # a repeated id accumulates
y = torch.nn.functional.embedding(ids, wte)
dout = torch.randn(N, C)
y.backward(dout)
put("emb.w", wte)
out["emb.ids"] = ids.to(torch.int32)
put("emb.y", y)
put("emb.dout", dout)
put("emb.dw", wte.grad)

# ---- AdamW: torch.optim.AdamW over two tensors, 4 steps, given gradients ------------------------
lr, b1, b2, eps, wd = 1e-2, 0.9, 0.95, 1e-6, 0.1
p0 = torch.randn(17)
p = p0.clone().requires_grad_(True)
opt = torch.optim.AdamW([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
grads = torch.randn(4, 17)
for i in range(4):
    p.grad = grads[i].clone()
    opt.step()
put("adamw.p0", p0)
put("adamw.grads", grads)
put("adamw.p4", p)
put("adamw.m4", opt.state[p]["exp_avg"])
put("adamw.v4", opt.state[p]["exp_avg_sq"])
for k, v in dict(lr=lr, beta1=b1, beta2=b2, eps=eps, wd=wd).items():
    scalar("adamw." + k, v)

# ---- clip_grad_norm_ ---------------------------------------------------------------------------
ga, gb = torch.randn(5, 3) * 2, torch.randn(7) * 2
pa, pb = torch.zeros(5, 3, requires_grad=True), torch.zeros(7, requires_grad=True)
pa.grad, pb.grad = ga.clone(), gb.clone()
put("clip.ga", ga)
put("clip.gb", gb)
tn = torch.nn.utils.clip_grad_norm_([pa, pb], 1.5)
put("clip.norm", tn.reshape(1))
put("clip.ca", pa.grad)
put("clip.cb", pb.grad)
scalar("clip.max_norm", 1.5)

# ---- transformers schedules: lambda(step) for steps 0..13, warmup 3, total 11 ----------------------
from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup, \
    get_cosine_schedule_with_warmup
for name, fn in [("constant", lambda o: get_constant_schedule_with_warmup(o, 3)),
                 ("linear", lambda o: get_linear_schedule_with_warmup(o, 3, 11)),
                 ("cosine", lambda o: get_cosine_schedule_with_warmup(o, 3, 11))]:
    o = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    s = fn(o)
    lrs = []
    for i in range(14):
        lrs.append(o.param_groups[0]["lr"])
        o.step()
        s.step()
    out["sched." + name] = torch.tensor(lrs, dtype=torch.float64)

# ---- a LoRA group of three branches of different ranks (after the rest: their draws
# stay as they were) -------------------------------------------------------------------------
lora_case("lora3", 7, 12, [(9, 3, 2.5), (5, 2, 1.0), (11, 4, 0.5)])

dst = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "engine", "ops.safetensors")
save_file(out, dst, metadata={"generator": "tests/gen/gen_ops.py", "torch": torch.__version__})
print(f"wrote {dst}: {len(out)} tensors")
