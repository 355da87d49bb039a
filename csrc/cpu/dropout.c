/* cpu/dropout.c: inverted dropout with Philox4x32-10 masks (core/philox.h), keyed by the padded
 * layout's element index so packed, padded and token-0 rows drop the same entries. */
#include "cpu/internal.h"

/* out[i] = inp[i] * keep(offset + i) / (1 - p), i < n; keep[i] gets the bit when keep is not NULL.
 * A product, as torch's dropout (input * mask / (1 - p)): a dropped NaN or inf stays NaN, never 0. */
void cpu_dropout_serial(float *out, uint8_t *keep, const float *inp, size_t n, uint64_t offset, lnn_dropout_t d) {
    if (d.p <= 0.f) {
        if (out != inp) memcpy(out, inp, n * sizeof(float));
        if (keep) memset(keep, 1, n);
        return;
    }
    if (d.p >= 1.f) { /* torch: input * 0 */
        for (size_t i = 0; i < n; i++) out[i] = inp[i] * 0.f;
        if (keep) memset(keep, 0, n);
        return;
    }
    uint32_t thr = lnn_dropout_threshold(d.p);
    float scale = 1.0f / (1.0f - d.p);
    size_t i = 0;
#define KEEP_ONE(idx, word)                                  \
    do {                                                     \
        int k_ = (word) >= thr;                              \
        out[idx] = inp[idx] * (k_ ? scale : 0.f);            \
        if (keep) keep[idx] = (uint8_t)k_;                   \
    } while (0)
    /* head: up to the next multiple of 64 elements (16 Philox blocks) */
    while (i < n && ((offset + i) & 63)) {
        uint64_t gi = offset + i;
        lnn_philox_out r = lnn_dropout_bits(d, gi >> 2);
        for (int l = (int)(gi & 3); l < 4 && i < n; l++, i++) KEEP_ONE(i, r.v[l]);
    }
#ifdef LNN_PHILOX_AVX512
    const __m512 vs = _mm512_set1_ps(scale);
    const __m512i one = _mm512_set1_epi8(1);
    for (; i + 64 <= n; i += 64) {
        uint64_t m = lnn_dropout_keep64(d, (offset + i) >> 2, thr);
        for (int q = 0; q < 4; q++)
            _mm512_storeu_ps(out + i + 16 * q, _mm512_mul_ps(_mm512_loadu_ps(inp + i + 16 * q),
                                                             _mm512_maskz_mov_ps((__mmask16)(m >> (16 * q)), vs)));
        if (keep) _mm512_storeu_si512(keep + i, _mm512_maskz_mov_epi8(m, one));
    }
#elif defined(LNN_PHILOX_AVX2)
    const __m256 vs = _mm256_set1_ps(scale);
    const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    for (; i + 64 <= n; i += 64) {
        uint64_t m = lnn_dropout_keep64(d, (offset + i) >> 2, thr);
        for (int q = 0; q < 8; q++) {
            __m256i sel = _mm256_and_si256(_mm256_set1_epi32((int)((m >> (8 * q)) & 0xFF)), lane_bit);
            __m256 on = _mm256_castsi256_ps(_mm256_cmpeq_epi32(sel, lane_bit));
            /* times (scale or 0), as the other paths: a dropped NaN stays NaN */
            _mm256_storeu_ps(out + i + 8 * q, _mm256_mul_ps(_mm256_loadu_ps(inp + i + 8 * q), _mm256_and_ps(vs, on)));
            if (keep) {
                uint64_t bytes = _pdep_u64((m >> (8 * q)) & 0xFF, 0x0101010101010101ull);
                memcpy(keep + i + 8 * q, &bytes, 8);
            }
        }
    }
#else
    uint32_t w[64];
    for (; i + 64 <= n; i += 64) {
        lnn_dropout_bits16(d, (offset + i) >> 2, w);
        for (int l = 0; l < 64; l++) KEEP_ONE(i + l, w[l]);
    }
#endif
    while (i < n) {
        uint64_t gi = offset + i;
        lnn_philox_out r = lnn_dropout_bits(d, gi >> 2);
        for (int l = (int)(gi & 3); l < 4 && i < n; l++, i++) KEEP_ONE(i, r.v[l]);
    }
#undef KEEP_ONE
}

void cpu_keep_apply(float *out, const float *inp, const uint8_t *keep, size_t n, float p) {
    float scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * (keep[i] ? scale : 0.f);
}

/* n contiguous elements from padded index offset, over all threads in chunks of 4096 */
static void dropout_span(float *out, const float *inp, size_t n, uint64_t offset, lnn_dropout_t d) {
    if (d.p <= 0.f || d.p >= 1.f) {
        cpu_dropout_serial(out, NULL, inp, n, offset, d);
        return;
    }
    long long nchunk = (long long)((n + 4095) / 4096);
    LNN_OMP_FOR
    for (long long ch = 0; ch < nchunk; ch++) {
        size_t i0 = (size_t)ch * 4096, m = n - i0 < 4096 ? n - i0 : 4096;
        cpu_dropout_serial(out + i0, NULL, inp + i0, m, offset + i0, d);
    }
}

/* the rows of each sequence are contiguous in every layout, and so are their padded indices */
static void dropout_rows(float *out, const float *inp, lnn_rows rows, int C, lnn_dropout_t d) {
    if (!rows.seq_off && !rows.first_only) {
        dropout_span(out, inp, (size_t)rows.N * C, 0, d);
        return;
    }
    for (int b = 0; b < rows.B; b++) {
        size_t r0 = rows.first_only ? (size_t)b : (size_t)rows.seq_off[b];
        size_t L = rows.first_only ? 1 : (size_t)(rows.seq_off[b + 1] - rows.seq_off[b]);
        dropout_span(out + r0 * C, inp + r0 * C, L * C, (uint64_t)b * rows.T * C, d);
    }
}

void cpu_dropout_forward(lnn_ctx *ctx, void *out, const void *inp, lnn_rows rows, int C, lnn_dropout_t drop) {
    dropout_rows(out, inp, rows, C, drop);
}

/* the op is its own adjoint: the same mask and scale */
void cpu_dropout_backward(lnn_ctx *ctx, void *dinp, const void *dout, lnn_rows rows, int C, lnn_dropout_t drop) {
    dropout_rows(dinp, dout, rows, C, drop);
}
