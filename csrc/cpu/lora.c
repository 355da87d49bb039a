/* cpu/lora.c: the LoRA branch of a frozen nn.Linear (peft's lora.Linear), forward and backward, on the
 * engine's GEMM (cpu/gemm.c). Rank-r GEMMs are small: the cost is reading x and dy, a few passes each.
 * The dropout mask on x is drawn from Philox (cpu/dropout.c) in the forward and drawn again in the
 * backward, so nothing of size (N, C) is kept between them. */
#include "cpu/internal.h"

/* y(N, ldy)[:, :OC] += scale * (drop(x) @ A^T) @ B^T; u(N,r) = drop(x) @ A^T */
void cpu_lora_forward(lnn_ctx *ctx, void *y, int ldy, const void *x, const void *A, const void *B, void *u,
                      lnn_rows rows, int C, int r, int OC, float scale, lnn_dropout_t drop) {
    int N = rows.N;
    const float *xd = x;
    if (drop.p > 0.f) {
        float *s = lnn_scratch(ctx, (size_t)N * C * sizeof(float));
        if (!s) return;
        cpu_dropout_forward(ctx, s, x, rows, C, drop);
        xd = s;
    }
    lnn_gemm(0, 1, N, r, C, 1.f, xd, C, A, C, 0.f, u, r);
    lnn_gemm(0, 1, N, OC, r, scale, u, r, B, r, 1.f, y, ldy);
}

/* t(N,r) = scale * dy @ B; dB += scale * dy^T u; dA += t^T drop(x); dx += drop(t @ A) */
void cpu_lora_backward(lnn_ctx *ctx, void *dx_, float *dA, float *dB, const void *dy, int ldy, const void *x,
                       const void *A, const void *B, const void *u, lnn_rows rows, int C, int r, int OC, float scale,
                       lnn_dropout_t drop) {
    int N = rows.N;
    float *dx = dx_;
    if (dB) lnn_gemm(1, 0, OC, r, N, scale, dy, ldy, u, r, 1.f, dB, r);
    if (!dA && !dx) return;
    int dropping = drop.p > 0.f;
    size_t tn = (size_t)N * r, need = tn + (dropping ? (size_t)N * C : 0);
    float *t = lnn_scratch(ctx, need * sizeof(float));
    if (!t) return;
    float *s = t + tn; /* (N,C): drop(x), then drop(t @ A) */
    lnn_gemm(0, 0, N, r, OC, scale, dy, ldy, B, r, 0.f, t, r);
    if (dA) {
        const float *xd = x;
        if (dropping) {
            cpu_dropout_forward(ctx, s, x, rows, C, drop);
            xd = s;
        }
        lnn_gemm(1, 0, r, C, N, 1.f, t, r, xd, C, 1.f, dA, C);
    }
    if (!dx) return;
    if (!dropping) {
        lnn_gemm(0, 0, N, C, r, 1.f, t, r, A, C, 1.f, dx, C);
        return;
    }
    lnn_gemm(0, 0, N, C, r, 1.f, t, r, A, C, 0.f, s, C);
    cpu_dropout_backward(ctx, s, s, rows, C, drop);
    LNN_OMP_FOR
    for (int n = 0; n < N; n++) {
        float *d = dx + (size_t)n * C;
        const float *v = s + (size_t)n * C;
        for (int c = 0; c < C; c++) d[c] += v[c];
    }
}
