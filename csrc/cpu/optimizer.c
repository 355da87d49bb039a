/* cpu/optimizer.c: global-norm gradient clipping and the Adam / AdamW step over the segments of the
 * flat parameter buffer (core/optim.h). Work is cut into chunks of at most CHUNK elements so one
 * parallel loop covers every segment, large or small; sums go chunk by chunk in a fixed order, so
 * the results do not depend on the thread count. */
#include "cpu/internal.h"

#define CHUNK 16384

/* The trainable ranges cut into chunks, as (begin, end) pairs in scratch; NULL segs = the whole buffer. */
static int64_t *chunk_ranges(lnn_ctx *ctx, size_t n, const lnn_segment *segs, int nseg, int64_t *nchunks,
                             size_t extra_bytes, void **extra) {
    lnn_segment whole = {0, (int64_t)n, 0, 0};
    if (!segs) {
        segs = &whole;
        nseg = 1;
    }
    int64_t k = 0;
    for (int s = 0; s < nseg; s++)
        if (!(segs[s].flags & LNN_SEG_FROZEN)) k += (segs[s].size + CHUNK - 1) / CHUNK;
    size_t rbytes = ((size_t)(k > 0 ? k : 1) * 2 * sizeof(int64_t) + 63) & ~(size_t)63;
    int64_t *r = lnn_scratch(ctx, rbytes + extra_bytes * (size_t)(k > 0 ? k : 1));
    if (!r) return NULL;
    *extra = (char *)r + rbytes;
    k = 0;
    for (int s = 0; s < nseg; s++) {
        if (segs[s].flags & LNN_SEG_FROZEN) continue;
        int64_t end = segs[s].offset + segs[s].size;
        for (int64_t b = segs[s].offset; b < end; b += CHUNK) {
            r[2 * k] = b;
            r[2 * k + 1] = b + CHUNK < end ? b + CHUNK : end;
            k++;
        }
    }
    *nchunks = k;
    return r;
}

/* *norm = inv_scale * sqrt(sum of squares) in f64, chunk by chunk and then in chunk order (with a
 * power-of-two loss scale, exactly the norm of the unscaled gradients); the factor: torch's clip_coef =
 * max_norm / (norm + 1e-6) in fp32, clamped to 1.0 (always applied when clipping), times inv_scale */
void cpu_grad_norm_clip(lnn_ctx *ctx, double *norm, float *grads, size_t n, const lnn_segment *segs, int nseg,
                        int clip, double max_norm, float inv_scale, float *coef) {
    int64_t nchunks = 0;
    double *part = NULL;
    int64_t *r = chunk_ranges(ctx, n, segs, nseg, &nchunks, sizeof(double), (void **)&part);
    if (!r) {
        *norm = NAN;
        return;
    }
    LNN_OMP_FOR
    for (int64_t c = 0; c < nchunks; c++) {
        double s = 0.0;
        for (int64_t i = r[2 * c]; i < r[2 * c + 1]; i++) s += (double)grads[i] * (double)grads[i];
        part[c] = s;
    }
    double total = 0.0;
    for (int64_t c = 0; c < nchunks; c++) total += part[c];
    total = sqrt(total) * (double)inv_scale;
    *norm = total;
    float k = inv_scale;
    if (clip) {
        float cc = (float)max_norm / ((float)total + 1e-6f);
        if (cc > 1.0f) cc = 1.0f; /* NaN stays NaN, like torch.clamp */
        k = cc * inv_scale;
    }
    if (coef) {
        *coef = k;
        return;
    }
    if (!clip && inv_scale == 1.0f) return;
    LNN_OMP_FOR
    for (int64_t c = 0; c < nchunks; c++)
        for (int64_t i = r[2 * c]; i < r[2 * c + 1]; i++) grads[i] *= k;
}

typedef struct {
    int64_t begin, end;
    int64_t delta;   /* state index = param index + delta */
    float wd_mul;    /* AdamW: 1 - lr*wd; 1 if no decay */
    float wd_l2;     /* Adam: wd added to the gradient; 0 if no decay */
    float neg_step;  /* -lr / (1 - beta1^t) */
    float bc2_sqrt;  /* sqrt(1 - beta2^t) */
} adam_chunk;

/* torch.optim.Adam / AdamW (amsgrad=False, maximize=False, foreach), one step; the fused extras of
 * core/backend.h (the gradient factor, the skip on a non-finite norm, the activation-dtype weight copy) */
void cpu_adam_step(lnn_ctx *ctx, float *params, float *grads, float *m, float *v, size_t n, size_t nstate,
                   const lnn_segment *segs, int nseg, int64_t *steps, const float *lr_scale,
                   const lnn_optim_config *cfg, const float *gcoef, const double *skip_norm, void *wact) {
    if (skip_norm && !isfinite(*skip_norm)) return; /* GradScaler: inf / NaN gradients, no step */
    const float gk = gcoef ? *gcoef : 1.0f;
    float *wf = wact && wact != (void *)params && ctx->act == LNN_F32 ? wact : NULL;
    uint16_t *wh = wact && lnn_dtype_is_half(ctx->act) ? wact : NULL;
    int wbf = ctx->act == LNN_BF16;
    int64_t nchunks = 0;
    for (int s = 0; s < nseg; s++)
        if (!(segs[s].flags & LNN_SEG_FROZEN)) nchunks += (segs[s].size + CHUNK - 1) / CHUNK;
    adam_chunk *chunks = lnn_scratch(ctx, (size_t)(nchunks > 0 ? nchunks : 1) * sizeof(adam_chunk));
    if (!chunks) return;
    int64_t k = 0;
    for (int s = 0; s < nseg; s++) {
        const lnn_segment *g = &segs[s];
        if (g->flags & LNN_SEG_FROZEN) continue;
        int64_t t = ++steps[s];
        /* scalars as torch computes them (Python floats = doubles) */
        double seg_lr = lr_scale ? cfg->lr * (double)lr_scale[s] : cfg->lr;
        double wd = (g->flags & LNN_SEG_DECAY) ? cfg->weight_decay : 0.0;
        double bc1 = 1.0 - pow(cfg->beta1, (double)t), bc2 = 1.0 - pow(cfg->beta2, (double)t);
        adam_chunk proto;
        proto.wd_mul = (cfg->decoupled && wd != 0.0) ? (float)(1.0 - seg_lr * wd) : 1.0f;
        proto.wd_l2 = (!cfg->decoupled && wd != 0.0) ? (float)wd : 0.0f;
        proto.neg_step = (float)(-(seg_lr / bc1));
        proto.bc2_sqrt = (float)pow(bc2, 0.5);
        proto.delta = g->state_offset - g->offset;
        for (int64_t b = g->offset; b < g->offset + g->size; b += CHUNK) {
            chunks[k] = proto;
            chunks[k].begin = b;
            chunks[k].end = b + CHUNK < g->offset + g->size ? b + CHUNK : g->offset + g->size;
            k++;
        }
    }
    const float w1 = (float)(1.0 - cfg->beta1), b2 = (float)cfg->beta2, w2 = (float)(1.0 - cfg->beta2);
    const float epsf = (float)cfg->eps;
    LNN_OMP_FOR
    for (int64_t c = 0; c < nchunks; c++) {
        const adam_chunk ch = chunks[c];
        for (int64_t i = ch.begin; i < ch.end; i++) {
            float p = params[i], gr = grads[i];
            if (gcoef) grads[i] = gr = gr * gk; /* the clip / unscale pass, fused */
            if (ch.wd_l2 != 0.0f) gr = gr + ch.wd_l2 * p;
            if (ch.wd_mul != 1.0f) p = p * ch.wd_mul;
            const int64_t j = i + ch.delta;
            float mi = m[j];
            /* torch lerp: weight < 0.5 ? a + w*(b-a) : b - (b-a)*(1-w) */
            mi = fabsf(w1) < 0.5f ? mi + w1 * (gr - mi) : gr - (gr - mi) * (1.0f - w1);
            float vi = v[j] * b2 + w2 * gr * gr;
            float denom = sqrtf(vi) / ch.bc2_sqrt + epsf;
            params[i] = p = p + ch.neg_step * mi / denom;
            m[j] = mi;
            v[j] = vi;
            if (wf) wf[i] = p;
            if (wh) wh[i] = wbf ? lnn_f32_to_bf16(p) : lnn_f32_to_f16(p);
        }
    }
}
