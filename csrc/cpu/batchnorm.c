/* cpu/batchnorm.c: BatchNorm1d of the head, torch's train/eval semantics; per-channel sums in
 * double precision, one channel per task. */
#include "cpu/internal.h"

/* out(N,C) = (x - mean) * rstd * gamma + beta per channel; batch statistics in training (or without
 * running stats, which training then updates), the running ones in eval. Needs N >= 2 for batch
 * statistics (checked at the boundary, as torch's "Expected more than 1 value per channel"). */
void cpu_batchnorm_forward(lnn_ctx *ctx, void *out_, float *save_mean, float *save_rstd, const void *x_,
                           const void *gamma_, const void *beta_, float *running_mean, float *running_var, int N,
                           int C, int training, float momentum, float eps) {
    float *out = out_;
    const float *x = x_, *gamma = gamma_, *beta = beta_;
    int batch_stats = training || !running_mean || !running_var;
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
}

/* dx(N,C) += ..., dgamma, dbeta(C) += ... from the saved per-channel mean and rstd */
void cpu_batchnorm_backward(lnn_ctx *ctx, void *dx_, float *dgamma, float *dbeta, const void *dout_, const void *x_,
                            const void *gamma_, const float *save_mean, const float *save_rstd, int N, int C,
                            int batch_stats) {
    float *dx = dx_;
    const float *dout = dout_, *x = x_, *gamma = gamma_;
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
