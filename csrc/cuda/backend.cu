// csrc/cuda/backend.cu: the CUDA backend's table: device memory on one stream per context, cuBLAS and
// cuBLASLt handles, F32, BF16 (from sm_80) and F16 activations, and the entry point the core library
// finds with dlopen (core/backend.c, LNN_CUDA_ENTRY).
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/attention.cuh"

void cuda_fail(lnn_ctx *ctx, lnn_status st, const char *fmt, ...) {
    if (ctx->err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->errmsg, sizeof ctx->errmsg, fmt, ap);
    va_end(ap);
    ctx->err = st;
}

int cuda_env_flag(const char *name, int def) {
    const char *e = getenv(name);
    if (!e || !*e) return def;
    return !strcmp(e, "1") ? 1 : !strcmp(e, "0") ? 0 : def;
}

void cuda_enter(const lnn_ctx *ctx) {
    int cur = -1;
    if (cudaGetDevice(&cur) != cudaSuccess || cur != ctx->device) cudaSetDevice(ctx->device);
}

void *cuda_scratch(lnn_ctx *ctx, size_t nbytes) {
    if (nbytes <= ctx->scratch_bytes && ctx->scratch) return ctx->scratch;
    if (ctx->scratch) {
        cudaStreamSynchronize(stream_of(ctx)); // queued ops may still read the old scratch
        cudaFree(ctx->scratch);
    }
    ctx->scratch = NULL;
    ctx->scratch_bytes = 0;
    if (cudaMalloc(&ctx->scratch, nbytes ? nbytes : 1) != cudaSuccess) {
        cudaGetLastError();
        ctx->scratch = NULL;
        cuda_fail(ctx, LNN_ERR_MEMORY, "out of GPU memory: %zu bytes of scratch", nbytes);
        return NULL;
    }
    ctx->scratch_bytes = nbytes;
    return ctx->scratch;
}

// ---------------------------------------------------------------- capabilities

static int dev_bf16(int device) {
    int major = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    return major >= 8;
}

static int cuda_supports(int op, lnn_dtype act) {
    if (op < 0 || op >= LNN_NOPS) return 0;
    if (act == LNN_F32 || act == LNN_F16) return 1;
    if (act == LNN_BF16) {
        int d = 0;
        cudaGetDevice(&d);
        return dev_bf16(d);
    }
    return 0;
}

static lnn_status cuda_device_info(int device, lnn_device_info *out) {
    memset(out, 0, sizeof *out);
    cudaGetDeviceCount(&out->count);
    if (device < 0 || device >= out->count) return LNN_ERR_VALUE;
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, device) != cudaSuccess) return LNN_ERR_RUNTIME;
    snprintf(out->name, sizeof out->name, "%.127s", p.name);
    out->cc_major = p.major;
    out->cc_minor = p.minor;
    cudaRuntimeGetVersion(&out->runtime_version);
    cudaDriverGetVersion(&out->driver_version);
    out->total_memory = p.totalGlobalMem;
    int cur = -1;
    cudaGetDevice(&cur);
    if (cudaSetDevice(device) == cudaSuccess) cudaMemGetInfo(&out->free_memory, &out->total_memory);
    if (cur >= 0) cudaSetDevice(cur);
    out->act_dtypes = (1u << LNN_F32) | (1u << LNN_F16) | (p.major >= 8 ? (1u << LNN_BF16) : 0u);
    return LNN_OK;
}

// ---------------------------------------------------------------- context and memory

static lnn_status cuda_ctx_init(lnn_ctx *ctx, int device) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || device < 0 || device >= n) {
        cudaGetLastError();
        snprintf(ctx->errmsg, sizeof ctx->errmsg, "CUDA device %d does not exist (%d devices)", device, n);
        return LNN_ERR_VALUE;
    }
    if (ctx->act == LNN_BF16 && !dev_bf16(device)) {
        snprintf(ctx->errmsg, sizeof ctx->errmsg, "CUDA device %d has no bf16 (needs compute capability 8.0+); use "
                 "precision='fp16' (with loss scaling) or 'fp32'", device);
        return LNN_ERR_VALUE;
    }
    cudaSetDevice(device);
    cuda_handles *h = (cuda_handles *)calloc(1, sizeof *h);
    cudaStream_t s = NULL;
    if (!h || cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess) {
        free(h);
        snprintf(ctx->errmsg, sizeof ctx->errmsg, "could not create a CUDA stream on device %d", device);
        return LNN_ERR_RUNTIME;
    }
    if (cublasCreate(&h->blas) != CUBLAS_STATUS_SUCCESS || cublasLtCreate(&h->lt) != CUBLAS_STATUS_SUCCESS) {
        if (h->blas) cublasDestroy(h->blas); // the first handle, when only cublasLtCreate failed
        cudaStreamDestroy(s);
        free(h);
        snprintf(ctx->errmsg, sizeof ctx->errmsg, "could not initialise cuBLAS on device %d", device);
        return LNN_ERR_RUNTIME;
    }
    cublasSetStream(h->blas, s);
    h->lt_ws_bytes = (size_t)32 << 20;
    if (cudaMalloc(&h->lt_ws, h->lt_ws_bytes) != cudaSuccess) {
        cudaGetLastError();
        h->lt_ws = NULL;
        h->lt_ws_bytes = 0;
    }
    cudaDeviceGetAttribute(&h->sm_count, cudaDevAttrMultiProcessorCount, device);
    cudaDeviceGetAttribute(&h->cc_major, cudaDevAttrComputeCapabilityMajor, device);
    cudaDeviceGetAttribute(&h->cc_minor, cudaDevAttrComputeCapabilityMinor, device);
    if (cudaDeviceGetAttribute(&h->smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) {
        cudaGetLastError();
        h->smem_optin = 48 << 10;
    }
    h->attention_tc = cuda_attention_tc_wanted();
    h->tc_code_arch = attention_tc_code_arch();
    h->dropout_bits = cuda_dropout_bits_wanted();
    h->fold = cuda_fold_wanted();
    h->gemm_lt = cuda_gemm_lt_wanted();
    ctx->paths = cuda_paths_wanted() | cuda_embed_paths_wanted();
    ctx->stream = s;
    ctx->handles = h;
    return LNN_OK;
}

static void cuda_ctx_release(lnn_ctx *ctx) {
    cuda_handles *h = handles_of(ctx);
    cuda_enter(ctx);
    if (ctx->stream) cudaStreamSynchronize(stream_of(ctx));
    if (h) {
        cuda_gemm_lt_release(h);
        cudaFree(h->lt_ws);
        cublasLtDestroy(h->lt);
        cublasDestroy(h->blas);
        free(h);
    }
    if (ctx->stream) cudaStreamDestroy(stream_of(ctx));
    ctx->stream = ctx->handles = NULL;
}

static void *cuda_malloc(lnn_ctx *ctx, size_t nbytes) {
    cuda_enter(ctx);
    void *p = NULL;
    if (cudaMalloc(&p, nbytes ? nbytes : 1) != cudaSuccess) {
        cudaGetLastError(); // not sticky: the caller reports the out-of-memory with its sizes
        return NULL;
    }
    return p;
}

static void cuda_free(lnn_ctx *ctx, void *p) {
    if (!p) return;
    cuda_enter(ctx);
    cudaStreamSynchronize(stream_of(ctx)); // queued kernels may still use p
    cudaFree(p);
}

static void cuda_zero(lnn_ctx *ctx, void *p, size_t n) {
    if (!n) return;
    cuda_enter(ctx);
    if (cudaMemsetAsync(p, 0, n, stream_of(ctx)) != cudaSuccess) cuda_fail(ctx, LNN_ERR_RUNTIME, "cudaMemsetAsync failed");
}

static void cuda_copy(lnn_ctx *ctx, void *d, const void *s, size_t n) {
    if (!n || d == s) return;
    cuda_enter(ctx);
    if (cudaMemcpyAsync(d, s, n, cudaMemcpyDeviceToDevice, stream_of(ctx)) != cudaSuccess)
        cuda_fail(ctx, LNN_ERR_RUNTIME, "device copy failed");
}

// host -> device: the host buffer may be reused by the caller as soon as this returns, so the copy is
// complete on return (a pageable-memory cudaMemcpyAsync stages it).
static void cuda_to_device(lnn_ctx *ctx, void *d, const void *host, size_t n) {
    if (!n) return;
    cuda_enter(ctx);
    if (cudaMemcpyAsync(d, host, n, cudaMemcpyHostToDevice, stream_of(ctx)) != cudaSuccess ||
        cudaStreamSynchronize(stream_of(ctx)) != cudaSuccess)
        cuda_fail(ctx, LNN_ERR_RUNTIME, "host-to-device copy failed: %s", cudaGetErrorString(cudaGetLastError()));
}

static void cuda_to_host(lnn_ctx *ctx, void *host, const void *s, size_t n) {
    if (!n) return;
    cuda_enter(ctx);
    if (cudaMemcpyAsync(host, s, n, cudaMemcpyDeviceToHost, stream_of(ctx)) != cudaSuccess ||
        cudaStreamSynchronize(stream_of(ctx)) != cudaSuccess)
        cuda_fail(ctx, LNN_ERR_RUNTIME, "device-to-host copy failed: %s", cudaGetErrorString(cudaGetLastError()));
}

static lnn_status cuda_synchronize(lnn_ctx *ctx) {
    cuda_enter(ctx);
    cudaError_t e = cudaStreamSynchronize(stream_of(ctx));
    if (e != cudaSuccess) cuda_fail(ctx, LNN_ERR_RUNTIME, "CUDA error: %s", cudaGetErrorString(e));
    lnn_status st = ctx->err;
    ctx->err = LNN_OK;
    return st; // the message stays in ctx->errmsg; the core copies it into its error
}

// ---------------------------------------------------------------- the table

static const lnn_backend cuda_backend = {
    .name = "cuda",
    .caps = {.host_memory = 0, .act_dtypes = (1u << LNN_F32) | (1u << LNN_BF16) | (1u << LNN_F16)},
    .supports = cuda_supports,
    .device_info = cuda_device_info,
    .ctx_init = cuda_ctx_init,
    .ctx_release = cuda_ctx_release,
    .malloc = cuda_malloc,
    .free = cuda_free,
    .zero = cuda_zero,
    .copy = cuda_copy,
    .to_device = cuda_to_device,
    .to_host = cuda_to_host,
    .synchronize = cuda_synchronize,
    .cast = cuda_cast,
    .embedding_forward = cuda_embedding_forward,
    .embedding_backward = cuda_embedding_backward,
    .matmul_forward = cuda_matmul_forward,
    .matmul_backward = cuda_matmul_backward,
    .lora_forward = cuda_lora_forward,
    .lora_backward = cuda_lora_backward,
    .layernorm_forward = cuda_layernorm_forward,
    .layernorm_backward = cuda_layernorm_backward,
    .bias_act_forward = cuda_bias_act_forward,
    .bias_act_backward = cuda_bias_act_backward,
    .attention_saved_bytes = cuda_attention_saved_bytes,
    .attention_scratch_bytes = cuda_attention_scratch_bytes,
    .attention_forward = cuda_attention_forward,
    .attention_backward = cuda_attention_backward,
    .dropout_forward = cuda_dropout_forward,
    .dropout_backward = cuda_dropout_backward,
    .tanh_forward = cuda_tanh_forward,
    .tanh_backward = cuda_tanh_backward,
    .token0_forward = cuda_token0_forward,
    .token0_backward = cuda_token0_backward,
    .mean_pool_forward = cuda_mean_pool_forward,
    .mean_pool_backward = cuda_mean_pool_backward,
    .concat_forward = cuda_concat_forward,
    .concat_backward = cuda_concat_backward,
    .batchnorm_forward = cuda_batchnorm_forward,
    .batchnorm_backward = cuda_batchnorm_backward,
    .cross_entropy = cuda_cross_entropy,
    .bce_with_logits = cuda_bce_with_logits,
    .mse = cuda_mse,
    .grad_norm_clip = cuda_grad_norm_clip,
    .adam_step = cuda_adam_step,
    .gather_rows_forward = cuda_gather_rows_forward,
    .gather_rows_backward = cuda_gather_rows_backward,
    .lstm_cell_forward = cuda_lstm_cell_forward,
    .lstm_cell_backward = cuda_lstm_cell_backward,
    .segment_pool_forward = cuda_segment_pool_forward,
    .segment_pool_backward = cuda_segment_pool_backward,
};

// The entry point: the table when a CUDA device is usable here, else NULL and the reason.
extern "C" __attribute__((visibility("default"))) const lnn_backend *lnn_cuda_backend(char *err, size_t errn) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n < 1) {
        snprintf(err, errn, "%s", e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device found");
        cudaGetLastError();
        return NULL;
    }
    return &cuda_backend;
}
