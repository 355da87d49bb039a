/* cpu/backend.c: the CPU backend's table: host memory, synchronous ops (one file per op family in
 * cpu/), GEMMs through the BLAS (cpu/gemm.c), F32 activations. One table per ISA level of the build
 * (core/cpu_level.h). */
#include "cpu/internal.h"

static int cpu_supports(int op, lnn_dtype act) {
    return op >= 0 && op < LNN_NOPS && act == LNN_F32;
}

static lnn_status cpu_ctx_init(lnn_ctx *ctx, int device) {
    if (device != 0) {
        lnn_set_error("the CPU backend has one device (0), got device %d", device);
        return LNN_ERR_VALUE;
    }
    ctx->stream = ctx->handles = NULL;
    /* the fused step: the same arithmetic in fewer passes; the sorted embedding backward: parallel over ids */
    ctx->paths = LNN_PATH_FUSED_OPT | LNN_PATH_SORTED_EMBED;
    return LNN_OK;
}

static void cpu_ctx_release(lnn_ctx *ctx) { (void)ctx; }
static void *cpu_malloc(lnn_ctx *ctx, size_t n) { return lnn_malloc(n); }
static void cpu_free(lnn_ctx *ctx, void *p) { lnn_free(p); }
static void cpu_zero(lnn_ctx *ctx, void *p, size_t n) { if (n) memset(p, 0, n); }
static void cpu_copy(lnn_ctx *ctx, void *d, const void *s, size_t n) { if (n && d != s) memcpy(d, s, n); }

/* ops run synchronously: the sticky error is all there is to report (its message stays in ctx->errmsg) */
static lnn_status cpu_synchronize(lnn_ctx *ctx) {
    lnn_status st = ctx->err;
    ctx->err = LNN_OK;
    return st;
}

#define CPU_TABLE(NAME, HOST)                                                                       \
    {                                                                                               \
        .name = NAME, .caps = {.host_memory = HOST, .act_dtypes = 1u << LNN_F32},                     \
        .supports = cpu_supports, .device_info = NULL, .ctx_init = cpu_ctx_init, .ctx_release = cpu_ctx_release,         \
        .malloc = cpu_malloc, .free = cpu_free, .zero = cpu_zero, .copy = cpu_copy,                 \
        .to_device = cpu_copy, .to_host = cpu_copy, .synchronize = cpu_synchronize,                 \
        .cast = cpu_cast, .embedding_forward = cpu_embedding_forward,                               \
        .embedding_backward = cpu_embedding_backward, .matmul_forward = cpu_matmul_forward,         \
        .matmul_backward = cpu_matmul_backward, .layernorm_forward = cpu_layernorm_forward,         \
        .lora_forward = cpu_lora_forward, .lora_backward = cpu_lora_backward,                       \
        .layernorm_backward = cpu_layernorm_backward, .bias_act_forward = cpu_bias_act_forward,     \
        .bias_act_backward = cpu_bias_act_backward, .attention_saved_bytes = cpu_attention_saved_bytes, \
        .attention_scratch_bytes = cpu_attention_scratch_bytes,                                     \
        .attention_forward = cpu_attention_forward, .attention_backward = cpu_attention_backward,   \
        .dropout_forward = cpu_dropout_forward, .dropout_backward = cpu_dropout_backward,           \
        .tanh_forward = cpu_tanh_forward, .tanh_backward = cpu_tanh_backward,                       \
        .token0_forward = cpu_token0_forward, .token0_backward = cpu_token0_backward,               \
        .mean_pool_forward = cpu_mean_pool_forward, .mean_pool_backward = cpu_mean_pool_backward,   \
        .concat_forward = cpu_concat_forward, .concat_backward = cpu_concat_backward,               \
        .batchnorm_forward = cpu_batchnorm_forward, .batchnorm_backward = cpu_batchnorm_backward,   \
        .cross_entropy = cpu_cross_entropy, .bce_with_logits = cpu_bce_with_logits, .mse = cpu_mse, \
        .grad_norm_clip = cpu_grad_norm_clip, .adam_step = cpu_adam_step,                           \
        .gather_rows_forward = cpu_gather_rows_forward, .gather_rows_backward = cpu_gather_rows_backward, \
        .lstm_cell_forward = cpu_lstm_cell_forward, .lstm_cell_backward = cpu_lstm_cell_backward,   \
        .segment_pool_forward = cpu_segment_pool_forward, .segment_pool_backward = cpu_segment_pool_backward, \
    }

static const lnn_backend cpu_backend = CPU_TABLE("cpu", 1);
static const lnn_backend cpu_copy_backend = CPU_TABLE("cpu-copy", 0);

/* This copy's entry point (core/cpu_level.h): setup.py compiles csrc/cpu/ once per ISA level and names
 * the entry of each copy (LNN_CPU_ENTRY); core/cpu_level.c picks one at import. */
#ifndef LNN_CPU_ENTRY
#define LNN_CPU_ENTRY lnn_cpu_entry
#endif
void LNN_CPU_ENTRY(const lnn_backend **cpu, const lnn_backend **cpu_copy);
void LNN_CPU_ENTRY(const lnn_backend **cpu, const lnn_backend **cpu_copy) {
    *cpu = &cpu_backend;
    *cpu_copy = &cpu_copy_backend;
}
