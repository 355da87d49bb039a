// csrc/cuda/embedding.cu: token + position (+ token type) embeddings, or token embeddings alone. The
// backward adds each row's gradient into the table rows of its ids without atomics: a thread per column walks all rows in order,
// so repeated ids add up in the same order on every run.
#include "cuda/internal.cuh"

// out(N,C) = wte[ids] (+ wtt[types]) + wpe[pos] (wpe NULL: none)
template <typename T>
__global__ void embedding_forward_kernel(T *out, const int32_t *ids, const int32_t *types, const int32_t *pos,
                                         const T *wte, const T *wpe, const T *wtt, int N, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    int n = (int)(i / C), c = (int)(i % C);
    float v = load_f(wte + (size_t)ids[n] * C + c);
    if (wtt) v = v + load_f(wtt + (size_t)(types ? types[n] : 0) * C + c);
    if (wpe) v = v + load_f(wpe + (size_t)pos[n] * C + c);
    store_f(out + i, v);
}

void cuda_embedding_forward(lnn_ctx *ctx, void *out, const int32_t *ids, const int32_t *types, const int32_t *pos,
                            const void *wte, const void *wpe, const void *wtt, int N, int C) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, embedding_forward_kernel<T><<<blocks_for((size_t)N * C, 256), 256, 0, stream_of(ctx)>>>(
                                  (T *)out, ids, types, pos, (const T *)wte, (const T *)wpe, (const T *)wtt, N, C));
    CUDA_LAUNCHED(ctx, "embedding_forward");
}

// dwte[ids] += dout except the pad row; dwpe[pos] += dout; dwtt[types] += dout: a thread per column
template <typename T>
__global__ void embedding_backward_kernel(float *dwte, float *dwpe, float *dwtt, const T *dout, const int32_t *ids,
                                          const int32_t *types, const int32_t *pos, int N, int C, int pad_id) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int n = 0; n < N; n++) {
        float g = load_f(dout + (size_t)n * C + c);
        if (dwte && ids[n] != pad_id) dwte[(size_t)ids[n] * C + c] += g;
        if (dwpe) dwpe[(size_t)pos[n] * C + c] += g;
        if (dwtt) dwtt[(size_t)(types ? types[n] : 0) * C + c] += g;
    }
}

void cuda_embedding_backward(lnn_ctx *ctx, float *dwte, float *dwpe, float *dwtt, const void *dout, const int32_t *ids,
                             const int32_t *types, const int32_t *pos, int N, int C, int pad_id) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, embedding_backward_kernel<T><<<(C + 63) / 64, 64, 0, stream_of(ctx)>>>(
                                  dwte, dwpe, dwtt, (const T *)dout, ids, types, pos, N, C, pad_id));
    CUDA_LAUNCHED(ctx, "embedding_backward");
}
