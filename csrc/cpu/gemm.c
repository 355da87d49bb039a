/* cpu/gemm.c: the engine's GEMM over the library's single-threaded sgemm (cpu/blas.h). */
#include "cpu/internal.h"

/* Work per tile the grid aims at (FLOPs), and the most tiles of one GEMM (a power of two, so the
 * tiles share out evenly over 1, 2, 4 or 8 threads). The cap trades scaling for speed on small
 * machines: oneDNN's single-threaded sgemm loses 5-30% on smaller tiles of some shapes (transposed A
 * above all), and distilbert-base steps measured on 2 cores ran the same with 4 or 8 tiles as with the
 * old one-tile-per-thread grid, but 5-10% slower with 16. */
#define TILE_FLOPS 4.0e6
#define MAX_TILES 8
/* A GEMM below 2 x TILE_FLOPS still splits in two from 2 x SMALL_TILE_FLOPS: the LSTM's per-step GEMMs
 * (64 x 128 x 512 and smaller as sequences end) run thousands of times a batch, and one core idling
 * through each of them cost about 10% of an epoch on 2 cores. */
#define SMALL_TILE_FLOPS 0.5e6

/* The tile grid gm x gn of an (M, N, K) GEMM: the power-of-two count of tiles of about TILE_FLOPS
 * each (at most MAX_TILES; two from 2 x SMALL_TILE_FLOPS), as square as the shape allows, each at least
 * 32 rows (or all M rows: a GEMM of few rows splits by columns) and 64 columns (or all N columns when N
 * is narrower: the rank-r GEMMs of LoRA split by rows only). */
static void gemm_grid(int M, int N, int K, int *gm, int *gn) {
    double flops = 2.0 * M * N * K;
    int target = 1;
    while (target < MAX_TILES && flops / (2 * target) >= TILE_FLOPS) target *= 2;
    if (target == 1 && flops >= 2 * SMALL_TILE_FLOPS) target = 2;
    for (; target > 1; target /= 2) {
        double best = -1;
        for (int d = 1; d <= target; d *= 2) {
            int e = target / d;
            if ((d > 1 && M / d < 32) || (e > 1 && N / e < 64)) continue;
            double tm = (double)M / d, tn = (double)N / e, score = tm < tn ? tm / tn : tn / tm;
            if (score > best) { best = score; *gm = d; *gn = e; }
        }
        if (best >= 0) return;
    }
    *gm = *gn = 1;
}

/* One thread pool: the engine's OpenMP threads share out a grid of tiles of C and each tile is one
 * single-threaded library call over the full K (a second, spinning BLAS pool beside OpenMP's costs
 * up to 2x on small machines). The grid depends on the shape only, never on the thread count:
 * libraries round a tile's edge rows and columns with other kernels (oneDNN's AVX2 and OpenBLAS's
 * kernels do), so a grid that followed the thread count would give other bits on other machines.
 * C(M,N) = alpha op(A)(M,K) op(B)(K,N) + beta C, row-major. */
void lnn_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc) {
    if (lnn_blas_get_num_threads() != 1) lnn_blas_set_num_threads(1);
    int gm = 1, gn = 1;
    gemm_grid(M, N, K, &gm, &gn);
    int ntiles = gm * gn;
    if (ntiles <= 1) {
        unsigned csr = lnn_ftz_begin();
        lnn_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        lnn_ftz_end(csr);
        return;
    }
    LNN_OMP_FOR_DYNAMIC
    for (int t = 0; t < ntiles; t++) {
        int im = t / gn, in = t % gn;
        int m0 = (int)(((long long)M * im / gm) & ~7LL), m1 = im == gm - 1 ? M : (int)(((long long)M * (im + 1) / gm) & ~7LL);
        int n0 = (int)(((long long)N * in / gn) & ~15LL), n1 = in == gn - 1 ? N : (int)(((long long)N * (in + 1) / gn) & ~15LL);
        if (m1 <= m0 || n1 <= n0) continue;
        const float *Ap = ta ? A + m0 : A + (size_t)m0 * lda;
        const float *Bp = tb ? B + (size_t)n0 * ldb : B + n0;
        unsigned csr = lnn_ftz_begin();
        lnn_sgemm(ta, tb, m1 - m0, n1 - n0, K, alpha, Ap, lda, Bp, ldb, beta, C + (size_t)m0 * ldc + n0, ldc);
        lnn_ftz_end(csr);
    }
}
