/* models/classifier.c: body + head + loss + optimizer, one training step over the backend op table
 * (models/classifier.h). No BLAS or OpenMP here: all compute is a call into the backend; host
 * memory is touched at the boundary only (inputs, labels and features in; logits and the step's
 * two scalars out). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "models/classifier.h"

const char *const lnn_source_names[LNN_NSRC] = {"cls", "mean", "flatten", "pooler"};
const char *const lnn_head_op_names[LNN_NHOP] = {"linear", "relu", "tanh", "dropout", "batchnorm", "concat"};
const char *const lnn_loss_names[LNN_NLOSS] = {"single_label_classification", "multi_label_classification",
                                               "regression"};

const char *const lnn_window_pool_names[LNN_NSEGPOOL] = {"mean", "max", "attention"};

int lnn_name_index(const char *const *names, int n, const char *s) {
    for (int i = 0; s && i < n; i++)
        if (strcmp(names[i], s) == 0) return i;
    return -1;
}

/* ------------------------------------------------------------------ helpers */

static lnn_ctx *ctx_of(const lnn_classifier *c) { return &c->body->ctx; }

/* width of the source activation */
static size_t source_width(const lnn_classifier *c) {
    size_t C = (size_t)c->body->width;
    return c->spec.source == LNN_SRC_FLATTEN ? (size_t)c->spec.flatten_T * C : C;
}

static int check_shape(const lnn_classifier *c, int idx, int ndim, int64_t d0, int64_t d1, const char *what) {
    if (idx < 0 || idx >= c->body->tab.n) {
        lnn_set_error("head %s: tensor index %d is not in the parameter table", what, idx);
        return 0;
    }
    const lnn_tensor_info *t = &c->body->tab.t[idx];
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        lnn_set_error("head %s: tensor %s has the wrong shape (expected %lld%s%lld)", what, t->name, (long long)d0,
                      ndim == 2 ? " x " : "", ndim == 2 ? (long long)d1 : 0LL);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ create / free */

static void free_optimizer(lnn_classifier *c) {
    lnn_ctx *ctx = ctx_of(c);
    ctx->be->free(ctx, c->m);
    ctx->be->free(ctx, c->v);
    ctx->be->free(ctx, c->steps);
    ctx->be->free(ctx, c->dsegs);
    free(c->segs);
    c->m = c->v = NULL;
    c->steps = NULL;
    c->segs = c->dsegs = NULL;
    c->has_opt = 0;
}

void lnn_classifier_free(lnn_classifier *c) {
    if (!c) return;
    if (c->body && c->body->ctx.be) {
        lnn_ctx *ctx = ctx_of(c);
        ctx->be->free(ctx, c->buffers);
        ctx->be->free(ctx, c->arena);
        ctx->be->free(ctx, c->scalars);
        free_optimizer(c);
    }
    free(c->ops);
    free(c->act);
    free(c->bn_mean);
    free(c->bn_rstd);
    free(c);
}

lnn_status lnn_classifier_create(lnn_classifier **out, lnn_body *body, const lnn_head_spec *spec) {
    *out = NULL;
    if (!body || !body->params) {
        lnn_set_error("the body's parameters are not allocated");
        return LNN_ERR_RUNTIME;
    }
    if (spec->source < 0 || spec->source >= LNN_NSRC) {
        lnn_set_error("unknown head source %d", spec->source);
        return LNN_ERR_VALUE;
    }
    if (spec->source == LNN_SRC_POOLER && !body->has_pooled) {
        lnn_set_error("the BERT head needs the encoder's pooler (BERT with pooler weights)");
        return LNN_ERR_VALUE;
    }
    if (spec->source == LNN_SRC_FLATTEN && spec->flatten_T < 1) {
        lnn_set_error("flatten pooling needs max_length >= 1, got %d", spec->flatten_T);
        return LNN_ERR_VALUE;
    }
    if (spec->window_pool < -1 || spec->window_pool >= LNN_NSEGPOOL) {
        lnn_set_error("unknown window pooling %d", spec->window_pool);
        return LNN_ERR_VALUE;
    }
    if (spec->window_pool >= 0 && spec->source == LNN_SRC_FLATTEN) {
        lnn_set_error("windows cannot be pooled with pooling='flatten' (its width depends on the window length); "
                      "use pooling 'cls' or 'mean'");
        return LNN_ERR_VALUE;
    }
    if (spec->n_ops < 1 || spec->n_ops > 4096 || spec->num_labels < 1 || spec->num_features < 0 || spec->loss < 0 ||
        spec->loss >= LNN_NLOSS) {
        lnn_set_error("bad head spec (ops %d, num_labels %d, num_features %d, loss %d)", spec->n_ops, spec->num_labels,
                      spec->num_features, spec->loss);
        return LNN_ERR_VALUE;
    }
    lnn_classifier *c = calloc(1, sizeof *c);
    if (!c) goto oom;
    c->body = body;
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
    /* the scorer of attention pooling; the chain of widths and the tensors; the BatchNorm buffers */
    int64_t width = (int64_t)source_width(c);
    if (spec->window_pool == LNN_SEGPOOL_ATTN) {
        if (!check_shape(c, spec->scorer, 2, 1, width, "window scorer")) goto bad;
    } else {
        c->spec.scorer = -1;
    }
    int n_concat = 0;
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
    lnn_ctx *ctx = &body->ctx;
    c->n_buffers = nbuf;
    c->scalars = ctx->be->malloc(ctx, 3 * sizeof(double));
    if (!c->scalars) goto oom;
    if (nbuf) {
        c->buffers = ctx->be->malloc(ctx, nbuf * sizeof(float));
        if (!c->buffers) goto oom;
        ctx->be->zero(ctx, c->buffers, nbuf * sizeof(float));
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

/* B windows (rows of the batch), S songs (the head's rows; S = B without windows) */
static void layout(lnn_classifier *c, lnn_plan *p, int B, int S) {
    lnn_dtype A = ctx_of(c)->act;
    size_t K = (size_t)c->spec.num_labels, F = (size_t)c->spec.num_features, maxw = source_width(c);
    int src = c->spec.source, win = c->spec.window_pool >= 0, att = c->spec.window_pool == LNN_SEGPOOL_ATTN;
#define TAKE(ptr, count, dt) lnn_take(p, (void **)&(ptr), (count), (dt))
    TAKE(c->feat, (size_t)S * F, A);
    TAKE(c->src, (src == LNN_SRC_CLS || src == LNN_SRC_MEAN) ? (size_t)B * maxw : 0, A);
    TAKE(c->wpool, win ? (size_t)S * maxw : 0, A);
    TAKE(c->dsrc, win ? (size_t)B * maxw : 0, A);
    TAKE(c->scores, att ? (size_t)B : 0, A);
    TAKE(c->dscores, att ? (size_t)B : 0, A);
    TAKE(c->seg_off, win ? (size_t)S + 1 : 0, LNN_I32);
    for (int i = 0; i < c->spec.n_ops; i++) {
        const lnn_head_op *o = &c->ops[i];
        int bn = o->kind == LNN_HOP_BATCHNORM;
        TAKE(c->act[i + 1], (size_t)S * o->out, A);
        TAKE(c->bn_mean[i], bn ? (size_t)o->out : 0, LNN_F32);
        TAKE(c->bn_rstd[i], bn ? (size_t)o->out : 0, LNN_F32);
        if ((size_t)o->out > maxw) maxw = (size_t)o->out;
    }
    TAKE(c->dA, (size_t)S * maxw, A);
    TAKE(c->dB, (size_t)S * maxw, A);
    TAKE(c->labels_f, (size_t)S * K, A);
    TAKE(c->labels_i, (size_t)S, LNN_I64);
    TAKE(c->cw, K, LNN_F32);
#undef TAKE
}

static lnn_status ensure_arena(lnn_classifier *c, int B, int S) {
    lnn_plan p = lnn_plan_begin(NULL);
    layout(c, &p, B, S);
    if (p.used > c->arena_bytes || !c->arena) {
        char what[96];
        snprintf(what, sizeof what, "the head activations for a batch of %d rows (%d songs)", B, S);
        lnn_status st = lnn_reserve(ctx_of(c), &c->arena, &c->arena_bytes, p.used, what);
        if (st) return st;
    }
    p = lnn_plan_begin(c->arena);
    layout(c, &p, B, S);
    return LNN_OK;
}

/* ------------------------------------------------------------------ forward */

static lnn_dropout_t head_site(float p, uint64_t seed, uint32_t step, int op) {
    lnn_dropout_t d = {p, seed, step, LNN_HEAD_STREAM0 + (uint32_t)op};
    return d;
}

static lnn_status check_inputs(const lnn_classifier *c, const lnn_batch *in, const float *features) {
    int B = in->B, T = in->T;
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
    return LNN_OK;
}

lnn_status lnn_classifier_songs(const lnn_classifier *c, const int32_t *windows_of, int B, int *songs) {
    *songs = B;
    if (!windows_of) return LNN_OK;
    if (c->spec.window_pool < 0) {
        lnn_set_error("windows_of was given but this model does not pool windows; create it with "
                      "long_text='windows' (and a window_pooling)");
        return LNN_ERR_VALUE;
    }
    if (B < 1 || windows_of[0] != 0) {
        lnn_set_error("windows_of[0] = %d: the first window must belong to song 0 (windows_of numbers the songs "
                      "0, 1, ... in order, as HF's overflow_to_sample_mapping)", B < 1 ? -1 : windows_of[0]);
        return LNN_ERR_INDEX;
    }
    for (int i = 1; i < B; i++)
        if (windows_of[i] < windows_of[i - 1]) {
            lnn_set_error("windows_of is not sorted: windows_of[%d] = %d follows windows_of[%d] = %d; pass each "
                          "song's windows together, songs in order (HF's overflow_to_sample_mapping)", i,
                          windows_of[i], i - 1, windows_of[i - 1]);
            return LNN_ERR_VALUE;
        }
    for (int i = 1; i < B; i++) {
        if (windows_of[i] - windows_of[i - 1] > 1) {
            lnn_set_error("windows_of[%d] = %d after %d: song %d has no window; number the songs 0, 1, ... without "
                          "gaps (every song has at least one window)", i, windows_of[i], windows_of[i - 1],
                          windows_of[i - 1] + 1);
            return LNN_ERR_INDEX;
        }
    }
    *songs = windows_of[B - 1] + 1;
    return LNN_OK;
}

/* The source's reads of the body and the body's forward, the windows pooled per song, then the head
 * (S rows). */
static lnn_status forward(lnn_classifier *c, const lnn_batch *in, const int32_t *windows_of, int S,
                          const float *features, int train, uint64_t seed, uint32_t step) {
    lnn_body *body = c->body;
    lnn_ctx *ctx = &body->ctx;
    const lnn_backend *be = ctx->be;
    int B = in->B, C = body->width, src = c->spec.source, wp = c->spec.window_pool;
    static const unsigned reads[LNN_NSRC] = {LNN_READ_TOKEN0, LNN_READ_ROWS, LNN_READ_ROWS | LNN_READ_PADDED,
                                             LNN_READ_POOLED | LNN_READ_TOKEN0};
    lnn_status st = ensure_arena(c, B, S);
    if (st) return st;
    st = body->ops->forward(body, in, train, seed, step, c->unpad, reads[src]);
    if (st) return st;
    if (src == LNN_SRC_CLS) be->token0_forward(ctx, c->src, body->out, body->rows, C);
    else if (src == LNN_SRC_MEAN) be->mean_pool_forward(ctx, c->src, body->out, body->mask, body->rows, C);
    else if (src == LNN_SRC_FLATTEN) c->src = body->out; /* (B*T, C) padded = (B, T*C) */
    else c->src = body->pooled;
    c->act[0] = c->src;
    if (wp >= 0) { /* (B windows, C) -> (S songs, C) */
        int32_t *off = malloc(sizeof *off * ((size_t)S + 1));
        if (!off) {
            lnn_set_error("out of memory for the offsets of %d songs", S);
            return LNN_ERR_MEMORY;
        }
        off[0] = 0;
        for (int i = 0, s = 0; i < B; i++)
            if (i == B - 1 || !windows_of || windows_of[i + 1] != windows_of[i]) off[++s] = i + 1; /* NULL: a song a row */
        be->to_device(ctx, c->seg_off, off, sizeof *off * ((size_t)S + 1));
        free(off); /* to_device has copied it (host -> backend copies are staged) */
        if (wp == LNN_SEGPOOL_ATTN)
            be->matmul_forward(ctx, c->scores, c->src, lnn_body_weight(body, c->spec.scorer), NULL, B, C, 1);
        be->segment_pool_forward(ctx, c->wpool, c->src, c->scores, c->seg_off, S, B, C, wp);
        c->act[0] = c->wpool;
    }
    if (features) lnn_body_to_device_act(body, c->feat, features, (size_t)S * c->spec.num_features);
    for (int i = 0; i < c->spec.n_ops; i++) {
        const lnn_head_op *o = &c->ops[i];
        const void *x = c->act[i];
        void *y = c->act[i + 1];
        size_t n = (size_t)S * o->out;
        switch (o->kind) {
        case LNN_HOP_LINEAR:
            be->matmul_forward(ctx, y, x, lnn_body_weight(body, o->w), lnn_body_weight(body, o->b), S, o->in, o->out);
            break;
        case LNN_HOP_RELU: /* no bias: x is read only */
            be->bias_act_forward(ctx, y, (void *)x, NULL, S, o->out, LNN_ACT_RELU);
            break;
        case LNN_HOP_TANH: be->tanh_forward(ctx, y, x, n); break;
        case LNN_HOP_DROPOUT:
            be->dropout_forward(ctx, y, x, lnn_rows_plain(S), o->out, head_site(train ? o->p : 0.f, seed, step, i));
            break;
        case LNN_HOP_BATCHNORM:
            be->batchnorm_forward(ctx, y, c->bn_mean[i], c->bn_rstd[i], x, lnn_body_weight(body, o->w),
                                  lnn_body_weight(body, o->b), c->buffers + o->buf, c->buffers + o->buf + o->out, S,
                                  o->out, train, o->momentum, o->eps);
            break;
        case LNN_HOP_CONCAT: be->concat_forward(ctx, y, x, c->feat, S, o->in, c->spec.num_features); break;
        }
    }
    return LNN_OK;
}

lnn_status lnn_classifier_forward(lnn_classifier *c, const lnn_batch *in, const int32_t *windows_of,
                                  const float *features, int train, uint64_t seed, uint32_t step, float *logits) {
    int S = 0;
    lnn_status st = check_inputs(c, in, features);
    if (!st) st = lnn_classifier_songs(c, windows_of, in->B, &S);
    if (!st) st = forward(c, in, windows_of, S, features, train, seed, step);
    if (st) return st;
    lnn_ctx *ctx = ctx_of(c);
    lnn_body_to_host_act(c->body, logits, c->act[c->spec.n_ops], (size_t)S * c->spec.num_labels);
    return lnn_sync(ctx);
}

/* ------------------------------------------------------------------ optimizer */

lnn_status lnn_classifier_configure_optimizer(lnn_classifier *c, const lnn_segment *segs, int nseg, int64_t nstate,
                                              const lnn_optim_config *cfg) {
    lnn_ctx *ctx = ctx_of(c);
    const lnn_backend *be = ctx->be;
    lnn_status st = lnn_segments_check(segs, nseg, (int64_t)c->body->tab.numel, nstate);
    if (!st) st = lnn_optim_config_check(cfg);
    if (st) return st;
    free_optimizer(c);
    size_t ns = (size_t)(nstate > 0 ? nstate : 1), nsg = (size_t)(nseg > 0 ? nseg : 1);
    c->m = be->malloc(ctx, ns * sizeof(float));
    c->v = be->malloc(ctx, ns * sizeof(float));
    c->steps = be->malloc(ctx, nsg * sizeof(int64_t));
    c->dsegs = be->malloc(ctx, nsg * sizeof(lnn_segment));
    c->segs = malloc(nsg * sizeof(lnn_segment));
    if (!c->m || !c->v || !c->steps || !c->dsegs || !c->segs) {
        free_optimizer(c);
        lnn_set_error("out of memory for the optimizer state (%lld floats)", (long long)nstate);
        return LNN_ERR_MEMORY;
    }
    be->zero(ctx, c->m, ns * sizeof(float));
    be->zero(ctx, c->v, ns * sizeof(float));
    be->zero(ctx, c->steps, nsg * sizeof(int64_t));
    memcpy(c->segs, segs, sizeof *segs * (size_t)nseg);
    be->to_device(ctx, c->dsegs, segs, sizeof *segs * (size_t)nseg);
    c->nseg = nseg;
    c->nstate = nstate;
    c->opt = *cfg;
    c->has_opt = 1;
    return lnn_sync(ctx);
}

/* ------------------------------------------------------------------ training step */

/* zero the gradients of the trainable tensors (contiguous runs at once) */
static void zero_trainable_grads(lnn_classifier *c) {
    const lnn_param_table *tab = &c->body->tab;
    lnn_ctx *ctx = ctx_of(c);
    size_t run0 = 0, run1 = 0;
    for (int i = 0; i <= tab->n; i++) {
        int on = i < tab->n && !(tab->t[i].flags & LNN_TENSOR_FROZEN);
        if (on && run1 == tab->t[i].offset && run1 > run0) {
            run1 += tab->t[i].numel;
            continue;
        }
        if (run1 > run0) ctx->be->zero(ctx, c->body->grads + run0, (run1 - run0) * sizeof(float));
        run0 = run1 = 0;
        if (on) {
            run0 = tab->t[i].offset;
            run1 = run0 + tab->t[i].numel;
        }
    }
}

static lnn_status check_targets(const lnn_classifier *c, int B, const int64_t *labels_i, const float *targets) {
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
    } else if (!targets) {
        lnn_set_error("%s needs float labels (batch, %d)", c->spec.loss == LNN_LOSS_MSE ? "regression" :
                      "multi-label classification", K);
        return LNN_ERR_VALUE;
    }
    return LNN_OK;
}

lnn_status lnn_classifier_train_step(lnn_classifier *c, const lnn_batch *in, const int32_t *windows_of,
                                     const float *features, const int64_t *labels_i, const float *targets,
                                     const float *weight, uint64_t seed, uint32_t step, double *loss_out,
                                     double *gnorm_out) {
    lnn_body *body = c->body;
    lnn_ctx *ctx = &body->ctx;
    const lnn_backend *be = ctx->be;
    int B = in->B, S = 0, K = c->spec.num_labels, n = c->spec.n_ops, C = body->width, src = c->spec.source;
    int wp = c->spec.window_pool;
    if (!c->has_opt) {
        lnn_set_error("configure_optimizer() must be called before train_step()");
        return LNN_ERR_RUNTIME;
    }
    lnn_status st = check_inputs(c, in, features);
    if (!st) st = lnn_classifier_songs(c, windows_of, B, &S);
    if (!st) st = check_targets(c, S, labels_i, targets);
    LNN_ASSERT(!weight || c->spec.loss != LNN_LOSS_MSE);
    if (!st) st = forward(c, in, windows_of, S, features, 1, seed, step);
    if (st) return st;

    /* loss -> dA = dlogits (times the loss scale) */
    lnn_loss_scaler *ls = &c->scaler;
    float gs = ls->enabled ? ls->scale : 1.f;
    const void *logits = c->act[n];
    float *cw = NULL;
    if (weight) {
        be->to_device(ctx, c->cw, weight, (size_t)K * sizeof(float));
        cw = c->cw;
    }
    if (c->spec.loss == LNN_LOSS_CE) {
        be->to_device(ctx, c->labels_i, labels_i, (size_t)S * sizeof(int64_t));
        be->cross_entropy(ctx, &c->scalars[0], c->dA, logits, c->labels_i, cw, S, K, -100, gs);
    } else {
        lnn_body_to_device_act(body, c->labels_f, targets, (size_t)S * K);
        if (c->spec.loss == LNN_LOSS_BCE) be->bce_with_logits(ctx, &c->scalars[0], c->dA, logits, c->labels_f, cw, S, K, gs);
        else be->mse(ctx, &c->scalars[0], c->dA, logits, c->labels_f, (size_t)S * K, gs);
    }

    /* backward through the head (S rows) */
    zero_trainable_grads(c);
    int body_train = body->ops->trainable(body);
    float *dscorer = wp == LNN_SEGPOOL_ATTN ? lnn_body_grad(body, c->spec.scorer) : NULL;
    size_t esz = lnn_dtype_size(ctx->act);
    void *dout = c->dA, *din = c->dB;
    for (int i = n - 1; i >= 0; i--) {
        const lnn_head_op *o = &c->ops[i];
        int need_din = i > 0 || body_train || dscorer;
        size_t nin = (size_t)S * o->in;
        const void *x = c->act[i];
        if (!need_din && (o->kind != LNN_HOP_LINEAR && o->kind != LNN_HOP_BATCHNORM)) break;
        switch (o->kind) {
        case LNN_HOP_LINEAR:
            if (need_din) be->zero(ctx, din, nin * esz);
            be->matmul_backward(ctx, need_din ? din : NULL, lnn_body_grad(body, o->w), lnn_body_grad(body, o->b), dout,
                                x, lnn_body_weight(body, o->w), S, o->in, o->out);
            break;
        case LNN_HOP_RELU: be->bias_act_backward(ctx, din, NULL, dout, x, S, o->in, LNN_ACT_RELU); break;
        case LNN_HOP_TANH: be->tanh_backward(ctx, din, dout, c->act[i + 1], nin); break;
        case LNN_HOP_DROPOUT:
            be->dropout_backward(ctx, din, dout, lnn_rows_plain(S), o->in, head_site(o->p, seed, step, i));
            break;
        case LNN_HOP_BATCHNORM:
            if (need_din) be->zero(ctx, din, nin * esz);
            be->batchnorm_backward(ctx, need_din ? din : NULL, lnn_body_grad(body, o->w), lnn_body_grad(body, o->b),
                                   dout, x, lnn_body_weight(body, o->w), c->bn_mean[i], c->bn_rstd[i], S, o->in, 1);
            break;
        case LNN_HOP_CONCAT:
            be->zero(ctx, din, nin * esz);
            be->concat_backward(ctx, din, NULL, dout, S, o->in, c->spec.num_features);
            break;
        }
        void *t = dout;
        dout = din;
        din = t;
    }
    /* backward through the window pooling: (S songs, C) -> (B windows, C), and into the scorer */
    if (wp >= 0 && (body_train || dscorer)) {
        void *dx = body_train ? c->dsrc : NULL;
        if (dx) be->zero(ctx, dx, (size_t)B * C * esz);
        be->segment_pool_backward(ctx, dx, dscorer ? c->dscores : NULL, dout, c->src, c->scores, c->seg_off, S, B, C,
                                  wp);
        if (dscorer) /* scores = src @ w^T: dsrc += dscores w, dw += dscores^T src */
            be->matmul_backward(ctx, dx, dscorer, NULL, c->dscores, c->src, lnn_body_weight(body, c->spec.scorer), B,
                                C, 1);
        dout = c->dsrc;
    }
    /* backward through the source into the body (skipped entirely when it is frozen) */
    if (body_train) {
        if (src == LNN_SRC_POOLER) {
            st = body->ops->backward(body, 0, dout);
        } else {
            if (src == LNN_SRC_FLATTEN) {
                be->copy(ctx, body->dout, dout, (size_t)body->rows.N * C * esz);
            } else {
                body->ops->clear_dout(body);
                if (src == LNN_SRC_CLS) be->token0_backward(ctx, body->dout, dout, body->rows, C);
                else be->mean_pool_backward(ctx, body->dout, dout, body->mask, body->rows, C);
            }
            st = body->ops->backward(body, 1, NULL);
        }
        if (st) return st;
    }

    /* unscale and clip, step (fused: the factor applied and the weight copy written inside the step;
     * skipped on non-finite gradients when scaling), and the step's scalars back to the host */
    const lnn_optim_config *oc = &c->opt;
    int clip = oc->max_grad_norm > 0, fused = (ctx->paths & LNN_PATH_FUSED_OPT) != 0;
    float *coef = fused && (clip || ls->enabled) ? (float *)&c->scalars[2] : NULL;
    if (clip || ls->enabled)
        be->grad_norm_clip(ctx, &c->scalars[1], body->grads, body->tab.numel, c->dsegs, c->nseg, clip,
                           oc->max_grad_norm, ls->enabled ? (float)(1.0 / (double)ls->scale) : 1.f, coef);
    void *wact = fused && body->wact != (void *)body->params ? body->wact : NULL;
    be->adam_step(ctx, body->params, body->grads, c->m, c->v, body->tab.numel, (size_t)c->nstate, c->dsegs, c->nseg,
                  c->steps, NULL, oc, coef, ls->enabled ? &c->scalars[1] : NULL, wact);
    if (!wact) lnn_body_sync_weights(body);
    double sc[2];
    be->to_host(ctx, sc, c->scalars, sizeof sc);
    st = lnn_sync(ctx);
    if (st) return st;
    *loss_out = sc[0];
    if (gnorm_out) *gnorm_out = clip ? sc[1] : -1.0;
    if (ls->enabled) lnn_loss_scaler_update(ls, !isfinite(sc[1]));
    return LNN_OK;
}

void lnn_loss_scaler_update(lnn_loss_scaler *s, int found_inf) {
    s->skipped = found_inf;
    if (found_inf) {
        s->scale *= s->backoff;
        s->tracker = 0;
    } else if (s->tracker + 1 == s->interval) {
        float grown = s->scale * s->growth;
        if (isfinite(grown)) s->scale = grown;
        s->tracker = 0;
    } else {
        s->tracker++;
    }
}
