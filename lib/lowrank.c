/* lowrank.c: see lowrank.h. */
#include "lowrank.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void lora_lowrank_addmul(float *dw, const float *up, const float *down,
                         int m, int r, int n, float scale)
{
	if (m <= 0 || n <= 0 || r <= 0)
		return;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, r,
	            scale, up, r, down, n, 1.0f, dw, n);
}

static int imin(int a, int b) { return a < b ? a : b; }

int lora_lowrank_nsv(int m, int r, int n) { return imin(m, imin(r, n)); }

/* ---- thin QR: X (rows, cols) = Q (rows, p) · R (p, cols), p = min(rows, cols) */

static int thin_qr(double *X, int rows, int cols, double *R)
{
	int p = imin(rows, cols);
	double *tau = lora_xmalloc((size_t)(p ? p : 1) * sizeof *tau);
	int info = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, rows, cols, X, cols, tau);
	if (info == 0) {
		/* R is the upper triangle of the first p rows */
		for (int i = 0; i < p; i++)
			for (int j = 0; j < cols; j++)
				R[(size_t)i * cols + j] = j >= i ? X[(size_t)i * cols + j] : 0.0;
		/* Q is the first p columns, formed in place (leading dimension cols) */
		info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, rows, p, p, X, cols, tau);
	}
	free(tau);
	return info;
}

int lora_lowrank_truncate(const float *B, const float *A, int m, int r, int n,
                          int rank, float *up, float *down, double *sv)
{
	LORA_ASSERT(m > 0 && r > 0 && n > 0 && rank >= 0);
	int p = imin(m, r), q = imin(n, r), t = imin(p, q);
	int k = imin(rank, t);
	int ret = -1;

	/* Qb·Rb = B (m, r); Qa·Ra = Aᵀ (n, r) */
	double *qb = lora_xmalloc((size_t)m * r * sizeof *qb);
	double *qa = lora_xmalloc((size_t)n * r * sizeof *qa);
	double *rb = lora_xmalloc((size_t)p * r * sizeof *rb);
	double *ra = lora_xmalloc((size_t)q * r * sizeof *ra);
	double *M = lora_xmalloc((size_t)p * q * sizeof *M);
	double *U = lora_xmalloc((size_t)p * t * sizeof *U);
	double *Vt = lora_xmalloc((size_t)t * q * sizeof *Vt);
	double *s = lora_xmalloc((size_t)t * sizeof *s);
	for (size_t i = 0; i < (size_t)m * r; i++)
		qb[i] = B[i];
	for (int i = 0; i < r; i++)
		for (int j = 0; j < n; j++)
			qa[(size_t)j * r + i] = A[(size_t)i * n + j];
	if (thin_qr(qb, m, r, rb) != 0 || thin_qr(qa, n, r, ra) != 0) {
		lora_err("QR factorisation failed");
		goto out;
	}
	/* M (p, q) = Rb (p, r) · Raᵀ (r, q); B·A = Qb·M·Qaᵀ */
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p, q, r,
	            1.0, rb, r, ra, r, 0.0, M, q);
	if (LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', p, q, M, q, s, U, t, Vt, q) != 0) {
		lora_err("SVD did not converge");
		goto out;
	}
	if (sv)
		memcpy(sv, s, (size_t)t * sizeof *s);
	if (k > 0) {
		/* up (m, k) = Qb (m, p; ld r) · U[:, :k] · √S;  down (k, n) = √S · Vtₖ · Qaᵀ */
		double *tmp = lora_xmalloc((size_t)(m > n ? m : n) * k * sizeof *tmp);
		double *uk = lora_xmalloc((size_t)p * k * sizeof *uk);
		double *vk = lora_xmalloc((size_t)k * q * sizeof *vk);
		for (int i = 0; i < p; i++)
			for (int j = 0; j < k; j++)
				uk[(size_t)i * k + j] = U[(size_t)i * t + j] * sqrt(s[j]);
		for (int i = 0; i < k; i++)
			for (int j = 0; j < q; j++)
				vk[(size_t)i * q + j] = Vt[(size_t)i * q + j] * sqrt(s[i]);
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, k, p,
		            1.0, qb, r, uk, k, 0.0, tmp, k);
		for (size_t i = 0; i < (size_t)m * k; i++)
			up[i] = (float)tmp[i];
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, k, n, q,
		            1.0, vk, q, qa, r, 0.0, tmp, n);
		for (size_t i = 0; i < (size_t)k * n; i++)
			down[i] = (float)tmp[i];
		free(tmp);
		free(uk);
		free(vk);
	}
	ret = k;
out:
	free(qb);
	free(qa);
	free(rb);
	free(ra);
	free(M);
	free(U);
	free(Vt);
	free(s);
	return ret;
}

double lora_lowrank_energy(const double *sv, int nsv, int k)
{
	double all = 0, kept = 0;
	for (int i = 0; i < nsv; i++) {
		all += sv[i] * sv[i];
		if (i < k)
			kept += sv[i] * sv[i];
	}
	return all > 0 ? kept / all : 1.0;
}

double lora_lowrank_residual(const double *sv, int nsv, int k)
{
	double e = 0;
	for (int i = k; i < nsv; i++)
		e += sv[i] * sv[i];
	return sqrt(e);
}
