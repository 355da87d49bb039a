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

/* table[key] += the sum of one table's rows by its id-sorted index (core/embed_index.h): per chunk the sum of
 * its rows in order (into the table row, or into its partial slot), then per multi-chunk key the sum of its
 * slots in order; parallel over chunks, then over keys (each writes rows no other task writes) */
static void emb_indexed(lnn_ctx *ctx, float *table, const float *dout, const lnn_emb_index *x, int C) {
    float *part = x->nslot ? lnn_scratch(ctx, (size_t)x->nslot * C * sizeof(float)) : NULL;
    if (x->nslot && !part) return;
    LNN_OMP_FOR_DYNAMIC
    for (int ch = 0; ch < x->nchunk; ch++) {
        int k = x->ckey[ch];
        float *dst = k >= 0 ? table + (size_t)k * C : part + (size_t)(-1 - k) * C;
        if (k < 0) memset(dst, 0, sizeof(float) * (size_t)C);
        /* the chunk's rows in order: a table row (single chunk) accumulates them onto its value */
        for (int r = x->chunk[ch]; r < x->chunk[ch + 1]; r++) {
            const float *g = dout + (size_t)x->rows[r] * C;
            for (int c = 0; c < C; c++) dst[c] += g[c];
        }
    }
    LNN_OMP_FOR_DYNAMIC
    for (int k = 0; k < x->nrun; k++) {
        float *dst = table + (size_t)x->rkey[k] * C;
        for (int s = x->run[k]; s < x->run[k + 1]; s++) {
            const float *p = part + (size_t)s * C;
            for (int c = 0; c < C; c++) dst[c] += p[c];
        }
    }
}

/* dwte[ids] += dout except the pad row; dwpe[pos] += dout; dwtt[types] += dout: by the id-sorted indexes when
 * given, else by column blocks, rows in order */
void cpu_embedding_backward(lnn_ctx *ctx, float *dwte, float *dwpe, float *dwtt, const void *dout_, const int32_t *ids,
                            const int32_t *types, const int32_t *pos, int N, int C, int pad_id,
                            const lnn_emb_index *idx) {
    const float *dout = dout_;
    if (idx) {
        if (dwte) emb_indexed(ctx, dwte, dout, &idx[0], C);
        if (dwpe) emb_indexed(ctx, dwpe, dout, &idx[1], C);
        if (dwtt) emb_indexed(ctx, dwtt, dout, &idx[2], C);
        return;
    }
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
