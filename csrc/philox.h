/* philox.h: Philox4x32-10, a counter-based RNG (Salmon et al., SC'11; the generator cuRAND and
 * torch use), for dropout masks that depend only on (seed, step, stream, element index): the
 * same on any thread count and reproducible on a GPU, which can evaluate the same function.
 *
 * Element i of a dropout site draws word (i & 3) of philox(counter = {i >> 2 (64-bit), stream,
 * step}, key = seed (64-bit)); it is kept when that word >= p * 2^32. */
#ifndef LNN_PHILOX_H
#define LNN_PHILOX_H

#include <stdint.h>

typedef struct {
    uint32_t v[4];
} lnn_philox_out;

static inline lnn_philox_out lnn_philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
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
    uint64_t offset;/* element index of the first element handed to a dropout op (packed rows) */
} lnn_dropout_t;

/* The four random words for elements 4*block .. 4*block+3 of a site. */
static inline lnn_philox_out lnn_dropout_bits(lnn_dropout_t d, uint64_t block) {
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

/* Integer threshold: an element is dropped when its word < threshold. */
static inline uint32_t lnn_dropout_threshold(float p) {
    if (p <= 0.f) return 0;
    double t = (double)p * 4294967296.0;
    return t >= 4294967295.0 ? 0xFFFFFFFFu : (uint32_t)t;
}

#endif /* LNN_PHILOX_H */
