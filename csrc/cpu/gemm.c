/* cpu/gemm.c: the engine's GEMM over the library's single-threaded sgemm (cpu/blas.h), split by the shape
 * alone (cpu/gemm_grid.h). */
#include <pthread.h>
#include <stdlib.h>

#include "cpu/gemm_grid.h"
#include "cpu/internal.h"

/* A GEMM below this many FLOPs (~0.3 ms on one core) is a short parallel region (core/common.h) */
#define SHORT_GEMM_FLOPS 32.0e6

/* Scratch for the K chunks after the first: per calling thread (two Python threads may run GEMMs at
 * once), kept for the next GEMM, freed when the thread ends. */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
typedef struct {
    float *p;
    size_t n;
} gemm_scratch;

static void scratch_free(void *s) {
    if (!s) return;
    lnn_free(((gemm_scratch *)s)->p);
    free(s);
}
static void scratch_key_init(void) { (void)pthread_key_create(&scratch_key, scratch_free); }

static float *chunk_scratch(size_t n) {
    pthread_once(&scratch_once, scratch_key_init);
    gemm_scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        if (!(s = calloc(1, sizeof *s))) return NULL;
        if (pthread_setspecific(scratch_key, s)) {
            free(s);
            return NULL;
        }
    }
    if (s->n < n) {
        lnn_free(s->p);
        s->n = 0;
        if (!(s->p = lnn_malloc(n * sizeof(float)))) return NULL;
        s->n = n;
    }
    return s->p;
}

/* One task of the grid: its tile of C over its chunk of K; chunk c > 0 writes its product to scratch slot c-1
 * (row stride N), and the task that completes a tile adds the slots to C in chunk order. */
static void gemm_task(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                      int ldb, float beta, const float *bias, float *C, int ldc, lnn_gemm_grid_t g, int t, float *S,
                      int *done) {
    int m0, m1, n0, n1, k0, k1;
    lnn_gemm_task(g, M, N, K, t, &m0, &m1, &n0, &n1, &k0, &k1);
    if (m1 <= m0 || n1 <= n0) return;
    int c = t % g.gk;
    if (bias && c == 0) /* C's tile starts as the bias rows, here where the tile is about to be used */
        for (int i = m0; i < m1; i++) memcpy(C + (size_t)i * ldc + n0, bias + n0, sizeof(float) * (size_t)(n1 - n0));
    const float *Ap = ta ? A + (size_t)k0 * lda + m0 : A + (size_t)m0 * lda + k0;
    const float *Bp = tb ? B + (size_t)n0 * ldb + k0 : B + (size_t)k0 * ldb + n0;
    float *Cp = c == 0 ? C + (size_t)m0 * ldc + n0 : S + (size_t)(c - 1) * M * N + (size_t)m0 * N + n0;
    unsigned csr = lnn_ftz_begin();
    lnn_sgemm(ta, tb, m1 - m0, n1 - n0, k1 - k0, alpha, Ap, lda, Bp, ldb, c == 0 ? beta : 0.f, Cp, c == 0 ? ldc : N);
    if (g.gk > 1 && __atomic_add_fetch(&done[t / g.gk], 1, __ATOMIC_ACQ_REL) == g.gk) {
        for (int i = m0; i < m1; i++) {
            float *Cr = C + (size_t)i * ldc;
            for (int s = 1; s < g.gk; s++) {
                const float *Sr = S + (size_t)(s - 1) * M * N + (size_t)i * N;
                for (int j = n0; j < n1; j++) Cr[j] += Sr[j];
            }
        }
    }
    lnn_ftz_end(csr);
}

/* One thread pool: the engine's OpenMP threads share out the grid's tasks and each task is one
 * single-threaded library call (a second, spinning BLAS pool beside OpenMP's costs up to 2x on small
 * machines). The grid depends on the shape only, never on the thread count: libraries round a tile's
 * edge rows and columns with other kernels (oneDNN's AVX2 and OpenBLAS's kernels do), so a grid that
 * followed the thread count would give other bits on other machines.
 * C(M,N) = alpha op(A)(M,K) op(B)(K,N) + beta C, row-major. */
static void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, const float *bias, float *C, int ldc) {
    if (lnn_blas_get_num_threads() != 1) lnn_blas_set_num_threads(1);
    lnn_gemm_grid_t g = lnn_gemm_grid(ta, M, N, K);
    int ntiles = g.gm * g.gn, ntasks = ntiles * g.gk;
    float *S = NULL;
    int *done = NULL;
    if (g.gk > 1) { /* K chunks: scratch for all but the first, a counter per tile */
        size_t slots = (size_t)(g.gk - 1) * M * N;
        S = chunk_scratch(slots + ((size_t)ntiles * sizeof(int) + sizeof(float) - 1) / sizeof(float));
        if (S) {
            done = (int *)(S + slots);
            memset(done, 0, (size_t)ntiles * sizeof(int));
        } else { /* no memory for the chunks: each tile over all of K (other bits, the same on any thread count) */
            g.gk = 1;
            ntasks = ntiles;
        }
    }
    if (bias) beta = 1.f;
    if (ntasks <= 1) {
        if (bias)
            for (int i = 0; i < M; i++) memcpy(C + (size_t)i * ldc, bias, sizeof(float) * (size_t)N);
        unsigned csr = lnn_ftz_begin();
        lnn_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        lnn_ftz_end(csr);
        return;
    }
    /* a short GEMM (an LSTM step's) on the team lnn_short_threads() gives, timed (core/common.h) */
    int is_short = 2.0 * M * N * K < SHORT_GEMM_FLOPS, nt = is_short ? lnn_short_threads() : lnn_num_threads;
    double t0 = is_short ? lnn_now() : 0, work = 0;
    LNN_PRAGMA(omp parallel for num_threads(nt) schedule(dynamic, 1) reduction(+ : work) if(nt > 1))
    for (int t = 0; t < ntasks; t++) {
        double s = is_short ? lnn_now() : 0;
        gemm_task(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, bias, C, ldc, g, t, S, done);
        if (is_short) work += lnn_now() - s;
    }
    if (is_short) lnn_short_report(nt, lnn_now() - t0, work);
}

void lnn_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc) {
    gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, NULL, C, ldc);
}

void lnn_gemm_bias(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                   const float *bias, float *C, int ldc) {
    gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, 1.f, bias, C, ldc);
}
