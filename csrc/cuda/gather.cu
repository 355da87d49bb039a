// csrc/cuda/gather.cu: the ops between the encoder's token rows and the head's (B, width) vectors:
// token-0 gather, mean pooling, the concatenation of a feature vector, and a gather of rows by index (an
// LSTM's last states).
#include "cuda/internal.cuh"

// out(B,C) = inp[token 0 of each sequence]; dinp[token 0 rows] += dout
template <typename T>
__global__ void token0_kernel(T *dst, const T *src, lnn_rows rows, int C, int backward) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows.B * C) return;
    int b = (int)(i / C), c = (int)(i % C);
    size_t r = first_row(rows, b) * C + c;
    if (backward) store_f(dst + r, load_f(dst + r) + load_f(src + i));
    else store_f(dst + i, load_f(src + r));
}

void cuda_token0_forward(lnn_ctx *ctx, void *out, const void *inp, lnn_rows rows, int C) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, token0_kernel<T><<<blocks_for((size_t)rows.B * C, 256), 256, 0, stream_of(ctx)>>>(
                                  (T *)out, (const T *)inp, rows, C, 0));
    CUDA_LAUNCHED(ctx, "token0_forward");
}

void cuda_token0_backward(lnn_ctx *ctx, void *dinp, const void *dout, lnn_rows rows, int C) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, token0_kernel<T><<<blocks_for((size_t)rows.B * C, 256), 256, 0, stream_of(ctx)>>>(
                                  (T *)dinp, (const T *)dout, rows, C, 1));
    CUDA_LAUNCHED(ctx, "token0_backward");
}

// The rows of sequence b that mean pooling reads: [r0, r0 + len) with the mask row mb (NULL: all).
__device__ __forceinline__ void pool_span(lnn_rows rows, const int32_t *mask, int b, size_t *r0, int *len,
                                          const int32_t **mb) {
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

// out(B,C) = the mean of each sequence's token rows (sum / max(count, 1e-9)); a thread per (b, c), rows in order
template <typename T>
__global__ void mean_pool_forward_kernel(T *out, const T *h, const int32_t *mask, lnn_rows rows, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows.B * C) return;
    int b = (int)(i / C), c = (int)(i % C);
    size_t r0;
    int len;
    const int32_t *mb;
    pool_span(rows, mask, b, &r0, &len, &mb);
    float s = 0.f, den = 0.f;
    for (int t = 0; t < len; t++) {
        if (mb && !mb[t]) continue;
        den += 1.f;
        s += load_f(h + (r0 + t) * C + c);
    }
    store_f(out + i, s / fmaxf(den, 1e-9f));
}

template <typename T>
__global__ void mean_pool_backward_kernel(T *dh, const T *dout, const int32_t *mask, lnn_rows rows, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows.B * C) return;
    int b = (int)(i / C), c = (int)(i % C);
    size_t r0;
    int len;
    const int32_t *mb;
    pool_span(rows, mask, b, &r0, &len, &mb);
    float den = 0.f;
    for (int t = 0; t < len; t++) den += (!mb || mb[t]) ? 1.f : 0.f;
    float w = 1.f / fmaxf(den, 1e-9f), g = w * load_f(dout + i);
    for (int t = 0; t < len; t++) {
        if (mb && !mb[t]) continue;
        T *p = dh + (r0 + t) * C + c;
        store_f(p, load_f(p) + g);
    }
}

void cuda_mean_pool_forward(lnn_ctx *ctx, void *out, const void *h, const int32_t *mask, lnn_rows rows, int C) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, mean_pool_forward_kernel<T><<<blocks_for((size_t)rows.B * C, 256), 256, 0,
                                                            stream_of(ctx)>>>((T *)out, (const T *)h, mask, rows, C));
    CUDA_LAUNCHED(ctx, "mean_pool_forward");
}

void cuda_mean_pool_backward(lnn_ctx *ctx, void *dh, const void *dout, const int32_t *mask, lnn_rows rows, int C) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, mean_pool_backward_kernel<T><<<blocks_for((size_t)rows.B * C, 256), 256, 0,
                                                             stream_of(ctx)>>>((T *)dh, (const T *)dout, mask, rows, C));
    CUDA_LAUNCHED(ctx, "mean_pool_backward");
}

// out(B,H+F) = [h | f]; backward dh += dout[:, :H], df += dout[:, H:]
template <typename T>
__global__ void concat_kernel(T *out, T *h, T *f, int B, int H, int F, int backward) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)B * (H + F)) return;
    int b = (int)(i / (H + F)), j = (int)(i % (H + F));
    T *p = j < H ? (h ? h + (size_t)b * H + j : NULL) : (f ? f + (size_t)b * F + (j - H) : NULL);
    if (!backward) store_f(out + i, load_f(p));
    else if (p) store_f(p, load_f(p) + load_f(out + i));
}

void cuda_concat_forward(lnn_ctx *ctx, void *out, const void *h, const void *f, int B, int H, int F) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, concat_kernel<T><<<blocks_for((size_t)B * (H + F), 256), 256, 0, stream_of(ctx)>>>(
                                  (T *)out, (T *)h, (T *)f, B, H, F, 0));
    CUDA_LAUNCHED(ctx, "concat_forward");
}

void cuda_concat_backward(lnn_ctx *ctx, void *dh, void *df, const void *dout, int B, int H, int F) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, concat_kernel<T><<<blocks_for((size_t)B * (H + F), 256), 256, 0, stream_of(ctx)>>>(
                                  (T *)dout, (T *)dh, (T *)df, B, H, F, 1));
    CUDA_LAUNCHED(ctx, "concat_backward");
}

// out(N,C) = inp[idx[n]] (idx[n] < 0: zeros)
template <typename T>
__global__ void gather_rows_forward_kernel(T *out, const T *inp, const int32_t *idx, int N, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    int n = (int)(i / C), c = (int)(i % C);
    store_f(out + i, idx[n] < 0 ? 0.f : load_f(inp + (size_t)idx[n] * C + c));
}

// dinp[idx[n]] += dout(N,C): a thread per column walks the rows in order (repeated indices add up the
// same way on every run, no atomics)
template <typename T>
__global__ void gather_rows_backward_kernel(T *dinp, const T *dout, const int32_t *idx, int N, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int n = 0; n < N; n++) {
        if (idx[n] < 0) continue;
        T *p = dinp + (size_t)idx[n] * C + c;
        store_f(p, load_f(p) + load_f(dout + (size_t)n * C + c));
    }
}

void cuda_gather_rows_forward(lnn_ctx *ctx, void *out, const void *inp, const int32_t *idx, int N, int C) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, gather_rows_forward_kernel<T><<<blocks_for((size_t)N * C, 256), 256, 0, stream_of(ctx)>>>(
                                  (T *)out, (const T *)inp, idx, N, C));
    CUDA_LAUNCHED(ctx, "gather_rows_forward");
}

void cuda_gather_rows_backward(lnn_ctx *ctx, void *dinp, const void *dout, const int32_t *idx, int N, int C) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, gather_rows_backward_kernel<T><<<(C + 63) / 64, 64, 0, stream_of(ctx)>>>(
                                  (T *)dinp, (const T *)dout, idx, N, C));
    CUDA_LAUNCHED(ctx, "gather_rows_backward");
}
