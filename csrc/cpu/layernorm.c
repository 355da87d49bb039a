/* cpu/layernorm.c: LayerNorm fused with the residual add before it. */
#include "cpu/internal.h"

/* res = a + r; out = LN(res) */
void cpu_layernorm_forward(lnn_ctx *ctx, void *out_, float *mean, float *rstd, void *res_, const void *a_,
                           const void *r_, const void *w_, const void *b_, int N, int C, float eps) {
    float *out = out_, *res = res_;
    const float *a = a_, *r = r_, *w = w_, *b = b_;
    LNN_OMP_FOR
    for (int n = 0; n < N; n++) {
        float *x = res + (size_t)n * C;
        const float *an = a + (size_t)n * C;
        if (r) {
            const float *rn = r + (size_t)n * C;
            for (int c = 0; c < C; c++) x[c] = an[c] + rn[c];
        } else if (x != an) {
            memcpy(x, an, sizeof(float) * C);
        }
        float s = 0.f;
        SIMD_SUM(s)
        for (int c = 0; c < C; c++) s += x[c];
        float m = s / C, v = 0.f;
        SIMD_SUM(v)
        for (int c = 0; c < C; c++) { float d = x[c] - m; v += d * d; }
        float rs = 1.0f / sqrtf(v / C + eps);
        float *o = out + (size_t)n * C;
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * rs * w[c] + b[c];
        mean[n] = m;
        rstd[n] = rs;
    }
}

/* dres += LN backward; dw += sum dout*xhat; db += sum dout */
void cpu_layernorm_backward(lnn_ctx *ctx, void *dres_, float *dw, float *db, const void *dout_, const void *res_,
                            const void *w_, const float *mean, const float *rstd, int N, int C) {
    float *dres = dres_;
    const float *dout = dout_, *res = res_, *w = w_;
    if (dres) {
        LNN_OMP_FOR
        for (int n = 0; n < N; n++) {
            const float *x = res + (size_t)n * C, *g = dout + (size_t)n * C;
            float m = mean[n], rs = rstd[n], sg = 0.f, sgx = 0.f;
            SIMD_SUM2(sg, sgx)
            for (int c = 0; c < C; c++) {
                float gw = g[c] * w[c];
                sg += gw;
                sgx += gw * (x[c] - m) * rs;
            }
            sg /= C;
            sgx /= C;
            float *d = dres + (size_t)n * C;
            for (int c = 0; c < C; c++) d[c] += rs * (g[c] * w[c] - sg - (x[c] - m) * rs * sgx);
        }
    }
    if (dw || db) {
        int nblk = (C + COLBLOCK - 1) / COLBLOCK;
        LNN_OMP_FOR
        for (int blk = 0; blk < nblk; blk++) {
            int c0 = blk * COLBLOCK, nc = C - c0 < COLBLOCK ? C - c0 : COLBLOCK;
            float aw[COLBLOCK] = {0}, ab[COLBLOCK] = {0};
            for (int n = 0; n < N; n++) {
                const float *x = res + (size_t)n * C + c0, *g = dout + (size_t)n * C + c0;
                float m = mean[n], rs = rstd[n];
                for (int j = 0; j < nc; j++) {
                    aw[j] += g[j] * (x[j] - m) * rs;
                    ab[j] += g[j];
                }
            }
            for (int j = 0; j < nc; j++) {
                if (dw) dw[c0 + j] += aw[j];
                if (db) db[c0 + j] += ab[j];
            }
        }
    }
}
