// csrc/cuda/gemm_lt.cu: nn.Linear's forward with its bias on cuBLASLt: out = inp @ w^T + b as ONE
// cublasLtMatmul with the BIAS epilogue, instead of a broadcast kernel writing b into out and a beta = 1
// cublasGemmEx reading it back (a full extra write and read of the (N, OC) output: ~5 GB per training step
// at B=32, T=512 on BERT-base). The only cuBLASLt code of the backend; matmul.cu calls cuda_gemm_lt_bias
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

// A new entry for a key with the heuristic's algorithm (ok = 1), or ok = 0 when it has none (the cuBLAS path
// for that key from then on). cublasLtMatmulAlgoGetHeuristic is too slow to call per GEMM, hence the
// cache. Full, its entries are overwritten in turn (packed batches change N from step to step).
static lt_entry *lt_fill(cuda_handles *h, const lt_key &key, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t la,
                         cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t ld) {
    lt_entry *e = &h->lt_cache[h->lt_next];
    h->lt_next = (h->lt_next + 1) % LT_CACHE;
    memset(e, 0, sizeof *e);
    e->key = key;
    e->used = 1;
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
    ok = ok && cublasLtMatmulAlgoGetHeuristic(h->lt, op, la, lb, ld, ld, pref, 1, &res, &n) == CUBLAS_STATUS_SUCCESS;
    if (ok && n > 0 && res.state == CUBLAS_STATUS_SUCCESS) {
        e->algo = res.algo;
        e->ok = 1;
    }
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    return e;
}

// out(N,OC) = inp(N,C) @ w(OC,C)^T + b(OC), row-major, as one cublasLtMatmul with CUBLASLT_EPILOGUE_BIAS.
// Returns 1 when it ran, 0 when the caller must take the cuBLAS path instead: the heuristic had no
// algorithm for this key or cublasLtMatmul refused it (both remembered in the cache), or a descriptor
// could not be created.
//
// Row-major as cuBLAS's column-major: a row-major (R, S) matrix is the column-major (S, R) one with ld S.
// So out^T(OC, N) = w(OC, C) . inp^T(C, N) column-major: A = w stored (C, OC) ld C with op T, B = inp
// stored (C, N) ld C with op N, D = out stored (OC, N) ld OC; m = OC, n = N, k = C. The BIAS epilogue adds a
// vector whose "length must match matrix D rows count" (cublasLt.h, CUBLASLT_MATMUL_DESC_BIAS_POINTER),
// broadcast over D's columns: D's rows are the m = OC output features, its columns the N tokens, so
// b(OC) is added to every token's row of the row-major out -- nn.Linear's bias.
//
// Types: bf16 activations: A, B, C, D and the bias bf16 (b is the weight copy in the activation dtype,
// as matmul_forward's contract says: b A(OC)), F32 accumulation and scale. F32 activations: F32
// throughout, CUBLAS_COMPUTE_32F, or TF32 tensor cores only when the context allows them ("tf32" mode;
// "fp32" is exact). The bias is added in F32 to the F32 accumulator and D rounded once, as the cuBLAS path
// (out = b, then beta = 1) does.
//
// The descriptors are created per call (host-side objects, microseconds, nothing to free with the context);
// only the algorithm, the costly heuristic's answer, is cached.
int cuda_gemm_lt_bias(lnn_ctx *ctx, void *out, const void *inp, const void *w, const void *b, int N, int C, int OC) {
    cuda_handles *h = handles_of(ctx);
    int bf = ctx->act == LNN_BF16, tf32 = !bf && ctx->allow_tf32;
    lt_key key = {OC, N, C, bf, tf32, (int)CUBLASLT_EPILOGUE_BIAS, alignment_of(out, inp, w, b)};
    lt_entry *e = lt_find(h, key);
    if (e && !e->ok) return 0; // known to fail: no descriptors built
    cudaDataType_t t = cuda_act_type(ctx);
    cublasComputeType_t comp = tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    int ran = 0;
    if (cublasLtMatmulDescCreate(&op, comp, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof opT) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof b) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &t, sizeof t) ==
            CUBLAS_STATUS_SUCCESS &&
        cublasLtMatrixLayoutCreate(&la, t, C, OC, C) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatrixLayoutCreate(&lb, t, C, N, C) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatrixLayoutCreate(&ld, t, OC, N, OC) == CUBLAS_STATUS_SUCCESS) {
        if (!e) e = lt_fill(h, key, op, la, lb, ld);
        float alpha = 1.f, beta = 0.f; // beta = 0: C (= D, the same layout) is not read
        ran = e->ok && cublasLtMatmul(h->lt, op, &alpha, w, la, inp, lb, &beta, out, ld, out, ld, &e->algo,
                                      h->lt_ws, h->lt_ws_bytes, stream_of(ctx)) == CUBLAS_STATUS_SUCCESS;
        e->ok = ran; // a refusal is remembered: this key goes to cuBLAS from now on
    }
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    return ran;
}
