/* lowrank.h: the dense algebra of LoRA merging: ΔW = s·B·A products (cblas)
 * and truncated SVD of a factored product (LAPACK dgeqrf/dorgqr/dgesdd).
 *
 *     float *dw = lora_xcalloc(m * n, 4);
 *     lora_lowrank_addmul(dw, up, down, m, r, n, 0.75f);     // dw += 0.75·up·down
 *     int k = lora_lowrank_truncate(up, down, m, r, n, 16, up2, down2, sv);
 *     double kept = lora_lowrank_energy(sv, lora_lowrank_nsv(m, r, n), k);
 *
 * Shapes are row-major: up (B) is (m, r), down (A) is (r, n); a conv LoRA is
 * flattened first (down (r, Cin·k·k), up (Cout, r)). The truncation works on
 * the factors, never forms the m×n product, and costs O((m+n)·r²): it is
 * exact (to double rounding) for any r, so a concatenation of several
 * adapters' factors is re-compressed without loss of accuracy.
 *
 * Ownership: callers own every buffer. Errors: lora_lowrank_truncate returns
 * -1 and sets lora_errmsg() when LAPACK fails (it does not for finite input).
 */
#ifndef LORA_LOWRANK_H
#define LORA_LOWRANK_H

/* dw (m, n) += scale · up (m, r) · down (r, n), single precision (sgemm). */
void lora_lowrank_addmul(float *dw, const float *up, const float *down,
                         int m, int r, int n, float scale);

/* Number of singular values of a product of (m, r) by (r, n) factors:
 * min(m, r, n). */
int lora_lowrank_nsv(int m, int r, int n);

/* Best rank-k approximation (Frobenius) of B·A, B (m, r), A (r, n), with
 * k = min(rank, nsv). Writes up (m, k) = U_k·√S_k and down (k, n) = √S_k·V_kᵀ,
 * so up·down ≈ B·A, and all nsv singular values, descending, to sv (nsv)
 * when sv is not NULL. Computed in double. Returns k, or -1 on failure. */
int lora_lowrank_truncate(const float *B, const float *A, int m, int r, int n,
                          int rank, float *up, float *down, double *sv);

/* Fraction of Σ s² held by the first k of the nsv values (1 if all zero). */
double lora_lowrank_energy(const double *sv, int nsv, int k);
/* Frobenius norm of the discarded part: sqrt(Σ_{i≥k} s_i²). */
double lora_lowrank_residual(const double *sv, int nsv, int k);

#endif
