// csrc/cuda/matmul.cu: nn.Linear, forward and backward, on cuBLAS (cublasGemmEx: BF16, F16 or F32 operands,
// F32 accumulation; F32 GEMMs use TF32 tensor cores only when the context allows it; the biased forward
// optionally on cuBLASLt, gemm_lt.cu), and the deterministic column sums of the bias gradients.
#include "cuda/internal.cuh"

// Row-major C(M,N) = alpha op(A)(M,K) op(B)(K,N) + beta C (ta/tb: 0 as stored, 1 transposed), A and B of
// type at, C of type ct; cuBLAS is column-major, so this computes C^T = op(B)^T op(A)^T.
void cuda_gemm(lnn_ctx *ctx, int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda, const void *B,
               int ldb, float beta, void *C, int ldc, cudaDataType_t at, cudaDataType_t ct) {
    cuda_handles *h = handles_of(ctx);
    cublasComputeType_t comp = (at == CUDA_R_32F && ctx->allow_tf32) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    cublasSetMathMode(h->blas, CUBLAS_DEFAULT_MATH);
    cublasStatus_t st = cublasGemmEx(h->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                                     &alpha, B, at, ldb, A, at, lda, &beta, C, ct, ldc, comp, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS)
        cuda_fail(ctx, LNN_ERR_RUNTIME, "cuBLAS GEMM (%d x %d x %d) failed with status %d", M, N, K, (int)st);
}

static void gemm_rm(lnn_ctx *ctx, int ta, int tb, int M, int N, int K, const void *A, int lda, const void *B, int ldb,
                    float beta, void *C, int ldc, cudaDataType_t at, cudaDataType_t ct) {
    cuda_gemm(ctx, ta, tb, M, N, K, 1.f, A, lda, B, ldb, beta, C, ldc, at, ct);
}

// out(N,OC) = b broadcast over the rows
template <typename T>
__global__ void broadcast_rows(T *out, const T *b, int N, int OC) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * OC) out[i] = b[i % OC];
}

// out(N,OC) = inp(N,C) @ w(OC,C)^T (+ b). With a bias and LYRICNN_CUDA_GEMM=lt: one cuBLASLt GEMM with the
// bias epilogue (gemm_lt.cu); else (and where cuBLASLt has no algorithm) b broadcast into out, then a
// beta = 1 cublasGemmEx. Without a bias: cublasGemmEx, whose heuristics need no cache.
void cuda_matmul_forward(lnn_ctx *ctx, void *out, const void *inp, const void *w, const void *b, int N, int C, int OC) {
    cuda_enter(ctx);
    int lt = handles_of(ctx)->gemm_lt;
    if (b && lt) {
        if (cuda_gemm_lt_bias(ctx, out, inp, w, b, N, C, OC)) return;
        if (lt == 2) {
            cuda_fail(ctx, LNN_ERR_RUNTIME, "LYRICNN_CUDA_GEMM=lt-strict: cuBLASLt refused the biased linear "
                      "(%d x %d x %d); use lt (falls back to cuBLAS) or blas", N, OC, C);
            return;
        }
    }
    float beta = 0.f;
    if (b) {
        LNN_CUDA_DISPATCH(ctx, T, broadcast_rows<T><<<blocks_for((size_t)N * OC, 256), 256, 0, stream_of(ctx)>>>(
                                      (T *)out, (const T *)b, N, OC));
        CUDA_LAUNCHED(ctx, "matmul_forward bias");
        beta = 1.f;
    }
    cudaDataType_t t = cuda_act_type(ctx);
    gemm_rm(ctx, 0, 1, N, OC, C, inp, C, w, C, beta, out, OC, t, t);
}

// db(OC) += colsum(x(N,OC)): one thread per column, rows in order (deterministic, no atomics); columns
// in blocks of 128 threads, rows split into fixed chunks of ROWCHUNK whose partial sums go through
// scratch and are added in chunk order. The chunks are grid rows (at most MAX_GRID_Y of them, each looping
// over every MAX_GRID_Y-th chunk: N is allowed past 65535 chunks, 16.7M rows).
#define ROWCHUNK CUDA_ROWCHUNK
template <typename T>
__global__ void colsum_partial(float *part, const T *x, int N, int OC) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= OC) return;
    int nch = (N + ROWCHUNK - 1) / ROWCHUNK;
    for (int ch = blockIdx.y; ch < nch; ch += gridDim.y) {
        int r0 = ch * ROWCHUNK, r1 = min(N, r0 + ROWCHUNK);
        float s = 0.f;
        for (int r = r0; r < r1; r++) s += load_f(x + (size_t)r * OC + c);
        part[(size_t)ch * OC + c] = s;
    }
}

__global__ void colsum_finish(float *db, const float *part, int nch, int OC) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= OC) return;
    float s = 0.f;
    for (int k = 0; k < nch; k++) s += part[(size_t)k * OC + c];
    db[c] += s;
}

void cuda_colsum_finish(lnn_ctx *ctx, float *db, const float *part, int nch, int OC) {
    colsum_finish<<<(OC + 127) / 128, 128, 0, stream_of(ctx)>>>(db, part, nch, OC);
}

template <typename T>
void cuda_colsum_acc(lnn_ctx *ctx, float *db, const T *x, int N, int OC) {
    int nch = (N + ROWCHUNK - 1) / ROWCHUNK;
    float *part = (float *)cuda_scratch(ctx, (size_t)nch * OC * sizeof(float));
    if (!part) return;
    dim3 grid((OC + 127) / 128, grid_y(nch));
    colsum_partial<T><<<grid, 128, 0, stream_of(ctx)>>>(part, x, N, OC);
    colsum_finish<<<(OC + 127) / 128, 128, 0, stream_of(ctx)>>>(db, part, nch, OC);
    CUDA_LAUNCHED(ctx, "column sums");
}
template void cuda_colsum_acc<float>(lnn_ctx *, float *, const float *, int, int);
template void cuda_colsum_acc<bf16>(lnn_ctx *, float *, const bf16 *, int, int);
template void cuda_colsum_acc<f16>(lnn_ctx *, float *, const f16 *, int, int);

// dinp(N,C) += dout @ w; dw(OC,C) += dout^T @ inp (F32); db(OC) += colsum(dout). db stays on the column
// sums rather than a cuBLASLt BGRAD epilogue on the dw GEMM: the epilogue writes the bias gradient instead
// of adding to it (THE GRADIENT RULE: db accumulates, e.g. over gradient-accumulation micro-batches), it
// sums over N in an order its algorithm picks (split-K ones reduce across blocks: not fixed by the shapes
// alone), and it would need the dw GEMM to run where w is frozen and only db is wanted.
void cuda_matmul_backward(lnn_ctx *ctx, void *dinp, float *dw, float *db, const void *dout, const void *inp,
                          const void *w, int N, int C, int OC) {
    cuda_enter(ctx);
    cudaDataType_t t = cuda_act_type(ctx);
    if (dinp) gemm_rm(ctx, 0, 0, N, C, OC, dout, OC, w, C, 1.f, dinp, C, t, t);
    if (dw) gemm_rm(ctx, 1, 0, OC, C, N, dout, OC, inp, C, 1.f, dw, C, t, CUDA_R_32F);
    if (db) LNN_CUDA_DISPATCH(ctx, T, cuda_colsum_acc<T>(ctx, db, (const T *)dout, N, OC));
}
