/* cpu/loss.c: cross-entropy, BCE-with-logits and MSE with their gradients, torch semantics (mean
 * reduction), accumulated in double precision; the loss is written to *loss (backend memory). */
#include "cpu/internal.h"

/* Softmax cross-entropy: sum_i w[y_i] * nll_i / sum_i w[y_i] over the rows with y_i != ignore_index */
void cpu_cross_entropy(lnn_ctx *ctx, double *loss_out, void *dlogits_, const void *logits_, const int64_t *labels,
                       const float *class_weight, int N, int K, int64_t ignore_index, float grad_scale) {
    float *dlogits = dlogits_;
    const float *logits = logits_;
    double total_w = 0.0; /* the gradient needs it first */
    for (int i = 0; i < N; i++)
        if (labels[i] != ignore_index) total_w += class_weight ? (double)class_weight[labels[i]] : 1.0;
    if (dlogits) memset(dlogits, 0, (size_t)N * K * sizeof(float));
    if (total_w == 0.0) { /* torch: 0/0 */
        *loss_out = NAN;
        return;
    }
    double loss = 0.0;
    for (int i = 0; i < N; i++) {
        int64_t y = labels[i];
        if (y == ignore_index) continue;
        const float *row = logits + (size_t)i * K;
        float mx = row[0];
        for (int c = 1; c < K; c++) mx = row[c] > mx ? row[c] : mx;
        double sum = 0.0;
        for (int c = 0; c < K; c++) sum += exp((double)row[c] - (double)mx);
        double lse = (double)mx + log(sum);
        double w = class_weight ? (double)class_weight[y] : 1.0;
        loss += w * (lse - (double)row[y]);
        if (dlogits) {
            float *drow = dlogits + (size_t)i * K;
            double g = (double)grad_scale * w / total_w;
            for (int c = 0; c < K; c++) {
                double p = exp((double)row[c] - lse);
                drow[c] = (float)(g * (p - (c == y ? 1.0 : 0.0)));
            }
        }
    }
    *loss_out = loss / total_w;
}

static inline double softplus_neg(double x) { /* log(1 + exp(-x)), stable */
    return (x < 0 ? -x : 0.0) + log1p(exp(-fabs(x)));
}

/* l = (1 - y) x + (1 + (pw - 1) y) softplus(-x), mean over N*K */
void cpu_bce_with_logits(lnn_ctx *ctx, double *loss_out, void *dlogits_, const void *logits_, const void *targets_,
                         const float *pos_weight, int N, int K, float grad_scale) {
    float *dlogits = dlogits_;
    const float *logits = logits_, *targets = targets_;
    size_t n = (size_t)N * K;
    if (n == 0) {
        *loss_out = NAN; /* torch: mean of an empty tensor */
        return;
    }
    double loss = 0.0, g = (double)grad_scale / (double)n;
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < K; k++) {
            size_t j = (size_t)i * K + k;
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
}

/* mean of (pred - target)^2 over n */
void cpu_mse(lnn_ctx *ctx, double *loss_out, void *dpreds_, const void *preds_, const void *targets_, size_t n,
             float grad_scale) {
    float *dpreds = dpreds_;
    const float *preds = preds_, *targets = targets_;
    if (n == 0) {
        *loss_out = NAN;
        return;
    }
    double loss = 0.0, g = 2.0 * (double)grad_scale / (double)n;
    for (size_t i = 0; i < n; i++) {
        double d = (double)preds[i] - (double)targets[i];
        loss += d * d;
        if (dpreds) dpreds[i] = (float)(g * d);
    }
    *loss_out = loss / (double)n;
}
