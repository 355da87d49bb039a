// csrc/cuda/internal.cuh: what the CUDA backend's files share (the CUDA counterpart of cpu/internal.h).
//
// The CUDA backend implements the op table of core/backend.h on NVIDIA GPUs; the model graphs are the
// same as on the CPU. Conventions:
// - Activations ('A' in core/backend.h) are float (ctx->act == LNN_F32), __nv_bfloat16 (LNN_BF16, sm_80+)
//   or __half (LNN_F16, every GPU: the T4 / V100 path, with dynamic loss scaling in the training step);
//   kernels are templates over the activation type T, launched through LNN_CUDA_DISPATCH. Arithmetic is
//   done in float (load_f / store_f); reductions in float or double, never in 16 bits.
// - Parameters' gradients, optimizer state and statistics are float; losses and norms double.
// - Every op runs on the context's stream (stream_of(ctx)) and returns at once; a launch failure is
//   recorded in the context (cuda_fail) and reported by synchronize(). Ops never synchronize.
// - Deterministic: no float atomics; every sum is split by the shapes alone, so a run gives the same bits
//   every time (the CPU backend's rule).
// - This shared object is standalone: it must not call functions of the core library (lnn_set_error,
//   lnn_scratch, ...), which are not visible to it; it has its own (cuda_fail, cuda_scratch).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

extern "C" {
#include "core/backend.h"
}

typedef __nv_bfloat16 bf16;
typedef __half f16;

// ---------------------------------------------------------------- the context's CUDA state

// cuBLASLt's algorithm for one GEMM shape (gemm_lt.cu): the key is everything its heuristic looks at.
struct lt_key {
    int m, n, k;  // column-major GEMM sizes
    int dtype;    // cudaDataType_t of the activations (16BF, 16F or 32F)
    int tf32;     // F32 with TF32 tensor cores
    int epilogue; // cublasLtEpilogue_t
    int align;    // bytes (16, 8, 4, 2, 1) every pointer is aligned to
};
struct lt_entry {
    lt_key key;
    int used, ok;  // ok = 0: no algorithm, or cuBLASLt refused it: the cuBLAS path for this key
    cublasLtMatmulAlgo_t algo;
    cublasLtMatmulDesc_t op;             // the key's descriptors, built once (a call sets the bias pointer)
    cublasLtMatrixLayout_t la, lb, ld;
};
#define LT_CACHE 64 // entries: the encoder has a handful of GEMM shapes per batch shape

struct cuda_handles {
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    void *lt_ws;         // cuBLASLt workspace
    size_t lt_ws_bytes;
    int sm_count;
    int cc_major, cc_minor;
    int smem_optin;      // the most dynamic shared memory a block may ask for (64 KB on sm_75, 227 KB on sm_90)
    int attention_tc;    // tensor-core attention: 0 no, 1 auto, 2 tc (LYRICNN_CUDA_ATTENTION at ctx_init; attention.cu)
    int tc_code_arch;    // the sm_ version its kernels were compiled for on this device (attention_tc_code_arch)
    int dropout_bits;    // the attention's dropout mask kept as bits (LYRICNN_CUDA_DROPOUT_BITS at ctx_init)
    int fold;            // column sums folded into LayerNorm's / bias-activation's backward (LYRICNN_CUDA_FOLD)
    int gemm_lt;         // biased linears on cuBLASLt: 0 no, 1 yes, 2 strict (LYRICNN_CUDA_GEMM at ctx_init)
    lt_entry lt_cache[LT_CACHE]; // cuBLASLt algorithms by shape; full, overwritten in turn from lt_next
    int lt_next;
};

static inline cudaStream_t stream_of(const lnn_ctx *ctx) { return (cudaStream_t)ctx->stream; }
static inline cuda_handles *handles_of(const lnn_ctx *ctx) { return (cuda_handles *)ctx->handles; }

// Record the first failure in the context (synchronize() returns it). Defined in backend.cu.
void cuda_fail(lnn_ctx *ctx, lnn_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// Scratch of at least nbytes of device memory (ctx->scratch, grown on demand; freed with the context);
// NULL and the failure recorded when it cannot grow. Defined in backend.cu.
void *cuda_scratch(lnn_ctx *ctx, size_t nbytes);
// Whether LYRICNN_CUDA_ATTENTION (or its default) asks for the tensor-core attention. Defined in attention.cu.
int cuda_attention_tc_wanted(void);
// Whether LYRICNN_CUDA_GEMM (or its default) asks for the cuBLASLt linears. Defined in gemm_lt.cu.
int cuda_gemm_lt_wanted(void);
// The graph-level paths (lnn_ctx.paths) the CUDA backend asks for: LYRICNN_CUDA_FUSED_OPT and its default.
// Defined in optimizer.cu.
unsigned cuda_paths_wanted(void);
// Whether LYRICNN_CUDA_DROPOUT_BITS (or its default) asks for the attention's dropout mask kept as bits.
// Defined in attention.cu.
int cuda_dropout_bits_wanted(void);
// LNN_PATH_SORTED_EMBED when LYRICNN_CUDA_EMBED (or its default) asks for it. Defined in embedding.cu.
unsigned cuda_embed_paths_wanted(void);
// A switch of the environment: 1 for "1", 0 for "0", def when unset or empty (other values: def).
int cuda_env_flag(const char *name, int def);
// Make ctx's device current on the calling host thread (Python may call from any thread).
void cuda_enter(const lnn_ctx *ctx);

// After a kernel launch: record a launch error in the context.
#define CUDA_LAUNCHED(ctx, what)                                                                      \
    do {                                                                                              \
        cudaError_t e_ = cudaGetLastError();                                                          \
        if (e_ != cudaSuccess)                                                                        \
            cuda_fail((ctx), e_ == cudaErrorMemoryAllocation ? LNN_ERR_MEMORY : LNN_ERR_RUNTIME,      \
                      "%s: %s", (what), cudaGetErrorString(e_));                                      \
    } while (0)

// Run the statement list with T the activation type of ctx.
#define LNN_CUDA_DISPATCH(ctx, T, ...)                                                                \
    do {                                                                                              \
        if ((ctx)->act == LNN_BF16) {                                                                 \
            typedef bf16 T;                                                                           \
            __VA_ARGS__;                                                                              \
        } else if ((ctx)->act == LNN_F16) {                                                           \
            typedef f16 T;                                                                            \
            __VA_ARGS__;                                                                              \
        } else {                                                                                      \
            typedef float T;                                                                          \
            __VA_ARGS__;                                                                              \
        }                                                                                             \
    } while (0)

// ---------------------------------------------------------------- element access and math

__device__ __forceinline__ float load_f(const float *p) { return *p; }
__device__ __forceinline__ float load_f(const bf16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ float load_f(const f16 *p) { return __half2float(*p); }
__device__ __forceinline__ void store_f(float *p, float v) { *p = v; }
__device__ __forceinline__ void store_f(bf16 *p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ void store_f(f16 *p, float v) { *p = __float2half_rn(v); } // overflow: +-inf

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024) in a fixed order; every thread
// gets the result. shared: 32 floats of shared memory.
template <typename F>
__device__ __forceinline__ F block_sum(F v, F *shared) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared[wid] = v;
    __syncthreads();
    v = lane < nw ? shared[lane] : F(0);
    return warp_sum(v);
}

static inline unsigned blocks_for(size_t n, unsigned threads) {
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : (b > 2147483647u ? 2147483647u : b));
}

// gridDim.y (and z) is at most 65535: kernels whose grid rows index chunks of work loop over
// blockIdx.y, blockIdx.y + gridDim.y, ... and launch grid_y(chunks) rows.
#define MAX_GRID_Y 65535
static inline unsigned grid_y(size_t chunks) {
    return (unsigned)(chunks < 1 ? 1 : (chunks > MAX_GRID_Y ? MAX_GRID_Y : chunks));
}

// Activation helpers shared with the CPU's definitions (cpu/activation.c): GELU (erf), tanh-GELU, ReLU.
// NaN in, NaN out, as torch: relu(x) = x < 0 ? 0 : x keeps NaN (and -0); its gradient is torch's
// threshold_backward, x <= 0 ? 0 : dout (relu_grad: a select, so a NaN dout where x <= 0 gives 0, as torch).
__device__ __forceinline__ float act_f(float x, int act) {
    if (act == LNN_ACT_RELU) return x < 0.f ? 0.f : x;
    if (act == LNN_ACT_GELU_TANH) return 0.5f * x * (1.f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
}
__device__ __forceinline__ float act_df(float x, int act) {
    if (act == LNN_ACT_RELU) return x <= 0.f ? 0.f : 1.f;
    if (act == LNN_ACT_GELU_TANH) {
        float k = 0.79788456080286536f, th = tanhf(k * (x + 0.044715f * x * x * x));
        return 0.5f * (1.f + th) + 0.5f * x * (1.f - th * th) * k * (1.f + 3.f * 0.044715f * x * x);
    }
    return 0.5f * (1.f + erff(x * 0.70710678118654752f)) + x * 0.39894228040143268f * expf(-0.5f * x * x);
}

// The row of token 0 of sequence b in a token-row layout (core/backend.h lnn_rows).
__device__ __forceinline__ size_t first_row(lnn_rows r, int b) {
    if (r.first_only) return (size_t)b;
    return r.seq_off ? (size_t)r.seq_off[b] : (size_t)b * r.T;
}

// The padded element index of element c of row `row` (dropout keys): the row's sequence b and position t.
// Packed rows need the sequence of the row: rows_seq() finds it by binary search over seq_off.
__device__ __forceinline__ int rows_seq(lnn_rows r, int row) {
    if (r.first_only) return row;
    if (!r.seq_off) return row / r.T;
    int lo = 0, hi = r.B - 1;
    while (lo < hi) {  // the last b with seq_off[b] <= row
        int mid = (lo + hi + 1) >> 1;
        if (r.seq_off[mid] <= row) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}
__device__ __forceinline__ uint64_t padded_index(lnn_rows r, int row, int C, int c) {
    int b = rows_seq(r, row);
    int t = r.first_only ? 0 : (r.seq_off ? row - r.seq_off[b] : row - b * r.T);
    return ((uint64_t)b * r.T + (uint64_t)t) * (uint64_t)C + (uint64_t)c;
}

// Keep bit of element `index` of a dropout site (the Philox4x32-10 spec of core/philox.h).
__device__ __forceinline__ bool dropout_keep(lnn_dropout_t d, uint64_t index, uint32_t thr) {
    lnn_philox_out o = lnn_dropout_bits(d, index >> 2);
    return o.v[index & 3] >= thr;
}

// ---------------------------------------------------------------- the ops (signatures: core/backend.h)

void cuda_cast(lnn_ctx *ctx, void *dst, lnn_dtype dt, const void *src, lnn_dtype st, size_t n);
void cuda_embedding_forward(lnn_ctx *ctx, void *out, const int32_t *ids, const int32_t *types, const int32_t *pos,
                            const void *wte, const void *wpe, const void *wtt, int N, int C);
void cuda_embedding_backward(lnn_ctx *ctx, float *dwte, float *dwpe, float *dwtt, const void *dout, const int32_t *ids,
                             const int32_t *types, const int32_t *pos, int N, int C, int pad_id,
                             const lnn_emb_index *idx);
void cuda_matmul_forward(lnn_ctx *ctx, void *out, const void *inp, const void *w, const void *b, int N, int C, int OC);
void cuda_matmul_backward(lnn_ctx *ctx, void *dinp, float *dw, float *db, const void *dout, const void *inp,
                          const void *w, int N, int C, int OC);
void cuda_layernorm_forward(lnn_ctx *ctx, void *out, float *mean, float *rstd, void *res, const void *a, const void *r,
                            const void *w, const void *b, int N, int C, float eps);
void cuda_layernorm_backward(lnn_ctx *ctx, void *dres, float *dw, float *db, const void *dout, const void *res,
                             const void *w, const float *mean, const float *rstd, int N, int C);
void cuda_bias_act_forward(lnn_ctx *ctx, void *out, void *x, const void *b, int N, int OC, int act);
void cuda_bias_act_backward(lnn_ctx *ctx, void *dx, float *db, const void *dout, const void *x, int N, int OC, int act);
void cuda_tanh_forward(lnn_ctx *ctx, void *out, const void *inp, size_t n);
void cuda_tanh_backward(lnn_ctx *ctx, void *dinp, const void *dout, const void *out, size_t n);
size_t cuda_attention_saved_bytes(const lnn_ctx *ctx, int B, int T, int NH, int train, float p);
size_t cuda_attention_scratch_bytes(const lnn_ctx *ctx, int B, int T, int NH, int train, float p);
void cuda_attention_forward(lnn_ctx *ctx, void *out, void *saved, void *scratch, const void *qkv, const int32_t *mask,
                            const int32_t *seq_off, int q_first, int B, int T, int C, int NH, lnn_dropout_t drop);
void cuda_attention_backward(lnn_ctx *ctx, void *dqkv, const void *dout, const void *out, const void *saved,
                             void *scratch, const void *qkv, const int32_t *seq_off, int q_first, int B, int T, int C,
                             int NH, lnn_dropout_t drop);
void cuda_dropout_forward(lnn_ctx *ctx, void *out, const void *inp, lnn_rows rows, int C, lnn_dropout_t drop);
void cuda_dropout_backward(lnn_ctx *ctx, void *dinp, const void *dout, lnn_rows rows, int C, lnn_dropout_t drop);
void cuda_token0_forward(lnn_ctx *ctx, void *out, const void *inp, lnn_rows rows, int C);
void cuda_token0_backward(lnn_ctx *ctx, void *dinp, const void *dout, lnn_rows rows, int C);
void cuda_mean_pool_forward(lnn_ctx *ctx, void *out, const void *h, const int32_t *mask, lnn_rows rows, int C);
void cuda_mean_pool_backward(lnn_ctx *ctx, void *dh, const void *dout, const int32_t *mask, lnn_rows rows, int C);
void cuda_concat_forward(lnn_ctx *ctx, void *out, const void *h, const void *f, int B, int H, int F);
void cuda_concat_backward(lnn_ctx *ctx, void *dh, void *df, const void *dout, int B, int H, int F);
void cuda_batchnorm_forward(lnn_ctx *ctx, void *out, float *save_mean, float *save_rstd, const void *x,
                            const void *gamma, const void *beta, float *running_mean, float *running_var, int N, int C,
                            int training, float momentum, float eps);
void cuda_batchnorm_backward(lnn_ctx *ctx, void *dx, float *dgamma, float *dbeta, const void *dout, const void *x,
                             const void *gamma, const float *save_mean, const float *save_rstd, int N, int C,
                             int batch_stats);
void cuda_cross_entropy(lnn_ctx *ctx, double *loss, void *dlogits, const void *logits, const int64_t *labels,
                        const float *class_weight, int N, int K, int64_t ignore_index, float grad_scale);
void cuda_bce_with_logits(lnn_ctx *ctx, double *loss, void *dlogits, const void *logits, const void *targets,
                          const float *pos_weight, int N, int K, float grad_scale);
void cuda_mse(lnn_ctx *ctx, double *loss, void *dpreds, const void *preds, const void *targets, size_t n,
              float grad_scale);
void cuda_gather_rows_forward(lnn_ctx *ctx, void *out, const void *inp, const int32_t *idx, int N, int C);
void cuda_gather_rows_backward(lnn_ctx *ctx, void *dinp, const void *dout, const int32_t *idx, int N, int C);
void cuda_segment_pool_forward(lnn_ctx *ctx, void *out, const void *x, const void *scores, const int32_t *seg_off,
                               int S, int N, int C, int mode);
void cuda_segment_pool_backward(lnn_ctx *ctx, void *dx, void *dscores, const void *dout, const void *x,
                                const void *scores, const int32_t *seg_off, int S, int N, int C, int mode);
void cuda_lstm_cell_forward(lnn_ctx *ctx, void *h, void *c, void *gates, const void *gh, const void *c_prev, int N,
                            int Np, int H);
void cuda_lstm_cell_backward(lnn_ctx *ctx, void *dgates, void *dc_prev, const void *dh, const void *dc,
                             const void *gates, const void *c, const void *c_prev, int N, int Np, int H);
void cuda_grad_norm_clip(lnn_ctx *ctx, double *norm, float *grads, size_t n, const lnn_segment *segs, int nseg,
                         int clip, double max_norm, float inv_scale, float *coef);
void cuda_adam_step(lnn_ctx *ctx, float *params, float *grads, float *m, float *v, size_t n, size_t nstate,
                    const lnn_segment *segs, int nseg, int64_t *steps, const float *lr_scale,
                    const lnn_optim_config *cfg, const float *gcoef, const double *skip_norm, void *wact);

void cuda_lora_forward(lnn_ctx *ctx, void *y, int ldy, const void *x, const void *A, const void *B, void *u,
                       lnn_rows rows, int C, int r, int OC, float scale, lnn_dropout_t drop);
void cuda_lora_backward(lnn_ctx *ctx, void *dx, float *dA, float *dB, const void *dy, int ldy, const void *x,
                        const void *A, const void *B, const void *u, lnn_rows rows, int C, int r, int OC, float scale,
                        lnn_dropout_t drop);

// Row-major GEMM on cuBLAS (matmul.cu): C(M,N) = alpha op(A)(M,K) op(B)(K,N) + beta C, operands of type at,
// C of type ct, F32 accumulation (TF32 only when the context allows it).
void cuda_gemm(lnn_ctx *ctx, int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda, const void *B,
               int ldb, float beta, void *C, int ldc, cudaDataType_t at, cudaDataType_t ct);
// out(N,OC) = inp(N,C) @ w(OC,C)^T + b as one cublasLtMatmul with the bias epilogue (gemm_lt.cu); 0 when
// it did not run and the caller must take the cuBLAS path.
int cuda_gemm_lt_bias(lnn_ctx *ctx, void *out, const void *inp, const void *w, const void *b, int N, int C, int OC);
// Destroy the descriptors held by the cuBLASLt cache (at ctx release).
void cuda_gemm_lt_release(cuda_handles *h);
// The cuBLAS type of the context's activations.
static inline cudaDataType_t cuda_act_type(const lnn_ctx *ctx) {
    return ctx->act == LNN_BF16 ? CUDA_R_16BF : ctx->act == LNN_F16 ? CUDA_R_16F : CUDA_R_32F;
}

// Deterministic column sums used by several backward ops (matmul, bias_act): db(OC) += colsum(x(N,OC)), rows
// in chunks of CUDA_ROWCHUNK summed in order, the chunks' partials then in chunk order (cuda_colsum_finish).
#define CUDA_ROWCHUNK 256
template <typename T>
void cuda_colsum_acc(lnn_ctx *ctx, float *db, const T *x, int N, int OC);
// db(OC) += the partial sums part (nch, OC), in chunk order
void cuda_colsum_finish(lnn_ctx *ctx, float *db, const float *part, int nch, int OC);
// LYRICNN_CUDA_FOLD (or its default): the column sums folded into LayerNorm's and bias-activation's backward
// kernels. Defined in layernorm.cu.
int cuda_fold_wanted(void);
