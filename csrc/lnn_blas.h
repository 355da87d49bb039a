/* lnn_blas.h: the one place that names the CPU BLAS.
 *
 * Default: scipy-openblas32 (the OpenBLAS build NumPy/SciPy ship as a wheel; symbols carry a
 * "scipy_" prefix). With LYRICNN_BLAS=system the build links the system libopenblas/cblas.
 */
#ifndef LNN_BLAS_H
#define LNN_BLAS_H

#include <cblas.h>

#ifdef LNN_BLAS_SCIPY_OPENBLAS
#define lnn_cblas_sgemm scipy_cblas_sgemm
#define lnn_cblas_sgemm_batch_strided scipy_cblas_sgemm_batch_strided
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

#endif /* LNN_BLAS_H */
