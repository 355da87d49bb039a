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

// LYRICNN_CUDA_FOLD when unset: off until tools/gpu_check.sh has verified the folded kernels on a GPU
// (tests/test_cuda.py compares them with the separate passes and float64); it then flips to 1.
static const int FOLD_DEFAULT = 0;

int cuda_fold_wanted(void) { return cuda_env_flag("LYRICNN_CUDA_FOLD", FOLD_DEFAULT); }

// The backward in one pass over dout and res (LYRICNN_CUDA_FOLD; C <= 32 K): a block of LNF_WARPS warps owns
// LNF_ROWS rows, a warp a row at a time as layernorm_backward_dx_kernel (the same dres bits), each lane keeping
// its K columns' partial sums of dout * xhat and dout in registers across the warp's rows; the warps' partials
// are added in warp order through shared memory (2 C floats) and written per block, the blocks' then added
// in block order by layernorm_backward_dw_finish: deterministic.
#define LNF_WARPS 8
#define LNF_ROWS 64
template <typename T, int K>
__global__ void __launch_bounds__(LNF_WARPS * 32)
    layernorm_backward_fold_kernel(T *dres, float *pw, float *pb, const T *dout, const T *res, const T *w,
                                   const float *mean, const float *rstd, int N, int C) {
    extern __shared__ float lnf_acc[]; // 2 C
    int lane = threadIdx.x & 31, wp = threadIdx.x >> 5;
    int r0 = blockIdx.x * LNF_ROWS, r1 = min(N, r0 + LNF_ROWS);
    float wv[K], aw[K], ab[K], g[K], xh[K];
#pragma unroll
    for (int k = 0; k < K; k++) {
        int c = lane + 32 * k;
        wv[k] = c < C ? load_f(w + c) : 0.f;
        aw[k] = ab[k] = 0.f;
    }
    for (int r = r0 + wp; r < r1; r += LNF_WARPS) {
        size_t o = (size_t)r * C;
        float m = mean[r], rs = rstd[r], sg = 0.f, sgx = 0.f;
#pragma unroll
        for (int k = 0; k < K; k++) {
            int c = lane + 32 * k;
            if (c < C) { // the expressions of layernorm_backward_dx_kernel / _dw_kernel, term for term
                g[k] = load_f(dout + o + c);
                float rm = load_f(res + o + c) - m, gw = g[k] * wv[k];
                xh[k] = rm * rs;
                sg += gw;
                sgx += gw * rm * rs;
                aw[k] += g[k] * rm * rs;
                ab[k] += g[k];
            }
        }
        sg = warp_sum(sg) / C;
        sgx = warp_sum(sgx) / C;
        if (dres) {
#pragma unroll
            for (int k = 0; k < K; k++) {
                int c = lane + 32 * k;
                if (c < C) store_f(dres + o + c, load_f(dres + o + c) + rs * (g[k] * wv[k] - sg - xh[k] * sgx));
            }
        }
    }
    for (int q = 0; q < LNF_WARPS; q++) { // the warps' partials, in warp order
        if (wp == q) {
#pragma unroll
            for (int k = 0; k < K; k++) {
                int c = lane + 32 * k;
                if (c < C) {
                    lnf_acc[c] = q ? lnf_acc[c] + aw[k] : aw[k];
                    lnf_acc[C + c] = q ? lnf_acc[C + c] + ab[k] : ab[k];
                }
            }
        }
        __syncthreads();
    }
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        pw[(size_t)blockIdx.x * C + c] = lnf_acc[c];
        pb[(size_t)blockIdx.x * C + c] = lnf_acc[C + c];
    }
}

template <typename T, int K>
static void ln_fold_launch(lnn_ctx *ctx, T *dres, float *pw, float *pb, const T *dout, const T *res, const T *w,
                           const float *mean, const float *rstd, int N, int C, int nblk) {
    size_t sh = 2 * (size_t)C * sizeof(float);
    layernorm_backward_fold_kernel<T, K><<<nblk, LNF_WARPS * 32, sh, stream_of(ctx)>>>(dres, pw, pb, dout, res, w,
                                                                                       mean, rstd, N, C);
}

// The folded backward when C fits (<= 32 * 32 columns); false: the caller takes the separate passes
template <typename T>
static bool ln_fold(lnn_ctx *ctx, T *dres, float *dw, float *db, const T *dout, const T *res, const T *w,
                    const float *mean, const float *rstd, int N, int C) {
    int kc = (C + 31) / 32;
    if (kc > 32 || N <= 0) return false; // (N = 0 would launch no blocks: a launch error)
    int nblk = (N + LNF_ROWS - 1) / LNF_ROWS;
    float *part = (float *)cuda_scratch(ctx, 2 * (size_t)nblk * C * sizeof(float));
    if (!part) return true; // the failure is recorded
    float *pw = part, *pb = part + (size_t)nblk * C;
    if (kc <= 4) ln_fold_launch<T, 4>(ctx, dres, pw, pb, dout, res, w, mean, rstd, N, C, nblk);
    else if (kc <= 8) ln_fold_launch<T, 8>(ctx, dres, pw, pb, dout, res, w, mean, rstd, N, C, nblk);
    else if (kc <= 16) ln_fold_launch<T, 16>(ctx, dres, pw, pb, dout, res, w, mean, rstd, N, C, nblk);
    else if (kc <= 24) ln_fold_launch<T, 24>(ctx, dres, pw, pb, dout, res, w, mean, rstd, N, C, nblk);
    else ln_fold_launch<T, 32>(ctx, dres, pw, pb, dout, res, w, mean, rstd, N, C, nblk);
    layernorm_backward_dw_finish<<<(C + 127) / 128, 128, 0, stream_of(ctx)>>>(dw, db, pw, pb, nblk, C);
    return true;
}

void cuda_layernorm_backward(lnn_ctx *ctx, void *dres, float *dw, float *db, const void *dout, const void *res,
                             const void *w, const float *mean, const float *rstd, int N, int C) {
    cuda_enter(ctx);
    cudaStream_t s = stream_of(ctx);
    if ((dw || db) && handles_of(ctx)->fold) {
        bool done = false;
        LNN_CUDA_DISPATCH(ctx, T, done = ln_fold<T>(ctx, (T *)dres, dw, db, (const T *)dout, (const T *)res,
                                                    (const T *)w, mean, rstd, N, C));
        if (done) {
            CUDA_LAUNCHED(ctx, "layernorm_backward");
            return;
        }
    }
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
