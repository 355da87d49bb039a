/* cpu/blas.h: the one place that names the CPU GEMM library.
 *
 * The engine calls one row-major single-precision GEMM, lnn_sgemm, and picks its library at build
 * time (setup.py, LYRICNN_BLAS):
 *   onednn            oneDNN's dnnl_sgemm (Debian/Ubuntu libdnnl-dev): JIT kernels chosen from CPUID
 *                     (AVX-512 where the CPU has it, AVX2 otherwise), threaded with the same GNU OpenMP
 *                     runtime as the engine's own loops. Default where it is installed.
 *   scipy-openblas32  the OpenBLAS wheel NumPy/SciPy ship (symbols carry a "scipy_" prefix).
 *   system            the system libopenblas/cblas.
 */
#ifndef LNN_CPU_BLAS_H
#define LNN_CPU_BLAS_H

/* The engine's GEMM (cpu/gemm.c): C(M,N) = alpha op(A)(M,K) op(B)(K,N) + beta C, row-major; ta/tb:
 * 0 = as stored, 1 = transposed. Splits C into a grid of tiles that depends on the shape only, each
 * tile one single-threaded lnn_sgemm over the full K, the tiles shared out over the engine's OpenMP
 * threads: the result does not depend on the thread count. */
void lnn_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc);
/* C(M,N) = alpha op(A) op(B) + bias(N) on every row: each task copies the bias into its tile of C just before
 * its library call (beta = 1), the same numbers as a copy of the whole bias first, without a pass over C */
void lnn_gemm_bias(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                   const float *bias, float *C, int ldc);

#if defined(LNN_BLAS_ONEDNN)

#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* One single-threaded library GEMM, same arguments as lnn_gemm. oneDNN threads with OpenMP: inside the
 * engine's parallel regions it runs on one thread; outside them this thread's OpenMP default is set to
 * one around the call (and put back), so the engine alone decides how a GEMM is split. */
static inline void lnn_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                             const float *B, int ldb, float beta, float *C, int ldc) {
    if (K <= 0) { /* BLAS semantics, C = beta C (oneDNN returns early and leaves C as it was) */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.f ? 0.f : beta * C[(size_t)i * ldc + j];
        return;
    }
#ifdef _OPENMP
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (nt != 1) omp_set_num_threads(1);
#endif
    dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#ifdef _OPENMP
    if (nt != 1) omp_set_num_threads(nt);
#endif
}
static inline void lnn_blas_set_num_threads(int n) { (void)n; }
static inline int lnn_blas_get_num_threads(void) { return 1; }
static inline const char *lnn_blas_get_config(void) {
    static char buf[64];
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, sizeof buf, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
    return buf;
}
static inline const char *lnn_blas_get_corename(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    default: return "other";
    }
}
#define LNN_BLAS_HAS_CONFIG 1
/* Cap oneDNN's kernels at the engine's ISA level (core/cpu_level.h ranks: 2 = x86-64-v2, 3 = AVX2,
 * 4 = AVX-512) when LYRICNN_CPU_LEVEL caps it, unless ONEDNN_MAX_CPU_ISA already does; before any GEMM. */
static inline void lnn_blas_cap_isa(int rank) {
    if (getenv("ONEDNN_MAX_CPU_ISA") || getenv("DNNL_MAX_CPU_ISA")) return;
    dnnl_set_max_cpu_isa(rank >= 4 ? dnnl_cpu_isa_avx512_core : rank == 3 ? dnnl_cpu_isa_avx2 : dnnl_cpu_isa_sse41);
}

#else /* OpenBLAS through CBLAS */

#include <cblas.h>

#ifdef LNN_BLAS_SCIPY_OPENBLAS
#define lnn_cblas_sgemm scipy_cblas_sgemm
#define lnn_blas_set_num_threads scipy_openblas_set_num_threads
#define lnn_blas_get_num_threads scipy_openblas_get_num_threads
#define lnn_blas_get_config scipy_openblas_get_config
#define lnn_blas_get_corename scipy_openblas_get_corename
#define LNN_BLAS_HAS_CONFIG 1
#else
#define lnn_cblas_sgemm cblas_sgemm
#if defined(OPENBLAS_VERSION) || defined(OPENBLAS_SEQUENTIAL)
#define lnn_blas_set_num_threads openblas_set_num_threads
#define lnn_blas_get_num_threads openblas_get_num_threads
#define lnn_blas_get_config openblas_get_config
#define lnn_blas_get_corename openblas_get_corename
#define LNN_BLAS_HAS_CONFIG 1
#else
static inline void lnn_blas_set_num_threads(int n) { (void)n; }
static inline int lnn_blas_get_num_threads(void) { return 1; }
#define LNN_BLAS_HAS_CONFIG 0
#endif
#endif

/* OpenBLAS reads its kernel choice (OPENBLAS_CORETYPE) when it loads: lyricnn/_loader.py sets it from
 * LYRICNN_CPU_LEVEL before that */
static inline void lnn_blas_cap_isa(int rank) { (void)rank; }

/* One library GEMM, same arguments as lnn_gemm (callers set the BLAS to one thread) */
static inline void lnn_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                             const float *B, int ldb, float beta, float *C, int ldc) {
    lnn_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
                    alpha, A, lda, B, ldb, beta, C, ldc);
}

#endif

#endif /* LNN_CPU_BLAS_H */
