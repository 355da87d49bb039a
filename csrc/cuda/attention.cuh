// csrc/cuda/attention.cuh: what the two attention implementations share: the CUDA-core (SIMT) kernels of
// attention.cu and the tensor-core (bf16 WMMA) kernels of attention_tc.cu. attention.cu owns the op
// table entries: it lays out saved / scratch, computes D for the backward and picks the kernels per call
// (attention_use_tc), so the two implementations' forward and backward are interchangeable.
#pragma once

#include "cuda/internal.cuh"

struct att_args {
    int B, T, C, NH, hs, q_first;
    float scale;
    const int32_t *seq_off;
    lnn_dropout_t drop;
    uint32_t thr;
    float inv_keep; // 1 / (1 - p)
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
// the keep bit from Philox keyed by the padded element index ((b*NH + h)*T + i)*T + j (as the CPU).
__device__ __forceinline__ float att_keep(const att_args &a, int b, int h, int i, int j) {
    if (a.drop.p <= 0.f) return 1.f;
    uint64_t idx = (((uint64_t)b * a.NH + h) * a.T + i) * (uint64_t)a.T + j;
    return dropout_keep(a.drop, idx, a.thr) ? a.inv_keep : 0.f;
}

// Kernels that need more than the default 48 KB of dynamic shared memory ask for it.
static inline void allow_smem(const void *kernel, size_t bytes) {
    if (bytes > (48 << 10)) cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
}

// ---------------------------------------------------------------- the tensor-core kernels (attention_tc.cu)

// out = attention(qkv) and lse, as attention.cu's forward (mask: NULL for packed rows).
void attention_tc_forward(lnn_ctx *ctx, bf16 *out, float *lse, const bf16 *qkv, const int32_t *mask,
                          const att_args &a);
// dqkv += the attention's gradient, given lse and D = rowsum(dO * O) (attention.cu's dsum kernel).
void attention_tc_backward(lnn_ctx *ctx, bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse,
                           const float *D, const int32_t *mask, const int32_t *has_mask, const att_args &a);
