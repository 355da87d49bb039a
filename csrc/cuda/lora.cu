// csrc/cuda/lora.cu: the LoRA branch of a frozen nn.Linear (peft's lora.Linear), forward and backward, on
// cuBLAS (cuda_gemm: BF16 or F32 operands, F32 accumulation; the adapters' gradients in F32). The dropout
// mask on x is the Philox mask of dropout.cu, drawn in the forward and again in the backward, so nothing
// of size (N, C) is kept between them (the CPU backend's cpu/lora.c does the same).
#include "cuda/internal.cuh"

// dx(n) += s(n), a thread per element
template <typename T>
__global__ void add_into(T *dx, const T *s, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) store_f(dx + i, load_f(dx + i) + load_f(s + i));
}

// y(N, ldy)[:, :OC] += scale * (drop(x) @ A^T) @ B^T; u(N,r) = drop(x) @ A^T
void cuda_lora_forward(lnn_ctx *ctx, void *y, int ldy, const void *x, const void *A, const void *B, void *u,
                       lnn_rows rows, int C, int r, int OC, float scale, lnn_dropout_t drop) {
    cuda_enter(ctx);
    int N = rows.N;
    cudaDataType_t t = cuda_act_type(ctx);
    const void *xd = x;
    if (drop.p > 0.f) {
        void *s = cuda_scratch(ctx, (size_t)N * C * lnn_dtype_size(ctx->act));
        if (!s) return;
        cuda_dropout_forward(ctx, s, x, rows, C, drop);
        xd = s;
    }
    cuda_gemm(ctx, 0, 1, N, r, C, 1.f, xd, C, A, C, 0.f, u, r, t, t);
    cuda_gemm(ctx, 0, 1, N, OC, r, scale, u, r, B, r, 1.f, y, ldy, t, t);
}

// t(N,r) = scale * dy @ B; dB += scale * dy^T u; dA += t^T drop(x); dx += drop(t @ A)
void cuda_lora_backward(lnn_ctx *ctx, void *dx, float *dA, float *dB, const void *dy, int ldy, const void *x,
                        const void *A, const void *B, const void *u, lnn_rows rows, int C, int r, int OC, float scale,
                        lnn_dropout_t drop) {
    cuda_enter(ctx);
    int N = rows.N;
    cudaDataType_t at = cuda_act_type(ctx);
    size_t esz = lnn_dtype_size(ctx->act);
    if (dB) cuda_gemm(ctx, 1, 0, OC, r, N, scale, dy, ldy, u, r, 1.f, dB, r, at, CUDA_R_32F);
    if (!dA && !dx) return;
    int dropping = drop.p > 0.f;
    size_t tbytes = ((size_t)N * r * esz + 255) & ~(size_t)255;
    char *base = (char *)cuda_scratch(ctx, tbytes + (dropping ? (size_t)N * C * esz : 0));
    if (!base) return;
    void *t = base, *s = base + tbytes; // s (N,C): drop(x), then drop(t @ A)
    cuda_gemm(ctx, 0, 0, N, r, OC, scale, dy, ldy, B, r, 0.f, t, r, at, at);
    if (dA) {
        const void *xd = x;
        if (dropping) {
            cuda_dropout_forward(ctx, s, x, rows, C, drop);
            xd = s;
        }
        cuda_gemm(ctx, 1, 0, r, C, N, 1.f, t, r, xd, C, 1.f, dA, C, at, CUDA_R_32F);
    }
    if (!dx) return;
    if (!dropping) {
        cuda_gemm(ctx, 0, 0, N, C, r, 1.f, t, r, A, C, 1.f, dx, C, at, at);
        return;
    }
    cuda_gemm(ctx, 0, 0, N, C, r, 1.f, t, r, A, C, 0.f, s, C, at, at);
    cuda_dropout_backward(ctx, s, s, rows, C, drop);
    size_t n = (size_t)N * C;
    LNN_CUDA_DISPATCH(ctx, T, add_into<T><<<blocks_for(n, 256), 256, 0, stream_of(ctx)>>>((T *)dx, (const T *)s, n));
    CUDA_LAUNCHED(ctx, "lora_backward");
}
