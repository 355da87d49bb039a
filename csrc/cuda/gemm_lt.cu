// csrc/cuda/gemm_lt.cu: nn.Linear's forward with its bias on cuBLASLt: out = inp @ w^T + b as ONE
// cublasLtMatmul with the BIAS epilogue, instead of a broadcast kernel writing b into out and a beta = 1
// cublasGemmEx reading it back (a full extra write and read of the (N, OC) output: ~3 GB per training step
// at B=32, T=512 on BERT-base, 12 layers x 16384 rows x (2304 + 768 + 768) bf16 outputs written and read). The only cuBLASLt code of the backend; matmul.cu calls cuda_gemm_lt_bias
// and falls back to its cuBLAS path when this returns 0.
#include <string.h>

#include "cuda/internal.cuh"

// The GEMM path when LYRICNN_CUDA_GEMM is unset. "blas" (broadcast + cublasGemmEx) until tools/gpu_check.sh
// has verified the cuBLASLt path on a GPU; flips to "lt" after verification.
static const char *const GEMM_DEFAULT = "blas";

// LYRICNN_CUDA_GEMM, read by ctx_init (once per context, kept in its handles): "lt" (1) = biased linears on
// cuBLASLt with the bias epilogue, falling back to cuBLAS for a shape cuBLASLt refuses; "lt-strict" (2) = the
// same, but a refusal is an error (the tests use it to prove the cuBLASLt path ran); anything else ("blas",
// 0) = broadcast + cublasGemmEx.
int cuda_gemm_lt_wanted(void) {
    const char *e = getenv("LYRICNN_CUDA_GEMM");
    if (!e || !*e) e = GEMM_DEFAULT;
    return !strcmp(e, "lt-strict") ? 2 : !strcmp(e, "lt");
}

// The largest of 16, 8, 4, 2 bytes that divides every pointer: cuBLASLt's heuristic picks kernels for the
// alignment it is told (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*), so it is part of the cache key.
static int alignment_of(const void *a, const void *b, const void *c, const void *d) {
    uintptr_t p = (uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)d;
    int al = 16;
    while (al > 1 && p % al) al >>= 1;
    return al;
}

// The context's cache entry for a key (cuda_handles.lt_cache, a linear scan); NULL when absent.
static lt_entry *lt_find(cuda_handles *h, const lt_key &key) {
    for (int i = 0; i < LT_CACHE; i++)
        if (h->lt_cache[i].used && !memcmp(&h->lt_cache[i].key, &key, sizeof key)) return &h->lt_cache[i];
    return NULL;
}

static void lt_clear(lt_entry *e) {
    if (e->ld) cublasLtMatrixLayoutDestroy(e->ld);
    if (e->lb) cublasLtMatrixLayoutDestroy(e->lb);
    if (e->la) cublasLtMatrixLayoutDestroy(e->la);
    if (e->op) cublasLtMatmulDescDestroy(e->op);
    memset(e, 0, sizeof *e);
}

void cuda_gemm_lt_release(cuda_handles *h) {
    for (int i = 0; i < LT_CACHE; i++) lt_clear(&h->lt_cache[i]);
}

// The descriptors of a biased linear of key (see cuda_gemm_lt_bias for the layout); 0 when one could not be
// built.
static int lt_describe(lt_entry *e, const lt_key &key) {
    cudaDataType_t t = (cudaDataType_t)key.dtype;
    cublasComputeType_t comp = key.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    cublasLtEpilogue_t epi = (cublasLtEpilogue_t)key.epilogue;
    int m = key.m, n = key.n, k = key.k;
    return cublasLtMatmulDescCreate(&e->op, comp, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
           cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof opT) ==
               CUBLAS_STATUS_SUCCESS &&
           cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN) ==
               CUBLAS_STATUS_SUCCESS &&
           cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi) ==
               CUBLAS_STATUS_SUCCESS &&
           cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &t, sizeof t) ==
               CUBLAS_STATUS_SUCCESS &&
           cublasLtMatrixLayoutCreate(&e->la, t, k, m, k) == CUBLAS_STATUS_SUCCESS &&
           cublasLtMatrixLayoutCreate(&e->lb, t, k, n, k) == CUBLAS_STATUS_SUCCESS &&
           cublasLtMatrixLayoutCreate(&e->ld, t, m, n, m) == CUBLAS_STATUS_SUCCESS;
}

// A new entry for a key: its descriptors and the heuristic's algorithm (ok = 1), or ok = 0 when either
// fails (the cuBLAS path for that key from then on). cublasLtMatmulAlgoGetHeuristic is too slow to call per
// GEMM, hence the cache. Full, its entries are overwritten in turn (packed batches change N from step to
// step).
static lt_entry *lt_fill(cuda_handles *h, const lt_key &key) {
    lt_entry *e = &h->lt_cache[h->lt_next];
    h->lt_next = (h->lt_next + 1) % LT_CACHE;
    lt_clear(e);
    e->key = key;
    e->used = 1;
    if (!lt_describe(e, key)) return e;
    // Determinism: only algorithms without a split-K reduction (CUBLASLT_REDUCTION_SCHEME_NONE: each output
    // element is summed over K by one thread block, in a fixed order), so the same shapes give the same bits
    // every run. The mask keeps the algorithms whose scheme is one of its bits; NONE (0) has no bit, so a
    // mask of 0 keeps the non-split ones alone.
    uint32_t reduction = CUBLASLT_REDUCTION_SCHEME_NONE;
    uint64_t ws = h->lt_ws_bytes;
    uint32_t al = (uint32_t)key.align;
    static const cublasLtMatmulPreferenceAttributes_t aligns[] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    cublasLtMatmulPreference_t pref = NULL;
    bool ok = cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS;
    ok = ok && cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws) ==
                   CUBLAS_STATUS_SUCCESS;
    ok = ok && cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &reduction,
                                                    sizeof reduction) == CUBLAS_STATUS_SUCCESS;
    for (cublasLtMatmulPreferenceAttributes_t a : aligns)
        ok = ok && cublasLtMatmulPreferenceSetAttribute(pref, a, &al, sizeof al) == CUBLAS_STATUS_SUCCESS;
    cublasLtMatmulHeuristicResult_t res;
    int n = 0;
    ok = ok && cublasLtMatmulAlgoGetHeuristic(h->lt, e->op, e->la, e->lb, e->ld, e->ld, pref, 1, &res, &n) ==
                   CUBLAS_STATUS_SUCCESS;
    if (ok && n > 0 && res.state == CUBLAS_STATUS_SUCCESS) {
        e->algo = res.algo;
        e->ok = 1;
    }
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    return e;
}

// out(N,OC) = inp(N,C) @ w(OC,C)^T + b(OC), row-major, as one cublasLtMatmul with CUBLASLT_EPILOGUE_BIAS.
// Returns 1 when it ran, 0 when the caller must take the cuBLAS path instead: a descriptor could not be
// built, the heuristic had no algorithm for this key, or cublasLtMatmul refused it (all remembered in the
// cache).
//
// Row-major as cuBLAS's column-major: a row-major (R, S) matrix is the column-major (S, R) one with ld S.
// So out^T(OC, N) = w(OC, C) . inp^T(C, N) column-major: A = w stored (C, OC) ld C with op T, B = inp
// stored (C, N) ld C with op N, D = out stored (OC, N) ld OC; m = OC, n = N, k = C. The BIAS epilogue adds a
// vector whose "length must match matrix D rows count" (cublasLt.h, CUBLASLT_MATMUL_DESC_BIAS_POINTER),
// broadcast over D's columns: D's rows are the m = OC output features, its columns the N tokens, so
// b(OC) is added to every token's row of the row-major out -- nn.Linear's bias.
//
// Types: bf16 (fp16) activations: A, B, C, D and the bias bf16 (fp16; b is the weight copy in the activation
// dtype, as matmul_forward's contract says: b A(OC)), F32 accumulation and scale. F32 activations: F32
// throughout, CUBLAS_COMPUTE_32F, or TF32 tensor cores only when the context allows them ("tf32" mode;
// "fp32" is exact). The bias is added in F32 to the F32 accumulator and D rounded once, as the cuBLAS path
// (out = b, then beta = 1) does.
//
// The descriptors and the algorithm are cached per key; a call only points the descriptor at its bias.
int cuda_gemm_lt_bias(lnn_ctx *ctx, void *out, const void *inp, const void *w, const void *b, int N, int C, int OC) {
    cuda_handles *h = handles_of(ctx);
    int tf32 = ctx->act == LNN_F32 && ctx->allow_tf32;
    lt_key key = {OC, N, C, (int)cuda_act_type(ctx), tf32, (int)CUBLASLT_EPILOGUE_BIAS, alignment_of(out, inp, w, b)};
    lt_entry *e = lt_find(h, key);
    if (!e) e = lt_fill(h, key);
    if (!e->ok) return 0; // known to fail: the cuBLAS path
    float alpha = 1.f, beta = 0.f; // beta = 0: C (= D, the same layout) is not read
    e->ok = cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof b) ==
                CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmul(h->lt, e->op, &alpha, w, e->la, inp, e->lb, &beta, out, e->ld, out, e->ld, &e->algo,
                           h->lt_ws, h->lt_ws_bytes, stream_of(ctx)) == CUBLAS_STATUS_SUCCESS;
    return e->ok; // a refusal is remembered: this key goes to cuBLAS from now on
}
