/* core/backend.c: what every backend shares: op names, the backend registry of this build, and
 * context, scratch and buffer helpers written over the table (core/backend.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/backend.h"

const char *const lnn_op_names[LNN_NOPS] = {
#define LNN_OP_NAME_(name) #name,
    LNN_OP_LIST(LNN_OP_NAME_)
#undef LNN_OP_NAME_
};

static const char *const backend_names[] = {"cpu", "cpu-copy", NULL};

const char *const *lnn_backend_names(void) { return backend_names; }

const lnn_backend *lnn_backend_find(const char *name) {
    if (!name) return NULL;
    if (strcmp(name, "cpu") == 0) return lnn_backend_cpu();
    if (strcmp(name, "cpu-copy") == 0) return lnn_backend_cpu_copy();
    return NULL;
}

lnn_status lnn_ctx_init(lnn_ctx *ctx, const lnn_backend *be, int device, lnn_dtype act) {
    memset(ctx, 0, sizeof *ctx);
    if (!(be->caps.act_dtypes & (1u << act))) {
        lnn_set_error("the %s backend does not support %s activations", be->name, lnn_dtype_name(act));
        return LNN_ERR_VALUE;
    }
    ctx->be = be;
    ctx->act = act;
    ctx->device = device;
    return be->ctx_init(ctx, device);
}

void lnn_ctx_release(lnn_ctx *ctx) {
    if (!ctx->be) return;
    ctx->be->free(ctx, ctx->scratch);
    ctx->scratch = NULL;
    ctx->scratch_bytes = 0;
    ctx->be->ctx_release(ctx);
    ctx->be = NULL;
}

void lnn_ctx_fail(lnn_ctx *ctx, lnn_status st, const char *fmt, ...) {
    if (ctx->err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->errmsg, sizeof ctx->errmsg, fmt, ap);
    va_end(ap);
    ctx->err = st;
}

void *lnn_scratch(lnn_ctx *ctx, size_t nbytes) {
    if (nbytes <= ctx->scratch_bytes) return ctx->scratch;
    ctx->be->free(ctx, ctx->scratch);
    ctx->scratch_bytes = 0;
    ctx->scratch = ctx->be->malloc(ctx, nbytes);
    if (!ctx->scratch) {
        lnn_ctx_fail(ctx, LNN_ERR_MEMORY, "out of memory: %zu bytes of scratch for the %s backend", nbytes,
                     ctx->be->name);
        return NULL;
    }
    ctx->scratch_bytes = nbytes;
    return ctx->scratch;
}

lnn_status lnn_reserve(lnn_ctx *ctx, void **buf, size_t *cap, size_t need, const char *what) {
    if (need <= *cap && *buf) return LNN_OK;
    ctx->be->free(ctx, *buf);
    *cap = 0;
    *buf = ctx->be->malloc(ctx, need ? need : 1);
    if (!*buf) {
        lnn_set_error("out of memory: %s need %.1f MiB on the %s backend", what, need / 1048576.0, ctx->be->name);
        return LNN_ERR_MEMORY;
    }
    *cap = need;
    return LNN_OK;
}
