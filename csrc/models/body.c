/* models/body.c: the buffers every body has (models/body.h). */
#include "models/body.h"

lnn_status lnn_body_allocate(lnn_body *b) {
    lnn_ctx *ctx = &b->ctx;
    const lnn_backend *be = ctx->be;
    if (b->params) {
        lnn_set_error("the model's parameters are already allocated");
        return LNN_ERR_RUNTIME;
    }
    size_t nb = b->tab.numel * sizeof(float);
    b->params = be->malloc(ctx, nb);
    b->grads = be->malloc(ctx, nb);
    if (!b->params || !b->grads) {
        lnn_set_error("out of memory allocating %zu parameters on the %s backend", b->tab.numel, be->name);
        return LNN_ERR_MEMORY;
    }
    be->zero(ctx, b->params, nb);
    be->zero(ctx, b->grads, nb);
    if (ctx->act == LNN_F32) {
        b->wact = b->params;
        b->wact_bytes = 0;
    } else {
        b->wact_bytes = b->tab.numel * lnn_dtype_size(ctx->act);
        b->wact = be->malloc(ctx, b->wact_bytes);
        if (!b->wact) {
            lnn_set_error("out of memory allocating the %s weight copy on the %s backend", lnn_dtype_name(ctx->act),
                          be->name);
            return LNN_ERR_MEMORY;
        }
        lnn_body_sync_weights(b);
    }
    return LNN_OK;
}

void lnn_body_sync_weights(lnn_body *b) {
    if (b->wact && b->wact != (void *)b->params)
        b->ctx.be->cast(&b->ctx, b->wact, b->ctx.act, b->params, LNN_F32, b->tab.numel);
}

float *lnn_body_param(const lnn_body *b, int idx) {
    return idx < 0 || !b->params ? NULL : b->params + b->tab.t[idx].offset;
}

void *lnn_body_weight(const lnn_body *b, int idx) {
    if (idx < 0 || !b->wact) return NULL;
    return (char *)b->wact + b->tab.t[idx].offset * lnn_dtype_size(b->ctx.act);
}

float *lnn_body_grad(const lnn_body *b, int idx) {
    if (idx < 0 || !b->grads || (b->tab.t[idx].flags & LNN_TENSOR_FROZEN)) return NULL;
    return b->grads + b->tab.t[idx].offset;
}

void lnn_body_to_host_act(lnn_body *b, float *host, const void *src, size_t n) {
    lnn_ctx *ctx = &b->ctx;
    if (ctx->act == LNN_F32) {
        ctx->be->to_host(ctx, host, src, n * sizeof(float));
        return;
    }
    float *tmp = lnn_scratch(ctx, n * sizeof(float));
    if (!tmp) return;
    ctx->be->cast(ctx, tmp, LNN_F32, src, ctx->act, n);
    ctx->be->to_host(ctx, host, tmp, n * sizeof(float));
}

void lnn_body_to_device_act(lnn_body *b, void *dst, const float *host, size_t n) {
    lnn_ctx *ctx = &b->ctx;
    if (ctx->act == LNN_F32) {
        ctx->be->to_device(ctx, dst, host, n * sizeof(float));
        return;
    }
    float *tmp = lnn_scratch(ctx, n * sizeof(float));
    if (!tmp) return;
    ctx->be->to_device(ctx, tmp, host, n * sizeof(float));
    ctx->be->cast(ctx, dst, ctx->act, tmp, LNN_F32, n);
}

void lnn_body_release(lnn_body *b) {
    lnn_ctx *ctx = &b->ctx;
    if (ctx->be) {
        if (b->wact != (void *)b->params) ctx->be->free(ctx, b->wact);
        ctx->be->free(ctx, b->params);
        ctx->be->free(ctx, b->grads);
        lnn_ctx_release(ctx);
    }
    b->params = b->grads = NULL;
    b->wact = NULL;
    lnn_params_free(&b->tab);
}
