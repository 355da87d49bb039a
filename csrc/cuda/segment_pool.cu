// csrc/cuda/segment_pool.cu: pooling across the windows of each song (core/backend.h segment_pool_*): the rows of
// each segment reduced to one row by their mean, their per-column max, or a softmax-weighted sum. The CPU's
// cpu/segment_pool.c, a thread per (segment, column), rows in order; no atomics.
#include "cuda/internal.cuh"

// The softmax of the segment's scores, w_n = exp(s_n - m) / z, over rows [r0, r0 + len); a NaN score makes m
// and every weight NaN (torch.softmax).
template <typename T>
__device__ __forceinline__ void seg_softmax_stats(const T *scores, int r0, int len, float *m_out, float *z_out) {
    float m = load_f(scores + r0);
    for (int n = 1; n < len; n++) {
        float v = load_f(scores + r0 + n);
        if (v != v || v > m) m = v;  // once m is NaN, v > m is false: it stays NaN
    }
    float z = 0.f;
    for (int n = 0; n < len; n++) z += expf(load_f(scores + r0 + n) - m);
    *m_out = m;
    *z_out = z;
}

template <typename T>
__device__ __forceinline__ float seg_weight(int mode, const T *scores, int r0, int n, int len, float m, float z) {
    if (mode == LNN_SEGPOOL_ATTN) return expf(load_f(scores + r0 + n) - m) / z;
    return 1.f / (float)len;
}

// the row (counted from r0) the max picks for column c: the first largest value, or the first NaN
template <typename T>
__device__ __forceinline__ int seg_argmax(const T *x, int r0, int len, int C, int c) {
    int best = 0;
    float bv = load_f(x + (size_t)r0 * C + c);
    for (int n = 1; n < len && bv == bv; n++) {
        float v = load_f(x + (size_t)(r0 + n) * C + c);
        if (v > bv || v != v) {
            bv = v;
            best = n;
        }
    }
    return best;
}

// out(S,C): a thread per (segment, column)
template <typename T>
__global__ void segment_pool_forward_kernel(T *out, const T *x, const T *scores, const int32_t *seg_off, int S, int C,
                                            int mode) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)S * C) return;
    int s = (int)(i / C), c = (int)(i % C);
    int r0 = seg_off[s], len = seg_off[s + 1] - r0;
    if (mode == LNN_SEGPOOL_MAX) {
        store_f(out + i, load_f(x + (size_t)(r0 + seg_argmax(x, r0, len, C, c)) * C + c));
        return;
    }
    float m = 0.f, z = 1.f, acc = 0.f;
    if (mode == LNN_SEGPOOL_ATTN) seg_softmax_stats(scores, r0, len, &m, &z);
    for (int n = 0; n < len; n++) {
        float v = load_f(x + (size_t)(r0 + n) * C + c);
        acc += mode == LNN_SEGPOOL_MEAN ? v : seg_weight(mode, scores, r0, n, len, m, z) * v;
    }
    store_f(out + i, mode == LNN_SEGPOOL_MEAN ? acc * (1.f / (float)len) : acc);
}

// dx(N,C) += the gradient from dout(S,C): a thread per (segment, column) walks the segment's rows
template <typename T>
__global__ void segment_pool_dx_kernel(T *dx, const T *dout, const T *x, const T *scores, const int32_t *seg_off, int S,
                                       int C, int mode) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)S * C) return;
    int s = (int)(i / C), c = (int)(i % C);
    int r0 = seg_off[s], len = seg_off[s + 1] - r0;
    float d = load_f(dout + i);
    if (mode == LNN_SEGPOOL_MAX) {
        T *p = dx + (size_t)(r0 + seg_argmax(x, r0, len, C, c)) * C + c;
        store_f(p, load_f(p) + d);
        return;
    }
    float m = 0.f, z = 1.f;
    if (mode == LNN_SEGPOOL_ATTN) seg_softmax_stats(scores, r0, len, &m, &z);
    for (int n = 0; n < len; n++) {
        T *p = dx + (size_t)(r0 + n) * C + c;
        store_f(p, load_f(p) + seg_weight(mode, scores, r0, n, len, m, z) * d);
    }
}

// dscores(N) = w_n (g_n - sum_m w_m g_m), g_n = dout_s . x_n: a block per segment, its threads over the
// columns (block_sum: a fixed order); g_n is computed twice (for gbar, then for the output) rather than parked
// in dscores, which may be bf16
template <typename T>
__device__ __forceinline__ float seg_dot(const T *d, const T *xr, int C, float *shared) {
    float g = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) g += load_f(d + c) * load_f(xr + c);
    return block_sum(g, shared);
}

template <typename T>
__global__ void segment_pool_dscores_kernel(T *dscores, const T *dout, const T *x, const T *scores,
                                            const int32_t *seg_off, int C) {
    __shared__ float shared[32];
    int s = blockIdx.x, r0 = seg_off[s], len = seg_off[s + 1] - r0;
    float m, z;
    seg_softmax_stats(scores, r0, len, &m, &z);
    const T *d = dout + (size_t)s * C;
    float gbar = 0.f;
    for (int n = 0; n < len; n++)
        gbar += seg_weight(LNN_SEGPOOL_ATTN, scores, r0, n, len, m, z) * seg_dot(d, x + (size_t)(r0 + n) * C, C, shared);
    for (int n = 0; n < len; n++) {
        float g = seg_dot(d, x + (size_t)(r0 + n) * C, C, shared);
        if (threadIdx.x == 0) store_f(dscores + r0 + n, seg_weight(LNN_SEGPOOL_ATTN, scores, r0, n, len, m, z) * (g - gbar));
    }
}

void cuda_segment_pool_forward(lnn_ctx *ctx, void *out, const void *x, const void *scores, const int32_t *seg_off,
                               int S, int N, int C, int mode) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, segment_pool_forward_kernel<T><<<blocks_for((size_t)S * C, 256), 256, 0, stream_of(ctx)>>>(
                                  (T *)out, (const T *)x, (const T *)scores, seg_off, S, C, mode));
    CUDA_LAUNCHED(ctx, "segment_pool_forward");
}

void cuda_segment_pool_backward(lnn_ctx *ctx, void *dx, void *dscores, const void *dout, const void *x,
                                const void *scores, const int32_t *seg_off, int S, int N, int C, int mode) {
    cuda_enter(ctx);
    if (dscores && mode == LNN_SEGPOOL_ATTN && S > 0) { // (S = 0 would launch no blocks: a launch error)
        LNN_CUDA_DISPATCH(ctx, T, segment_pool_dscores_kernel<T><<<S, 128, 0, stream_of(ctx)>>>(
                                      (T *)dscores, (const T *)dout, (const T *)x, (const T *)scores, seg_off, C));
        CUDA_LAUNCHED(ctx, "segment_pool_backward (scores)");
    }
    if (dx) {
        LNN_CUDA_DISPATCH(ctx, T, segment_pool_dx_kernel<T><<<blocks_for((size_t)S * C, 256), 256, 0, stream_of(ctx)>>>(
                                      (T *)dx, (const T *)dout, (const T *)x, (const T *)scores, seg_off, S, C, mode));
        CUDA_LAUNCHED(ctx, "segment_pool_backward");
    }
}
