// csrc/cuda/loss.cu: cross-entropy, BCE-with-logits and MSE, torch semantics (mean reduction), in double
// precision; one block per loss with a fixed assignment of rows to threads and a fixed-order block sum, so
// the loss is the same bits on every run. The loss goes to *loss (device memory).
#include <float.h>

#include "cuda/internal.cuh"

#define LOSS_THREADS 256

// sum_i w[y_i] nll_i / sum_i w[y_i] over the rows with y_i != ignore_index; dlogits written
template <typename T>
__global__ void cross_entropy_kernel(double *loss, T *dlogits, const T *logits, const int64_t *labels,
                                     const float *class_weight, int N, int K, int64_t ignore_index, float grad_scale) {
    __shared__ double sh[32];
    double tw = 0.0;
    for (int i = threadIdx.x; i < N; i += blockDim.x)
        if (labels[i] != ignore_index) tw += class_weight ? (double)class_weight[labels[i]] : 1.0;
    tw = block_sum(tw, sh);
    double acc = 0.0;
    for (int i = threadIdx.x; i < N; i += blockDim.x) {
        int64_t y = labels[i];
        const T *row = logits + (size_t)i * K;
        T *drow = dlogits ? dlogits + (size_t)i * K : NULL;
        if (y == ignore_index || tw == 0.0) {
            if (drow)
                for (int c = 0; c < K; c++) store_f(drow + c, 0.f);
            continue;
        }
        float mx = load_f(row);
        for (int c = 1; c < K; c++) mx = fmaxf(mx, load_f(row + c));
        double s = 0.0;
        for (int c = 0; c < K; c++) s += exp((double)load_f(row + c) - (double)mx);
        double lse = (double)mx + log(s), w = class_weight ? (double)class_weight[y] : 1.0;
        acc += w * (lse - (double)load_f(row + y));
        if (drow) {
            double g = (double)grad_scale * w / tw;
            for (int c = 0; c < K; c++)
                store_f(drow + c, (float)(g * (exp((double)load_f(row + c) - lse) - (c == y ? 1.0 : 0.0))));
        }
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) *loss = tw == 0.0 ? (double)NAN : acc / tw; // torch: 0/0 when every row is ignored
}

void cuda_cross_entropy(lnn_ctx *ctx, double *loss, void *dlogits, const void *logits, const int64_t *labels,
                        const float *class_weight, int N, int K, int64_t ignore_index, float grad_scale) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, cross_entropy_kernel<T><<<1, LOSS_THREADS, 0, stream_of(ctx)>>>(
                                  loss, (T *)dlogits, (const T *)logits, labels, class_weight, N, K, ignore_index,
                                  grad_scale));
    CUDA_LAUNCHED(ctx, "cross_entropy");
}

// l = (1 - y) x + (1 + (pw - 1) y) softplus(-x), mean over N*K
template <typename T>
__global__ void bce_kernel(double *loss, T *dlogits, const T *logits, const T *targets, const float *pos_weight, int N,
                           int K, float grad_scale) {
    __shared__ double sh[32];
    size_t n = (size_t)N * K;
    double acc = 0.0, g = (double)grad_scale / (double)n;
    for (size_t j = threadIdx.x; j < n; j += blockDim.x) {
        double x = load_f(logits + j), y = load_f(targets + j);
        double lw = pos_weight ? 1.0 + ((double)pos_weight[j % K] - 1.0) * y : 1.0;
        acc += (1.0 - y) * x + lw * ((x < 0 ? -x : 0.0) + log1p(exp(-fabs(x))));
        if (dlogits) {
            double sneg = x >= 0 ? exp(-x) / (1.0 + exp(-x)) : 1.0 / (1.0 + exp(x));
            store_f(dlogits + j, (float)(g * ((1.0 - y) - lw * sneg)));
        }
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) *loss = n ? acc / (double)n : (double)NAN;
}

void cuda_bce_with_logits(lnn_ctx *ctx, double *loss, void *dlogits, const void *logits, const void *targets,
                          const float *pos_weight, int N, int K, float grad_scale) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, bce_kernel<T><<<1, LOSS_THREADS, 0, stream_of(ctx)>>>(
                                  loss, (T *)dlogits, (const T *)logits, (const T *)targets, pos_weight, N, K,
                                  grad_scale));
    CUDA_LAUNCHED(ctx, "bce_with_logits");
}

template <typename T>
__global__ void mse_kernel(double *loss, T *dpreds, const T *preds, const T *targets, size_t n, float grad_scale) {
    __shared__ double sh[32];
    double acc = 0.0, g = 2.0 * (double)grad_scale / (double)(n ? n : 1);
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
        double d = (double)load_f(preds + i) - (double)load_f(targets + i);
        acc += d * d;
        if (dpreds) store_f(dpreds + i, (float)(g * d));
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) *loss = n ? acc / (double)n : (double)NAN;
}

void cuda_mse(lnn_ctx *ctx, double *loss, void *dpreds, const void *preds, const void *targets, size_t n,
              float grad_scale) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, mse_kernel<T><<<1, LOSS_THREADS, 0, stream_of(ctx)>>>(
                                  loss, (T *)dpreds, (const T *)preds, (const T *)targets, n, grad_scale));
    CUDA_LAUNCHED(ctx, "mse");
}
