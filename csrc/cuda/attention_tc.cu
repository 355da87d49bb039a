// csrc/cuda/attention_tc.cu: the attention's forward and backward on tensor cores, for bf16 activations
// and head sizes 32 and 64 (attention.cu picks these kernels per call, see attention_use_tc there; other
// cases keep its CUDA-core kernels). Same contract, saved layout (lse) and dropout masks as attention.cu,
// so either implementation's backward takes the other's forward.
//
// FlashAttention-2 style, with the WMMA API (nvcuda::wmma, 16x16x16 bf16 fragments, fp32 accumulators,
// sm80+). The products Q K^T, P V (forward) and K Q^T, V dO^T, P^T dO, dS^T Q, Q K^T, dO V^T, dS K
// (backward) run on tensor cores; the softmax runs in fp32 on CUDA cores. WMMA leaves the order of a
// fragment's elements unspecified, so every elementwise step goes through shared memory: a warp stores
// its S (or dP) fragment to a 16 x 64 float tile, its lanes work on rows there (lane c holding columns c
// and c + 32), and the result goes back as a bf16 matrix_a tile.
//
// Blocks of 4 warps (128 threads) and tiles of 64 rows: a block owns 64 queries (forward, dQ) or 64 keys
// (dK, dV), 16 per warp, and loops over the other side in tiles of 64 staged in shared memory (bf16
// rows of hs + 8 elements: 16-byte rows for the copies, 32-byte fragment pointers, skewed banks). Work
// split as attention.cu's: dK, dV by key tiles looping over queries, dQ by query tiles looping over keys;
// no atomics, deterministic.
//
// Numerics, as FlashAttention: an online softmax in fp32 with exp2 (x * log2 e); P (forward) and dS, the
// dropped P (backward) are rounded to bf16 before their products, so the results differ from the SIMT
// kernels' (which keep them in fp32) by bf16 rounding. lse = m + log(l) in natural units, as attention.cu
// saves it. Masked keys add -FLT_MAX and keys past the sequence's end count for nothing, as in attention.cu
// (a fully masked row averages V over all its keys, as HF does; its backward takes p = 1/L from
// att_prob_exp2, since its saved lse rounds to -FLT_MAX).
#include <float.h>
#include <mma.h>

#include "cuda/attention.cuh"

using namespace nvcuda;

#define TC_ROWS 64   // queries (forward, dQ) or keys (dK, dV) per block: 16 per warp
#define TC_COLS 64   // keys (forward, dQ) or queries (dK, dV) per inner tile
#define TC_WARPS 4
#define LDS (TC_COLS + 4) // floats per row of a warp's S / dP tile
#define LDP (TC_COLS + 8) // bf16 per row of a warp's P / dS tile
#define LOG2E 1.4426950408889634f

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> frag_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> frag_b;    // B as stored
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> frag_bt;   // B^T of a row tile
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_c;

// Shared memory of the three kernels, in bytes (every piece a multiple of 32 bytes, so each starts
// 32-byte aligned as wmma::load_matrix_sync requires).
template <int HS>
struct tc_smem {
    static constexpr int LDB = HS + 8;                                   // bf16 per row of a 64-row tile
    static constexpr int LDO = HS + 4;                                   // floats per row of a warp's O tile
    static constexpr size_t tile = (size_t)TC_ROWS * LDB * sizeof(bf16); // Q, K, V or dO rows
    static constexpr size_t stile = 16 * LDS * sizeof(float);            // a warp's 16 x 64 S or dP
    static constexpr size_t ptile = 16 * LDP * sizeof(bf16);             // a warp's 16 x 64 P or dS
    static constexpr size_t otile = 16 * LDO * sizeof(float);            // a warp's 16 x hs output
    static constexpr size_t fwd = 3 * tile + TC_WARPS * (stile + ptile + otile);
    static constexpr size_t dkv = 4 * tile + 2 * TC_COLS * sizeof(float) + TC_WARPS * (2 * stile + 2 * ptile);
    static constexpr size_t dq = 4 * tile + TC_WARPS * (2 * stile + ptile);
};

// The next n elements of type X of the shared memory at *p.
template <typename X>
__device__ __forceinline__ X *carve(unsigned char **p, size_t n) {
    X *r = (X *)*p;
    *p += n * sizeof(X);
    return r;
}

// Rows [0, 64) x columns [0, HS) of a row-major bf16 matrix (row stride ld) into a 64 x (HS + 8) shared
// tile, 16 bytes a copy; rows at or past n are zero (the sequence's end: no garbage reaches a product).
template <int HS>
__device__ void tile_load(bf16 *dst, const bf16 *src, size_t ld, int n) {
    const int CH = HS / 8; // 16-byte chunks per row
    for (int e = threadIdx.x; e < TC_ROWS * CH; e += blockDim.x) {
        int r = e / CH, c = (e % CH) * 8;
        uint4 v = make_uint4(0u, 0u, 0u, 0u);
        if (r < n) v = *(const uint4 *)(src + (size_t)r * ld + c);
        *(uint4 *)(dst + r * tc_smem<HS>::LDB + c) = v;
    }
}

// The additive mask of key j: -FLT_MAX for a masked key (HF), else 0.
__device__ __forceinline__ float key_add(const int32_t *mb, int j) { return (mb && !mb[j]) ? -FLT_MAX : 0.f; }

// out (16 x 64 floats, row stride LDS) = A R^T on tensor cores: the warp's 16 rows A (HS/16 fragments of
// 16 x 16) times the transpose of the 64 rows of a shared tile R (64 x HS, row stride HS + 8): S = Q K^T,
// dP = dO V^T, and their transposes.
template <int HS>
__device__ __forceinline__ void warp_mma_abt(float *out, const frag_a *A, const bf16 *R) {
    for (int nt = 0; nt < TC_COLS / 16; nt++) {
        frag_c c;
        wmma::fill_fragment(c, 0.f);
        for (int k = 0; k < HS / 16; k++) {
            frag_bt rb; // R rows 16nt.., columns 16k..: as a col-major 16 x 16 B it is their transpose
            wmma::load_matrix_sync(rb, R + 16 * nt * tc_smem<HS>::LDB + 16 * k, tc_smem<HS>::LDB);
            wmma::mma_sync(c, A[k], rb, c);
        }
        wmma::store_matrix_sync(out + 16 * nt, c, LDS, wmma::mem_row_major);
    }
}

// acc (16 x HS, HS/16 fragments) += P R on tensor cores: the warp's 16 x 64 bf16 tile P (row stride LDP)
// times a shared tile R (64 x HS, row stride HS + 8): O += P V, dV += Pd^T dO, dK += dS^T Q, dQ += dS K.
template <int HS>
__device__ __forceinline__ void warp_mma_ab(frag_c *acc, const bf16 *P, const bf16 *R) {
    for (int nt = 0; nt < HS / 16; nt++) {
        for (int kk = 0; kk < TC_COLS / 16; kk++) {
            frag_a pa;
            frag_b rb;
            wmma::load_matrix_sync(pa, P + 16 * kk, LDP);
            wmma::load_matrix_sync(rb, R + 16 * kk * tc_smem<HS>::LDB + 16 * nt, tc_smem<HS>::LDB);
            wmma::mma_sync(acc[nt], pa, rb, acc[nt]);
        }
    }
}

// dst's first n of 16 rows (row stride ld, HS columns) += scale * acc, through the warp's float tile tmp
// (16 x LDS): the backward's gradients into dqkv.
template <int HS>
__device__ __forceinline__ void warp_add_rows(bf16 *dst, size_t ld, int n, const frag_c *acc, float scale, float *tmp) {
    for (int nt = 0; nt < HS / 16; nt++) wmma::store_matrix_sync(tmp + 16 * nt, acc[nt], LDS, wmma::mem_row_major);
    __syncwarp();
    for (int r = 0; r < 16 && r < n; r++)
        for (int d = threadIdx.x & 31; d < HS; d += 32) {
            bf16 *o = dst + (size_t)r * ld + d;
            *o = __float2bfloat16_rn(__bfloat162float(*o) + scale * tmp[r * LDS + d]);
        }
}

// ---------------------------------------------------------------- forward

// out (N, C) bf16, lse (B*NH*T) <- qkv (N, 3C): grid (B*NH, ceil(T/64)) (q_first: 1), 128 threads;
// warp w owns queries i0 + 16w .. i0 + 16w + 15 and loops over the key tiles.
template <int HS>
__global__ void __launch_bounds__(TC_WARPS * 32)
    attention_tc_forward_kernel(bf16 *out, float *lse, const bf16 *qkv, const int32_t *mask, att_args a) {
#if __CUDA_ARCH__ >= 800 // bf16 WMMA; attention_use_tc never launches it on older devices
    typedef tc_smem<HS> SM;
    extern __shared__ __align__(128) unsigned char smem_tc[];
    int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
    int row0, L;
    seq_rows(a.seq_off, b, a.T, &row0, &L);
    int Lq = a.q_first ? (L > 0 ? 1 : 0) : L;
    int i0 = blockIdx.y * TC_ROWS;
    if (i0 >= Lq) return;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    size_t C3 = 3 * (size_t)a.C;
    unsigned char *p = smem_tc;
    bf16 *Qs = carve<bf16>(&p, TC_ROWS * SM::LDB), *Ks = carve<bf16>(&p, TC_COLS * SM::LDB),
         *Vs = carve<bf16>(&p, TC_COLS * SM::LDB);
    p += w * (SM::stile + SM::ptile + SM::otile); // this warp's S, P and O tiles
    float *Sw = carve<float>(&p, 16 * LDS);
    bf16 *Pw = carve<bf16>(&p, 16 * LDP);
    float *Ow = carve<float>(&p, 16 * SM::LDO);

    tile_load<HS>(Qs, qkv + (size_t)(row0 + i0) * C3 + h * HS, C3, Lq - i0);
    for (int e = lane; e < 16 * SM::LDO; e += 32) Ow[e] = 0.f;
    __syncthreads();
    frag_a qf[HS / 16]; // the warp's 16 queries, all of the head
    for (int k = 0; k < HS / 16; k++) wmma::load_matrix_sync(qf[k], Qs + 16 * w * SM::LDB + 16 * k, SM::LDB);
    const int32_t *mb = mask ? mask + (size_t)b * a.T : NULL;
    float m[16], l[16]; // running max (natural units) and sum of each of the warp's rows
#pragma unroll
    for (int r = 0; r < 16; r++) {
        m[r] = -INFINITY;
        l[r] = 0.f;
    }
    for (int j0 = 0; j0 < L; j0 += TC_COLS) {
        __syncthreads(); // every warp is done with the previous K, V tiles
        tile_load<HS>(Ks, qkv + (size_t)(row0 + j0) * C3 + a.C + h * HS, C3, L - j0);
        tile_load<HS>(Vs, qkv + (size_t)(row0 + j0) * C3 + 2 * a.C + h * HS, C3, L - j0);
        __syncthreads();
        warp_mma_abt<HS>(Sw, qf, Ks); // S (16 x 64) = Q K^T
        __syncwarp();
        // online softmax, a row at a time: lane holds keys ja = j0 + lane and jb = ja + 32; a key past the
        // sequence's end is -inf (weight 0). P = exp(x - m) with dropout, rounded to bf16; O rows rescaled.
        int ja = j0 + lane, jb = ja + 32;
        float adda = ja < L ? key_add(mb, ja) : -INFINITY, addb = jb < L ? key_add(mb, jb) : -INFINITY;
#pragma unroll
        for (int r = 0; r < 16; r++) {
            int i = i0 + 16 * w + r;
            float xa = Sw[r * LDS + lane] * a.scale + adda, xb = Sw[r * LDS + lane + 32] * a.scale + addb;
            float mn = fmaxf(m[r], warp_max(fmaxf(xa, xb))); // finite: key j0 < L is in this tile
            float corr = exp2f((m[r] - mn) * LOG2E);
            float ea = exp2f((xa - mn) * LOG2E), eb = exp2f((xb - mn) * LOG2E);
            l[r] = l[r] * corr + warp_sum(ea + eb);
            m[r] = mn;
            // (ea == 0: no dropout draw; a NaN score stays NaN in P, as in torch. A row i >= Lq of the tile is
            // never written out and draws nothing: its mask bits would lie past the end of saved)
            Pw[r * LDP + lane] = __float2bfloat16_rn(i < Lq && ea > 0.f ? ea * att_keep(a, b, h, i, ja) : ea);
            Pw[r * LDP + lane + 32] = __float2bfloat16_rn(i < Lq && eb > 0.f ? eb * att_keep(a, b, h, i, jb) : eb);
            for (int d = lane; d < HS; d += 32) Ow[r * SM::LDO + d] *= corr;
        }
        __syncwarp();
        // O (16 x hs) += P V, O from and back to shared memory (rescaled there)
        frag_c of[HS / 16];
        for (int nt = 0; nt < HS / 16; nt++) wmma::load_matrix_sync(of[nt], Ow + 16 * nt, SM::LDO, wmma::mem_row_major);
        warp_mma_ab<HS>(of, Pw, Vs);
        for (int nt = 0; nt < HS / 16; nt++) wmma::store_matrix_sync(Ow + 16 * nt, of[nt], SM::LDO, wmma::mem_row_major);
        __syncwarp();
    }
    // out = O / l; lse = m + log(l)
#pragma unroll
    for (int r = 0; r < 16; r++) {
        int i = i0 + 16 * w + r;
        if (i < Lq) {
            size_t orow = a.q_first ? (size_t)b : (size_t)(row0 + i);
            float inv = 1.f / l[r];
            for (int d = lane; d < HS; d += 32)
                out[orow * a.C + h * HS + d] = __float2bfloat16_rn(Ow[r * SM::LDO + d] * inv);
            if (lane == 0) lse[((size_t)b * a.NH + h) * a.T + i] = m[r] + logf(l[r]);
        }
    }
#endif
}

// ---------------------------------------------------------------- backward

// dK, dV of 64 keys (dqkv +=): grid (B*NH, ceil(T/64)), 128 threads; warp w owns keys j0 + 16w .. + 15
// and loops over every query tile (the first query only with q_first). dK, dV stay in fragments.
template <int HS>
__global__ void __launch_bounds__(TC_WARPS * 32)
    attention_tc_dkv_kernel(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse, const float *D,
                            const int32_t *mask, const int32_t *has_mask, att_args a) {
#if __CUDA_ARCH__ >= 800
    typedef tc_smem<HS> SM;
    extern __shared__ __align__(128) unsigned char smem_tc[];
    int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
    int row0, L;
    seq_rows(a.seq_off, b, a.T, &row0, &L);
    int j0 = blockIdx.y * TC_ROWS;
    if (j0 >= L) return;
    int Lq = a.q_first ? 1 : L;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    size_t C3 = 3 * (size_t)a.C;
    unsigned char *p = smem_tc;
    bf16 *Ks = carve<bf16>(&p, TC_ROWS * SM::LDB), *Vs = carve<bf16>(&p, TC_ROWS * SM::LDB);
    bf16 *Qs = carve<bf16>(&p, TC_COLS * SM::LDB), *Gs = carve<bf16>(&p, TC_COLS * SM::LDB); // Gs: dO
    float *lse_s = carve<float>(&p, TC_COLS), *D_s = carve<float>(&p, TC_COLS);
    p += w * (2 * SM::stile + 2 * SM::ptile);
    float *Sw = carve<float>(&p, 16 * LDS), *dPw = carve<float>(&p, 16 * LDS); // S^T, dP^T (keys x queries)
    bf16 *Pw = carve<bf16>(&p, 16 * LDP), *dSw = carve<bf16>(&p, 16 * LDP);    // dropped P^T, dS^T

    tile_load<HS>(Ks, qkv + (size_t)(row0 + j0) * C3 + a.C + h * HS, C3, L - j0);
    tile_load<HS>(Vs, qkv + (size_t)(row0 + j0) * C3 + 2 * a.C + h * HS, C3, L - j0);
    __syncthreads();
    frag_a kf[HS / 16], vf[HS / 16]; // the warp's 16 keys and values
    frag_c dk[HS / 16], dv[HS / 16];
    for (int k = 0; k < HS / 16; k++) {
        wmma::load_matrix_sync(kf[k], Ks + 16 * w * SM::LDB + 16 * k, SM::LDB);
        wmma::load_matrix_sync(vf[k], Vs + 16 * w * SM::LDB + 16 * k, SM::LDB);
        wmma::fill_fragment(dk[k], 0.f);
        wmma::fill_fragment(dv[k], 0.f);
    }
    const int32_t *mb = (!a.seq_off && *has_mask) ? mask + (size_t)b * a.T : NULL;
    size_t r0 = ((size_t)b * a.NH + h) * a.T; // lse / D index of query 0
    for (int i0 = 0; i0 < Lq; i0 += TC_COLS) {
        __syncthreads(); // every warp is done with the previous Q, dO tiles
        tile_load<HS>(Qs, qkv + (size_t)(row0 + i0) * C3 + h * HS, C3, Lq - i0);
        tile_load<HS>(Gs, dout + (a.q_first ? (size_t)b : (size_t)(row0 + i0)) * a.C + h * HS, a.C, Lq - i0);
        for (int t = threadIdx.x; t < TC_COLS; t += blockDim.x) {
            lse_s[t] = i0 + t < Lq ? lse[r0 + i0 + t] : 0.f;
            D_s[t] = i0 + t < Lq ? D[r0 + i0 + t] : 0.f;
        }
        __syncthreads();
        warp_mma_abt<HS>(Sw, kf, Qs);  // S^T (16 keys x 64 queries) = K Q^T
        warp_mma_abt<HS>(dPw, vf, Gs); // dP^T = V dO^T
        __syncwarp();
        // P = exp(x - lse), dropped Pd = P keep / (1 - p), dS = P (dP keep / (1 - p) - D), both to bf16;
        // zero for a query or key past the sequence's end
        for (int r = 0; r < 16; r++) {
            int j = j0 + 16 * w + r;
            for (int c = lane; c < TC_COLS; c += 32) {
                int i = i0 + c;
                float pd = 0.f, ds = 0.f;
                if (i < Lq && j < L) {
                    float x = Sw[r * LDS + c] * a.scale + key_add(mb, j);
                    float pr = att_prob_exp2(x, lse_s[c], L, LOG2E), kp = att_keep(a, b, h, i, j);
                    pd = pr * kp;
                    ds = pr * (dPw[r * LDS + c] * kp - D_s[c]);
                }
                Pw[r * LDP + c] = __float2bfloat16_rn(pd);
                dSw[r * LDP + c] = __float2bfloat16_rn(ds);
            }
        }
        __syncwarp();
        warp_mma_ab<HS>(dv, Pw, Gs);  // dV (16 x hs) += Pd^T dO
        warp_mma_ab<HS>(dk, dSw, Qs); // dK += dS^T Q (the softmax scale applied once, at the end)
    }
    // dK, dV into dqkv (+=) through the warp's S^T / dP^T tiles (16 x 68 floats >= 16 x hs)
    int jw = j0 + 16 * w; // the warp's first key
    bf16 *rows = dqkv + (size_t)(row0 + jw) * C3 + h * HS;
    warp_add_rows<HS>(rows + a.C, C3, L - jw, dk, a.scale, Sw);
    warp_add_rows<HS>(rows + 2 * a.C, C3, L - jw, dv, 1.f, dPw);
#endif
}

// dQ of 64 queries (dqkv +=): grid (B*NH, ceil(T/64)) (q_first: 1), 128 threads; warp w owns queries
// i0 + 16w .. + 15 and loops over the key tiles. dQ stays in fragments.
template <int HS>
__global__ void __launch_bounds__(TC_WARPS * 32)
    attention_tc_dq_kernel(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse, const float *D,
                           const int32_t *mask, const int32_t *has_mask, att_args a) {
#if __CUDA_ARCH__ >= 800
    typedef tc_smem<HS> SM;
    extern __shared__ __align__(128) unsigned char smem_tc[];
    int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
    int row0, L;
    seq_rows(a.seq_off, b, a.T, &row0, &L);
    int Lq = a.q_first ? (L > 0 ? 1 : 0) : L;
    int i0 = blockIdx.y * TC_ROWS;
    if (i0 >= Lq) return;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    size_t C3 = 3 * (size_t)a.C;
    unsigned char *p = smem_tc;
    bf16 *Qs = carve<bf16>(&p, TC_ROWS * SM::LDB), *Gs = carve<bf16>(&p, TC_ROWS * SM::LDB); // Gs: dO
    bf16 *Ks = carve<bf16>(&p, TC_COLS * SM::LDB), *Vs = carve<bf16>(&p, TC_COLS * SM::LDB);
    p += w * (2 * SM::stile + SM::ptile);
    float *Sw = carve<float>(&p, 16 * LDS), *dPw = carve<float>(&p, 16 * LDS);
    bf16 *dSw = carve<bf16>(&p, 16 * LDP);

    tile_load<HS>(Qs, qkv + (size_t)(row0 + i0) * C3 + h * HS, C3, Lq - i0);
    tile_load<HS>(Gs, dout + (a.q_first ? (size_t)b : (size_t)(row0 + i0)) * a.C + h * HS, a.C, Lq - i0);
    __syncthreads();
    frag_a qf[HS / 16], gf[HS / 16]; // the warp's 16 queries and their output gradients
    frag_c dq[HS / 16];
    for (int k = 0; k < HS / 16; k++) {
        wmma::load_matrix_sync(qf[k], Qs + 16 * w * SM::LDB + 16 * k, SM::LDB);
        wmma::load_matrix_sync(gf[k], Gs + 16 * w * SM::LDB + 16 * k, SM::LDB);
        wmma::fill_fragment(dq[k], 0.f);
    }
    const int32_t *mb = (!a.seq_off && *has_mask) ? mask + (size_t)b * a.T : NULL;
    size_t r0 = ((size_t)b * a.NH + h) * a.T;
    for (int j0 = 0; j0 < L; j0 += TC_COLS) {
        __syncthreads(); // every warp is done with the previous K, V tiles
        tile_load<HS>(Ks, qkv + (size_t)(row0 + j0) * C3 + a.C + h * HS, C3, L - j0);
        tile_load<HS>(Vs, qkv + (size_t)(row0 + j0) * C3 + 2 * a.C + h * HS, C3, L - j0);
        __syncthreads();
        warp_mma_abt<HS>(Sw, qf, Ks);  // S (16 queries x 64 keys) = Q K^T
        warp_mma_abt<HS>(dPw, gf, Vs); // dP = dO V^T
        __syncwarp();
        // dS = P (dP keep / (1 - p) - D) to bf16; zero for a query or key past the sequence's end
        for (int r = 0; r < 16; r++) {
            int i = i0 + 16 * w + r;
            float lse_i = i < Lq ? lse[r0 + i] : 0.f, D_i = i < Lq ? D[r0 + i] : 0.f;
            for (int c = lane; c < TC_COLS; c += 32) {
                int j = j0 + c;
                float ds = 0.f;
                if (i < Lq && j < L) {
                    float x = Sw[r * LDS + c] * a.scale + key_add(mb, j);
                    float pr = att_prob_exp2(x, lse_i, L, LOG2E);
                    ds = pr * (dPw[r * LDS + c] * att_keep(a, b, h, i, j) - D_i);
                }
                dSw[r * LDP + c] = __float2bfloat16_rn(ds);
            }
        }
        __syncwarp();
        warp_mma_ab<HS>(dq, dSw, Ks); // dQ (16 x hs) += dS K (the softmax scale applied at the end)
    }
    // dQ into dqkv (+=) through the warp's S tile
    int iw = i0 + 16 * w; // the warp's first query
    warp_add_rows<HS>(dqkv + (size_t)(row0 + iw) * C3 + h * HS, C3, Lq - iw, dq, a.scale, Sw);
#endif
}

// ---------------------------------------------------------------- launchers (attention.cu calls these)

// The sm_ version (80 = 8.0) of the code the kernels run on the current device: the virtual architecture they
// were compiled for (cudaFuncAttributes.ptxVersion; the #if above leaves them empty below 800), 0 if unknown.
int attention_tc_code_arch(void) {
    cudaFuncAttributes fa;
    if (cudaFuncGetAttributes(&fa, (const void *)attention_tc_forward_kernel<64>) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return fa.ptxVersion;
}

template <int HS>
static void tc_forward(lnn_ctx *ctx, bf16 *out, float *lse, const bf16 *qkv, const int32_t *mask, const att_args &a) {
    size_t sh = tc_smem<HS>::fwd;
    dim3 grid(a.B * a.NH, a.q_first ? 1 : (a.T + TC_ROWS - 1) / TC_ROWS);
    allow_smem((const void *)attention_tc_forward_kernel<HS>, sh);
    attention_tc_forward_kernel<HS><<<grid, TC_WARPS * 32, sh, stream_of(ctx)>>>(out, lse, qkv, mask, a);
}

void attention_tc_forward(lnn_ctx *ctx, bf16 *out, float *lse, const bf16 *qkv, const int32_t *mask,
                          const att_args &a) {
    if (a.hs == 32) tc_forward<32>(ctx, out, lse, qkv, mask, a);
    else tc_forward<64>(ctx, out, lse, qkv, mask, a);
}

template <int HS>
static void tc_backward(lnn_ctx *ctx, bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse, const float *D,
                        const int32_t *mask, const int32_t *has_mask, const att_args &a) {
    cudaStream_t s = stream_of(ctx);
    size_t sh_kv = tc_smem<HS>::dkv, sh_q = tc_smem<HS>::dq;
    dim3 gkv(a.B * a.NH, (a.T + TC_ROWS - 1) / TC_ROWS), gq(a.B * a.NH, a.q_first ? 1 : (a.T + TC_ROWS - 1) / TC_ROWS);
    allow_smem((const void *)attention_tc_dkv_kernel<HS>, sh_kv);
    allow_smem((const void *)attention_tc_dq_kernel<HS>, sh_q);
    attention_tc_dkv_kernel<HS><<<gkv, TC_WARPS * 32, sh_kv, s>>>(dqkv, dout, qkv, lse, D, mask, has_mask, a);
    attention_tc_dq_kernel<HS><<<gq, TC_WARPS * 32, sh_q, s>>>(dqkv, dout, qkv, lse, D, mask, has_mask, a);
}

void attention_tc_backward(lnn_ctx *ctx, bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse,
                           const float *D, const int32_t *mask, const int32_t *has_mask, const att_args &a) {
    if (a.hs == 32) tc_backward<32>(ctx, dqkv, dout, qkv, lse, D, mask, has_mask, a);
    else tc_backward<64>(ctx, dqkv, dout, qkv, lse, D, mask, has_mask, a);
}
