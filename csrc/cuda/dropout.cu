// csrc/cuda/dropout.cu: inverted dropout with the Philox4x32-10 masks of core/philox.h, keyed by the
// padded element index (b*T + t)*C + c, so a seed gives the same masks on the CPU and the GPU in every
// row layout. Rows of a multiple of 4 elements (every model's hidden size): one Philox call per 4 elements.
#include "cuda/internal.cuh"

// out(rows.N,C) = inp * keep / (1 - p) (out may alias inp); a thread per element
template <typename T>
__global__ void dropout_kernel(T *out, const T *inp, lnn_rows rows, int C, lnn_dropout_t d, uint32_t thr, float scale) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows.N * C) return;
    int row = (int)(i / C), c = (int)(i % C);
    float v = load_f(inp + i);
    // a product, as torch's dropout (input * mask / (1 - p)): a dropped NaN or inf stays NaN, never 0
    if (d.p >= 1.f) v = v * 0.f;
    else if (d.p > 0.f) v = v * (dropout_keep(d, padded_index(rows, row, C, c), thr) ? scale : 0.f);
    store_f(out + i, v);
}

// The same with one Philox call per 4 elements: a thread per 4 consecutive elements of a row (C % 4 == 0, so
// their padded indices (b*T + t)*C + c are consecutive from a multiple of 4: one Philox4x32 output's 4 words)
template <typename T>
__global__ void dropout4_kernel(T *out, const T *inp, lnn_rows rows, int C, lnn_dropout_t d, uint32_t thr, float scale) {
    size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (i >= (size_t)rows.N * C) return;
    int row = (int)(i / C), c = (int)(i % C);
    lnn_philox_out o = lnn_dropout_bits(d, padded_index(rows, row, C, c) >> 2);
    // a product, as in dropout_kernel: a dropped NaN or inf stays NaN (never 0), so loss scaling still sees it
    for (int k = 0; k < 4; k++) store_f(out + i + k, load_f(inp + i + k) * (o.v[k] >= thr ? scale : 0.f));
}

static void dropout_run(lnn_ctx *ctx, void *out, const void *inp, lnn_rows rows, int C, lnn_dropout_t d) {
    cuda_enter(ctx);
    size_t n = (size_t)rows.N * C;
    if (d.p <= 0.f) { // identity
        if (out != inp && n)
            cudaMemcpyAsync(out, inp, n * lnn_dtype_size(ctx->act), cudaMemcpyDeviceToDevice, stream_of(ctx));
        return;
    }
    uint32_t thr = lnn_dropout_threshold(d.p);
    float scale = d.p < 1.f ? 1.0f / (1.0f - d.p) : 0.f;
    if (C % 4 == 0 && d.p < 1.f)
        LNN_CUDA_DISPATCH(ctx, T, dropout4_kernel<T><<<blocks_for(n / 4, 256), 256, 0, stream_of(ctx)>>>(
                                      (T *)out, (const T *)inp, rows, C, d, thr, scale));
    else
        LNN_CUDA_DISPATCH(ctx, T, dropout_kernel<T><<<blocks_for(n, 256), 256, 0, stream_of(ctx)>>>(
                                      (T *)out, (const T *)inp, rows, C, d, thr, scale));
    CUDA_LAUNCHED(ctx, "dropout");
}

void cuda_dropout_forward(lnn_ctx *ctx, void *out, const void *inp, lnn_rows rows, int C, lnn_dropout_t drop) {
    dropout_run(ctx, out, inp, rows, C, drop);
}

// its own adjoint: the same mask and scale
void cuda_dropout_backward(lnn_ctx *ctx, void *dinp, const void *dout, lnn_rows rows, int C, lnn_dropout_t drop) {
    dropout_run(ctx, dinp, dout, rows, C, drop);
}
