/* optim.h: AdamW, learning-rate schedules and gradient-norm clipping, each
 * exactly as PyTorch / transformers define them.
 *
 *     lora_adamw *opt = lora_adamw_new(&params, be, &(lora_adamw_config){
 *             .lr = 2e-4, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
 *             .weight_decay = 0.01 });
 *     float norm = lora_clip_grad_norm(&params, be, 1.0f);
 *     lora_adamw_step(opt, lora_schedule_lr(&sched, opt->step));
 *     lora_adamw_free(opt);
 *
 * AdamW is torch.optim.AdamW's single-tensor path (the one torch takes on the
 * CPU): decoupled weight decay p *= 1 - lr·wd (for params with decay set),
 * fp32 moments m, v, bias corrections computed in double as Python floats.
 * The moments live in backend memory (2 floats per trainable value, at the
 * param list's flat offsets); the update runs on the backend, one
 * be->adamw_update per step run of the list (lora.h: one call for a whole
 * LoRA adapter). Clipping makes one be->sumsq_segments (one host sync) and
 * at most one be->scale per gradient run.
 *
 * Schedules are transformers' get_{constant,linear,cosine}_schedule_with_warmup:
 * the lr used for optimizer step k (k = 0, 1, ...) is lr · lambda(k).
 *
 * Ownership: lora_adamw_new allocates the moments; lora_adamw_free releases
 * them. The param list is borrowed and must outlive the optimizer.
 */
#ifndef LORA_OPTIM_H
#define LORA_OPTIM_H
#include <stddef.h>
#include <stdint.h>
#include "backend.h"     /* lora_backend */
#include "lora.h"        /* lora_params */

typedef struct {
	float lr;               /* base learning rate (schedules scale it) */
	float beta1, beta2, eps;
	float weight_decay;
} lora_adamw_config;

typedef struct {
	lora_adamw_config cfg;
	const lora_params *params;   /* borrowed */
	const lora_backend *be;
	int64_t step;                /* optimizer steps taken */
	float *m;                    /* (params->total) first moments, backend */
	float *v;                    /* (params->total) second moments, backend */
} lora_adamw;

lora_adamw *lora_adamw_new(const lora_params *params, const lora_backend *be,
                           const lora_adamw_config *cfg);
/* One step with learning rate lr on every param (grads already clipped).
 * Increments opt->step first (torch counts from 1). */
void lora_adamw_step(lora_adamw *opt, float lr);
void lora_adamw_free(lora_adamw *opt);        /* NULL ok */

/* torch.nn.utils.clip_grad_norm_(params, max_norm) with norm_type 2: the
 * total norm is the 2-norm of the per-tensor 2-norms; every gradient is
 * multiplied by min(1, max_norm / (total + 1e-6)). max_norm <= 0 only
 * measures. Returns the total norm before clipping (NaN/Inf pass through). */
float lora_clip_grad_norm(const lora_params *params, const lora_backend *be, float max_norm);

typedef enum { LORA_SCHED_CONSTANT, LORA_SCHED_LINEAR, LORA_SCHED_COSINE, LORA_SCHED_COUNT } lora_sched_kind;
const char *lora_sched_name(lora_sched_kind k);   /* "constant", "linear", "cosine" */
int lora_sched_parse(const char *s);              /* -1 if unknown */

typedef struct {
	lora_sched_kind kind;
	float lr;                /* peak learning rate */
	int64_t warmup_steps;
	int64_t total_steps;     /* linear/cosine decay to 0 at total_steps */
} lora_schedule;

/* The multiplier lambda(step) and the lr for optimizer step `step` (0-based). */
double lora_schedule_lambda(const lora_schedule *s, int64_t step);
float lora_schedule_lr(const lora_schedule *s, int64_t step);

#endif
