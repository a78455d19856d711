/* optim.c: AdamW, schedules and gradient clipping (see optim.h). */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"        /* lora_xcalloc, LORA_ASSERT */

/* ---- AdamW ------------------------------------------------------------------------- */

lora_adamw *lora_adamw_new(const lora_params *params, const lora_backend *be,
                           const lora_adamw_config *cfg)
{
	lora_adamw *o = lora_xcalloc(1, sizeof *o);
	o->cfg = *cfg;
	o->params = params;
	o->be = be;
	size_t bytes = (params->total ? params->total : 1) * sizeof(float);
	o->m = be->alloc(bytes);
	o->v = be->alloc(bytes);
	if (!o->m || !o->v) {
		be->free(o->m);
		be->free(o->v);
		free(o);
		lora_err("out of memory for AdamW moments (%zu bytes)", 2 * bytes);
		return NULL;
	}
	return o;
}

void lora_adamw_step(lora_adamw *o, float lr)
{
	const lora_adamw_config *c = &o->cfg;
	o->step++;
	/* torch: bias_correction = 1 - beta ** step, as Python floats (double) */
	double bc1 = 1.0 - pow((double)c->beta1, (double)o->step);
	double bc2 = 1.0 - pow((double)c->beta2, (double)o->step);
	/* one launch per run of tensors contiguous in data and grad with one
	 * decay (their moments are contiguous too): LoRA mode is one run */
	const lora_params *ps = o->params;
	for (int r = 0; r < ps->nstep_runs; r++) {
		const lora_param_run *run = &ps->step_runs[r];
		const lora_param *p = &ps->p[run->first];
		size_t off = ps->off[run->first];
		o->be->adamw_update(p->data, p->grad, o->m + off, o->v + off, run->n, lr,
		                    c->beta1, c->beta2, c->eps, p->decay ? c->weight_decay : 0.0f,
		                    bc1, bc2);
	}
}

void lora_adamw_free(lora_adamw *o)
{
	if (!o)
		return;
	o->be->free(o->m);
	o->be->free(o->v);
	free(o);
}

/* ---- gradient clipping ------------------------------------------------------------------ */

float lora_clip_grad_norm(const lora_params *ps, const lora_backend *be, float max_norm)
{
	/* torch: total = ‖(‖g_1‖, ‖g_2‖, ...)‖ with per-tensor norms in fp32.
	 * The sums of squares come from one sumsq_segments call per grad run
	 * (one synchronisation in LoRA mode); the fp32 sum stays in list order. */
	double *sq = lora_xmalloc((ps->n ? ps->n : 1) * sizeof(double));
	for (int r = 0; r < ps->ngrad_runs; r++) {
		const lora_param_run *run = &ps->grad_runs[r];
		be->sumsq_segments(ps->p[run->first].grad, ps->off + run->first, run->count,
		                   sq + run->first);
	}
	float acc = 0;
	for (int i = 0; i < ps->n; i++) {
		float n = (float)sqrt(sq[i]);
		acc += n * n;
	}
	free(sq);
	float total = sqrtf(acc);
	if (max_norm > 0) {
		float coef = max_norm / (total + 1e-6f);
		if (coef > 1.0f)
			coef = 1.0f;
		/* torch multiplies even when coef is 1 (a no-op); skip that */
		if (coef < 1.0f)
			lora_params_scale_grad(ps, be, coef);
	}
	return total;
}

/* ---- schedules --------------------------------------------------------------------------- */

static const char *sched_names[LORA_SCHED_COUNT] = { "constant", "linear", "cosine" };

const char *lora_sched_name(lora_sched_kind k)
{
	LORA_ASSERT(k >= 0 && k < LORA_SCHED_COUNT);
	return sched_names[k];
}

int lora_sched_parse(const char *s)
{
	for (int k = 0; k < LORA_SCHED_COUNT; k++)
		if (!strcmp(s, sched_names[k]))
			return k;
	return -1;
}

/* transformers.optimization: _get_{constant,linear,cosine}_schedule_with_warmup_lr_lambda */
double lora_schedule_lambda(const lora_schedule *s, int64_t step)
{
	double w = (double)s->warmup_steps;
	if (step < s->warmup_steps)
		return (double)step / (w > 1.0 ? w : 1.0);
	double rest = (double)(s->total_steps - s->warmup_steps);
	if (rest < 1.0)
		rest = 1.0;
	switch (s->kind) {
	case LORA_SCHED_CONSTANT:
		return 1.0;
	case LORA_SCHED_LINEAR: {
		double v = (double)(s->total_steps - step) / rest;
		return v > 0.0 ? v : 0.0;
	}
	case LORA_SCHED_COSINE: {
		double progress = (double)(step - s->warmup_steps) / rest;
		double v = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress));
		return v > 0.0 ? v : 0.0;
	}
	default:
		LORA_ASSERT(!"bad schedule kind");
	}
	return 0;
}

float lora_schedule_lr(const lora_schedule *s, int64_t step)
{
	return (float)(s->lr * lora_schedule_lambda(s, step));
}
