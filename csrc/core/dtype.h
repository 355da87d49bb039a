/* core/dtype.h: the element types of engine buffers.
 *
 * Parameters, their gradients and the optimizer state are always F32 (the master copy).
 * Activations (and the weight copy the forward ops read) are in the run's activation dtype,
 * F32 or BF16 (lnn_ctx.act); a backend says which it supports (lnn_backend.supports).
 * Index arrays are I32 (tokens, positions, masks, row offsets) or I64 (class labels,
 * optimizer segments and step counters); dropout masks kept for a backward are U8; loss
 * and norm scalars are F64. */
#ifndef LNN_CORE_DTYPE_H
#define LNN_CORE_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum { LNN_F32 = 0, LNN_BF16 = 1, LNN_I32 = 2, LNN_I64 = 3, LNN_U8 = 4, LNN_F64 = 5, LNN_NDTYPES } lnn_dtype;

static inline size_t lnn_dtype_size(lnn_dtype t) {
    static const size_t sz[LNN_NDTYPES] = {4, 2, 4, 8, 1, 8};
    return (unsigned)t < LNN_NDTYPES ? sz[t] : 0;
}

static inline const char *lnn_dtype_name(lnn_dtype t) {
    static const char *nm[LNN_NDTYPES] = {"f32", "bf16", "i32", "i64", "u8", "f64"};
    return (unsigned)t < LNN_NDTYPES ? nm[t] : "?";
}

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

#endif /* LNN_CORE_DTYPE_H */
