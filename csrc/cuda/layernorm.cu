// csrc/cuda/layernorm.cu: LayerNorm fused with the residual add before it: a warp per row for the forward
// and the input gradient; the weight and bias gradients as deterministic column sums (fixed row chunks,
// added in chunk order).
#include "cuda/internal.cuh"

// res = a + r; out = LN(res); mean, rstd kept (a warp per row, sums in float over the row in lane order)
template <typename T>
__global__ void layernorm_forward_kernel(T *out, float *mean, float *rstd, T *res, const T *a, const T *r, const T *w,
                                         const T *b, int N, int C, float eps) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (row >= N) return;
    size_t o = (size_t)row * C;
    float s = 0.f;
    for (int c = lane; c < C; c += 32) {
        float x = load_f(a + o + c);
        if (r) x += load_f(r + o + c);
        store_f(res + o + c, x);
        s += load_f(res + o + c); // the stored (rounded) value is what the backward sees
    }
    float m = warp_sum(s) / C, v = 0.f;
    for (int c = lane; c < C; c += 32) {
        float d = load_f(res + o + c) - m;
        v += d * d;
    }
    float rs = rsqrtf(warp_sum(v) / C + eps);
    for (int c = lane; c < C; c += 32)
        store_f(out + o + c, (load_f(res + o + c) - m) * rs * load_f(w + c) + load_f(b + c));
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = rs;
    }
}

void cuda_layernorm_forward(lnn_ctx *ctx, void *out, float *mean, float *rstd, void *res, const void *a, const void *r,
                            const void *w, const void *b, int N, int C, float eps) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, layernorm_forward_kernel<T><<<blocks_for((size_t)N * 32, 256), 256, 0, stream_of(ctx)>>>(
                                  (T *)out, mean, rstd, (T *)res, (const T *)a, (const T *)r, (const T *)w, (const T *)b,
                                  N, C, eps));
    CUDA_LAUNCHED(ctx, "layernorm_forward");
}

// dres += rstd * (g*w - mean(g*w) - xhat * mean(g*w*xhat)), a warp per row
template <typename T>
__global__ void layernorm_backward_dx_kernel(T *dres, const T *dout, const T *res, const T *w, const float *mean,
                                             const float *rstd, int N, int C) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (row >= N) return;
    size_t o = (size_t)row * C;
    float m = mean[row], rs = rstd[row], sg = 0.f, sgx = 0.f;
    for (int c = lane; c < C; c += 32) {
        float gw = load_f(dout + o + c) * load_f(w + c);
        sg += gw;
        sgx += gw * (load_f(res + o + c) - m) * rs;
    }
    sg = warp_sum(sg) / C;
    sgx = warp_sum(sgx) / C;
    for (int c = lane; c < C; c += 32) {
        float g = load_f(dout + o + c) * load_f(w + c), xh = (load_f(res + o + c) - m) * rs;
        store_f(dres + o + c, load_f(dres + o + c) + rs * (g - sg - xh * sgx));
    }
}

#define LN_ROWCHUNK 256
// partial column sums of dout*xhat and dout over a chunk of rows
// (the chunks are grid rows, at most MAX_GRID_Y of them, each looping over every MAX_GRID_Y-th chunk)
template <typename T>
__global__ void layernorm_backward_dw_kernel(float *pw, float *pb, const T *dout, const T *res, const float *mean,
                                             const float *rstd, int N, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int nch = (N + LN_ROWCHUNK - 1) / LN_ROWCHUNK;
    for (int ch = blockIdx.y; ch < nch; ch += gridDim.y) {
        int r0 = ch * LN_ROWCHUNK, r1 = min(N, r0 + LN_ROWCHUNK);
        float aw = 0.f, ab = 0.f;
        for (int r = r0; r < r1; r++) {
            float g = load_f(dout + (size_t)r * C + c);
            aw += g * (load_f(res + (size_t)r * C + c) - mean[r]) * rstd[r];
            ab += g;
        }
        pw[(size_t)ch * C + c] = aw;
        pb[(size_t)ch * C + c] = ab;
    }
}

__global__ void layernorm_backward_dw_finish(float *dw, float *db, const float *pw, const float *pb, int nch, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float aw = 0.f, ab = 0.f;
    for (int k = 0; k < nch; k++) {
        aw += pw[(size_t)k * C + c];
        ab += pb[(size_t)k * C + c];
    }
    if (dw) dw[c] += aw;
    if (db) db[c] += ab;
}

void cuda_layernorm_backward(lnn_ctx *ctx, void *dres, float *dw, float *db, const void *dout, const void *res,
                             const void *w, const float *mean, const float *rstd, int N, int C) {
    cuda_enter(ctx);
    cudaStream_t s = stream_of(ctx);
    if (dres)
        LNN_CUDA_DISPATCH(ctx, T, layernorm_backward_dx_kernel<T><<<blocks_for((size_t)N * 32, 256), 256, 0, s>>>(
                                      (T *)dres, (const T *)dout, (const T *)res, (const T *)w, mean, rstd, N, C));
    if (dw || db) {
        int nch = (N + LN_ROWCHUNK - 1) / LN_ROWCHUNK;
        float *part = (float *)cuda_scratch(ctx, 2 * (size_t)nch * C * sizeof(float));
        if (!part) return;
        dim3 grid((C + 127) / 128, grid_y(nch));
        LNN_CUDA_DISPATCH(ctx, T, layernorm_backward_dw_kernel<T><<<grid, 128, 0, s>>>(
                                      part, part + (size_t)nch * C, (const T *)dout, (const T *)res, mean, rstd, N, C));
        layernorm_backward_dw_finish<<<(C + 127) / 128, 128, 0, s>>>(dw, db, part, part + (size_t)nch * C, nch, C);
    }
    CUDA_LAUNCHED(ctx, "layernorm_backward");
}
