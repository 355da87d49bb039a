/* core/dtype.h: the element types of engine buffers.
 *
 * Parameters, their gradients and the optimizer state are always F32 (the master copy).
 * Activations (and the weight copy the forward ops read) are in the run's activation dtype,
 * F32, BF16 or F16 (IEEE half; lnn_ctx.act); a backend says which it supports (lnn_backend.supports).
 * Index arrays are I32 (tokens, positions, masks, row offsets) or I64 (class labels,
 * optimizer segments and step counters); dropout masks kept for a backward are U8; loss
 * and norm scalars are F64. */
#ifndef LNN_CORE_DTYPE_H
#define LNN_CORE_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum { LNN_F32 = 0, LNN_BF16 = 1, LNN_I32 = 2, LNN_I64 = 3, LNN_U8 = 4, LNN_F64 = 5, LNN_F16 = 6,
               LNN_NDTYPES } lnn_dtype;

static inline size_t lnn_dtype_size(lnn_dtype t) {
    static const size_t sz[LNN_NDTYPES] = {4, 2, 4, 8, 1, 8, 2};
    return (unsigned)t < LNN_NDTYPES ? sz[t] : 0;
}

static inline const char *lnn_dtype_name(lnn_dtype t) {
    static const char *nm[LNN_NDTYPES] = {"f32", "bf16", "i32", "i64", "u8", "f64", "f16"};
    return (unsigned)t < LNN_NDTYPES ? nm[t] : "?";
}

/* 16-bit activation dtypes (BF16, F16): stored as uint16_t on the host. */
static inline int lnn_dtype_is_half(lnn_dtype t) { return t == LNN_BF16 || t == LNN_F16; }

/* bf16 <-> f32: round to nearest even (NaN stays a quiet NaN), as torch's .to(torch.bfloat16). */
static inline uint16_t lnn_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float lnn_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* f16 (IEEE binary16) <-> f32: round to nearest even, overflow to +-inf, subnormals kept, NaN stays a quiet
 * NaN, as numpy's astype(float16) and torch's .half(). */
static inline uint16_t lnn_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN, quiet */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (a >= 0x38800000u) {                                   /* normal f16: >= 2^-14 */
        uint32_t r = a - 0x38000000u;                         /* rebias the exponent (127 -> 15) */
        r += 0xfffu + ((r >> 13) & 1u);                       /* round to nearest even on 13 dropped bits */
        return (uint16_t)(sign | (r >> 13));
    }
    if (a < 0x33000000u) return (uint16_t)sign; /* < 2^-25: rounds to zero */
    /* subnormal f16: value = m * 2^-24 with m = round(a / 2^-24) */
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u; /* a = m * 2^(e - 150) */
    uint32_t shift = 126 - e;                              /* 2^(e-150) / 2^-24 = 2^-(126-e) */
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

static inline float lnn_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0x1f) {
        u = sign | 0x7f800000u | (m << 13); /* inf / NaN */
    } else if (e) {
        u = sign | ((e + 112) << 23) | (m << 13);
    } else if (!m) {
        u = sign;
    } else { /* subnormal: normalise */
        int k = 0;
        while (!(m & 0x400u)) {
            m <<= 1;
            k++;
        }
        u = sign | ((uint32_t)(113 - k) << 23) | ((m & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#endif /* LNN_CORE_DTYPE_H */
