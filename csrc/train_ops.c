/* train_ops.c: heads, losses and the optimizer of fine-tuning (pure C core; see train_ops.h). */
#include "train_ops.h"

#include <math.h>
#include <string.h>

#include "lnn_blas.h"

/* ---------------------------------------------------------------- losses */

lnn_status lnn_cross_entropy_forward_backward(const float *logits, const int64_t *labels,
                                              const float *class_weight, int64_t N, int64_t C,
                                              int64_t ignore_index, float grad_scale,
                                              float *dlogits, double *loss_out) {
    if (C < 1) {
        lnn_set_error("cross_entropy: logits need at least 1 class column, got %lld", (long long)C);
        return LNN_ERR_VALUE;
    }
    /* validate labels and compute the total weight first (the gradient needs it) */
    double total_w = 0.0;
    for (int64_t i = 0; i < N; i++) {
        int64_t y = labels[i];
        if (y == ignore_index) continue;
        if (y < 0 || y >= C) {
            lnn_set_error("labels[%lld] = %lld is out of range for %lld classes; labels must be in "
                          "0..%lld (or ignore_index=%lld to skip a row)", (long long)i, (long long)y,
                          (long long)C, (long long)(C - 1), (long long)ignore_index);
            return LNN_ERR_INDEX;
        }
        total_w += class_weight ? (double)class_weight[y] : 1.0;
    }
    if (dlogits) memset(dlogits, 0, (size_t)(N * C) * sizeof(float));
    if (total_w == 0.0) { /* torch: 0/0 */
        *loss_out = NAN;
        return LNN_OK;
    }
    double loss = 0.0;
    for (int64_t i = 0; i < N; i++) {
        int64_t y = labels[i];
        if (y == ignore_index) continue;
        const float *row = logits + i * C;
        float mx = row[0];
        for (int64_t c = 1; c < C; c++) mx = row[c] > mx ? row[c] : mx;
        double sum = 0.0;
        for (int64_t c = 0; c < C; c++) sum += exp((double)row[c] - (double)mx);
        double lse = (double)mx + log(sum);
        double w = class_weight ? (double)class_weight[y] : 1.0;
        loss += w * (lse - (double)row[y]);
        if (dlogits) {
            float *drow = dlogits + i * C;
            double g = (double)grad_scale * w / total_w;
            for (int64_t c = 0; c < C; c++) {
                double p = exp((double)row[c] - lse);
                drow[c] = (float)(g * (p - (c == y ? 1.0 : 0.0)));
            }
        }
    }
    *loss_out = loss / total_w;
    return LNN_OK;
}

static inline double softplus_neg(double x) { /* log(1 + exp(-x)), stable */
    return (x < 0 ? -x : 0.0) + log1p(exp(-fabs(x)));
}

lnn_status lnn_bce_with_logits_forward_backward(const float *logits, const float *targets,
                                                const float *pos_weight, int64_t N, int64_t K,
                                                float grad_scale, float *dlogits, double *loss_out) {
    int64_t n = N * K;
    if (n == 0) {
        *loss_out = NAN; /* torch: mean of an empty tensor */
        return LNN_OK;
    }
    double loss = 0.0, g = (double)grad_scale / (double)n;
    for (int64_t i = 0; i < N; i++) {
        for (int64_t k = 0; k < K; k++) {
            int64_t j = i * K + k;
            double x = logits[j], y = targets[j];
            double lw = pos_weight ? 1.0 + ((double)pos_weight[k] - 1.0) * y : 1.0;
            loss += (1.0 - y) * x + lw * softplus_neg(x);
            if (dlogits) {
                /* d/dx = (1 - y) - lw * sigmoid(-x) */
                double sneg = x >= 0 ? exp(-x) / (1.0 + exp(-x)) : 1.0 / (1.0 + exp(x));
                dlogits[j] = (float)(g * ((1.0 - y) - lw * sneg));
            }
        }
    }
    *loss_out = loss / (double)n;
    return LNN_OK;
}

lnn_status lnn_mse_forward_backward(const float *preds, const float *targets, int64_t n,
                                    float grad_scale, float *dpreds, double *loss_out) {
    if (n == 0) {
        *loss_out = NAN;
        return LNN_OK;
    }
    double loss = 0.0, g = 2.0 * (double)grad_scale / (double)n;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)preds[i] - (double)targets[i];
        loss += d * d;
        if (dpreds) dpreds[i] = (float)(g * d);
    }
    *loss_out = loss / (double)n;
    return LNN_OK;
}

/* ---------------------------------------------------------------- linear */

void lnn_head_linear_forward(float *out, const float *x, const float *weight, const float *bias,
                             int64_t N, int64_t K, int64_t M) {
    if (N <= 0 || M <= 0) return;
    if (K > 0) {
        lnn_gemm(0, 1, (int)N, (int)M, (int)K, 1.0f, x, (int)K, weight, (int)K, 0.0f, out, (int)M);
    } else {
        memset(out, 0, (size_t)(N * M) * sizeof(float));
    }
    if (bias) {
        LNN_OMP_FOR
        for (int64_t i = 0; i < N; i++) {
            float *o = out + i * M;
            for (int64_t j = 0; j < M; j++) o[j] += bias[j];
        }
    }
}

void lnn_head_linear_backward(float *dx, float *dweight, float *dbias, const float *dout,
                              const float *x, const float *weight, int64_t N, int64_t K, int64_t M) {
    if (N <= 0 || M <= 0) return;
    if (dx && K > 0) /* (N, M) @ (M, K) */
        lnn_gemm(0, 0, (int)N, (int)K, (int)M, 1.0f, dout, (int)M, weight, (int)K, 1.0f, dx, (int)K);
    if (dweight && K > 0) /* (M, N) @ (N, K) */
        lnn_gemm(1, 0, (int)M, (int)K, (int)N, 1.0f, dout, (int)M, x, (int)K, 1.0f, dweight, (int)K);
    if (dbias) {
        LNN_OMP_FOR
        for (int64_t j = 0; j < M; j++) {
            float s = 0.0f;
            for (int64_t i = 0; i < N; i++) s += dout[i * M + j];
            dbias[j] += s;
        }
    }
}

/* ---------------------------------------------------------------- activations, dropout */

void lnn_head_relu_forward(float *out, const float *x, int64_t n) {
    LNN_OMP_FOR
    for (int64_t i = 0; i < n; i++) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void lnn_head_relu_backward(float *dx, const float *dout, const float *out, int64_t n) {
    LNN_OMP_FOR
    for (int64_t i = 0; i < n; i++) dx[i] += out[i] > 0.0f ? dout[i] : 0.0f;
}

void lnn_head_tanh_forward(float *out, const float *x, int64_t n) {
    LNN_OMP_FOR
    for (int64_t i = 0; i < n; i++) out[i] = tanhf(x[i]);
}

void lnn_head_tanh_backward(float *dx, const float *dout, const float *out, int64_t n) {
    LNN_OMP_FOR
    for (int64_t i = 0; i < n; i++) dx[i] += dout[i] * (1.0f - out[i] * out[i]);
}

static inline uint64_t splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

lnn_status lnn_head_dropout_forward(float *out, uint8_t *mask, const float *x, int64_t n, float p,
                                    uint64_t seed) {
    if (!(p >= 0.0f && p < 1.0f)) {
        lnn_set_error("dropout: p must be in [0, 1), got %g", (double)p);
        return LNN_ERR_VALUE;
    }
    float scale = 1.0f / (1.0f - p);
    uint64_t key = splitmix64(seed);
    LNN_OMP_FOR
    for (int64_t i = 0; i < n; i++) {
        /* 24 random bits -> u in [0, 1); keep when u >= p */
        float u = (float)(splitmix64(key ^ (uint64_t)i) >> 40) * (1.0f / 16777216.0f);
        uint8_t keep = p == 0.0f || u >= p;
        mask[i] = keep;
        out[i] = keep ? x[i] * scale : 0.0f;
    }
    return LNN_OK;
}

void lnn_head_dropout_backward(float *dx, const float *dout, const uint8_t *mask, int64_t n, float p) {
    float scale = 1.0f / (1.0f - p);
    LNN_OMP_FOR
    for (int64_t i = 0; i < n; i++) dx[i] += mask[i] ? dout[i] * scale : 0.0f;
}

/* ---------------------------------------------------------------- batchnorm */

lnn_status lnn_head_batchnorm1d_forward(float *out, float *save_mean, float *save_rstd,
                                        const float *x, const float *gamma, const float *beta,
                                        float *running_mean, float *running_var, int64_t N,
                                        int64_t C, int training, float momentum, float eps) {
    int batch_stats = training || !running_mean || !running_var;
    if (batch_stats && N < 2) {
        lnn_set_error("batchnorm1d: expected more than 1 value per channel when training, got a "
                      "batch of %lld; use a batch size >= 2 (or drop_last) or eval mode", (long long)N);
        return LNN_ERR_VALUE;
    }
    LNN_OMP_FOR
    for (int64_t c = 0; c < C; c++) {
        double mean, var;
        if (batch_stats) {
            double s = 0.0;
            for (int64_t i = 0; i < N; i++) s += x[i * C + c];
            mean = s / (double)N;
            double ss = 0.0;
            for (int64_t i = 0; i < N; i++) {
                double d = (double)x[i * C + c] - mean;
                ss += d * d;
            }
            var = ss / (double)N;
            if (training && running_mean && running_var) {
                double mo = momentum;
                running_mean[c] = (float)((1.0 - mo) * running_mean[c] + mo * mean);
                running_var[c] = (float)((1.0 - mo) * running_var[c] + mo * ss / (double)(N - 1));
            }
        } else {
            mean = running_mean[c];
            var = running_var[c];
        }
        float m = (float)mean;
        float rstd = (float)(1.0 / sqrt(var + (double)eps));
        save_mean[c] = m;
        save_rstd[c] = rstd;
        float g = gamma ? gamma[c] : 1.0f, b = beta ? beta[c] : 0.0f;
        for (int64_t i = 0; i < N; i++) out[i * C + c] = (x[i * C + c] - m) * rstd * g + b;
    }
    return LNN_OK;
}

void lnn_head_batchnorm1d_backward(float *dx, float *dgamma, float *dbeta, const float *dout,
                                   const float *x, const float *gamma, const float *save_mean,
                                   const float *save_rstd, int64_t N, int64_t C, int batch_stats) {
    LNN_OMP_FOR
    for (int64_t c = 0; c < C; c++) {
        float m = save_mean[c], rstd = save_rstd[c], g = gamma ? gamma[c] : 1.0f;
        double sdy = 0.0, sdyx = 0.0;
        for (int64_t i = 0; i < N; i++) {
            double dy = dout[i * C + c];
            sdy += dy;
            sdyx += dy * (double)((x[i * C + c] - m) * rstd);
        }
        if (dgamma) dgamma[c] += (float)sdyx;
        if (dbeta) dbeta[c] += (float)sdy;
        if (!dx) continue;
        if (batch_stats) {
            /* dx = g*rstd/N * (N*dy - sum(dy) - xhat * sum(dy*xhat)) */
            double k = (double)g * rstd / (double)N;
            for (int64_t i = 0; i < N; i++) {
                double xhat = (double)((x[i * C + c] - m) * rstd);
                dx[i * C + c] += (float)(k * ((double)N * dout[i * C + c] - sdy - xhat * sdyx));
            }
        } else {
            float k = g * rstd;
            for (int64_t i = 0; i < N; i++) dx[i * C + c] += dout[i * C + c] * k;
        }
    }
}

/* ---------------------------------------------------------------- pooling, concat */

static lnn_status pool_check(const int64_t *mask, int mode, const char *what) {
    if (mode != LNN_POOL_CLS && mode != LNN_POOL_MEAN && mode != LNN_POOL_FLATTEN) {
        lnn_set_error("%s: unknown pooling mode %d (0 = cls, 1 = mean, 2 = flatten)", what, mode);
        return LNN_ERR_VALUE;
    }
    if (mode == LNN_POOL_MEAN && !mask) {
        lnn_set_error("%s: mean pooling needs the attention mask", what);
        return LNN_ERR_VALUE;
    }
    return LNN_OK;
}

lnn_status lnn_head_pool_forward(float *out, const float *h, const int64_t *mask, int64_t B,
                                 int64_t T, int64_t C, int mode) {
    lnn_status st = pool_check(mask, mode, "pool_forward");
    if (st) return st;
    if (mode == LNN_POOL_CLS && T < 1) {
        lnn_set_error("pool_forward: cls pooling needs at least one token, got T = 0");
        return LNN_ERR_VALUE;
    }
    LNN_OMP_FOR
    for (int64_t b = 0; b < B; b++) {
        const float *hb = h + b * T * C;
        if (mode == LNN_POOL_CLS) {
            memcpy(out + b * C, hb, (size_t)C * sizeof(float));
        } else if (mode == LNN_POOL_FLATTEN) {
            memcpy(out + b * T * C, hb, (size_t)(T * C) * sizeof(float));
        } else {
            float *o = out + b * C;
            for (int64_t c = 0; c < C; c++) o[c] = 0.0f;
            float den = 0.0f;
            for (int64_t t = 0; t < T; t++) {
                float w = (float)mask[b * T + t];
                den += w;
                if (w == 0.0f) continue;
                for (int64_t c = 0; c < C; c++) o[c] += w * hb[t * C + c];
            }
            den = den > 1e-9f ? den : 1e-9f;
            for (int64_t c = 0; c < C; c++) o[c] /= den;
        }
    }
    return LNN_OK;
}

lnn_status lnn_head_pool_backward(float *dh, const float *dout, const int64_t *mask, int64_t B,
                                  int64_t T, int64_t C, int mode) {
    lnn_status st = pool_check(mask, mode, "pool_backward");
    if (st) return st;
    if (mode == LNN_POOL_CLS && T < 1) {
        lnn_set_error("pool_backward: cls pooling needs at least one token, got T = 0");
        return LNN_ERR_VALUE;
    }
    LNN_OMP_FOR
    for (int64_t b = 0; b < B; b++) {
        float *db = dh + b * T * C;
        if (mode == LNN_POOL_CLS) {
            const float *d = dout + b * C;
            for (int64_t c = 0; c < C; c++) db[c] += d[c];
        } else if (mode == LNN_POOL_FLATTEN) {
            const float *d = dout + b * T * C;
            for (int64_t j = 0; j < T * C; j++) db[j] += d[j];
        } else {
            const float *d = dout + b * C;
            float den = 0.0f;
            for (int64_t t = 0; t < T; t++) den += (float)mask[b * T + t];
            den = den > 1e-9f ? den : 1e-9f;
            for (int64_t t = 0; t < T; t++) {
                float w = (float)mask[b * T + t] / den;
                if (w == 0.0f) continue;
                for (int64_t c = 0; c < C; c++) db[t * C + c] += w * d[c];
            }
        }
    }
    return LNN_OK;
}

void lnn_head_concat_forward(float *out, const float *h, const float *f, int64_t B, int64_t H,
                             int64_t F) {
    LNN_OMP_FOR
    for (int64_t b = 0; b < B; b++) {
        memcpy(out + b * (H + F), h + b * H, (size_t)H * sizeof(float));
        memcpy(out + b * (H + F) + H, f + b * F, (size_t)F * sizeof(float));
    }
}

void lnn_head_concat_backward(float *dh, float *df, const float *dout, int64_t B, int64_t H,
                              int64_t F) {
    LNN_OMP_FOR
    for (int64_t b = 0; b < B; b++) {
        const float *d = dout + b * (H + F);
        if (dh)
            for (int64_t j = 0; j < H; j++) dh[b * H + j] += d[j];
        if (df)
            for (int64_t j = 0; j < F; j++) df[b * F + j] += d[H + j];
    }
}

/* ---------------------------------------------------------------- optimizer */

lnn_status lnn_segments_check(const lnn_segment *segs, int64_t nseg, int64_t n, int64_t nstate) {
    int64_t end = 0, state_end = 0;
    for (int64_t s = 0; s < nseg; s++) {
        const lnn_segment *g = &segs[s];
        if (g->offset < 0 || g->size < 0 || g->offset > n || g->size > n - g->offset) {
            lnn_set_error("segments[%lld] = (offset %lld, size %lld) does not fit in a parameter "
                          "buffer of %lld elements", (long long)s, (long long)g->offset,
                          (long long)g->size, (long long)n);
            return LNN_ERR_VALUE;
        }
        if (g->offset < end) {
            lnn_set_error("segments[%lld] (offset %lld) overlaps or precedes the previous segment "
                          "(which ends at %lld); segments must be sorted by offset and disjoint",
                          (long long)s, (long long)g->offset, (long long)end);
            return LNN_ERR_VALUE;
        }
        if (g->flags & ~(int64_t)(LNN_SEG_DECAY | LNN_SEG_FROZEN)) {
            lnn_set_error("segments[%lld] has unknown flags %lld (1 = decay, 2 = frozen)",
                          (long long)s, (long long)g->flags);
            return LNN_ERR_VALUE;
        }
        end = g->offset + g->size;
        if (nstate < 0 || (g->flags & LNN_SEG_FROZEN)) continue;
        if (g->state_offset < 0 || g->state_offset > nstate || g->size > nstate - g->state_offset) {
            lnn_set_error("segments[%lld] state range (state_offset %lld, size %lld) does not fit in "
                          "optimizer state buffers (m, v) of %lld elements", (long long)s,
                          (long long)g->state_offset, (long long)g->size, (long long)nstate);
            return LNN_ERR_VALUE;
        }
        if (g->state_offset < state_end) {
            lnn_set_error("segments[%lld] state range (state_offset %lld) overlaps or precedes the "
                          "previous trainable segment's (which ends at %lld); state ranges must be "
                          "sorted and disjoint", (long long)s, (long long)g->state_offset,
                          (long long)state_end);
            return LNN_ERR_VALUE;
        }
        state_end = g->state_offset + g->size;
    }
    return LNN_OK;
}

/* Work is cut into chunks so one parallel loop covers every segment, large or small. */
#define LNN_ADAM_CHUNK 16384

typedef struct {
    int64_t begin, end;
    int64_t delta;   /* state index = param index + delta */
    float wd_mul;    /* AdamW: 1 - lr*wd; 1 if no decay */
    float wd_l2;     /* Adam: wd added to the gradient; 0 if no decay */
    float neg_step;  /* -lr / (1 - beta1^t) */
    float bc2_sqrt;  /* sqrt(1 - beta2^t) */
} adam_chunk;

lnn_status lnn_adam_step(float *params, const float *grads, float *m, float *v, int64_t n,
                         int64_t nstate, const lnn_segment *segs, int64_t nseg, int64_t *steps,
                         const float *lr_scale, double lr, double beta1, double beta2, double eps,
                         double weight_decay, int decoupled) {
    lnn_status st = lnn_segments_check(segs, nseg, n, nstate);
    if (st) return st;
    int64_t nchunks = 0;
    for (int64_t s = 0; s < nseg; s++)
        if (!(segs[s].flags & LNN_SEG_FROZEN))
            nchunks += (segs[s].size + LNN_ADAM_CHUNK - 1) / LNN_ADAM_CHUNK;
    adam_chunk *chunks = lnn_malloc((size_t)(nchunks > 0 ? nchunks : 1) * sizeof(adam_chunk));
    if (!chunks) {
        lnn_set_error("adam_step: out of memory for %lld work chunks", (long long)nchunks);
        return LNN_ERR_MEMORY;
    }
    int64_t k = 0;
    for (int64_t s = 0; s < nseg; s++) {
        const lnn_segment *g = &segs[s];
        if (g->flags & LNN_SEG_FROZEN) continue;
        int64_t t = ++steps[s];
        /* scalars as torch computes them (Python floats = doubles) */
        double seg_lr = lr_scale ? lr * (double)lr_scale[s] : lr;
        double wd = (g->flags & LNN_SEG_DECAY) ? weight_decay : 0.0;
        double bc1 = 1.0 - pow(beta1, (double)t), bc2 = 1.0 - pow(beta2, (double)t);
        adam_chunk proto;
        proto.wd_mul = (decoupled && wd != 0.0) ? (float)(1.0 - seg_lr * wd) : 1.0f;
        proto.wd_l2 = (!decoupled && wd != 0.0) ? (float)wd : 0.0f;
        proto.neg_step = (float)(-(seg_lr / bc1));
        proto.bc2_sqrt = (float)pow(bc2, 0.5);
        proto.delta = g->state_offset - g->offset;
        for (int64_t b = g->offset; b < g->offset + g->size; b += LNN_ADAM_CHUNK) {
            chunks[k] = proto;
            chunks[k].begin = b;
            chunks[k].end = b + LNN_ADAM_CHUNK < g->offset + g->size ? b + LNN_ADAM_CHUNK
                                                                    : g->offset + g->size;
            k++;
        }
    }
    const float w1 = (float)(1.0 - beta1), b2 = (float)beta2, w2 = (float)(1.0 - beta2);
    const float epsf = (float)eps;
    LNN_OMP_FOR
    for (int64_t c = 0; c < nchunks; c++) {
        const adam_chunk ch = chunks[c];
        for (int64_t i = ch.begin; i < ch.end; i++) {
            float p = params[i], gr = grads[i];
            if (ch.wd_l2 != 0.0f) gr = gr + ch.wd_l2 * p;
            if (ch.wd_mul != 1.0f) p = p * ch.wd_mul;
            const int64_t j = i + ch.delta;
            float mi = m[j];
            /* torch lerp: weight < 0.5 ? a + w*(b-a) : b - (b-a)*(1-w) */
            mi = fabsf(w1) < 0.5f ? mi + w1 * (gr - mi) : gr - (gr - mi) * (1.0f - w1);
            float vi = v[j] * b2 + w2 * gr * gr;
            float denom = sqrtf(vi) / ch.bc2_sqrt + epsf;
            params[i] = p + ch.neg_step * mi / denom;
            m[j] = mi;
            v[j] = vi;
        }
    }
    lnn_free(chunks);
    return LNN_OK;
}

/* The trainable ranges of the buffer cut into chunks of at most LNN_ADAM_CHUNK elements, as
 * (begin, end) pairs; NULL segs = the whole buffer. Returns NULL on allocation failure. */
static int64_t *chunk_ranges(int64_t n, const lnn_segment *segs, int64_t nseg, int64_t *nchunks) {
    lnn_segment whole = {0, n, 0, 0};
    if (!segs) {
        segs = &whole;
        nseg = 1;
    }
    int64_t k = 0;
    for (int64_t s = 0; s < nseg; s++)
        if (!(segs[s].flags & LNN_SEG_FROZEN)) k += (segs[s].size + LNN_ADAM_CHUNK - 1) / LNN_ADAM_CHUNK;
    int64_t *r = lnn_malloc((size_t)(k > 0 ? k : 1) * 2 * sizeof(int64_t));
    if (!r) return NULL;
    k = 0;
    for (int64_t s = 0; s < nseg; s++) {
        if (segs[s].flags & LNN_SEG_FROZEN) continue;
        int64_t end = segs[s].offset + segs[s].size;
        for (int64_t b = segs[s].offset; b < end; b += LNN_ADAM_CHUNK) {
            r[2 * k] = b;
            r[2 * k + 1] = b + LNN_ADAM_CHUNK < end ? b + LNN_ADAM_CHUNK : end;
            k++;
        }
    }
    *nchunks = k;
    return r;
}

/* Sum of squares per chunk in f64, then added in chunk order: the result does not depend on
 * the thread count. part: nchunks doubles of scratch. */
static double norm_chunks(const float *grads, const int64_t *r, int64_t nchunks, double *part) {
    LNN_OMP_FOR
    for (int64_t c = 0; c < nchunks; c++) {
        double s = 0.0;
        for (int64_t i = r[2 * c]; i < r[2 * c + 1]; i++) s += (double)grads[i] * (double)grads[i];
        part[c] = s;
    }
    double total = 0.0;
    for (int64_t c = 0; c < nchunks; c++) total += part[c];
    return sqrt(total);
}

/* The norm and, if clip, the torch clipping over the same chunks; returns the norm (NaN if out of memory,
 * with grads untouched). */
static double norm_and_clip(float *grads, int64_t n, const lnn_segment *segs, int64_t nseg,
                            double max_norm, int clip) {
    int64_t nchunks = 0;
    int64_t *r = chunk_ranges(n, segs, nseg, &nchunks);
    double *part = lnn_malloc((size_t)(nchunks > 0 ? nchunks : 1) * sizeof(double));
    if (!r || !part) {
        lnn_free(r);
        lnn_free(part);
        lnn_set_error("grad_norm: out of memory for %lld work chunks", (long long)nchunks);
        return NAN;
    }
    double total = norm_chunks(grads, r, nchunks, part);
    if (clip) {
        /* torch: clip_coef = max_norm / (total + 1e-6) in fp32, clamped to 1.0, always applied */
        float coef = (float)max_norm / ((float)total + 1e-6f);
        if (coef > 1.0f) coef = 1.0f; /* NaN stays NaN, like torch.clamp */
        LNN_OMP_FOR
        for (int64_t c = 0; c < nchunks; c++)
            for (int64_t i = r[2 * c]; i < r[2 * c + 1]; i++) grads[i] *= coef;
    }
    lnn_free(r);
    lnn_free(part);
    return total;
}

double lnn_grad_norm(const float *grads, int64_t n, const lnn_segment *segs, int64_t nseg) {
    return norm_and_clip((float *)grads, n, segs, nseg, 0.0, 0);
}

double lnn_clip_grad_norm(float *grads, int64_t n, const lnn_segment *segs, int64_t nseg,
                          double max_norm) {
    return norm_and_clip(grads, n, segs, nseg, max_norm, 1);
}
