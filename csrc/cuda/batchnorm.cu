// csrc/cuda/batchnorm.cu: BatchNorm1d of the head, torch's train/eval semantics: a thread per channel,
// rows summed in order in double precision (the head's widths are small; deterministic).
#include "cuda/internal.cuh"

template <typename T>
__global__ void batchnorm_forward_kernel(T *out, float *save_mean, float *save_rstd, const T *x, const T *gamma,
                                         const T *beta, float *running_mean, float *running_var, int N, int C,
                                         int training, float momentum, float eps) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int batch_stats = training || !running_mean || !running_var;
    double mean, var;
    if (batch_stats) {
        double s = 0.0;
        for (int i = 0; i < N; i++) s += load_f(x + (size_t)i * C + c);
        mean = s / N;
        double ss = 0.0;
        for (int i = 0; i < N; i++) {
            double d = (double)load_f(x + (size_t)i * C + c) - mean;
            ss += d * d;
        }
        var = ss / N;
        if (training && running_mean && running_var) {
            double mo = momentum;
            running_mean[c] = (float)((1.0 - mo) * running_mean[c] + mo * mean);
            running_var[c] = (float)((1.0 - mo) * running_var[c] + mo * ss / (double)(N - 1));
        }
    } else {
        mean = running_mean[c];
        var = running_var[c];
    }
    float m = (float)mean, rstd = (float)(1.0 / sqrt(var + (double)eps));
    save_mean[c] = m;
    save_rstd[c] = rstd;
    float g = gamma ? load_f(gamma + c) : 1.f, b = beta ? load_f(beta + c) : 0.f;
    for (int i = 0; i < N; i++) store_f(out + (size_t)i * C + c, (load_f(x + (size_t)i * C + c) - m) * rstd * g + b);
}

void cuda_batchnorm_forward(lnn_ctx *ctx, void *out, float *save_mean, float *save_rstd, const void *x,
                            const void *gamma, const void *beta, float *running_mean, float *running_var, int N, int C,
                            int training, float momentum, float eps) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, batchnorm_forward_kernel<T><<<(C + 63) / 64, 64, 0, stream_of(ctx)>>>(
                                  (T *)out, save_mean, save_rstd, (const T *)x, (const T *)gamma, (const T *)beta,
                                  running_mean, running_var, N, C, training, momentum, eps));
    CUDA_LAUNCHED(ctx, "batchnorm_forward");
}

template <typename T>
__global__ void batchnorm_backward_kernel(T *dx, float *dgamma, float *dbeta, const T *dout, const T *x, const T *gamma,
                                          const float *save_mean, const float *save_rstd, int N, int C,
                                          int batch_stats) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float m = save_mean[c], rstd = save_rstd[c], g = gamma ? load_f(gamma + c) : 1.f;
    double sdy = 0.0, sdyx = 0.0;
    for (int i = 0; i < N; i++) {
        double dy = load_f(dout + (size_t)i * C + c);
        sdy += dy;
        sdyx += dy * (double)((load_f(x + (size_t)i * C + c) - m) * rstd);
    }
    if (dgamma) dgamma[c] += (float)sdyx;
    if (dbeta) dbeta[c] += (float)sdy;
    if (!dx) return;
    if (batch_stats) {
        double k = (double)g * rstd / N;
        for (int i = 0; i < N; i++) {
            size_t o = (size_t)i * C + c;
            double xh = (double)((load_f(x + o) - m) * rstd);
            store_f(dx + o, load_f(dx + o) + (float)(k * ((double)N * load_f(dout + o) - sdy - xh * sdyx)));
        }
    } else {
        float k = g * rstd;
        for (int i = 0; i < N; i++) {
            size_t o = (size_t)i * C + c;
            store_f(dx + o, load_f(dx + o) + load_f(dout + o) * k);
        }
    }
}

void cuda_batchnorm_backward(lnn_ctx *ctx, void *dx, float *dgamma, float *dbeta, const void *dout, const void *x,
                             const void *gamma, const float *save_mean, const float *save_rstd, int N, int C,
                             int batch_stats) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, batchnorm_backward_kernel<T><<<(C + 63) / 64, 64, 0, stream_of(ctx)>>>(
                                  (T *)dx, dgamma, dbeta, (const T *)dout, (const T *)x, (const T *)gamma, save_mean,
                                  save_rstd, N, C, batch_stats));
    CUDA_LAUNCHED(ctx, "batchnorm_backward");
}
