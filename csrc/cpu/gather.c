/* cpu/gather.c: the ops between the encoder's token rows and the head's (B, width) vectors:
 * token-0 gather, mean pooling, the concatenation of a feature vector, and a gather of rows by index (an
 * LSTM's last states). */
#include "cpu/internal.h"

/* the row of token 0 of sequence b */
static size_t first_row(lnn_rows rows, int b) {
    if (rows.first_only) return (size_t)b;
    return rows.seq_off ? (size_t)rows.seq_off[b] : (size_t)b * rows.T;
}

/* out(B,C) = inp[token 0 of each sequence] */
void cpu_token0_forward(lnn_ctx *ctx, void *out_, const void *inp_, lnn_rows rows, int C) {
    float *out = out_;
    const float *inp = inp_;
    for (int b = 0; b < rows.B; b++) memcpy(out + (size_t)b * C, inp + first_row(rows, b) * C, sizeof(float) * C);
}

/* dinp[token 0 rows] += dout(B,C) */
void cpu_token0_backward(lnn_ctx *ctx, void *dinp_, const void *dout_, lnn_rows rows, int C) {
    float *dinp = dinp_;
    const float *dout = dout_;
    for (int b = 0; b < rows.B; b++) {
        float *d = dinp + first_row(rows, b) * C;
        const float *g = dout + (size_t)b * C;
        for (int c = 0; c < C; c++) d[c] += g[c];
    }
}

/* The rows of sequence b that mean pooling reads: [r0, r0 + len) with the mask row mb (NULL: all). */
static void pool_span(lnn_rows rows, const int32_t *mask, int b, size_t *r0, int *len, const int32_t **mb) {
    if (rows.seq_off) {
        *r0 = (size_t)rows.seq_off[b];
        *len = rows.seq_off[b + 1] - rows.seq_off[b];
        *mb = NULL;
    } else {
        *r0 = (size_t)b * rows.T;
        *len = rows.T;
        *mb = mask ? mask + (size_t)b * rows.T : NULL;
    }
}

/* out(B,C) = sum of the sequence's token rows / max(count, 1e-9) */
void cpu_mean_pool_forward(lnn_ctx *ctx, void *out_, const void *h_, const int32_t *mask, lnn_rows rows, int C) {
    float *out = out_;
    const float *h = h_;
    LNN_OMP_FOR
    for (int b = 0; b < rows.B; b++) {
        size_t r0;
        int len;
        const int32_t *mb;
        pool_span(rows, mask, b, &r0, &len, &mb);
        float *o = out + (size_t)b * C;
        for (int c = 0; c < C; c++) o[c] = 0.0f;
        float den = 0.0f;
        for (int t = 0; t < len; t++) {
            if (mb && !mb[t]) continue;
            den += 1.0f;
            const float *x = h + (r0 + t) * C;
            for (int c = 0; c < C; c++) o[c] += x[c];
        }
        den = den > 1e-9f ? den : 1e-9f;
        for (int c = 0; c < C; c++) o[c] /= den;
    }
}

/* dh[the sequence's token rows] += dout(B,C) / count */
void cpu_mean_pool_backward(lnn_ctx *ctx, void *dh_, const void *dout_, const int32_t *mask, lnn_rows rows, int C) {
    float *dh = dh_;
    const float *dout = dout_;
    LNN_OMP_FOR
    for (int b = 0; b < rows.B; b++) {
        size_t r0;
        int len;
        const int32_t *mb;
        pool_span(rows, mask, b, &r0, &len, &mb);
        float den = 0.0f;
        for (int t = 0; t < len; t++) den += (!mb || mb[t]) ? 1.0f : 0.0f;
        den = den > 1e-9f ? den : 1e-9f;
        const float *d = dout + (size_t)b * C;
        float w = 1.0f / den;
        for (int t = 0; t < len; t++) {
            if (mb && !mb[t]) continue;
            float *x = dh + (r0 + t) * C;
            for (int c = 0; c < C; c++) x[c] += w * d[c];
        }
    }
}

/* out(B,H+F) = [h | f] */
void cpu_concat_forward(lnn_ctx *ctx, void *out_, const void *h_, const void *f_, int B, int H, int F) {
    float *out = out_;
    const float *h = h_, *f = f_;
    LNN_OMP_FOR
    for (int b = 0; b < B; b++) {
        memcpy(out + (size_t)b * (H + F), h + (size_t)b * H, (size_t)H * sizeof(float));
        memcpy(out + (size_t)b * (H + F) + H, f + (size_t)b * F, (size_t)F * sizeof(float));
    }
}

/* dh(B,H) += dout[:, :H]; df(B,F) += dout[:, H:] */
void cpu_concat_backward(lnn_ctx *ctx, void *dh_, void *df_, const void *dout_, int B, int H, int F) {
    float *dh = dh_, *df = df_;
    const float *dout = dout_;
    LNN_OMP_FOR
    for (int b = 0; b < B; b++) {
        const float *d = dout + (size_t)b * (H + F);
        if (dh)
            for (int j = 0; j < H; j++) dh[(size_t)b * H + j] += d[j];
        if (df)
            for (int j = 0; j < F; j++) df[(size_t)b * F + j] += d[H + j];
    }
}

/* out(N,C) = inp[idx[n]] (idx[n] < 0: zeros) */
void cpu_gather_rows_forward(lnn_ctx *ctx, void *out_, const void *inp_, const int32_t *idx, int N, int C) {
    float *out = out_;
    const float *inp = inp_;
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * C;
        if (idx[n] < 0) memset(o, 0, sizeof(float) * C);
        else memcpy(o, inp + (size_t)idx[n] * C, sizeof(float) * C);
    }
}

/* dinp[idx[n]] += dout(N,C), by column blocks (repeated indices add up in row order) */
void cpu_gather_rows_backward(lnn_ctx *ctx, void *dinp_, const void *dout_, const int32_t *idx, int N, int C) {
    float *dinp = dinp_;
    const float *dout = dout_;
    int nblk = (C + COLBLOCK - 1) / COLBLOCK;
    LNN_OMP_FOR
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * COLBLOCK, nc = C - c0 < COLBLOCK ? C - c0 : COLBLOCK;
        for (int n = 0; n < N; n++) {
            if (idx[n] < 0) continue;
            float *d = dinp + (size_t)idx[n] * C + c0;
            const float *g = dout + (size_t)n * C + c0;
            for (int j = 0; j < nc; j++) d[j] += g[j];
        }
    }
}
