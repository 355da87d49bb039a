// csrc/cuda/attention.cu: fused multi-head self-attention, FlashAttention-style: an online softmax over
// key tiles, no (T, T) matrix in memory, the backward recomputing the probabilities from the saved
// log-sum-exp. Padded rows with a key mask, packed (unpadded) rows through seq_off, and the first query
// only (q_first, the last layer of a token-0 head), as core/backend.h specifies.
//
// Dropout of the probabilities draws the same Philox4x32-10 bits as the CPU, keyed by the padded element
// index ((b*NH + h)*T + i)*T + j: recomputed in each kernel (one Philox call per element, three kernels), or
// (LYRICNN_CUDA_DROPOUT_BITS=1) drawn once per step by attention_mask_kernel, one Philox call per 4 elements,
// into a bit mask the forward and both backward kernels read (B*NH*T*T bits: 12.6 MB a layer at 32 x 512).
//
// saved (per layer): lse F32 (B*NH*T) | mask I32 (B*T), a copy of the forward's key mask, the backward's
// recomputation needs it | has_mask I32 (1) | with the dropout bits: bits U32 (B*NH*T*ceil(T/32));
// scratch: D F32 (B*NH*T), D_i = dO_i . O_i (the softmax backward's row term; with dropout still exact).
//
// Two implementations, picked per call by attention_use_tc: the CUDA-core (SIMT) kernels below, for every
// dtype and head size, and the tensor-core kernels of attention_tc.cu (bf16, head sizes 32 and 64). Both
// take the saved state and D laid out here, so either backward runs after either forward.
//
// SIMT work split (deterministic, no atomics): the forward and dQ run one block per (b, h, tile of QT
// queries); dK and dV one block per (b, h, tile of 32 keys) looping over all queries. Inside a block one
// warp holds 32 keys at a time, a lane per key, with the keys' and values' tile in shared memory (rows
// padded by one float against bank conflicts).
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/attention.cuh"

#define KT 32    // keys per tile: a lane per key
#define QT 16    // queries per forward / dQ block
#define WARPS 4  // warps per forward / dQ block (QT / WARPS queries each)
#define HMAX 128 // the largest head size (hs <= HMAX; hs = 32 (MiniLM), 64 (BERT / DistilBERT))
#define DPL (HMAX / 32) // head dims per lane

struct att_layout {
    float *lse;
    int32_t *mask;
    int32_t *has_mask;
    uint32_t *bits;
};

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

// The dropout mask's words per query row, and whether this context keeps the mask as bits for dropout p.
static int mask_words(int T) { return (T + 31) / 32; }
static bool keeps_bits(const lnn_ctx *ctx, float p) { return handles_of(ctx)->dropout_bits && p > 0.f && p < 1.f; }

static size_t saved_layout(att_layout *a, void *base, int B, int T, int NH, bool bits) {
    size_t off = 0;
    char *p = (char *)base;
    a->lse = p ? (float *)(p + off) : NULL;
    off += align64((size_t)B * NH * T * sizeof(float));
    a->mask = p ? (int32_t *)(p + off) : NULL;
    off += align64((size_t)B * T * sizeof(int32_t));
    a->has_mask = p ? (int32_t *)(p + off) : NULL;
    off += align64(sizeof(int32_t));
    a->bits = p && bits ? (uint32_t *)(p + off) : NULL;
    if (bits) off += align64((size_t)B * NH * T * mask_words(T) * sizeof(uint32_t));
    return off;
}

size_t cuda_attention_saved_bytes(const lnn_ctx *ctx, int B, int T, int NH, int train, float p) {
    att_layout a;
    return saved_layout(&a, NULL, B, T, NH, train && keeps_bits(ctx, p));
}

// The dropout mask of every (b, h, i, j < T) as bits, a thread per 32-bit word: the padded indices of a word's
// 32 keys are consecutive, so one Philox call covers 4 of them (9 calls where a row's start is not a multiple of 4)
__global__ void attention_mask_kernel(uint32_t *bits, att_args a, size_t nwords) {
    size_t w = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (w >= nwords) return;
    size_t row = w / a.W; // (b*NH + h)*T + i
    int j0 = (int)(w % a.W) * 32;
    uint64_t base = (uint64_t)row * a.T + j0;
    uint32_t word = 0;
    lnn_philox_out o = {{0, 0, 0, 0}};
    for (int e = 0; e < 32 && j0 + e < a.T; e++) {
        uint64_t idx = base + e;
        if (e == 0 || (idx & 3) == 0) o = lnn_dropout_bits(a.drop, idx >> 2);
        if (o.v[idx & 3] >= a.thr) word |= 1u << e;
    }
    bits[w] = word;
}

// LYRICNN_CUDA_DROPOUT_BITS when unset: off until tools/gpu_check.sh has verified the kept mask on a GPU
// (tests/test_cuda.py compares it with the recomputed one); it then flips to 1.
static const int DROPOUT_BITS_DEFAULT = 0;

int cuda_dropout_bits_wanted(void) { return cuda_env_flag("LYRICNN_CUDA_DROPOUT_BITS", DROPOUT_BITS_DEFAULT); }

size_t cuda_attention_scratch_bytes(const lnn_ctx *ctx, int B, int T, int NH, int train, float p) {
    return train ? align64((size_t)B * NH * T * sizeof(float)) : 64;
}

// The implementation when LYRICNN_CUDA_ATTENTION is unset. "simt" until tools/gpu_check.sh has verified
// the tensor-core kernels (attention_tc.cu) on a GPU; it then flips to "auto" (tensor cores where they apply).
static const char *const ATTENTION_DEFAULT = "simt";

// LYRICNN_CUDA_ATTENTION, read by ctx_init (once per context, kept in its handles): "auto" (1) = tensor cores
// where they apply, "tc" (2) = the same, but a bf16 call they would apply to on a build without their sm_80+
// code is an error instead of a fallback; anything else ("simt", 0) = the CUDA-core kernels always.
int cuda_attention_tc_wanted(void) {
    const char *e = getenv("LYRICNN_CUDA_ATTENTION");
    if (!e || !*e) e = ATTENTION_DEFAULT;
    return !strcmp(e, "tc") ? 2 : !strcmp(e, "auto") ? 1 : 0;
}

// Whether this call runs the tensor-core kernels: wanted by the context, bf16 activations, hs 32 or 64,
// sm80+ with their code built for sm80+ (a build whose targets stop below sm_80 runs them as PTX compiled
// without the WMMA code: attention_tc_code_arch tells), and the activation buffers 16-byte aligned (their
// 16-byte tile copies). LYRICNN_CUDA_ATTENTION=tc and no sm_80+ code: the failure is recorded.
static bool attention_use_tc(lnn_ctx *ctx, int hs, const void *p0, const void *p1, const void *p2) {
    const cuda_handles *h = handles_of(ctx);
    uintptr_t al = (uintptr_t)p0 | (uintptr_t)p1 | (uintptr_t)p2;
    if (!h->attention_tc || ctx->act != LNN_BF16 || !(hs == 32 || hs == 64) || h->cc_major < 8 || al % 16) return false;
    if (h->tc_code_arch >= 80) return true;
    if (h->attention_tc == 2)
        cuda_fail(ctx, LNN_ERR_RUNTIME, "LYRICNN_CUDA_ATTENTION=tc: this build's tensor-core attention has no code for "
                  "sm_80+ (compiled for sm_%d); rebuild with LYRICNN_CUDA_ARCHS=native (or a list with 80+), or use "
                  "LYRICNN_CUDA_ATTENTION=auto / simt", h->tc_code_arch);
    return false;
}

// Load rows [j0, j0 + KT) of one head's K and V (columns off_k, off_v of qkv) into shared tiles of
// KT x (hs + 1) floats; rows past L are zero.
template <typename T>
__device__ void load_kv(float *Ks, float *Vs, const T *qkv, int row0, int j0, int L, int C3, int off_k, int off_v,
                        int hs) {
    for (int e = threadIdx.x; e < KT * hs; e += blockDim.x) {
        int j = e / hs, d = e % hs;
        float kv = 0.f, vv = 0.f;
        if (j0 + j < L) {
            const T *r = qkv + (size_t)(row0 + j0 + j) * C3;
            kv = load_f(r + off_k + d);
            vv = load_f(r + off_v + d);
        }
        Ks[j * (hs + 1) + d] = kv;
        Vs[j * (hs + 1) + d] = vv;
    }
}

// acc (the lane's dims lane + 32k) += sum over a tile's KT rows jj of c_jj * tile[jj], where lane jj holds c_jj:
// P V in the forward (c = the dropped probability), dS K in dQ (c = dS).
__device__ __forceinline__ void acc_tile_rows(float (&acc)[DPL], float c, const float *tile, int hs, int lane) {
    for (int jj = 0; jj < KT; jj++) {
        float cj = __shfl_sync(0xffffffffu, c, jj);
        const float *r = tile + jj * (hs + 1);
        for (int k = 0; k < DPL; k++) {
            int d = lane + 32 * k;
            if (d < hs) acc[k] += cj * r[d];
        }
    }
}

// ---------------------------------------------------------------- forward

template <typename T>
__global__ void attention_forward_kernel(T *out, float *lse, const T *qkv, const int32_t *mask, att_args a) {
    extern __shared__ float smem[];
    int hs = a.hs, C3 = 3 * a.C;
    float *Ks = smem, *Vs = Ks + KT * (hs + 1), *Qs = Vs + KT * (hs + 1); // Qs: QT x hs
    int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
    int row0, L;
    seq_rows(a.seq_off, b, a.T, &row0, &L);
    int Lq = a.q_first ? (L > 0 ? 1 : 0) : L;
    int i0 = blockIdx.y * QT;
    if (i0 >= Lq || L < 1) return;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    int off_q = h * hs, off_k = a.C + h * hs, off_v = 2 * a.C + h * hs;
    // this block's queries into shared memory
    for (int e = threadIdx.x; e < QT * hs; e += blockDim.x) {
        int i = e / hs, d = e % hs;
        Qs[i * hs + d] = i0 + i < Lq ? load_f(qkv + (size_t)(row0 + i0 + i) * C3 + off_q + d) : 0.f;
    }
    const int32_t *mb = mask ? mask + (size_t)b * a.T : NULL;
    // per warp: QT / WARPS queries, their running max, sum and output (DPL dims per lane)
    const int QW = QT / WARPS;
    float m[QW], l[QW], acc[QW][DPL];
    for (int q = 0; q < QW; q++) {
        m[q] = -INFINITY;
        l[q] = 0.f;
        for (int k = 0; k < DPL; k++) acc[q][k] = 0.f;
    }
    for (int j0 = 0; j0 < L; j0 += KT) {
        __syncthreads();
        load_kv(Ks, Vs, qkv, row0, j0, L, C3, off_k, off_v, hs);
        __syncthreads();
        int j = j0 + lane;
        bool valid = j < L;
        float madd = (valid && mb && !mb[j]) ? -FLT_MAX : 0.f;
        for (int q = 0; q < QW; q++) {
            int i = i0 + w * QW + q;
            if (i >= Lq) break;
            const float *qv = Qs + (i - i0) * hs, *kr = Ks + lane * (hs + 1);
            float s = 0.f;
            for (int d = 0; d < hs; d++) s += qv[d] * kr[d];
            s = valid ? s * a.scale + madd : -INFINITY;
            float mt = warp_max(s), mn = fmaxf(m[q], mt);
            float e = valid ? __expf(s - mn) : 0.f;
            float corr = __expf(m[q] - mn);
            l[q] = l[q] * corr + warp_sum(e);
            m[q] = mn;
            float pd = valid ? e * att_keep(a, b, h, i, j) : 0.f;
            for (int k = 0; k < DPL; k++) acc[q][k] *= corr;
            acc_tile_rows(acc[q], pd, Vs, hs, lane);
        }
    }
    for (int q = 0; q < QW; q++) {
        int i = i0 + w * QW + q;
        if (i >= Lq) break;
        size_t orow = a.q_first ? (size_t)b : (size_t)(row0 + i);
        float inv = 1.f / l[q];
        for (int k = 0; k < DPL; k++) {
            int d = lane + 32 * k;
            if (d < hs) store_f(out + orow * a.C + h * hs + d, acc[q][k] * inv);
        }
        if (lane == 0) lse[((size_t)b * a.NH + h) * a.T + i] = m[q] + logf(l[q]);
    }
}

static att_args make_args(int B, int T, int C, int NH, int q_first, const int32_t *seq_off, lnn_dropout_t drop) {
    att_args a;
    a.B = B;
    a.T = T;
    a.C = C;
    a.NH = NH;
    a.hs = C / NH;
    a.q_first = q_first;
    a.scale = 1.0f / sqrtf((float)a.hs);
    a.seq_off = seq_off;
    a.drop = drop;
    a.thr = lnn_dropout_threshold(drop.p);
    a.inv_keep = drop.p > 0.f && drop.p < 1.f ? 1.0f / (1.0f - drop.p) : 1.0f;
    if (drop.p >= 1.f) a.inv_keep = 0.f; // every probability dropped
    a.bits = NULL;
    a.W = mask_words(T);
    return a;
}

// The SIMT dK/dV kernel's dynamic shared memory: K, V, dK, dV tiles of KT x (hs + 1) and two hs vectors (520 hs +
// 512 bytes, the largest of the SIMT kernels')
static size_t dkv_smem_bytes(int hs) { return (size_t)(4 * KT * (hs + 1) + 2 * hs) * sizeof(float); }

// Whether the kernels' grids hold (B, T, NH): gridDim.x = B*NH blocks, gridDim.y = query tiles of QT (the
// SIMT forward and dQ; the others' tiles are larger) at most MAX_GRID_Y; head size at most HMAX. Records the
// failure otherwise (the input checks allow T up to 2^20, one more than 65535 tiles of 16).
static bool attention_fits(lnn_ctx *ctx, const att_args &a) {
    if (a.hs > HMAX) {
        cuda_fail(ctx, LNN_ERR_VALUE, "attention: head size %d is larger than the CUDA kernel's %d", a.hs, HMAX);
        return false;
    }
    if ((size_t)a.B * a.NH > 2147483647u || (size_t)(a.T + QT - 1) / QT > MAX_GRID_Y) {
        cuda_fail(ctx, LNN_ERR_VALUE, "attention: batch %d x %d heads x sequence %d is too large for the CUDA "
                  "kernels' grid (sequences up to %d tokens, batch x heads up to 2^31 - 1); split the batch or "
                  "truncate", a.B, a.NH, a.T, MAX_GRID_Y * QT);
        return false;
    }
    // over sm_75's 64 KB from hs = 126
    size_t sh_max = dkv_smem_bytes(a.hs);
    int optin = handles_of(ctx)->smem_optin;
    if (sh_max > (size_t)optin) {
        cuda_fail(ctx, LNN_ERR_VALUE, "attention: head size %d needs %zu bytes of shared memory per block in the "
                  "CUDA kernels, and this GPU (sm_%d%d) allows %d; use a model with head size <= %d or the CPU",
                  a.hs, sh_max, handles_of(ctx)->cc_major, handles_of(ctx)->cc_minor, optin,
                  (int)(((size_t)optin / sizeof(float) - 4 * KT) / (4 * KT + 2)));
        return false;
    }
    return true;
}

void cuda_attention_forward(lnn_ctx *ctx, void *out, void *saved, void *scratch, const void *qkv, const int32_t *mask,
                            const int32_t *seq_off, int q_first, int B, int T, int C, int NH, lnn_dropout_t drop) {
    cuda_enter(ctx);
    att_args a = make_args(B, T, C, NH, q_first, seq_off, drop);
    if (!attention_fits(ctx, a)) return;
    att_layout sv;
    saved_layout(&sv, saved, B, T, NH, keeps_bits(ctx, drop.p));
    if (sv.bits) { // the step's dropout mask, drawn once; the backward reads it too
        size_t nwords = (size_t)B * NH * T * a.W;
        attention_mask_kernel<<<blocks_for(nwords, 256), 256, 0, stream_of(ctx)>>>(sv.bits, a, nwords);
        a.bits = sv.bits;
    }
    if (seq_off) mask = NULL;
    // the key mask goes with the saved state: the backward recomputes the probabilities
    if (mask) cudaMemcpyAsync(sv.mask, mask, (size_t)B * T * sizeof(int32_t), cudaMemcpyDeviceToDevice, stream_of(ctx));
    cudaMemsetAsync(sv.has_mask, mask ? 1 : 0, sizeof(int32_t), stream_of(ctx));
    if (attention_use_tc(ctx, a.hs, out, qkv, NULL)) {
        attention_tc_forward(ctx, (bf16 *)out, sv.lse, (const bf16 *)qkv, mask, a);
        CUDA_LAUNCHED(ctx, "attention_forward");
        return;
    }
    size_t sh = (size_t)(2 * KT * (a.hs + 1) + QT * a.hs) * sizeof(float);
    dim3 grid(B * NH, q_first ? 1 : (T + QT - 1) / QT);
    LNN_CUDA_DISPATCH(ctx, Ty, {
        allow_smem((const void *)attention_forward_kernel<Ty>, sh);
        attention_forward_kernel<Ty><<<grid, WARPS * 32, sh, stream_of(ctx)>>>((Ty *)out, sv.lse, (const Ty *)qkv, mask,
                                                                               a);
    });
    CUDA_LAUNCHED(ctx, "attention_forward");
}

// ---------------------------------------------------------------- backward

// D_i = dO_i . O_i for every (b, h, query): a warp per (b, h, i)
template <typename T>
__global__ void attention_dsum_kernel(float *D, const T *dout, const T *out, att_args a) {
    int gw = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    int per_bh = a.q_first ? 1 : a.T;
    if (gw >= a.B * a.NH * per_bh) return;
    int bh = gw / per_bh, i = gw % per_bh, b = bh / a.NH, h = bh % a.NH;
    int row0, L;
    seq_rows(a.seq_off, b, a.T, &row0, &L);
    if (i >= L) return;
    size_t orow = a.q_first ? (size_t)b : (size_t)(row0 + i);
    float s = 0.f;
    for (int d = lane; d < a.hs; d += 32) {
        size_t o = orow * a.C + h * a.hs + d;
        s += load_f(dout + o) * load_f(out + o);
    }
    s = warp_sum(s);
    if (lane == 0) D[((size_t)b * a.NH + h) * a.T + i] = s;
}

// The recomputed probability of (i, j) in a row of L keys and its dropout: p (softmax; a fully masked row's
// 1/L, see att_prob), kp = keep / (1 - p_drop) (0 when dropped)
__device__ __forceinline__ void prob_at(const att_args &a, int b, int h, int i, int j, float s, float lse_i, int L,
                                        float *p, float *kp) {
    *p = att_prob(s, lse_i, L);
    *kp = att_keep(a, b, h, i, j);
}

// dK, dV of one tile of KT keys: a single warp, lane j owns key j; loops over every query of the
// sequence (the first only with q_first). Accumulators in shared memory rows (hs + 1 floats).
template <typename T>
__global__ void attention_dkv_kernel(T *dqkv, const T *dout, const T *qkv, const float *lse, const float *D,
                                     const int32_t *mask, const int32_t *has_mask, att_args a) {
    extern __shared__ float smem[];
    int hs = a.hs, C3 = 3 * a.C;
    float *Ks = smem, *Vs = Ks + KT * (hs + 1), *dK = Vs + KT * (hs + 1), *dV = dK + KT * (hs + 1);
    float *qi = dV + KT * (hs + 1), *gi = qi + hs; // the current query and its output gradient
    int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
    int row0, L;
    seq_rows(a.seq_off, b, a.T, &row0, &L);
    int j0 = blockIdx.y * KT, lane = threadIdx.x;
    if (j0 >= L) return;
    int Lq = a.q_first ? 1 : L;
    int off_q = h * hs, off_k = a.C + h * hs, off_v = 2 * a.C + h * hs;
    load_kv(Ks, Vs, qkv, row0, j0, L, C3, off_k, off_v, hs);
    for (int e = lane; e < KT * (hs + 1); e += 32) dK[e] = dV[e] = 0.f;
    int j = j0 + lane;
    bool valid = j < L;
    const int32_t *mb = (!a.seq_off && *has_mask) ? mask + (size_t)b * a.T : NULL;
    float madd = (valid && mb && !mb[j]) ? -FLT_MAX : 0.f;
    __syncwarp();
    const float *kr = Ks + lane * (hs + 1), *vr = Vs + lane * (hs + 1);
    float *dkr = dK + lane * (hs + 1), *dvr = dV + lane * (hs + 1);
    for (int i = 0; i < Lq; i++) {
        size_t qrow = (size_t)(row0 + i), orow = a.q_first ? (size_t)b : qrow;
        for (int d = lane; d < hs; d += 32) {
            qi[d] = load_f(qkv + qrow * C3 + off_q + d);
            gi[d] = load_f(dout + orow * a.C + h * hs + d);
        }
        __syncwarp();
        size_t r = ((size_t)b * a.NH + h) * a.T + i;
        if (valid) {
            float s = 0.f, dpd = 0.f;
            for (int d = 0; d < hs; d++) {
                s += qi[d] * kr[d];
                dpd += gi[d] * vr[d];
            }
            float p, kp;
            prob_at(a, b, h, i, j, s * a.scale + madd, lse[r], L, &p, &kp);
            float pd = p * kp;            // the dropped probability: dV_j += pd * dO_i
            float ds = p * (dpd * kp - D[r]); // dS_ij = P_ij (dP_ij - D_i), dP = dPd * keep / (1 - p)
            for (int d = 0; d < hs; d++) {
                dvr[d] += pd * gi[d];
                dkr[d] += ds * a.scale * qi[d];
            }
        }
        __syncwarp();
    }
    // dK, dV (+=) into dqkv, coalesced: the warp writes row by row
    for (int jj = 0; jj < KT && j0 + jj < L; jj++) {
        T *rowp = dqkv + (size_t)(row0 + j0 + jj) * C3;
        for (int d = lane; d < hs; d += 32) {
            store_f(rowp + off_k + d, load_f(rowp + off_k + d) + dK[jj * (hs + 1) + d]);
            store_f(rowp + off_v + d, load_f(rowp + off_v + d) + dV[jj * (hs + 1) + d]);
        }
    }
}

// dQ of a tile of QT queries: WARPS warps, QT / WARPS queries each, looping over key tiles (a lane per key);
// dq_i[d] = scale * sum_j dS_ij K_j[d], each lane owning DPL dims.
template <typename T>
__global__ void attention_dq_kernel(T *dqkv, const T *dout, const T *qkv, const float *lse, const float *D,
                                    const int32_t *mask, const int32_t *has_mask, att_args a) {
    extern __shared__ float smem[];
    int hs = a.hs, C3 = 3 * a.C;
    float *Ks = smem, *Vs = Ks + KT * (hs + 1), *Qs = Vs + KT * (hs + 1), *Gs = Qs + QT * hs;
    int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
    int row0, L;
    seq_rows(a.seq_off, b, a.T, &row0, &L);
    int Lq = a.q_first ? (L > 0 ? 1 : 0) : L;
    int i0 = blockIdx.y * QT;
    if (i0 >= Lq || L < 1) return;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    int off_q = h * hs, off_k = a.C + h * hs, off_v = 2 * a.C + h * hs;
    for (int e = threadIdx.x; e < QT * hs; e += blockDim.x) {
        int i = e / hs, d = e % hs;
        bool in = i0 + i < Lq;
        size_t qrow = (size_t)(row0 + i0 + i), orow = a.q_first ? (size_t)b : qrow;
        Qs[i * hs + d] = in ? load_f(qkv + qrow * C3 + off_q + d) : 0.f;
        Gs[i * hs + d] = in ? load_f(dout + orow * a.C + h * hs + d) : 0.f;
    }
    const int32_t *mb = (!a.seq_off && *has_mask) ? mask + (size_t)b * a.T : NULL;
    const int QW = QT / WARPS;
    float dq[QW][DPL];
    for (int q = 0; q < QW; q++)
        for (int k = 0; k < DPL; k++) dq[q][k] = 0.f;
    for (int j0 = 0; j0 < L; j0 += KT) {
        __syncthreads();
        load_kv(Ks, Vs, qkv, row0, j0, L, C3, off_k, off_v, hs);
        __syncthreads();
        int j = j0 + lane;
        bool valid = j < L;
        float madd = (valid && mb && !mb[j]) ? -FLT_MAX : 0.f;
        const float *kr = Ks + lane * (hs + 1), *vr = Vs + lane * (hs + 1);
        for (int q = 0; q < QW; q++) {
            int i = i0 + w * QW + q;
            if (i >= Lq) break;
            const float *qv = Qs + (i - i0) * hs, *gv = Gs + (i - i0) * hs;
            float ds = 0.f;
            if (valid) {
                float s = 0.f, dpd = 0.f;
                for (int d = 0; d < hs; d++) {
                    s += qv[d] * kr[d];
                    dpd += gv[d] * vr[d];
                }
                size_t r = ((size_t)b * a.NH + h) * a.T + i;
                float p, kp;
                prob_at(a, b, h, i, j, s * a.scale + madd, lse[r], L, &p, &kp);
                ds = p * (dpd * kp - D[r]);
            }
            acc_tile_rows(dq[q], ds, Ks, hs, lane);
        }
    }
    for (int q = 0; q < QW; q++) {
        int i = i0 + w * QW + q;
        if (i >= Lq) break;
        T *qp = dqkv + (size_t)(row0 + i) * C3 + off_q;
        for (int k = 0; k < DPL; k++) {
            int d = lane + 32 * k;
            if (d < hs) store_f(qp + d, load_f(qp + d) + a.scale * dq[q][k]);
        }
    }
}

void cuda_attention_backward(lnn_ctx *ctx, void *dqkv, const void *dout, const void *out, const void *saved,
                             void *scratch, const void *qkv, const int32_t *seq_off, int q_first, int B, int T, int C,
                             int NH, lnn_dropout_t drop) {
    cuda_enter(ctx);
    att_args a = make_args(B, T, C, NH, q_first, seq_off, drop);
    if (!attention_fits(ctx, a)) return;
    att_layout sv;
    saved_layout(&sv, (void *)saved, B, T, NH, keeps_bits(ctx, drop.p));
    a.bits = sv.bits;
    float *Dsum = (float *)scratch;
    int per_bh = q_first ? 1 : T;
    size_t warps = (size_t)B * NH * per_bh;
    cudaStream_t s = stream_of(ctx);
    size_t sh_kv = dkv_smem_bytes(a.hs);
    size_t sh_q = (size_t)(2 * KT * (a.hs + 1) + 2 * QT * a.hs) * sizeof(float);
    dim3 gkv(B * NH, (T + KT - 1) / KT), gq(B * NH, q_first ? 1 : (T + QT - 1) / QT);
    LNN_CUDA_DISPATCH(ctx, Ty, {
        attention_dsum_kernel<Ty><<<blocks_for(warps * 32, 256), 256, 0, s>>>(Dsum, (const Ty *)dout, (const Ty *)out, a);
    });
    if (attention_use_tc(ctx, a.hs, dqkv, dout, qkv)) {
        attention_tc_backward(ctx, (bf16 *)dqkv, (const bf16 *)dout, (const bf16 *)qkv, sv.lse, Dsum, sv.mask,
                              sv.has_mask, a);
        CUDA_LAUNCHED(ctx, "attention_backward");
        return;
    }
    LNN_CUDA_DISPATCH(ctx, Ty, {
        allow_smem((const void *)attention_dkv_kernel<Ty>, sh_kv);
        allow_smem((const void *)attention_dq_kernel<Ty>, sh_q);
        attention_dkv_kernel<Ty><<<gkv, 32, sh_kv, s>>>((Ty *)dqkv, (const Ty *)dout, (const Ty *)qkv, sv.lse, Dsum,
                                                       sv.mask, sv.has_mask, a);
        attention_dq_kernel<Ty><<<gq, WARPS * 32, sh_q, s>>>((Ty *)dqkv, (const Ty *)dout, (const Ty *)qkv, sv.lse, Dsum,
                                                             sv.mask, sv.has_mask, a);
    });
    CUDA_LAUNCHED(ctx, "attention_backward");
}
