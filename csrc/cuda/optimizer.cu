// csrc/cuda/optimizer.cu: global-norm gradient clipping (with loss scaling's unscale) and the Adam / AdamW
// step over the segments of the flat parameter buffer (core/optim.h), with the segments, the step counters,
// the norm and the clipping coefficient all in device memory: a step needs no host round trip. The fused
// step (LNN_PATH_FUSED_OPT) applies the coefficient and writes the activation-dtype weight copy in the step's
// one pass, instead of a clip pass and a cast pass around it. Sums go over fixed element ranges
// (chosen by n alone) and then in range order: the same bits on every run.
#include "cuda/internal.cuh"

// The fused optimizer step (LNN_PATH_FUSED_OPT) when LYRICNN_CUDA_FUSED_OPT is unset: off until
// tools/gpu_check.sh has verified it on a GPU (tests/test_cuda.py compares it with the separate passes); it
// then flips to 1. (The CPU backend always fuses: its tests prove the arithmetic identical.)
static const int FUSED_OPT_DEFAULT = 0;

unsigned cuda_paths_wanted(void) {
    return cuda_env_flag("LYRICNN_CUDA_FUSED_OPT", FUSED_OPT_DEFAULT) ? (unsigned)LNN_PATH_FUSED_OPT : 0u;
}

#define OPT_THREADS 256
#define OPT_PER_THREAD 16 // contiguous elements per thread

// The segment holding element i, or -1 (binary search; segments are sorted and disjoint).
__device__ __forceinline__ int seg_of(const lnn_segment *segs, int nseg, int64_t i) {
    int lo = 0, hi = nseg - 1, s = -1;
    while (lo <= hi) {
        int mid = (lo + hi) >> 1;
        if (segs[mid].offset <= i) {
            s = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return (s >= 0 && i < segs[s].offset + segs[s].size) ? s : -1;
}

__device__ __forceinline__ bool trainable(const lnn_segment *segs, int s) {
    return s >= 0 && !(segs[s].flags & LNN_SEG_FROZEN);
}

// partial[block] = sum of grads^2 over the block's range, trainable elements only (all when segs is NULL)
__global__ void norm_partial_kernel(double *partial, const float *grads, size_t n, const lnn_segment *segs, int nseg) {
    __shared__ double sh[32];
    size_t per_block = (size_t)OPT_THREADS * OPT_PER_THREAD;
    size_t i0 = (size_t)blockIdx.x * per_block + (size_t)threadIdx.x * OPT_PER_THREAD;
    double s = 0.0;
    for (size_t k = 0; k < OPT_PER_THREAD; k++) {
        size_t i = i0 + k;
        if (i >= n) break;
        if (segs && !trainable(segs, seg_of(segs, nseg, (int64_t)i))) continue;
        double g = grads[i];
        s += g * g;
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// norm = inv_scale * sqrt(sum of the partials, in order) (a power-of-two loss scale: exactly the unscaled
// gradients' norm); coef = inv_scale * (clip ? min(max_norm / (norm + 1e-6), 1) in float, as torch : 1)
__global__ void norm_finish_kernel(double *norm, float *coef, const double *partial, unsigned nblocks, int clip,
                                   double max_norm, float inv_scale) {
    __shared__ double sh[32];
    double s = 0.0;
    for (unsigned k = threadIdx.x; k < nblocks; k += blockDim.x) s += partial[k];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) {
        double t = sqrt(s) * (double)inv_scale;
        *norm = t;
        float k = inv_scale;
        if (clip) {
            float c = (float)max_norm / ((float)t + 1e-6f);
            k = (c > 1.0f ? 1.0f : c) * inv_scale; // NaN stays NaN, like torch.clamp
        }
        *coef = k;
    }
}

__global__ void clip_kernel(float *grads, size_t n, const lnn_segment *segs, int nseg, const float *coef) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (segs && !trainable(segs, seg_of(segs, nseg, (int64_t)i))) return;
    grads[i] *= *coef;
}

// coef_out NULL: the factor goes through scratch to clip_kernel (when clipping or unscaling); else it is the
// caller's, for adam_step to apply (the fused step)
void cuda_grad_norm_clip(lnn_ctx *ctx, double *norm, float *grads, size_t n, const lnn_segment *segs, int nseg,
                         int clip, double max_norm, float inv_scale, float *coef_out) {
    cuda_enter(ctx);
    size_t per_block = (size_t)OPT_THREADS * OPT_PER_THREAD;
    unsigned nb = blocks_for(n, (unsigned)per_block);
    char *ws = (char *)cuda_scratch(ctx, (size_t)nb * sizeof(double) + 64);
    if (!ws) return;
    double *partial = (double *)ws;
    float *coef = coef_out ? coef_out : (float *)(ws + (size_t)nb * sizeof(double));
    cudaStream_t s = stream_of(ctx);
    norm_partial_kernel<<<nb, OPT_THREADS, 0, s>>>(partial, grads, n, segs, nseg);
    norm_finish_kernel<<<1, OPT_THREADS, 0, s>>>(norm, coef, partial, nb, clip, max_norm, inv_scale);
    if (!coef_out && (clip || inv_scale != 1.0f)) clip_kernel<<<blocks_for(n, 256), 256, 0, s>>>(grads, n, segs, nseg, coef);
    CUDA_LAUNCHED(ctx, "grad_norm_clip");
}

struct adam_args {
    double lr, beta1, beta2, eps, wd;
    int decoupled;
};

// the per-segment scalars of one step, as torch computes them (in double, then float)
struct adam_seg {
    float neg_step; // -lr / (1 - beta1^t)
    float bc2_sqrt; // sqrt(1 - beta2^t)
    float wd_mul;   // AdamW: 1 - lr * wd
    float wd_l2;    // Adam: wd added to the gradient
};

// Loss scaling's skip: a non-finite gradient norm (skip_norm NULL: never)
__device__ __forceinline__ bool adam_skipped(const double *skip_norm) { return skip_norm && !isfinite(*skip_norm); }

// steps += 1 for every trainable segment, and that segment's scalars for this step
__global__ void adam_prepare_kernel(adam_seg *sc, int64_t *steps, const lnn_segment *segs, int nseg,
                                    const float *lr_scale, adam_args a, const double *skip_norm) {
    int s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= nseg || (segs[s].flags & LNN_SEG_FROZEN) || adam_skipped(skip_norm)) return;
    double t = (double)(steps[s] += 1);
    double lr = lr_scale ? a.lr * (double)lr_scale[s] : a.lr;
    double wd = (segs[s].flags & LNN_SEG_DECAY) ? a.wd : 0.0;
    double bc1 = 1.0 - pow(a.beta1, t), bc2 = 1.0 - pow(a.beta2, t);
    sc[s].neg_step = (float)(-(lr / bc1));
    sc[s].bc2_sqrt = (float)sqrt(bc2);
    sc[s].wd_mul = (a.decoupled && wd != 0.0) ? (float)(1.0 - lr * wd) : 1.0f;
    sc[s].wd_l2 = (!a.decoupled && wd != 0.0) ? (float)wd : 0.0f;
}

// torch.optim.Adam / AdamW (amsgrad off), one element per thread; fused (core/backend.h): the gradient factor
// gcoef applied (and written back), the step skipped on a non-finite skip_norm, the weight copy W written
template <typename W>
__global__ void adam_kernel(float *params, float *grads, float *m, float *v, size_t n, const lnn_segment *segs,
                            int nseg, const adam_seg *sc, float w1, float b2, float w2, float eps, const float *gcoef,
                            const double *skip_norm, W *wact) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n || adam_skipped(skip_norm)) return;
    int s = seg_of(segs, nseg, (int64_t)i);
    if (!trainable(segs, s)) return;
    adam_seg k = sc[s];
    size_t j = (size_t)((int64_t)i + segs[s].state_offset - segs[s].offset);
    float p = params[i], gr = grads[i];
    if (gcoef) grads[i] = gr = gr * *gcoef; // the clip / unscale pass, fused
    if (k.wd_l2 != 0.0f) gr = gr + k.wd_l2 * p;
    if (k.wd_mul != 1.0f) p = p * k.wd_mul;
    float mi = m[j];
    mi = fabsf(w1) < 0.5f ? mi + w1 * (gr - mi) : gr - (gr - mi) * (1.0f - w1); // torch's lerp
    float vi = v[j] * b2 + w2 * gr * gr;
    p = p + k.neg_step * mi / (sqrtf(vi) / k.bc2_sqrt + eps);
    params[i] = p;
    m[j] = mi;
    v[j] = vi;
    if (wact) store_f(wact + i, p); // the forward's weight copy, in the activation dtype
}

void cuda_adam_step(lnn_ctx *ctx, float *params, float *grads, float *m, float *v, size_t n, size_t nstate,
                    const lnn_segment *segs, int nseg, int64_t *steps, const float *lr_scale,
                    const lnn_optim_config *cfg, const float *gcoef, const double *skip_norm, void *wact) {
    cuda_enter(ctx);
    cudaStream_t s = stream_of(ctx);
    adam_seg *sc = (adam_seg *)cuda_scratch(ctx, (size_t)(nseg > 0 ? nseg : 1) * sizeof(adam_seg));
    if (!sc) return;
    adam_args a = {cfg->lr, cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay, cfg->decoupled};
    adam_prepare_kernel<<<blocks_for((size_t)nseg, 256), 256, 0, s>>>(sc, steps, segs, nseg, lr_scale, a, skip_norm);
    float w1 = (float)(1.0 - cfg->beta1), b2 = (float)cfg->beta2, w2 = (float)(1.0 - cfg->beta2), eps = (float)cfg->eps;
    unsigned nb = blocks_for(n, 256);
    if (wact == (void *)params) wact = NULL; // F32: the parameters are the weights
    LNN_CUDA_DISPATCH(ctx, W, adam_kernel<W><<<nb, 256, 0, s>>>(params, grads, m, v, n, segs, nseg, sc, w1, b2, w2, eps,
                                                                gcoef, skip_norm, (W *)wact));
    CUDA_LAUNCHED(ctx, "adam_step");
}
