/* cpu/embedding.c: token + position (+ token type) embeddings, or token embeddings alone. */
#include "cpu/internal.h"

/* out(N,C) = wte[ids] (+ wtt[types]) + wpe[pos] (wpe NULL: none) */
void cpu_embedding_forward(lnn_ctx *ctx, void *out_, const int32_t *ids, const int32_t *types, const int32_t *pos,
                           const void *wte_, const void *wpe_, const void *wtt_, int N, int C) {
    float *out = out_;
    const float *wte = wte_, *wpe = wpe_, *wtt = wtt_;
    LNN_OMP_FOR
    for (long n = 0; n < N; n++) {
        float *o = out + n * C;
        const float *w = wte + (size_t)ids[n] * C, *p = wpe ? wpe + (size_t)pos[n] * C : NULL;
        const float *y = wtt ? wtt + (size_t)(types ? types[n] : 0) * C : NULL;
        for (int c = 0; c < C; c++) {
            float v = w[c];
            if (y) v += y[c];
            if (p) v += p[c];
            o[c] = v;
        }
    }
}

/* dwte[ids] += dout except the pad row; dwpe[pos] += dout; dwtt[types] += dout (by column blocks) */
void cpu_embedding_backward(lnn_ctx *ctx, float *dwte, float *dwpe, float *dwtt, const void *dout_, const int32_t *ids,
                            const int32_t *types, const int32_t *pos, int N, int C, int pad_id) {
    const float *dout = dout_;
    int nblk = (C + COLBLOCK - 1) / COLBLOCK;
    LNN_OMP_FOR
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * COLBLOCK, nc = C - c0 < COLBLOCK ? C - c0 : COLBLOCK;
        for (long n = 0; n < N; n++) {
            const float *g = dout + n * C + c0;
            if (dwte && ids[n] != pad_id) {
                float *d = dwte + (size_t)ids[n] * C + c0;
                for (int j = 0; j < nc; j++) d[j] += g[j];
            }
            if (dwpe) {
                float *d = dwpe + (size_t)pos[n] * C + c0;
                for (int j = 0; j < nc; j++) d[j] += g[j];
            }
            if (dwtt) {
                float *d = dwtt + (size_t)(types ? types[n] : 0) * C + c0;
                for (int j = 0; j < nc; j++) d[j] += g[j];
            }
        }
    }
}
