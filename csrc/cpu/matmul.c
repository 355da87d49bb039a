/* cpu/matmul.c: nn.Linear, forward and backward, on the engine's GEMM (cpu/gemm.c). */
#include "cpu/internal.h"

/* db(OC) += colsum(x(N,OC)), by column blocks (deterministic) */
static void colsum_acc(float *db, const float *x, int N, int OC) {
    int nblk = (OC + COLBLOCK - 1) / COLBLOCK;
    LNN_OMP_FOR
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * COLBLOCK, nc = OC - c0 < COLBLOCK ? OC - c0 : COLBLOCK;
        float acc[COLBLOCK] = {0};
        for (int n = 0; n < N; n++) {
            const float *row = x + (size_t)n * OC + c0;
            for (int j = 0; j < nc; j++) acc[j] += row[j];
        }
        for (int j = 0; j < nc; j++) db[c0 + j] += acc[j];
    }
}

/* out(N,OC) = inp(N,C) @ w(OC,C)^T (+ b) */
void cpu_matmul_forward(lnn_ctx *ctx, void *out_, const void *inp, const void *w, const void *b_, int N, int C,
                        int OC) {
    float *out = out_;
    const float *b = b_;
    if (b) lnn_gemm_bias(0, 1, N, OC, C, 1.f, inp, C, w, C, b, out, OC);
    else lnn_gemm(0, 1, N, OC, C, 1.f, inp, C, w, C, 0.f, out, OC);
}

/* dinp(N,C) += dout @ w; dw(OC,C) += dout^T @ inp; db += colsum(dout) */
void cpu_matmul_backward(lnn_ctx *ctx, void *dinp, float *dw, float *db, const void *dout, const void *inp,
                         const void *w, int N, int C, int OC) {
    if (dinp) lnn_gemm(0, 0, N, C, OC, 1.f, dout, OC, w, C, 1.f, dinp, C);
    if (dw) lnn_gemm(1, 0, OC, C, N, 1.f, dout, OC, inp, C, 1.f, dw, C);
    if (db) colsum_acc(db, dout, N, OC);
}
