/* cpu/internal.h: what the CPU backend's files share: the op functions the table in cpu/backend.c
 * lists (one file per op family), the math helpers and the deterministic reduction helpers.
 *
 * Threads: OpenMP loops (LNN_OMP_FOR) over work items whose split depends on the shapes only,
 * never on the thread count, so results are bit-identical on any number of threads. Reductions over
 * rows (bias, LayerNorm and embedding gradients) go by column blocks; GEMMs by a fixed tile grid
 * (cpu/gemm.c). Activations are F32 (the CPU backend supports no other activation dtype). */
#ifndef LNN_CPU_INTERNAL_H
#define LNN_CPU_INTERNAL_H

/* Let gcc if-convert the clamps and selects of the math helpers so the elementwise loops vectorize
 * (no code here relies on floating-point exception flags). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/backend.h"
#include "cpu/blas.h"

#ifdef _OPENMP
#define SIMD_SUM(v) LNN_PRAGMA(omp simd reduction(+ : v))
#define SIMD_MAX(v) LNN_PRAGMA(omp simd reduction(max : v))
#define SIMD_SUM2(a, b) LNN_PRAGMA(omp simd reduction(+ : a) reduction(+ : b))
#else
#define SIMD_SUM(v)
#define SIMD_MAX(v)
#define SIMD_SUM2(a, b)
#endif

/* Denormal floats: work that can meet them (the GEMMs, the LSTM cell) runs with flush-to-zero and
 * denormals-are-zero set in the thread that does it (x86 MXCSR FTZ | DAZ), the caller's mode put back
 * after. Values below FLT_MIN (1.2e-38) then count as 0: x86 handles denormal operands and results in
 * microcode, up to ~100x slower, and an LSTM's gradients decaying back through hundreds of time steps
 * pass through that range (GPUs flush them too). */
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
static inline unsigned lnn_ftz_begin(void) {
    unsigned s = _mm_getcsr();
    _mm_setcsr(s | 0x8040u);
    return s;
}
static inline void lnn_ftz_end(unsigned s) { _mm_setcsr(s); }
#else
static inline unsigned lnn_ftz_begin(void) { return 0; }
static inline void lnn_ftz_end(unsigned s) { (void)s; }
#endif

/* column block of the deterministic row reductions */
#define COLBLOCK 64

/* exp(x) to ~2 ulp, branch-free so loops vectorize; exp(x < -87.3) = 0 (also for -inf). */
static inline float lnn_expf(float x) {
    float xc = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
    float n = floorf(xc * 1.44269504088896341f + 0.5f);
    float r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } u;
    u.i = ((int32_t)n + 127) << 23;
    float y = p * u.f;
    return x < -87.3f ? 0.f : y;
}

/* erf(x), |error| < 1.5e-7 (Abramowitz & Stegun 7.1.26, as torch's vectorized erf). */
static inline float lnn_erff(float x) {
    float ax = fabsf(x);
    float t = 1.0f / (1.0f + 0.3275911f * ax);
    float y = 1.061405429f;
    y = y * t - 1.453152027f;
    y = y * t + 1.421413741f;
    y = y * t - 0.284496736f;
    y = y * t + 0.254829592f;
    y = 1.0f - y * t * lnn_expf(-ax * ax);
    return x < 0.f ? -y : y;
}

static inline float lnn_tanh_fast(float u) {
    float uc = u > 15.f ? 15.f : (u < -15.f ? -15.f : u);
    float e = lnn_expf(2.f * uc);
    return (e - 1.f) / (e + 1.f);
}

/* dropout of n contiguous elements whose padded element indices start at offset (serial: called
 * inside parallel loops); keep (n) receives the mask when not NULL (cpu/dropout.c) */
void cpu_dropout_serial(float *out, uint8_t *keep, const float *inp, size_t n, uint64_t offset, lnn_dropout_t d);
/* out[i] = inp[i] * keep[i] / (1 - p): a stored mask applied again (out may alias inp) */
void cpu_keep_apply(float *out, const float *inp, const uint8_t *keep, size_t n, float p);

/* ---- the ops (signatures and semantics: core/backend.h) ---- */
void cpu_cast(lnn_ctx *ctx, void *dst, lnn_dtype dt, const void *src, lnn_dtype st, size_t n);
void cpu_embedding_forward(lnn_ctx *ctx, void *out, const int32_t *ids, const int32_t *types, const int32_t *pos,
                           const void *wte, const void *wpe, const void *wtt, int N, int C);
void cpu_embedding_backward(lnn_ctx *ctx, float *dwte, float *dwpe, float *dwtt, const void *dout, const int32_t *ids,
                            const int32_t *types, const int32_t *pos, int N, int C, int pad_id,
                             const lnn_emb_index *idx);
void cpu_matmul_forward(lnn_ctx *ctx, void *out, const void *inp, const void *w, const void *b, int N, int C, int OC);
void cpu_matmul_backward(lnn_ctx *ctx, void *dinp, float *dw, float *db, const void *dout, const void *inp,
                         const void *w, int N, int C, int OC);
void cpu_lora_forward(lnn_ctx *ctx, void *y, int ldy, const void *x, const void *A, const void *B, void *u,
                      lnn_rows rows, int C, int r, int OC, float scale, lnn_dropout_t drop);
void cpu_lora_backward(lnn_ctx *ctx, void *dx, float *dA, float *dB, const void *dy, int ldy, const void *x,
                       const void *A, const void *B, const void *u, lnn_rows rows, int C, int r, int OC, float scale,
                       lnn_dropout_t drop);
void cpu_layernorm_forward(lnn_ctx *ctx, void *out, float *mean, float *rstd, void *res, const void *a, const void *r,
                           const void *w, const void *b, int N, int C, float eps);
void cpu_layernorm_backward(lnn_ctx *ctx, void *dres, float *dw, float *db, const void *dout, const void *res,
                            const void *w, const float *mean, const float *rstd, int N, int C);
void cpu_bias_act_forward(lnn_ctx *ctx, void *out, void *x, const void *b, int N, int OC, int act);
void cpu_bias_act_backward(lnn_ctx *ctx, void *dx, float *db, const void *dout, const void *x, int N, int OC, int act);
void cpu_tanh_forward(lnn_ctx *ctx, void *out, const void *inp, size_t n);
void cpu_tanh_backward(lnn_ctx *ctx, void *dinp, const void *dout, const void *out, size_t n);
size_t cpu_attention_saved_bytes(const lnn_ctx *ctx, int B, int T, int NH, int train, float p);
size_t cpu_attention_scratch_bytes(const lnn_ctx *ctx, int B, int T, int NH, int train, float p);
void cpu_attention_forward(lnn_ctx *ctx, void *out, void *saved, void *scratch, const void *qkv, const int32_t *mask,
                           const int32_t *seq_off, int q_first, int B, int T, int C, int NH, lnn_dropout_t drop);
void cpu_attention_backward(lnn_ctx *ctx, void *dqkv, const void *dout, const void *out, const void *saved,
                            void *scratch, const void *qkv, const int32_t *seq_off, int q_first, int B, int T, int C,
                            int NH, lnn_dropout_t drop);
void cpu_dropout_forward(lnn_ctx *ctx, void *out, const void *inp, lnn_rows rows, int C, lnn_dropout_t drop);
void cpu_dropout_backward(lnn_ctx *ctx, void *dinp, const void *dout, lnn_rows rows, int C, lnn_dropout_t drop);
void cpu_token0_forward(lnn_ctx *ctx, void *out, const void *inp, lnn_rows rows, int C);
void cpu_token0_backward(lnn_ctx *ctx, void *dinp, const void *dout, lnn_rows rows, int C);
void cpu_mean_pool_forward(lnn_ctx *ctx, void *out, const void *h, const int32_t *mask, lnn_rows rows, int C);
void cpu_mean_pool_backward(lnn_ctx *ctx, void *dh, const void *dout, const int32_t *mask, lnn_rows rows, int C);
void cpu_concat_forward(lnn_ctx *ctx, void *out, const void *h, const void *f, int B, int H, int F);
void cpu_concat_backward(lnn_ctx *ctx, void *dh, void *df, const void *dout, int B, int H, int F);
void cpu_batchnorm_forward(lnn_ctx *ctx, void *out, float *save_mean, float *save_rstd, const void *x,
                           const void *gamma, const void *beta, float *running_mean, float *running_var, int N, int C,
                           int training, float momentum, float eps);
void cpu_batchnorm_backward(lnn_ctx *ctx, void *dx, float *dgamma, float *dbeta, const void *dout, const void *x,
                            const void *gamma, const float *save_mean, const float *save_rstd, int N, int C,
                            int batch_stats);
void cpu_cross_entropy(lnn_ctx *ctx, double *loss, void *dlogits, const void *logits, const int64_t *labels,
                       const float *class_weight, int N, int K, int64_t ignore_index, float grad_scale);
void cpu_bce_with_logits(lnn_ctx *ctx, double *loss, void *dlogits, const void *logits, const void *targets,
                         const float *pos_weight, int N, int K, float grad_scale);
void cpu_mse(lnn_ctx *ctx, double *loss, void *dpreds, const void *preds, const void *targets, size_t n,
             float grad_scale);
void cpu_gather_rows_forward(lnn_ctx *ctx, void *out, const void *inp, const int32_t *idx, int N, int C);
void cpu_gather_rows_backward(lnn_ctx *ctx, void *dinp, const void *dout, const int32_t *idx, int N, int C);
void cpu_lstm_cell_forward(lnn_ctx *ctx, void *h, void *c, void *gates, const void *gh, const void *c_prev, int N,
                           int Np, int H);
void cpu_lstm_cell_backward(lnn_ctx *ctx, void *dgates, void *dc_prev, const void *dh, const void *dc,
                            const void *gates, const void *c, const void *c_prev, int N, int Np, int H);
void cpu_segment_pool_forward(lnn_ctx *ctx, void *out, const void *x, const void *scores, const int32_t *seg_off,
                              int S, int N, int C, int mode);
void cpu_segment_pool_backward(lnn_ctx *ctx, void *dx, void *dscores, const void *dout, const void *x,
                               const void *scores, const int32_t *seg_off, int S, int N, int C, int mode);
void cpu_grad_norm_clip(lnn_ctx *ctx, double *norm, float *grads, size_t n, const lnn_segment *segs, int nseg,
                        int clip, double max_norm, float inv_scale, float *coef);
void cpu_adam_step(lnn_ctx *ctx, float *params, float *grads, float *m, float *v, size_t n, size_t nstate,
                   const lnn_segment *segs, int nseg, int64_t *steps, const float *lr_scale,
                   const lnn_optim_config *cfg, const float *gcoef, const double *skip_norm, void *wact);

#endif /* LNN_CPU_INTERNAL_H */
