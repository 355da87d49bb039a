// csrc/cuda/activation.cu: the elementwise ops: bias + GELU/ReLU, tanh, and the F32 <-> BF16 / F16 casts.
#include "cuda/internal.cuh"

// x(N,OC) += b; out = act(x)
template <typename T>
__global__ void bias_act_forward_kernel(T *out, T *x, const T *b, int N, int OC, int act) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * OC) return;
    float v = load_f(x + i);
    if (b) {
        v += load_f(b + i % OC);
        store_f(x + i, v);
        v = load_f(x + i); // the stored pre-activation is what the backward sees
    }
    store_f(out + i, act_f(v, act));
}

void cuda_bias_act_forward(lnn_ctx *ctx, void *out, void *x, const void *b, int N, int OC, int act) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, bias_act_forward_kernel<T><<<blocks_for((size_t)N * OC, 256), 256, 0, stream_of(ctx)>>>(
                                  (T *)out, (T *)x, (const T *)b, N, OC, act));
    CUDA_LAUNCHED(ctx, "bias_act_forward");
}

// One element of dx = dout * act'(x). ReLU's is a select, as torch's threshold_backward: a NaN or inf dout where
// x <= 0 gives 0, not NaN.
__device__ __forceinline__ float bias_act_dx(float g, float xv, int act) {
    return act == LNN_ACT_RELU ? (xv <= 0.f ? 0.f : g) : g * act_df(xv, act);
}

// dx(N,OC) = dout * act'(x) (dx may alias dout); db += colsum(dx)
template <typename T>
__global__ void bias_act_backward_kernel(T *dx, const T *dout, const T *x, int N, int OC, int act) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * OC) return;
    store_f(dx + i, bias_act_dx(load_f(dout + i), load_f(x + i), act));
}

// The same with db's column sums folded in (LYRICNN_CUDA_FOLD): a thread per column and row chunk writes dx and
// sums the stored (rounded) values of its chunk, exactly the partials cuda_colsum_acc would read back from dx
// (the same chunks, the same order: bit-identical), without the second pass over dx.
template <typename T>
__global__ void bias_act_backward_fold_kernel(T *dx, float *part, const T *dout, const T *x, int N, int OC, int act) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= OC) return;
    int nch = (N + CUDA_ROWCHUNK - 1) / CUDA_ROWCHUNK;
    for (int ch = blockIdx.y; ch < nch; ch += gridDim.y) {
        int r1 = min(N, (ch + 1) * CUDA_ROWCHUNK);
        float s = 0.f;
        for (int r = ch * CUDA_ROWCHUNK; r < r1; r++) {
            size_t i = (size_t)r * OC + c;
            store_f(dx + i, bias_act_dx(load_f(dout + i), load_f(x + i), act));
            s = __fadd_rn(s, load_f(dx + i)); // no FMA contraction with the product: the stored value is summed
        }
        part[(size_t)ch * OC + c] = s;
    }
}

void cuda_bias_act_backward(lnn_ctx *ctx, void *dx, float *db, const void *dout, const void *x, int N, int OC, int act) {
    cuda_enter(ctx);
    if (db && handles_of(ctx)->fold) {
        int nch = (N + CUDA_ROWCHUNK - 1) / CUDA_ROWCHUNK;
        float *part = (float *)cuda_scratch(ctx, (size_t)nch * OC * sizeof(float));
        if (!part) return;
        dim3 grid((OC + 127) / 128, grid_y(nch));
        LNN_CUDA_DISPATCH(ctx, T, bias_act_backward_fold_kernel<T><<<grid, 128, 0, stream_of(ctx)>>>(
                                      (T *)dx, part, (const T *)dout, (const T *)x, N, OC, act));
        cuda_colsum_finish(ctx, db, part, nch, OC);
        CUDA_LAUNCHED(ctx, "bias_act_backward");
        return;
    }
    LNN_CUDA_DISPATCH(ctx, T, {
        bias_act_backward_kernel<T><<<blocks_for((size_t)N * OC, 256), 256, 0, stream_of(ctx)>>>(
            (T *)dx, (const T *)dout, (const T *)x, N, OC, act);
        if (db) cuda_colsum_acc<T>(ctx, db, (const T *)dx, N, OC);
    });
    CUDA_LAUNCHED(ctx, "bias_act_backward");
}

template <typename T>
__global__ void tanh_forward_kernel(T *out, const T *inp, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) store_f(out + i, tanhf(load_f(inp + i)));
}

template <typename T>
__global__ void tanh_backward_kernel(T *dinp, const T *dout, const T *out, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float y = load_f(out + i);
    store_f(dinp + i, load_f(dout + i) * (1.f - y * y));
}

void cuda_tanh_forward(lnn_ctx *ctx, void *out, const void *inp, size_t n) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, tanh_forward_kernel<T><<<blocks_for(n, 256), 256, 0, stream_of(ctx)>>>(
                                  (T *)out, (const T *)inp, n));
    CUDA_LAUNCHED(ctx, "tanh_forward");
}

void cuda_tanh_backward(lnn_ctx *ctx, void *dinp, const void *dout, const void *out, size_t n) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, tanh_backward_kernel<T><<<blocks_for(n, 256), 256, 0, stream_of(ctx)>>>(
                                  (T *)dinp, (const T *)dout, (const T *)out, n));
    CUDA_LAUNCHED(ctx, "tanh_backward");
}

template <typename D, typename S>
__global__ void cast_kernel(D *dst, const S *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) store_f(dst + i, load_f(src + i)); // __float2bfloat16_rn: round to nearest even
}

// dst(n) = src(n) converted (F32 <-> BF16, F32 <-> F16) or copied
void cuda_cast(lnn_ctx *ctx, void *dst, lnn_dtype dt, const void *src, lnn_dtype st, size_t n) {
    cuda_enter(ctx);
    cudaStream_t s = stream_of(ctx);
    if (dt == st) {
        if (dst != src && n) cudaMemcpyAsync(dst, src, n * lnn_dtype_size(dt), cudaMemcpyDeviceToDevice, s);
    } else if (dt == LNN_BF16 && st == LNN_F32) {
        cast_kernel<bf16, float><<<blocks_for(n, 256), 256, 0, s>>>((bf16 *)dst, (const float *)src, n);
    } else if (dt == LNN_F32 && st == LNN_BF16) {
        cast_kernel<float, bf16><<<blocks_for(n, 256), 256, 0, s>>>((float *)dst, (const bf16 *)src, n);
    } else if (dt == LNN_F16 && st == LNN_F32) {
        cast_kernel<f16, float><<<blocks_for(n, 256), 256, 0, s>>>((f16 *)dst, (const float *)src, n);
    } else if (dt == LNN_F32 && st == LNN_F16) {
        cast_kernel<float, f16><<<blocks_for(n, 256), 256, 0, s>>>((float *)dst, (const f16 *)src, n);
    } else {
        cuda_fail(ctx, LNN_ERR_VALUE, "cast from %s to %s is not supported", lnn_dtype_name(st), lnn_dtype_name(dt));
        return;
    }
    CUDA_LAUNCHED(ctx, "cast");
}
