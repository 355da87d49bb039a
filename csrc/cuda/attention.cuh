// csrc/cuda/attention.cuh: what the two attention implementations share: the CUDA-core (SIMT) kernels of
// attention.cu and the tensor-core (bf16 WMMA) kernels of attention_tc.cu. attention.cu owns the op
// table entries: it lays out saved / scratch, computes D for the backward and picks the kernels per call
// (attention_use_tc), so the two implementations' forward and backward are interchangeable.
#pragma once

#include <float.h>

#include "cuda/internal.cuh"

struct att_args {
    int B, T, C, NH, hs, q_first;
    float scale;
    const int32_t *seq_off;
    lnn_dropout_t drop;
    uint32_t thr;
    float inv_keep; // 1 / (1 - p)
    const uint32_t *bits; // the dropout mask kept from the forward (LYRICNN_CUDA_DROPOUT_BITS), or NULL
    int W;                // its 32-bit words per query row: ceil(T / 32)
};

// Where sequence b's rows are: first row and length.
__device__ __forceinline__ void seq_rows(const int32_t *seq_off, int b, int T, int *row0, int *L) {
    if (seq_off) {
        *row0 = seq_off[b];
        *L = seq_off[b + 1] - seq_off[b];
    } else {
        *row0 = b * T;
        *L = T;
    }
}

// The dropout factor of probability (i, j) of head h of sequence b: 1 without dropout, else keep / (1 - p),
// the keep bit from Philox keyed by the padded element index ((b*NH + h)*T + i)*T + j (as the CPU), or read
// from the mask the forward drew (a.bits: bit j % 32 of word ((b*NH + h)*T + i)*W + j / 32).
__device__ __forceinline__ float att_keep(const att_args &a, int b, int h, int i, int j) {
    if (a.drop.p <= 0.f) return 1.f;
    if (a.bits) {
        uint32_t w = a.bits[(((size_t)b * a.NH + h) * a.T + i) * a.W + (j >> 5)];
        return (w >> (j & 31)) & 1u ? a.inv_keep : 0.f;
    }
    uint64_t idx = (((uint64_t)b * a.NH + h) * a.T + i) * (uint64_t)a.T + j;
    return dropout_keep(a.drop, idx, a.thr) ? a.inv_keep : 0.f;
}

// The probability of a score x (scaled, key mask added) in a query row of L keys whose forward saved lse.
// A row whose every key is masked scores -FLT_MAX everywhere (q.k / sqrt(hs) - FLT_MAX rounds to -FLT_MAX,
// as in HF), so its softmax is uniform and the forward averages V over the row's L keys (m = -FLT_MAX,
// l = L). Its saved lse = m + log(l) rounds back to -FLT_MAX, though, and exp(x - lse) would give 1 instead
// of 1/L (dQ, dK and dV of the sequence L times too large): lse == -FLT_MAX marks such a row (a row with an
// unmasked key has a larger max) and gets 1/L. Both implementations' backward kernels take p from here:
// att_prob (natural exp, the SIMT kernels) or att_prob_exp2 (exp2 of (x - lse) log2(e), the tensor-core ones).
__device__ __forceinline__ bool att_row_all_masked(float lse) { return lse == -FLT_MAX; }
__device__ __forceinline__ float att_prob(float x, float lse, int L) {
    return att_row_all_masked(lse) ? 1.f / (float)L : __expf(x - lse);
}
__device__ __forceinline__ float att_prob_exp2(float x, float lse, int L, float log2e) {
    return att_row_all_masked(lse) ? 1.f / (float)L : exp2f((x - lse) * log2e);
}

// Kernels that need more than the default 48 KB of dynamic shared memory ask for it.
static inline void allow_smem(const void *kernel, size_t bytes) {
    if (bytes > (48 << 10)) cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
}

// ---------------------------------------------------------------- the tensor-core kernels (attention_tc.cu)

// The sm_ version (e.g. 80) the tensor-core kernels were compiled for on the current device, 0 if unknown.
int attention_tc_code_arch(void);
// out = attention(qkv) and lse, as attention.cu's forward (mask: NULL for packed rows).
void attention_tc_forward(lnn_ctx *ctx, bf16 *out, float *lse, const bf16 *qkv, const int32_t *mask,
                          const att_args &a);
// dqkv += the attention's gradient, given lse and D = rowsum(dO * O) (attention.cu's dsum kernel).
void attention_tc_backward(lnn_ctx *ctx, bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse,
                           const float *D, const int32_t *mask, const int32_t *has_mask, const att_args &a);
