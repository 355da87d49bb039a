/* cpu/segment_pool.c: pooling across the windows of each song (core/backend.h segment_pool_*): the
 * rows of each segment reduced to one row by their mean, their per-column max, or a softmax-weighted
 * sum. One segment per work item, its rows in order: the same bits on any number of threads. */
#include "cpu/internal.h"

/* The softmax of the segment's scores, w_n = exp(s_n - m) / z: (m, z) for rows [r0, r0 + len). A NaN
 * score makes every weight NaN (as torch.softmax); m is the NaN-propagating max. */
static void softmax_stats(const float *scores, int r0, int len, float *m_out, float *z_out) {
    float m = scores[r0];
    for (int n = 1; n < len; n++) {
        float v = scores[r0 + n];
        if (v != v || v > m) m = v; /* once m is NaN, v > m is false: it stays NaN */
    }
    float z = 0.f;
    for (int n = 0; n < len; n++) z += expf(scores[r0 + n] - m);
    *m_out = m;
    *z_out = z;
}

/* the weight of row n (n counted from the segment's first row) */
static inline float seg_weight(int mode, const float *scores, int r0, int n, int len, float m, float z) {
    if (mode == LNN_SEGPOOL_ATTN) return expf(scores[r0 + n] - m) / z;
    return 1.0f / (float)len;
}

/* x's row picked by the max for column c of a segment: the first largest value, or the first NaN */
static inline int seg_argmax(const float *x, int r0, int len, int C, int c) {
    int best = 0;
    float bv = x[(size_t)r0 * C + c];
    for (int n = 1; n < len && bv == bv; n++) {
        float v = x[(size_t)(r0 + n) * C + c];
        if (v > bv || v != v) {
            bv = v;
            best = n;
        }
    }
    return best;
}

/* out(S,C) = the mean / max / softmax-weighted sum of each segment's rows of x(N,C) */
void cpu_segment_pool_forward(lnn_ctx *ctx, void *out_, const void *x_, const void *scores_, const int32_t *seg_off,
                              int S, int N, int C, int mode) {
    float *out = out_;
    const float *x = x_, *scores = scores_;
    LNN_OMP_FOR
    for (int s = 0; s < S; s++) {
        int r0 = seg_off[s], len = seg_off[s + 1] - r0;
        float *o = out + (size_t)s * C;
        if (mode == LNN_SEGPOOL_MAX) {
            for (int c = 0; c < C; c++) o[c] = x[(size_t)(r0 + seg_argmax(x, r0, len, C, c)) * C + c];
            continue;
        }
        float m = 0.f, z = 1.f;
        if (mode == LNN_SEGPOOL_ATTN) softmax_stats(scores, r0, len, &m, &z);
        for (int c = 0; c < C; c++) o[c] = 0.f;
        for (int n = 0; n < len; n++) {
            const float *xr = x + (size_t)(r0 + n) * C;
            if (mode == LNN_SEGPOOL_MEAN) {
                for (int c = 0; c < C; c++) o[c] += xr[c];
            } else {
                float w = seg_weight(mode, scores, r0, n, len, m, z);
                for (int c = 0; c < C; c++) o[c] += w * xr[c];
            }
        }
        if (mode == LNN_SEGPOOL_MEAN) {
            float inv = 1.0f / (float)len;
            for (int c = 0; c < C; c++) o[c] *= inv;
        }
    }
}

/* dx(N,C) += d out / d x . dout(S,C); dscores(N) = d out / d scores . dout (attention) */
void cpu_segment_pool_backward(lnn_ctx *ctx, void *dx_, void *dscores_, const void *dout_, const void *x_,
                               const void *scores_, const int32_t *seg_off, int S, int N, int C, int mode) {
    float *dx = dx_, *dscores = dscores_;
    const float *dout = dout_, *x = x_, *scores = scores_;
    LNN_OMP_FOR
    for (int s = 0; s < S; s++) {
        int r0 = seg_off[s], len = seg_off[s + 1] - r0;
        const float *d = dout + (size_t)s * C;
        if (mode == LNN_SEGPOOL_MAX) {
            if (dx)
                for (int c = 0; c < C; c++) dx[(size_t)(r0 + seg_argmax(x, r0, len, C, c)) * C + c] += d[c];
            continue;
        }
        float m = 0.f, z = 1.f;
        if (mode == LNN_SEGPOOL_ATTN) softmax_stats(scores, r0, len, &m, &z);
        if (dscores && mode == LNN_SEGPOOL_ATTN) {
            /* dscores_n = w_n (g_n - sum_m w_m g_m), g_n = dout . x_n */
            float gbar = 0.f;
            for (int n = 0; n < len; n++) {
                const float *xr = x + (size_t)(r0 + n) * C;
                float g = 0.f;
                SIMD_SUM(g)
                for (int c = 0; c < C; c++) g += d[c] * xr[c];
                dscores[r0 + n] = g; /* g_n for now */
                gbar += seg_weight(mode, scores, r0, n, len, m, z) * g;
            }
            for (int n = 0; n < len; n++)
                dscores[r0 + n] = seg_weight(mode, scores, r0, n, len, m, z) * (dscores[r0 + n] - gbar);
        }
        if (dx)
            for (int n = 0; n < len; n++) {
                float w = seg_weight(mode, scores, r0, n, len, m, z);
                float *g = dx + (size_t)(r0 + n) * C;
                for (int c = 0; c < C; c++) g[c] += w * d[c];
            }
    }
}
