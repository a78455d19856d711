/* train.h: the lora-train job: plan, loop, logs, checkpoints, resume.
 *
 * One call runs a resolved config (lib/config.h) from start to end:
 *
 *     lora_train_opts o = { .dry_run = 0, .stop = &got_signal };
 *     int rc = lora_train_run(&cfg, &o);     // 0 done, 1 failed or stopped
 *
 * What it does, in order (DESIGN.md §3):
 *   1. picks the backend (device), reads base_model/config.json, the
 *      tokenizer and train_data_dir (lib/data.h), and prints the plan:
 *      parameters (total, trainable, %), examples, steps per epoch and in all,
 *      the device memory the run needs (lora_llama_memory) and the largest
 *      batch size that fits; with dry_run it stops here.
 *   2. loads the model (train_mode lora: frozen base + a fresh adapter, or
 *      init_lora; full: every weight trainable; a base_model folder with a
 *      config.json but no weights means random init, normal(0,
 *      initializer_range) as HF initialises, full mode only), or resumes from
 *      a checkpoint (resume: auto | PATH).
 *   3. trains: for each optimizer step, gradient_accumulation_steps
 *      micro-batches (fewer at the end of an epoch); the loss is the mean
 *      over all their predicted tokens (each micro-batch weighted by its
 *      token count); gradients clipped to max_grad_norm; AdamW with the
 *      schedule's lr. LoRA
 *      dropout masks are seeded from (seed, step, micro-batch), the data order
 *      from (seed, epoch), so a resumed run repeats an uninterrupted one bit
 *      for bit (same device and thread count).
 *   4. logs every logging_steps: one line on stdout (`step=120 loss=1.9342
 *      lr=0.000194 grad_norm=0.81 tok/s=8123 ...`), or one progress line
 *      rewritten in place when stdout is a terminal; logs/train.log,
 *      logs/loss.csv and a TensorBoard event file in logging_dir; evaluates
 *      the val split every eval_steps; checkpoints every save_steps.
 *   5. writes the result into output_dir: adapter_model.safetensors +
 *      adapter_config.json (PEFT), or in full mode model.safetensors +
 *      config.json + tokenizer.json (an HF folder usable as a base_model),
 *      and config.yaml, the resolved config.
 *
 * Checkpoints: output_dir/checkpoints/step-NNNNNN/ holds state.safetensors
 * (every trainable tensor "param.<name>" and AdamW's "exp_avg.<name>",
 * "exp_avg_sq.<name>", F32), trainer_state.json (step, epoch, position in the
 * epoch, the epoch's data order, the seed, AdamW's step count), config.yaml,
 * and in LoRA mode a ready-to-use PEFT adapter. A checkpoint is written into
 * a temporary folder and renamed, so it is complete or absent. The newest
 * save_total_limit are kept.
 *
 * Stopping: when *o->stop becomes non-zero (SIGINT/SIGTERM in lora-train),
 * the current step finishes, a checkpoint is written and the run returns 1
 * with a message saying how to resume; set before the first step (while the
 * data or the model loads), the run returns 1 before output_dir is touched.
 * A NaN/Inf loss or gradient norm stops
 * the run without a checkpoint; the message names the step and the last good
 * checkpoint.
 *
 * Ownership: nothing outlives the call. Failure: lora_train_run is the
 * whole job, so it prints its own diagnostics (one line on stderr, also in
 * train.log once that is open) and returns 1.
 */
#ifndef LORA_TRAIN_H
#define LORA_TRAIN_H
#include <signal.h>
#include <stdint.h>
#include "config.h"      /* lora_config */
#include "llama.h"       /* lora_llama_config */

typedef struct {
	int dry_run;                     /* print the plan and stop */
	volatile sig_atomic_t *stop;     /* set asynchronously to stop (may be NULL) */
	int progress_tty;                /* -1: isatty(stdout); 0: lines; 1: in-place line */
} lora_train_opts;

/* Run the job described by c (already lora_config_resolve'd). 0 on success;
 * 1 on failure or when stopped (messages already on stderr). */
int lora_train_run(lora_config *c, const lora_train_opts *o);

/* Write dir/model.safetensors with every weight of a LLaMA config drawn
 * as HF's _init_weights does: normal(0, std) for linear and embedding
 * weights (our splitmix64 + Box-Muller stream from seed, not torch's),
 * ones for RMSNorm weights, zeros for biases. 0/-1. */
int lora_llama_write_random(const char *dir, const lora_llama_config *cfg, float std,
                            uint64_t seed);

#endif
