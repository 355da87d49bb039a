/* classifier.c: encoder + head + loss + optimizer, one training step over the backend op table
 * (see classifier.h). No BLAS or OpenMP here: all compute is a call into enc->be. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classifier.h"

/* ------------------------------------------------------------------ helpers */

static float *param(const lnn_classifier *c, int idx) {
    return idx < 0 ? NULL : c->enc->params + c->enc->tab.t[idx].offset;
}

static float *grad(const lnn_classifier *c, int idx) {
    if (idx < 0 || (c->enc->tab.t[idx].flags & LNN_TENSOR_FROZEN)) return NULL;
    return c->enc->grads + c->enc->tab.t[idx].offset;
}

/* width of the source activation */
static size_t source_width(const lnn_classifier *c) {
    const lnn_config *cfg = &c->enc->cfg;
    return c->spec.source == LNN_SRC_FLATTEN ? (size_t)c->spec.flatten_T * cfg->C : (size_t)cfg->C;
}

static int check_shape(const lnn_classifier *c, int idx, int ndim, int64_t d0, int64_t d1, const char *what) {
    if (idx < 0 || idx >= c->enc->tab.n) {
        lnn_set_error("head %s: tensor index %d is not in the parameter table", what, idx);
        return 0;
    }
    const lnn_tensor_info *t = &c->enc->tab.t[idx];
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        lnn_set_error("head %s: tensor %s has the wrong shape (expected %lld%s%lld)", what, t->name, (long long)d0,
                      ndim == 2 ? " x " : "", ndim == 2 ? (long long)d1 : 0LL);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ create / free */

void lnn_classifier_free(lnn_classifier *c) {
    if (!c) return;
    const lnn_backend *be = c->enc ? c->enc->be : NULL;
    if (be) {
        be->free(c->buffers);
        be->free(c->arena);
        be->free(c->m);
        be->free(c->v);
    }
    free(c->ops);
    free(c->act);
    free(c->bn_mean);
    free(c->bn_rstd);
    free(c->segs);
    free(c->steps);
    free(c);
}

lnn_status lnn_classifier_create(lnn_classifier **out, lnn_model *enc, const lnn_head_spec *spec) {
    *out = NULL;
    if (!enc || !enc->params) {
        lnn_set_error("the encoder's parameters are not allocated");
        return LNN_ERR_RUNTIME;
    }
    const lnn_config *cfg = &enc->cfg;
    if (spec->source < LNN_SRC_CLS || spec->source > LNN_SRC_POOLER) {
        lnn_set_error("unknown head source %d", spec->source);
        return LNN_ERR_VALUE;
    }
    if (spec->source == LNN_SRC_POOLER && !(cfg->model_type == LNN_BERT && cfg->pooler)) {
        lnn_set_error("the BERT head needs the encoder's pooler (BERT with pooler weights)");
        return LNN_ERR_VALUE;
    }
    if (spec->source == LNN_SRC_FLATTEN && (spec->flatten_T < 1 || spec->flatten_T > cfg->max_pos)) {
        lnn_set_error("flatten pooling needs max_length in 1..%d, got %d", cfg->max_pos, spec->flatten_T);
        return LNN_ERR_VALUE;
    }
    if (spec->n_ops < 1 || spec->n_ops > 4096 || spec->num_labels < 1 || spec->num_features < 0 ||
        spec->loss < LNN_LOSS_CE || spec->loss > LNN_LOSS_MSE) {
        lnn_set_error("bad head spec (ops %d, num_labels %d, num_features %d, loss %d)", spec->n_ops, spec->num_labels,
                      spec->num_features, spec->loss);
        return LNN_ERR_VALUE;
    }
    lnn_classifier *c = calloc(1, sizeof *c);
    if (!c) goto oom;
    c->enc = enc;
    c->spec = *spec;
    c->unpad = spec->source != LNN_SRC_FLATTEN; /* flatten reads the padded positions */
    int n = spec->n_ops;
    c->ops = malloc(sizeof *c->ops * (size_t)n);
    c->act = calloc((size_t)n + 1, sizeof *c->act);
    c->bn_mean = calloc((size_t)n, sizeof *c->bn_mean);
    c->bn_rstd = calloc((size_t)n, sizeof *c->bn_rstd);
    if (!c->ops || !c->act || !c->bn_mean || !c->bn_rstd) goto oom;
    memcpy(c->ops, spec->ops, sizeof *c->ops * (size_t)n);
    c->spec.ops = c->ops;
    /* check the chain of widths and the tensors; count the BatchNorm buffers */
    int64_t width = (int64_t)source_width(c);
    int first_head = enc->tab.n, n_concat = 0;
    size_t nbuf = 0;
    for (int i = 0; i < n; i++) {
        lnn_head_op *o = &c->ops[i];
        char what[32];
        snprintf(what, sizeof what, "op %d", i);
        if (o->in != width) {
            lnn_set_error("head op %d takes width %d but the previous layer gives %lld", i, o->in, (long long)width);
            goto bad;
        }
        switch (o->kind) {
        case LNN_HOP_LINEAR:
            if (o->out < 1 || !check_shape(c, o->w, 2, o->out, o->in, what)) goto bad;
            if (o->b >= 0 && !check_shape(c, o->b, 1, o->out, 0, what)) goto bad;
            break;
        case LNN_HOP_BATCHNORM:
            if (o->out != o->in || !(o->eps > 0.f) || !(o->momentum >= 0.f && o->momentum <= 1.f)) {
                lnn_set_error("head op %d: BatchNorm needs out == in, eps > 0, momentum in [0, 1]", i);
                goto bad;
            }
            if ((o->w >= 0 && !check_shape(c, o->w, 1, o->out, 0, what)) ||
                (o->b >= 0 && !check_shape(c, o->b, 1, o->out, 0, what)))
                goto bad;
            o->buf = nbuf;
            nbuf += 2 * (size_t)o->out;
            break;
        case LNN_HOP_DROPOUT:
            if (!(o->p >= 0.f && o->p < 1.f)) {
                lnn_set_error("head op %d: dropout p must be in [0, 1), got %g", i, (double)o->p);
                goto bad;
            }
            /* fall through */
        case LNN_HOP_RELU:
        case LNN_HOP_TANH:
            if (o->out != o->in) {
                lnn_set_error("head op %d: an elementwise op needs out == in", i);
                goto bad;
            }
            break;
        case LNN_HOP_CONCAT:
            if (spec->num_features < 1 || o->out != o->in + spec->num_features || n_concat++) {
                lnn_set_error("head op %d: concat needs num_features >= 1, out = in + num_features, and one concat", i);
                goto bad;
            }
            break;
        default:
            lnn_set_error("head op %d: unknown kind %d", i, o->kind);
            goto bad;
        }
        if (o->w >= 0 && o->w < first_head) first_head = o->w;
        if (o->b >= 0 && o->b < first_head) first_head = o->b;
        width = o->out;
    }
    if (width != spec->num_labels) {
        lnn_set_error("the head ends with width %lld but num_labels is %d", (long long)width, spec->num_labels);
        goto bad;
    }
    if (spec->num_features > 0 && !n_concat) {
        lnn_set_error("num_features = %d but the head has no concat op", spec->num_features);
        goto bad;
    }
    c->n_enc_tensors = first_head;
    c->n_buffers = nbuf;
    if (nbuf) {
        c->buffers = enc->be->malloc(nbuf * sizeof(float));
        if (!c->buffers) goto oom;
        enc->be->zero(c->buffers, nbuf * sizeof(float));
    }
    *out = c;
    return LNN_OK;
oom:
    lnn_classifier_free(c);
    lnn_set_error("out of memory creating the classifier");
    return LNN_ERR_MEMORY;
bad:
    lnn_classifier_free(c);
    return LNN_ERR_VALUE;
}

/* ------------------------------------------------------------------ arena */

static size_t layout(lnn_classifier *c, float *base, int B, int T) {
    const lnn_config *cfg = &c->enc->cfg;
    size_t off = 0, N = (size_t)B * T, C = (size_t)cfg->C, K = (size_t)c->spec.num_labels;
    size_t F = (size_t)c->spec.num_features, maxw = source_width(c);
#define TAKE(ptr, count)                                       \
    do {                                                       \
        *(void **)&(ptr) = base ? (void *)(base + off) : NULL; \
        off += ((size_t)(count) + 15) & ~(size_t)15;           \
    } while (0)
    int src = c->spec.source;
    TAKE(c->last, src == LNN_SRC_POOLER ? 0 : N * C);
    TAKE(c->dlast, src == LNN_SRC_POOLER ? 0 : N * C);
    TAKE(c->pooled, src == LNN_SRC_POOLER ? (size_t)B * C : 0);
    TAKE(c->mask64, src == LNN_SRC_MEAN ? 2 * N : 0); /* int64 */
    TAKE(c->feat, (size_t)B * F);
    TAKE(c->act[0], (src == LNN_SRC_CLS || src == LNN_SRC_MEAN) ? (size_t)B * C : 0);
    if (src == LNN_SRC_FLATTEN) c->act[0] = c->last;
    if (src == LNN_SRC_POOLER) c->act[0] = c->pooled;
    for (int i = 0; i < c->spec.n_ops; i++) {
        const lnn_head_op *o = &c->ops[i];
        TAKE(c->act[i + 1], (size_t)B * o->out);
        TAKE(c->bn_mean[i], o->kind == LNN_HOP_BATCHNORM ? (size_t)o->out : 0);
        TAKE(c->bn_rstd[i], o->kind == LNN_HOP_BATCHNORM ? (size_t)o->out : 0);
        if ((size_t)o->out > maxw) maxw = (size_t)o->out;
    }
    TAKE(c->dA, (size_t)B * maxw);
    TAKE(c->dB, (size_t)B * maxw);
    TAKE(c->labels_f, (size_t)B * K);
    TAKE(c->labels_i, 2 * (size_t)B); /* int64 */
    TAKE(c->cw, K);
#undef TAKE
    return off;
}

static lnn_status ensure_arena(lnn_classifier *c, int B, int T) {
    size_t need = layout(c, NULL, B, T);
    if (need > c->arena_floats) {
        c->enc->be->free(c->arena);
        c->arena = c->enc->be->malloc(need * sizeof(float));
        c->arena_floats = 0;
        if (!c->arena) {
            lnn_set_error("out of memory: the head activations for batch %d x sequence %d need %.1f MiB", B, T,
                          need * 4.0 / (1 << 20));
            return LNN_ERR_MEMORY;
        }
        c->arena_floats = need;
    }
    layout(c, c->arena, B, T);
    c->aB = B;
    c->aT = T;
    return LNN_OK;
}

/* ------------------------------------------------------------------ forward */

static lnn_dropout_t head_site(float p, uint64_t seed, uint32_t step, int op) {
    lnn_dropout_t d = {p, seed, step, LNN_HEAD_STREAM0 + (uint32_t)op};
    return d;
}

static lnn_status check_inputs(const lnn_classifier *c, const float *features, int B, int T) {
    if (B < 1 || T < 1) {
        lnn_set_error("input_ids must have at least one row and one position, got shape (%d, %d)", B, T);
        return LNN_ERR_VALUE;
    }
    if (c->spec.source == LNN_SRC_FLATTEN && T != c->spec.flatten_T) {
        lnn_set_error("flatten pooling needs every batch padded to max_length=%d tokens, got %d; pad with "
                      "padding='max_length'", c->spec.flatten_T, T);
        return LNN_ERR_VALUE;
    }
    if (c->spec.num_features > 0 && !features) {
        lnn_set_error("this model's head takes %d features: pass features (batch, %d)", c->spec.num_features,
                      c->spec.num_features);
        return LNN_ERR_VALUE;
    }
    if (c->spec.num_features == 0 && features) {
        lnn_set_error("features were given but this model's head has no feature input (num_features=0)");
        return LNN_ERR_VALUE;
    }
    if (features) {
        size_t n = (size_t)B * c->spec.num_features;
        for (size_t i = 0; i < n; i++)
            if (!isfinite(features[i])) {
                lnn_set_error("features[%zu, %zu] is %g; features must be finite (fill or drop NaN/inf)",
                              i / c->spec.num_features, i % c->spec.num_features, (double)features[i]);
                return LNN_ERR_VALUE;
            }
    }
    return LNN_OK;
}

static lnn_status forward(lnn_classifier *c, const int32_t *ids, const int32_t *types, const int32_t *mask,
                          const float *features, int B, int T, int train, uint64_t seed, uint32_t step) {
    lnn_model *enc = c->enc;
    const lnn_backend *be = enc->be;
    int C = enc->cfg.C, src = c->spec.source;
    lnn_status st = ensure_arena(c, B, T);
    if (st) return st;
    /* encoder: the CPU backend's memory is host memory, so the model writes straight into our arena.
     * Unpadding (and the token-0-only last layer) is switched on for our call only: the Encoder API
     * keeps HF's values at every position. */
    enc->unpad = c->unpad && src != LNN_SRC_FLATTEN;
    enc->cls_only = c->unpad && (src == LNN_SRC_CLS || src == LNN_SRC_POOLER);
    st = lnn_model_forward(enc, ids, types, mask, B, T, train, seed, step, src == LNN_SRC_POOLER ? NULL : c->last,
                           src == LNN_SRC_POOLER ? c->pooled : NULL, NULL);
    enc->unpad = enc->cls_only = 0;
    if (st) return st;
    if (src == LNN_SRC_CLS) {
        be->token0_forward(c->act[0], c->last, NULL, B, T, C);
    } else if (src == LNN_SRC_MEAN) {
        size_t N = (size_t)B * T;
        for (size_t i = 0; i < N; i++) c->mask64[i] = mask ? (mask[i] != 0) : 1;
        st = be->pool_forward(c->act[0], c->last, c->mask64, B, T, C, LNN_POOL_MEAN);
        if (st) return st;
    }
    if (features) be->to_device(c->feat, features, (size_t)B * c->spec.num_features * sizeof(float));
    for (int i = 0; i < c->spec.n_ops; i++) {
        const lnn_head_op *o = &c->ops[i];
        const float *x = c->act[i];
        float *y = c->act[i + 1];
        size_t n = (size_t)B * o->out;
        switch (o->kind) {
        case LNN_HOP_LINEAR: be->matmul_forward(y, x, param(c, o->w), param(c, o->b), B, o->in, o->out); break;
        case LNN_HOP_RELU: be->bias_act_forward(y, (float *)x, NULL, B, o->out, LNN_ACT_RELU); break;
        case LNN_HOP_TANH: be->tanh_forward(y, x, n); break;
        case LNN_HOP_DROPOUT: be->dropout_forward(y, x, n, head_site(train ? o->p : 0.f, seed, step, i)); break;
        case LNN_HOP_BATCHNORM:
            st = be->batchnorm1d_forward(y, c->bn_mean[i], c->bn_rstd[i], x, param(c, o->w), param(c, o->b),
                                         c->buffers + o->buf, c->buffers + o->buf + o->out, B, o->out, train,
                                         o->momentum, o->eps);
            if (st) return st;
            break;
        case LNN_HOP_CONCAT: be->concat_forward(y, x, c->feat, B, o->in, c->spec.num_features); break;
        }
    }
    return LNN_OK;
}

lnn_status lnn_classifier_forward(lnn_classifier *c, const int32_t *ids, const int32_t *types, const int32_t *mask,
                                  const float *features, int B, int T, int train, uint64_t seed, uint32_t step,
                                  float *logits) {
    lnn_status st = check_inputs(c, features, B, T);
    if (st) return st;
    st = forward(c, ids, types, mask, features, B, T, train, seed, step);
    if (st) return st;
    c->enc->be->to_host(logits, c->act[c->spec.n_ops], (size_t)B * c->spec.num_labels * sizeof(float));
    return LNN_OK;
}

/* ------------------------------------------------------------------ optimizer */

lnn_status lnn_classifier_configure_optimizer(lnn_classifier *c, const lnn_segment *segs, int64_t nseg,
                                              int64_t nstate, const lnn_optim_config *cfg) {
    const lnn_backend *be = c->enc->be;
    lnn_status st = lnn_segments_check(segs, nseg, (int64_t)c->enc->tab.numel, nstate);
    if (st) return st;
    if (!(cfg->lr >= 0) || !(cfg->beta1 >= 0 && cfg->beta1 < 1) || !(cfg->beta2 >= 0 && cfg->beta2 < 1) ||
        !(cfg->eps >= 0) || !(cfg->weight_decay >= 0)) {
        lnn_set_error("optimizer: need lr >= 0, betas in [0, 1), eps >= 0, weight_decay >= 0");
        return LNN_ERR_VALUE;
    }
    be->free(c->m);
    be->free(c->v);
    free(c->segs);
    free(c->steps);
    c->m = c->v = NULL;
    c->segs = NULL;
    c->steps = NULL;
    c->has_opt = 0;
    size_t ns = (size_t)(nstate > 0 ? nstate : 1);
    c->m = be->malloc(ns * sizeof(float));
    c->v = be->malloc(ns * sizeof(float));
    c->segs = malloc(sizeof *segs * (size_t)(nseg > 0 ? nseg : 1));
    c->steps = calloc((size_t)(nseg > 0 ? nseg : 1), sizeof(int64_t));
    if (!c->m || !c->v || !c->segs || !c->steps) {
        lnn_set_error("out of memory for the optimizer state (%lld floats)", (long long)nstate);
        return LNN_ERR_MEMORY;
    }
    be->zero(c->m, ns * sizeof(float));
    be->zero(c->v, ns * sizeof(float));
    memcpy(c->segs, segs, sizeof *segs * (size_t)nseg);
    c->nseg = nseg;
    c->nstate = nstate;
    c->opt = *cfg;
    c->has_opt = 1;
    return LNN_OK;
}

/* ------------------------------------------------------------------ training step */

static int encoder_trainable(const lnn_classifier *c) {
    for (int i = 0; i < c->n_enc_tensors; i++)
        if (!(c->enc->tab.t[i].flags & LNN_TENSOR_FROZEN)) return 1;
    return 0;
}

/* zero the gradients of the trainable tensors (contiguous runs at once) */
static void zero_trainable_grads(lnn_classifier *c) {
    const lnn_param_table *tab = &c->enc->tab;
    size_t run0 = 0, run1 = 0;
    for (int i = 0; i <= tab->n; i++) {
        int on = i < tab->n && !(tab->t[i].flags & LNN_TENSOR_FROZEN);
        if (on && run1 == tab->t[i].offset && run1 > run0) {
            run1 += tab->t[i].numel;
            continue;
        }
        if (run1 > run0) c->enc->be->zero(c->enc->grads + run0, (run1 - run0) * sizeof(float));
        run0 = run1 = 0;
        if (on) {
            run0 = tab->t[i].offset;
            run1 = run0 + tab->t[i].numel;
        }
    }
}

static lnn_status check_targets(const lnn_classifier *c, int B, const int64_t *labels_i, const float *targets,
                                const float *weight) {
    int K = c->spec.num_labels;
    if (c->spec.loss == LNN_LOSS_CE) {
        if (!labels_i) {
            lnn_set_error("single-label classification needs integer labels (batch,)");
            return LNN_ERR_VALUE;
        }
        for (int i = 0; i < B; i++)
            if (labels_i[i] < 0 || labels_i[i] >= K) {
                lnn_set_error("labels[%d] = %lld is out of range for num_labels=%d; labels must be in 0..%d", i,
                              (long long)labels_i[i], K, K - 1);
                return LNN_ERR_INDEX;
            }
    } else {
        if (!targets) {
            lnn_set_error("%s needs float labels (batch, %d)", c->spec.loss == LNN_LOSS_MSE ? "regression" :
                          "multi-label classification", K);
            return LNN_ERR_VALUE;
        }
        for (size_t i = 0; i < (size_t)B * K; i++)
            if (!isfinite(targets[i])) {
                lnn_set_error("labels[%zu, %zu] is %g; targets must be finite (drop or fill NaN/inf)", i / K, i % K,
                              (double)targets[i]);
                return LNN_ERR_VALUE;
            }
    }
    if (weight) {
        if (c->spec.loss == LNN_LOSS_MSE) {
            lnn_set_error("regression (MSE) takes no class_weight / pos_weight");
            return LNN_ERR_VALUE;
        }
        for (int k = 0; k < K; k++)
            if (!isfinite(weight[k]) || weight[k] < 0) {
                lnn_set_error("%s[%d] = %g; weights must be finite and >= 0",
                              c->spec.loss == LNN_LOSS_CE ? "class_weight" : "pos_weight", k, (double)weight[k]);
                return LNN_ERR_VALUE;
            }
    }
    return LNN_OK;
}

lnn_status lnn_classifier_train_step(lnn_classifier *c, const int32_t *ids, const int32_t *types,
                                     const int32_t *mask, const float *features, int B, int T,
                                     const int64_t *labels_i, const float *targets, const float *weight,
                                     uint64_t seed, uint32_t step, double *loss_out, double *gnorm_out) {
    lnn_model *enc = c->enc;
    const lnn_backend *be = enc->be;
    int K = c->spec.num_labels, n = c->spec.n_ops, C = enc->cfg.C, src = c->spec.source;
    if (!c->has_opt) {
        lnn_set_error("configure_optimizer() must be called before train_step()");
        return LNN_ERR_RUNTIME;
    }
    lnn_status st = check_inputs(c, features, B, T);
    if (!st) st = check_targets(c, B, labels_i, targets, weight);
    if (st) return st;
    st = forward(c, ids, types, mask, features, B, T, 1, seed, step);
    if (st) return st;

    /* loss -> dA = dlogits */
    const float *logits = c->act[n];
    double loss = NAN;
    float *cw = NULL;
    if (weight) {
        be->to_device(c->cw, weight, (size_t)K * sizeof(float));
        cw = c->cw;
    }
    if (c->spec.loss == LNN_LOSS_CE) {
        be->to_device(c->labels_i, labels_i, (size_t)B * sizeof(int64_t));
        st = be->cross_entropy(logits, c->labels_i, cw, B, K, -100, 1.f, c->dA, &loss);
    } else {
        be->to_device(c->labels_f, targets, (size_t)B * K * sizeof(float));
        if (c->spec.loss == LNN_LOSS_BCE) st = be->bce_with_logits(logits, c->labels_f, cw, B, K, 1.f, c->dA, &loss);
        else st = be->mse(logits, c->labels_f, (int64_t)B * K, 1.f, c->dA, &loss);
    }
    if (st) return st;

    /* backward through the head */
    zero_trainable_grads(c);
    int enc_train = encoder_trainable(c);
    float *dout = c->dA, *din = c->dB;
    for (int i = n - 1; i >= 0; i--) {
        const lnn_head_op *o = &c->ops[i];
        int need_din = i > 0 || enc_train;
        size_t nin = (size_t)B * o->in;
        const float *x = c->act[i];
        if (!need_din && (o->kind != LNN_HOP_LINEAR && o->kind != LNN_HOP_BATCHNORM)) break;
        switch (o->kind) {
        case LNN_HOP_LINEAR:
            if (need_din) be->zero(din, nin * sizeof(float));
            be->matmul_backward(need_din ? din : NULL, grad(c, o->w), grad(c, o->b), dout, x, param(c, o->w), B,
                                o->in, o->out);
            break;
        case LNN_HOP_RELU: be->bias_act_backward(din, NULL, dout, x, B, o->in, LNN_ACT_RELU); break;
        case LNN_HOP_TANH: be->tanh_backward(din, dout, c->act[i + 1], nin); break;
        case LNN_HOP_DROPOUT: be->dropout_backward(din, dout, nin, head_site(o->p, seed, step, i)); break;
        case LNN_HOP_BATCHNORM:
            if (need_din) be->zero(din, nin * sizeof(float));
            be->batchnorm1d_backward(need_din ? din : NULL, grad(c, o->w), grad(c, o->b), dout, x, param(c, o->w),
                                     c->bn_mean[i], c->bn_rstd[i], B, o->in, 1);
            break;
        case LNN_HOP_CONCAT:
            be->zero(din, nin * sizeof(float));
            be->concat_backward(din, NULL, dout, B, o->in, c->spec.num_features);
            break;
        }
        float *t = dout;
        dout = din;
        din = t;
    }
    /* backward through the source into the encoder (skipped entirely when it is frozen) */
    if (enc_train) {
        size_t NC = (size_t)B * T * C;
        if (src == LNN_SRC_POOLER) {
            st = lnn_model_backward(enc, NULL, dout);
        } else if (src == LNN_SRC_FLATTEN) {
            st = lnn_model_backward(enc, dout, NULL);
        } else {
            be->zero(c->dlast, NC * sizeof(float));
            if (src == LNN_SRC_CLS) be->token0_backward(c->dlast, dout, NULL, B, T, C);
            else st = be->pool_backward(c->dlast, dout, c->mask64, B, T, C, LNN_POOL_MEAN);
            if (!st) st = lnn_model_backward(enc, c->dlast, NULL);
        }
        if (st) return st;
    }

    /* clip, step */
    const lnn_optim_config *oc = &c->opt;
    double gnorm = -1.0;
    if (oc->max_grad_norm > 0) {
        gnorm = be->clip_grad_norm(enc->grads, (int64_t)enc->tab.numel, c->segs, c->nseg, oc->max_grad_norm);
    }
    st = be->adam_step(enc->params, enc->grads, c->m, c->v, (int64_t)enc->tab.numel, c->nstate, c->segs, c->nseg,
                       c->steps, NULL, oc->lr, oc->beta1, oc->beta2, oc->eps, oc->weight_decay, oc->decoupled);
    if (st) return st;
    *loss_out = loss;
    if (gnorm_out) *gnorm_out = gnorm;
    return LNN_OK;
}
