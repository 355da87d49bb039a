/* cpu/gemm_grid.h: how the engine's GEMM (cpu/gemm.c) splits C(M,N) += op(A)(M,K) op(B)(K,N) into tasks,
 * from the shape alone (never the thread count, so the bits do not depend on it): gm x gn tiles of C, each
 * over gk chunks of K. Integer code only; py/ops_py.c exposes it to the tests and bench/gemm_grid.py.
 *
 * Why these sizes (bench/gemm_grid.py prints the grid of a distilbert-base step; README "The GEMM grid"):
 * every tile is one single-threaded library sgemm, which packs its slices of A and B again; a tile of
 * mb x nb costs about (1/mb + 1/nb) of its time in that packing, so tiles are sized by their edges, not
 * counted: at least TILE_ROWS rows and TILE_COLS columns (or the whole of a narrower dimension), as many
 * as the shape holds, in powers of two so that they share out evenly over 2, 4, 8, ... threads. Measured
 * on 2 Zen 4 cores, the GEMMs of a distilbert-base step cost 1-3% more with these tiles than with one tile
 * per thread (with oneDNN's AVX2 and AVX-512 kernels), against 20-25% with the previous grid of at most 8
 * tiles of 4 MFLOP or more on AVX2.
 * The weight gradients (A transposed: K is the token count, C is small) split K into gk chunks of at least
 * K_CHUNK rows, up to K_TASKS tasks: each chunk is a whole GEMM, C gets chunk 0 and the others land in
 * scratch and are added to C in chunk order (deterministic); tiles of C there are at least TILE_EDGE_T on
 * both sides: oneDNN's AVX2 sgemm with a transposed A runs narrow tiles of a wide A (lda 3072) at 40% speed. */
#ifndef LNN_CPU_GEMM_GRID_H
#define LNN_CPU_GEMM_GRID_H

#define TILE_ROWS 512
#define TILE_COLS 768
#define TILE_EDGE_T 768
#define K_CHUNK 1024
#define K_TASKS 32
/* a GEMM that would be one task still splits in two (by its longer side, tiles of at least 32 rows or 64
 * columns) from 2 x SMALL_TILE_FLOPS: the LSTM's per-step GEMMs (64 x 512 x 128 and smaller as sequences
 * end) run thousands of times a batch, and one core idling through each of them cost ~10% of an epoch */
#define SMALL_TILE_FLOPS 0.5e6

typedef struct {
    int gm, gn, gk; /* tiles of C: gm row blocks x gn column blocks; gk chunks of K per tile */
} lnn_gemm_grid_t;

/* the largest power of two p <= n / min (1 when n < 2 min) */
static inline int lnn_grid_pow2(int n, int min) {
    int p = 1;
    while (n / (2 * p) >= min) p *= 2;
    return p;
}

static inline lnn_gemm_grid_t lnn_gemm_grid(int ta, int M, int N, int K) {
    lnn_gemm_grid_t g = {1, 1, 1};
    if (M <= 0 || N <= 0 || K <= 0) return g;
    if (ta) {
        g.gm = lnn_grid_pow2(M, TILE_EDGE_T);
        g.gn = lnn_grid_pow2(N, TILE_EDGE_T);
        while (g.gm * g.gn * g.gk < K_TASKS && K / (2 * g.gk) >= K_CHUNK) g.gk *= 2;
    } else {
        g.gm = lnn_grid_pow2(M, TILE_ROWS);
        g.gn = lnn_grid_pow2(N, TILE_COLS);
    }
    if (g.gm * g.gn * g.gk == 1 && 2.0 * M * N * K >= 2 * SMALL_TILE_FLOPS) {
        if (M >= N && M >= 64) g.gm = 2;
        else if (N >= 128) g.gn = 2;
    }
    return g;
}

/* task t (0 <= t < gm * gn * gk; chunks of one tile are consecutive): rows [m0, m1), columns [n0, n1), K rows
 * [k0, k1); tile edges on multiples of 8 rows and 16 columns, chunk edges on multiples of 8 */
static inline void lnn_gemm_task(lnn_gemm_grid_t g, int M, int N, int K, int t, int *m0, int *m1, int *n0, int *n1,
                                 int *k0, int *k1) {
    int c = t % g.gk, tile = t / g.gk, im = tile / g.gn, in = tile % g.gn;
    *m0 = (int)(((long long)M * im / g.gm) & ~7LL);
    *m1 = im == g.gm - 1 ? M : (int)(((long long)M * (im + 1) / g.gm) & ~7LL);
    *n0 = (int)(((long long)N * in / g.gn) & ~15LL);
    *n1 = in == g.gn - 1 ? N : (int)(((long long)N * (in + 1) / g.gn) & ~15LL);
    *k0 = (int)(((long long)K * c / g.gk) & ~7LL);
    *k1 = c == g.gk - 1 ? K : (int)(((long long)K * (c + 1) / g.gk) & ~7LL);
}

#endif /* LNN_CPU_GEMM_GRID_H */
