/* core/philox.h: Philox4x32-10, a counter-based RNG (Salmon et al., SC'11; the generator cuRAND and
 * torch use), for dropout masks that depend only on (seed, step, stream, element index): the
 * same on any thread count and reproducible on a GPU, which can evaluate the same function.
 *
 * Element i of a dropout site draws word (i & 3) of philox(counter = {i >> 2 (64-bit), stream,
 * step}, key = seed (64-bit)); it is kept when that word >= p * 2^32. */
#ifndef LNN_CORE_PHILOX_H
#define LNN_CORE_PHILOX_H

#include <stdint.h>

/* The scalar functions compile for the GPU too (csrc/cuda/), so both devices draw the same bits. */
#if defined(__CUDACC__)
#define LNN_HD __host__ __device__
#else
#define LNN_HD
#endif

typedef struct {
    uint32_t v[4];
} lnn_philox_out;

static inline LNN_HD lnn_philox_out lnn_philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                               uint32_t k0, uint32_t k1) {
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    for (int r = 0; r < 10; r++) {
        if (r) { k0 += W0; k1 += W1; }
        uint64_t p0 = (uint64_t)M0 * c0, p1 = (uint64_t)M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    }
    lnn_philox_out o = {{c0, c1, c2, c3}};
    return o;
}

/* One dropout site: probability p of zeroing, the key (seed) and the counter parts (step, stream). */
typedef struct {
    float p;        /* drop probability in [0, 1]; 0 = identity */
    uint64_t seed;  /* user seed */
    uint32_t step;  /* training step (forward count) */
    uint32_t stream;/* which dropout site in the graph */
} lnn_dropout_t;

/* The four random words for elements 4*block .. 4*block+3 of a site. */
static inline LNN_HD lnn_philox_out lnn_dropout_bits(lnn_dropout_t d, uint64_t block) {
    return lnn_philox4x32_10((uint32_t)block, (uint32_t)(block >> 32), d.stream, d.step,
                             (uint32_t)d.seed, (uint32_t)(d.seed >> 32));
}

/* Words of 16 consecutive blocks blk0 .. blk0+15 (element 4*(blk0+k)+l -> out[4k+l]); the same
 * numbers as lnn_dropout_bits, written lane-parallel so the compiler vectorizes the rounds. */
static inline void lnn_dropout_bits16(lnn_dropout_t d, uint64_t blk0, uint32_t out[64]) {
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    uint32_t c0[16], c1[16], c2[16], c3[16];
    for (int k = 0; k < 16; k++) {
        uint64_t b = blk0 + (uint64_t)k;
        c0[k] = (uint32_t)b;
        c1[k] = (uint32_t)(b >> 32);
        c2[k] = d.stream;
        c3[k] = d.step;
    }
    uint32_t k0 = (uint32_t)d.seed, k1 = (uint32_t)(d.seed >> 32);
    for (int r = 0; r < 10; r++) {
        if (r) { k0 += W0; k1 += W1; }
        for (int k = 0; k < 16; k++) {
            uint64_t p0 = (uint64_t)M0 * c0[k], p1 = (uint64_t)M1 * c2[k];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[k] ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3[k] ^ k1;
            c1[k] = (uint32_t)p1;
            c3[k] = (uint32_t)p0;
            c0[k] = n0;
            c2[k] = n2;
        }
    }
    for (int k = 0; k < 16; k++) {
        out[4 * k] = c0[k];
        out[4 * k + 1] = c1[k];
        out[4 * k + 2] = c2[k];
        out[4 * k + 3] = c3[k];
    }
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__BMI2__) && !defined(__CUDACC__)
#include <immintrin.h>
#define LNN_PHILOX_AVX512 1

/* hi/lo 32 bits of the 16 products a[k] * m (k = 0..15) */
static inline void lnn_mul_hilo16(__m512i a, __m512i m, __m512i *hi, __m512i *lo) {
    __m512i e = _mm512_mul_epu32(a, m), o = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
    *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(e, 32), o);
    *lo = _mm512_mask_blend_epi32(0xAAAA, e, _mm512_slli_epi64(o, 32));
}

/* Keep bits of the 64 elements 4*blk0 .. 4*blk0+63 of a site (bit j set: element 4*blk0+j kept,
 * its word >= thr): lnn_dropout_bits16 and the comparison, 16 Philox blocks per AVX-512 lane set. */
static inline uint64_t lnn_dropout_keep64(lnn_dropout_t d, uint64_t blk0, uint32_t thr) {
    const __m512i M0 = _mm512_set1_epi32((int)0xD2511F53u), M1 = _mm512_set1_epi32((int)0xCD9E8D57u);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512i base = _mm512_set1_epi32((int)(uint32_t)blk0);
    __m512i c0 = _mm512_add_epi32(base, lane);
    __mmask16 carry = _mm512_cmplt_epu32_mask(c0, base); /* blk0 + k crossed a 2^32 boundary */
    __m512i hi = _mm512_set1_epi32((int)(uint32_t)(blk0 >> 32));
    __m512i c1 = _mm512_mask_add_epi32(hi, carry, hi, _mm512_set1_epi32(1));
    __m512i c2 = _mm512_set1_epi32((int)d.stream), c3 = _mm512_set1_epi32((int)d.step);
    uint32_t k0 = (uint32_t)d.seed, k1 = (uint32_t)(d.seed >> 32);
    for (int r = 0; r < 10; r++) {
        if (r) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        __m512i hi0, lo0, hi1, lo1;
        lnn_mul_hilo16(c0, M0, &hi0, &lo0);
        lnn_mul_hilo16(c2, M1, &hi1, &lo1);
        c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32((int)k0));
        c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32((int)k1));
        c1 = lo1;
        c3 = lo0;
    }
    const __m512i t = _mm512_set1_epi32((int)thr);
    /* word l of block k is element 4k+l: spread each word's 16 compare bits to every 4th position */
    return _pdep_u64(_mm512_cmpge_epu32_mask(c0, t), 0x1111111111111111ull) |
           _pdep_u64(_mm512_cmpge_epu32_mask(c1, t), 0x2222222222222222ull) |
           _pdep_u64(_mm512_cmpge_epu32_mask(c2, t), 0x4444444444444444ull) |
           _pdep_u64(_mm512_cmpge_epu32_mask(c3, t), 0x8888888888888888ull);
}
#elif defined(__AVX2__) && defined(__BMI2__) && !defined(__CUDACC__)
#include <immintrin.h>
#define LNN_PHILOX_AVX2 1

/* hi/lo 32 bits of the 8 products a[k] * m (k = 0..7) */
static inline void lnn_mul_hilo8(__m256i a, __m256i m, __m256i *hi, __m256i *lo) {
    __m256i e = _mm256_mul_epu32(a, m), o = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(e, 32), o, 0xAA);
    *lo = _mm256_blend_epi32(e, _mm256_slli_epi64(o, 32), 0xAA);
}

/* the words l = 0..3 of the 8 Philox blocks blk0 .. blk0+7, compared with thr: bit k of out[l] set when word l
 * of block blk0+k >= thr */
static inline void lnn_dropout_keep8x4(lnn_dropout_t d, uint64_t blk0, uint32_t thr, uint32_t out[4]) {
    const __m256i M0 = _mm256_set1_epi32((int)0xD2511F53u), M1 = _mm256_set1_epi32((int)0xCD9E8D57u);
    const __m256i sign = _mm256_set1_epi32((int)0x80000000u);
    __m256i base = _mm256_set1_epi32((int)(uint32_t)blk0);
    __m256i c0 = _mm256_add_epi32(base, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    /* blk0 + k crossed a 2^32 boundary where c0 < base (unsigned): the high word gets the carry */
    __m256i carry = _mm256_cmpgt_epi32(_mm256_xor_si256(base, sign), _mm256_xor_si256(c0, sign));
    __m256i c1 = _mm256_sub_epi32(_mm256_set1_epi32((int)(uint32_t)(blk0 >> 32)), carry);
    __m256i c2 = _mm256_set1_epi32((int)d.stream), c3 = _mm256_set1_epi32((int)d.step);
    uint32_t k0 = (uint32_t)d.seed, k1 = (uint32_t)(d.seed >> 32);
    for (int r = 0; r < 10; r++) {
        if (r) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        __m256i hi0, lo0, hi1, lo1;
        lnn_mul_hilo8(c0, M0, &hi0, &lo0);
        lnn_mul_hilo8(c2, M1, &hi1, &lo1);
        c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32((int)k0));
        c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32((int)k1));
        c1 = lo1;
        c3 = lo0;
    }
    const __m256i t = _mm256_set1_epi32((int)thr);
    const __m256i w[4] = {c0, c1, c2, c3};
    for (int l = 0; l < 4; l++) /* word >= thr, unsigned: max(word, thr) == word */
        out[l] = (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_max_epu32(w[l], t), w[l])));
}

/* Keep bits of the 64 elements 4*blk0 .. 4*blk0+63 of a site, as lnn_dropout_keep64 (16 blocks, 8 per AVX2
 * lane set) */
static inline uint64_t lnn_dropout_keep64(lnn_dropout_t d, uint64_t blk0, uint32_t thr) {
    uint32_t a[4], b[4];
    lnn_dropout_keep8x4(d, blk0, thr, a);
    lnn_dropout_keep8x4(d, blk0 + 8, thr, b);
    uint64_t m = 0;
    for (int l = 0; l < 4; l++) m |= _pdep_u64(a[l] | (b[l] << 8), 0x1111111111111111ull << l);
    return m;
}
#endif

/* Integer threshold: an element is dropped when its word < threshold. */
static inline LNN_HD uint32_t lnn_dropout_threshold(float p) {
    if (p <= 0.f) return 0;
    double t = (double)p * 4294967296.0;
    return t >= 4294967295.0 ? 0xFFFFFFFFu : (uint32_t)t;
}

#endif /* LNN_CORE_PHILOX_H */
