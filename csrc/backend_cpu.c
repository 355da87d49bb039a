/* backend_cpu.c: the CPU backend: GEMMs through the BLAS (lnn_blas.h), everything else in
 * OpenMP loops (LNN_OMP_FOR), with fused elementwise passes. Reductions over rows (bias and
 * LayerNorm weight gradients, embedding gradients) are split by column blocks, so every result
 * is independent of the thread count and of scheduling. */
/* Let gcc if-convert the clamps and selects of the math helpers so the elementwise loops vectorize
 * (no code here relies on floating-point exception flags). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <float.h>
#include <math.h>
#include <string.h>

#include "backend.h"
#include "lnn_blas.h"


/* ------------------------------------------------------------------ math helpers */

/* exp(x) to ~2 ulp, branch-free so loops vectorize; exp(x < -87.3) = 0 (also for -inf). */
static inline float lnn_expf(float x) {
    float xc = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
    float n = floorf(xc * 1.44269504088896341f + 0.5f);
    float r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } u;
    u.i = ((int32_t)n + 127) << 23;
    float y = p * u.f;
    return x < -87.3f ? 0.f : y;
}

/* erf(x), |error| < 1.5e-7 (Abramowitz & Stegun 7.1.26, as torch's vectorized erf). */
static inline float lnn_erff(float x) {
    float ax = fabsf(x);
    float t = 1.0f / (1.0f + 0.3275911f * ax);
    float y = 1.061405429f;
    y = y * t - 1.453152027f;
    y = y * t + 1.421413741f;
    y = y * t - 0.284496736f;
    y = y * t + 0.254829592f;
    y = 1.0f - y * t * lnn_expf(-ax * ax);
    return x < 0.f ? -y : y;
}

static inline float lnn_tanh_fast(float u) {
    float uc = u > 15.f ? 15.f : (u < -15.f ? -15.f : u);
    float e = lnn_expf(2.f * uc);
    return (e - 1.f) / (e + 1.f);
}

#define LNN_SQRT1_2 0.70710678118654752f
#define LNN_INV_SQRT_2PI 0.39894228040143268f
#define LNN_GELU_K 0.79788456080286536f /* sqrt(2/pi) */

static inline float act_f(float x, int act) {
    if (act == LNN_ACT_RELU) return x > 0.f ? x : 0.f;
    if (act == LNN_ACT_GELU_TANH)
        return 0.5f * x * (1.f + lnn_tanh_fast(LNN_GELU_K * (x + 0.044715f * x * x * x)));
    return 0.5f * x * (1.f + lnn_erff(x * LNN_SQRT1_2));
}

static inline float act_df(float x, int act) {
    if (act == LNN_ACT_RELU) return x > 0.f ? 1.f : 0.f;
    if (act == LNN_ACT_GELU_TANH) {
        float th = lnn_tanh_fast(LNN_GELU_K * (x + 0.044715f * x * x * x));
        return 0.5f * (1.f + th) + 0.5f * x * (1.f - th * th) * LNN_GELU_K * (1.f + 3.f * 0.044715f * x * x);
    }
    return 0.5f * (1.f + lnn_erff(x * LNN_SQRT1_2)) + x * LNN_INV_SQRT_2PI * lnn_expf(-0.5f * x * x);
}

#ifdef _OPENMP
#define SIMD_SUM(v) LNN_PRAGMA(omp simd reduction(+ : v))
#define SIMD_MAX(v) LNN_PRAGMA(omp simd reduction(max : v))
#define SIMD_SUM2(a, b) LNN_PRAGMA(omp simd reduction(+ : a) reduction(+ : b))
#else
#define SIMD_SUM(v)
#define SIMD_MAX(v)
#define SIMD_SUM2(a, b)
#endif

#define COLBLOCK 64

/* db(OC) += colsum(x(N,OC)), by column blocks (deterministic) */
static void colsum_acc(float *db, const float *x, int N, int OC) {
    int nblk = (OC + COLBLOCK - 1) / COLBLOCK;
    LNN_OMP_FOR
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * COLBLOCK, nc = OC - c0 < COLBLOCK ? OC - c0 : COLBLOCK;
        float acc[COLBLOCK] = {0};
        for (int n = 0; n < N; n++) {
            const float *row = x + (size_t)n * OC + c0;
            for (int j = 0; j < nc; j++) acc[j] += row[j];
        }
        for (int j = 0; j < nc; j++) db[c0 + j] += acc[j];
    }
}


/* ------------------------------------------------------------------ GEMM */

/* One thread pool: the engine's OpenMP threads split C into a grid of tiles and each calls the
 * library single-threaded (a second, spinning BLAS pool beside OpenMP's costs up to 2x on small
 * machines). Tiles are computed over the full K, so with oneDNN results do not depend on the thread
 * count; OpenBLAS rounds a tile's edge rows with other kernels, so there they agree to rounding only.
 * C(M,N) = alpha op(A)(M,K) op(B)(K,N) + beta C, row-major. */
void lnn_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc) {
    if (lnn_blas_get_num_threads() != 1) lnn_blas_set_num_threads(1);
    int nt = lnn_num_threads > 0 ? lnn_num_threads : 1;
    if ((double)M * N * K < 4.0e6) nt = 1;
    /* grid gm x gn = nt with tiles as square as possible, at least 32 rows / 64 columns each */
    int gm = 1, gn = 1;
    double best = -1;
    for (int d = 1; d <= nt; d++) {
        if (nt % d) continue;
        int e = nt / d;
        if (M / d < 32 || N / e < 64) continue;
        double tm = (double)M / d, tn = (double)N / e, score = tm < tn ? tm / tn : tn / tm;
        if (score > best) { best = score; gm = d; gn = e; }
    }
    int ntiles = gm * gn;
    if (ntiles <= 1) {
        lnn_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(ntiles) schedule(static)
#endif
    for (int t = 0; t < ntiles; t++) {
        int im = t / gn, in = t % gn;
        int m0 = (int)(((long long)M * im / gm) & ~7LL), m1 = im == gm - 1 ? M : (int)(((long long)M * (im + 1) / gm) & ~7LL);
        int n0 = (int)(((long long)N * in / gn) & ~15LL), n1 = in == gn - 1 ? N : (int)(((long long)N * (in + 1) / gn) & ~15LL);
        if (m1 <= m0 || n1 <= n0) continue;
        const float *Ap = ta ? A + m0 : A + (size_t)m0 * lda;
        const float *Bp = tb ? B + (size_t)n0 * ldb : B + n0;
        lnn_sgemm(ta, tb, m1 - m0, n1 - n0, K, alpha, Ap, lda, Bp, ldb, beta, C + (size_t)m0 * ldc + n0, ldc);
    }
}

/* ------------------------------------------------------------------ memory */

static void cpu_zero(void *p, size_t n) { if (n) memset(p, 0, n); }
static void cpu_copy(void *d, const void *s, size_t n) { if (n && d != s) memcpy(d, s, n); }

/* ------------------------------------------------------------------ embeddings */

/* out(N,C) = wte[ids] + wpe[pos] (+ wtt[types]) */
static void embedding_forward(float *out, const int32_t *ids, const int32_t *types, const int32_t *pos,
                              const float *wte, const float *wpe, const float *wtt, int N, int C) {
    LNN_OMP_FOR
    for (long n = 0; n < N; n++) {
        float *o = out + n * C;
        const float *w = wte + (size_t)ids[n] * C, *p = wpe + (size_t)pos[n] * C;
        if (wtt) {
            const float *y = wtt + (size_t)(types ? types[n] : 0) * C;
            for (int c = 0; c < C; c++) o[c] = (w[c] + y[c]) + p[c];
        } else {
            for (int c = 0; c < C; c++) o[c] = w[c] + p[c];
        }
    }
}

/* dwte[ids] += dout except the pad row; dwpe[pos] += dout; dwtt[types] += dout (by column blocks) */
static void embedding_backward(float *dwte, float *dwpe, float *dwtt, const float *dout, const int32_t *ids,
                               const int32_t *types, const int32_t *pos, int N, int C, int pad_id) {
    int nblk = (C + COLBLOCK - 1) / COLBLOCK;
    LNN_OMP_FOR
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * COLBLOCK, nc = C - c0 < COLBLOCK ? C - c0 : COLBLOCK;
        for (long n = 0; n < N; n++) {
            const float *g = dout + n * C + c0;
            if (dwte && ids[n] != pad_id) {
                float *d = dwte + (size_t)ids[n] * C + c0;
                for (int j = 0; j < nc; j++) d[j] += g[j];
            }
            if (dwpe) {
                float *d = dwpe + (size_t)pos[n] * C + c0;
                for (int j = 0; j < nc; j++) d[j] += g[j];
            }
            if (dwtt) {
                float *d = dwtt + (size_t)(types ? types[n] : 0) * C + c0;
                for (int j = 0; j < nc; j++) d[j] += g[j];
            }
        }
    }
}

/* ------------------------------------------------------------------ matmul (nn.Linear) */

/* out(N,OC) = inp(N,C) @ w(OC,C)^T (+ b) */
static void matmul_forward(float *out, const float *inp, const float *w, const float *b, int N, int C, int OC) {
    float beta = 0.f;
    if (b) {
        LNN_OMP_FOR
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, b, sizeof(float) * OC);
        beta = 1.f;
    }
    lnn_gemm(0, 1, N, OC, C, 1.f, inp, C, w, C, beta, out, OC);
}

/* dinp(N,C) += dout @ w; dw(OC,C) += dout^T @ inp; db += colsum(dout) */
static void matmul_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, int N, int C, int OC) {
    if (dinp)
        lnn_gemm(0, 0, N, C, OC, 1.f, dout, OC, w, C, 1.f, dinp, C);
    if (dw)
        lnn_gemm(1, 0, OC, C, N, 1.f, dout, OC, inp, C, 1.f, dw, C);
    if (db) colsum_acc(db, dout, N, OC);
}

/* ------------------------------------------------------------------ layernorm (+ residual) */

/* res = a + r; out = LN(res) */
static void layernorm_forward(float *out, float *mean, float *rstd, float *res, const float *a, const float *r,
                              const float *w, const float *b, int N, int C, float eps) {
    LNN_OMP_FOR
    for (int n = 0; n < N; n++) {
        float *x = res + (size_t)n * C;
        const float *an = a + (size_t)n * C;
        if (r) {
            const float *rn = r + (size_t)n * C;
            for (int c = 0; c < C; c++) x[c] = an[c] + rn[c];
        } else if (x != an) {
            memcpy(x, an, sizeof(float) * C);
        }
        float s = 0.f;
        SIMD_SUM(s)
        for (int c = 0; c < C; c++) s += x[c];
        float m = s / C, v = 0.f;
        SIMD_SUM(v)
        for (int c = 0; c < C; c++) { float d = x[c] - m; v += d * d; }
        float rs = 1.0f / sqrtf(v / C + eps);
        float *o = out + (size_t)n * C;
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * rs * w[c] + b[c];
        mean[n] = m;
        rstd[n] = rs;
    }
}

/* dres += LN backward; dw += sum dout*xhat; db += sum dout */
static void layernorm_backward(float *dres, float *dw, float *db, const float *dout, const float *res,
                               const float *w, const float *mean, const float *rstd, int N, int C) {
    if (dres) {
        LNN_OMP_FOR
        for (int n = 0; n < N; n++) {
            const float *x = res + (size_t)n * C, *g = dout + (size_t)n * C;
            float m = mean[n], rs = rstd[n], sg = 0.f, sgx = 0.f;
            SIMD_SUM2(sg, sgx)
            for (int c = 0; c < C; c++) {
                float gw = g[c] * w[c];
                sg += gw;
                sgx += gw * (x[c] - m) * rs;
            }
            sg /= C;
            sgx /= C;
            float *d = dres + (size_t)n * C;
            for (int c = 0; c < C; c++) d[c] += rs * (g[c] * w[c] - sg - (x[c] - m) * rs * sgx);
        }
    }
    if (dw || db) {
        int nblk = (C + COLBLOCK - 1) / COLBLOCK;
        LNN_OMP_FOR
        for (int blk = 0; blk < nblk; blk++) {
            int c0 = blk * COLBLOCK, nc = C - c0 < COLBLOCK ? C - c0 : COLBLOCK;
            float aw[COLBLOCK] = {0}, ab[COLBLOCK] = {0};
            for (int n = 0; n < N; n++) {
                const float *x = res + (size_t)n * C + c0, *g = dout + (size_t)n * C + c0;
                float m = mean[n], rs = rstd[n];
                for (int j = 0; j < nc; j++) {
                    aw[j] += g[j] * (x[j] - m) * rs;
                    ab[j] += g[j];
                }
            }
            for (int j = 0; j < nc; j++) {
                if (dw) dw[c0 + j] += aw[j];
                if (db) db[c0 + j] += ab[j];
            }
        }
    }
}

/* ------------------------------------------------------------------ bias + activation */

static void bias_act_forward(float *out, float *x, const float *b, int N, int OC, int act) {
    LNN_OMP_FOR
    for (int n = 0; n < N; n++) {
        float *xn = x + (size_t)n * OC, *o = out + (size_t)n * OC;
        if (b)
            for (int j = 0; j < OC; j++) xn[j] += b[j];
        if (act == LNN_ACT_RELU) {
            for (int j = 0; j < OC; j++) o[j] = act_f(xn[j], LNN_ACT_RELU);
        } else if (act == LNN_ACT_GELU_TANH) {
            for (int j = 0; j < OC; j++) o[j] = act_f(xn[j], LNN_ACT_GELU_TANH);
        } else {
            for (int j = 0; j < OC; j++) o[j] = act_f(xn[j], LNN_ACT_GELU);
        }
    }
}

static void bias_act_backward(float *dx, float *db, const float *dout, const float *x, int N, int OC, int act) {
    int nblk = (OC + COLBLOCK - 1) / COLBLOCK;
    LNN_OMP_FOR
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * COLBLOCK, nc = OC - c0 < COLBLOCK ? OC - c0 : COLBLOCK;
        float acc[COLBLOCK] = {0};
        for (int n = 0; n < N; n++) {
            size_t o = (size_t)n * OC + c0;
            const float *xn = x + o, *g = dout + o;
            float *d = dx + o;
            if (act == LNN_ACT_RELU) {
                for (int j = 0; j < nc; j++) { d[j] = g[j] * act_df(xn[j], LNN_ACT_RELU); acc[j] += d[j]; }
            } else if (act == LNN_ACT_GELU_TANH) {
                for (int j = 0; j < nc; j++) { d[j] = g[j] * act_df(xn[j], LNN_ACT_GELU_TANH); acc[j] += d[j]; }
            } else {
                for (int j = 0; j < nc; j++) { d[j] = g[j] * act_df(xn[j], LNN_ACT_GELU); acc[j] += d[j]; }
            }
        }
        if (db)
            for (int j = 0; j < nc; j++) db[c0 + j] += acc[j];
    }
}

/* ------------------------------------------------------------------ dropout */

/* out[i] = inp[i] * keep(offset + i) / (1 - p), i < n; the keep bits go to keep[i] too when keep is
 * not NULL; serial (called inside parallel loops) */
static void dropout_serial_keep(float *out, uint8_t *keep, const float *inp, size_t n, size_t offset,
                                lnn_dropout_t d) {
    if (d.p <= 0.f) {
        cpu_copy(out, inp, n * sizeof(float));
        if (keep) memset(keep, 1, n);
        return;
    }
    if (d.p >= 1.f) {
        memset(out, 0, n * sizeof(float));
        if (keep) memset(keep, 0, n);
        return;
    }
    uint32_t thr = lnn_dropout_threshold(d.p);
    float scale = 1.0f / (1.0f - d.p);
    size_t i = 0;
#define KEEP_ONE(idx, word)                                  \
    do {                                                     \
        int k_ = (word) >= thr;                              \
        out[idx] = k_ ? inp[idx] * scale : 0.f;              \
        if (keep) keep[idx] = (uint8_t)k_;                   \
    } while (0)
    /* head: up to the next multiple of 64 elements (16 Philox blocks) */
    while (i < n && ((offset + i) & 63)) {
        size_t gi = offset + i;
        lnn_philox_out r = lnn_dropout_bits(d, (uint64_t)(gi >> 2));
        for (int l = (int)(gi & 3); l < 4 && i < n; l++, i++) KEEP_ONE(i, r.v[l]);
    }
#ifdef LNN_PHILOX_AVX512
    const __m512 vs = _mm512_set1_ps(scale);
    const __m512i one = _mm512_set1_epi8(1);
    for (; i + 64 <= n; i += 64) {
        uint64_t m = lnn_dropout_keep64(d, (uint64_t)((offset + i) >> 2), thr);
        for (int q = 0; q < 4; q++)
            _mm512_storeu_ps(out + i + 16 * q,
                             _mm512_maskz_mul_ps((__mmask16)(m >> (16 * q)), _mm512_loadu_ps(inp + i + 16 * q), vs));
        if (keep) _mm512_storeu_si512(keep + i, _mm512_maskz_mov_epi8(m, one));
    }
#else
    uint32_t w[64];
    for (; i + 64 <= n; i += 64) {
        lnn_dropout_bits16(d, (uint64_t)((offset + i) >> 2), w);
        for (int l = 0; l < 64; l++) KEEP_ONE(i + l, w[l]);
    }
#endif
    while (i < n) {
        size_t gi = offset + i;
        lnn_philox_out r = lnn_dropout_bits(d, (uint64_t)(gi >> 2));
        for (int l = (int)(gi & 3); l < 4 && i < n; l++, i++) KEEP_ONE(i, r.v[l]);
    }
#undef KEEP_ONE
}

static void dropout_serial(float *out, const float *inp, size_t n, size_t offset, lnn_dropout_t d) {
    dropout_serial_keep(out, NULL, inp, n, offset, d);
}

/* out[i] = inp[i] * keep[i] / (1 - p): a stored mask applied again (out may alias inp) */
static void keep_apply(float *out, const float *inp, const uint8_t *keep, size_t n, float p) {
    float scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) out[i] = keep[i] ? inp[i] * scale : 0.f;
}

/* the same over all threads, in chunks of 4096 elements */
static void dropout_apply(float *out, const float *inp, size_t n, size_t offset, lnn_dropout_t d) {
    if (d.p <= 0.f || d.p >= 1.f) {
        dropout_serial(out, inp, n, offset, d);
        return;
    }
    long long nchunk = (long long)((n + 4095) / 4096);
    LNN_OMP_FOR
    for (long long ch = 0; ch < nchunk; ch++) {
        size_t i0 = (size_t)ch * 4096, m = n - i0 < 4096 ? n - i0 : 4096;
        dropout_serial(out + i0, inp + i0, m, offset + i0, d);
    }
}

static void dropout_forward(float *out, const float *inp, size_t n, lnn_dropout_t d) {
    dropout_apply(out, inp, n, (size_t)d.offset, d);
}

static void dropout_backward(float *dinp, const float *dout, size_t n, lnn_dropout_t d) {
    dropout_apply(dinp, dout, n, (size_t)d.offset, d);
}

/* ------------------------------------------------------------------ attention */

/* Where the (b, h) task of attention works: the rows of its keys/values (row0, L of them), its Lq
 * queries (all L, or only the first when q_first) and their out rows (orow; row b when q_first),
 * and its (Lq, L) probs slab (prob0); drop0 is the dropout element index of its (0, 0) entry in
 * the padded layout, so packed, padded and first-query runs drop the same entries. */
typedef struct {
    size_t row0, orow, prob0, drop0;
    int L, Lq;
} att_task;

static att_task att_where(const int32_t *seq_off, const int64_t *prob_off, int q_first, int b, int h, int T,
                          int NH) {
    att_task w;
    w.drop0 = ((size_t)b * NH + h) * T * T;
    if (seq_off) {
        w.row0 = (size_t)seq_off[b];
        w.L = seq_off[b + 1] - seq_off[b];
    } else {
        w.row0 = (size_t)b * T;
        w.L = T;
    }
    w.Lq = q_first ? 1 : w.L;
    w.orow = q_first ? (size_t)b : w.row0;
    if (q_first) w.prob0 = ((size_t)b * NH + h) * T;
    else w.prob0 = seq_off ? (size_t)prob_off[b] + (size_t)h * w.L * w.L : w.drop0;
    return w;
}

/* s(L) = softmax(s + mask), masked keys (mb[j] == 0) adding -FLT_MAX as HF does; mb may be NULL */
static void softmax_row(float *s, const int32_t *mb, int L) {
    if (mb)
        for (int j = 0; j < L; j++) s[j] = s[j] + (mb[j] ? 0.f : -FLT_MAX);
    float mx = -INFINITY;
    SIMD_MAX(mx)
    for (int j = 0; j < L; j++) mx = s[j] > mx ? s[j] : mx;
    float sum = 0.f;
    SIMD_SUM(sum)
    for (int j = 0; j < L; j++) { s[j] = lnn_expf(s[j] - mx); sum += s[j]; }
    float inv = 1.0f / sum;
    for (int j = 0; j < L; j++) s[j] *= inv;
}

/* g(L) = scale * p * (g - <g, p>): softmax backward with the score scale folded in */
static void softmax_row_backward(float *g, const float *p, int L, float scale) {
    float dot = 0.f;
    SIMD_SUM(dot)
    for (int j = 0; j < L; j++) dot += g[j] * p[j];
    for (int j = 0; j < L; j++) g[j] = scale * p[j] * (g[j] - dot);
}

/* dropout of an (Lq, L) probs block whose padded rows are T long, its mask into keep */
static void att_dropout(float *out, uint8_t *keep, const float *inp, int Lq, int L, int T, size_t drop0,
                        lnn_dropout_t d) {
    if (L == T) {
        dropout_serial_keep(out, keep, inp, (size_t)Lq * L, drop0, d);
        return;
    }
    for (int i = 0; i < Lq; i++)
        dropout_serial_keep(out + (size_t)i * L, keep + (size_t)i * L, inp + (size_t)i * L, (size_t)L,
                            drop0 + (size_t)i * T, d);
}

/* One (batch, head) pair per task: scores, mask, softmax, dropout and P V, all single-threaded
 * BLAS calls inside the OpenMP loop (results do not depend on the thread count). */
static void attention_forward(float *out, float *probs, float *pdrop, uint8_t *keep, const float *qkv,
                              const int32_t *mask, const int32_t *seq_off, const int64_t *prob_off, int q_first,
                              int B, int T, int C, int NH, lnn_dropout_t drop) {
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    if (seq_off) mask = NULL;
    if (lnn_blas_get_num_threads() != 1) lnn_blas_set_num_threads(1);
    LNN_OMP_FOR_DYNAMIC
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        att_task w = att_where(seq_off, prob_off, q_first, b, h, T, NH);
        int L = w.L, Lq = w.Lq;
        if (L < 1) continue;
        const float *q = qkv + w.row0 * C3 + h * hs, *k = q + C, *v = q + 2 * C;
        float *S = probs + w.prob0;
        const int32_t *mb = mask ? mask + (size_t)b * T : NULL;
        /* S (Lq,L) = scale * Q K^T; softmax; dropout */
        lnn_sgemm(0, 1, Lq, L, hs, scale, q, C3, k, C3, 0.f, S, L);
        for (int i = 0; i < Lq; i++) softmax_row(S + (size_t)i * L, mb, L);
        const float *P = S;
        if (drop.p > 0.f) {
            float *Pd = pdrop + w.prob0;
            att_dropout(Pd, keep + w.prob0, S, Lq, L, T, w.drop0, drop);
            P = Pd;
        }
        /* out_h (Lq,hs) = P V_h, into the head's columns of out */
        lnn_sgemm(0, 0, Lq, hs, L, 1.f, P, L, v, C3, 0.f, out + w.orow * C + h * hs, C);
    }
}

static void attention_backward(float *dqkv, float *dprobs, float *pdrop, const uint8_t *keep, const float *dout,
                               const float *qkv, const float *probs, const int32_t *seq_off, const int64_t *prob_off,
                               int q_first, int B, int T, int C, int NH, lnn_dropout_t drop) {
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    if (lnn_blas_get_num_threads() != 1) lnn_blas_set_num_threads(1);
    LNN_OMP_FOR_DYNAMIC
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        att_task w = att_where(seq_off, prob_off, q_first, b, h, T, NH);
        int L = w.L, Lq = w.Lq;
        if (L < 1) continue;
        size_t o3 = w.row0 * C3 + h * hs, n = (size_t)Lq * L;
        const float *q = qkv + o3, *k = q + C, *v = q + 2 * C;
        float *dq = dqkv + o3, *dk = dq + C, *dv = dq + 2 * C;
        const float *P = probs + w.prob0, *Pd = P;
        const float *dO = dout + w.orow * C + h * hs;
        float *dP = dprobs + w.prob0;
        const uint8_t *kb = drop.p > 0.f ? keep + w.prob0 : NULL;
        if (kb) {
            keep_apply(pdrop + w.prob0, P, kb, n, drop.p);
            Pd = pdrop + w.prob0;
        }
        /* dPd (Lq,L) = dO V^T; dV (L,hs) += Pd^T dO */
        lnn_sgemm(0, 1, Lq, L, hs, 1.f, dO, C, v, C3, 0.f, dP, L);
        lnn_sgemm(1, 0, L, hs, Lq, 1.f, Pd, L, dO, C, 1.f, dv, C3);
        if (kb) keep_apply(dP, dP, kb, n, drop.p);
        for (int i = 0; i < Lq; i++) softmax_row_backward(dP + (size_t)i * L, P + (size_t)i * L, L, scale);
        /* dQ (Lq,hs) += dS K; dK (L,hs) += dS^T Q */
        lnn_sgemm(0, 0, Lq, hs, L, 1.f, dP, L, k, C3, 1.f, dq, C3);
        lnn_sgemm(1, 0, L, hs, Lq, 1.f, dP, L, q, C3, 1.f, dk, C3);
    }
}

/* ------------------------------------------------------------------ pooler helpers */

static void tanh_forward(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = tanhf(inp[i]);
}

static void tanh_backward(float *dinp, const float *dout, const float *out, size_t n) {
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * (1.f - out[i] * out[i]);
}

#define TOKEN0_ROW(b) ((size_t)(seq_off ? seq_off[b] : (int64_t)(b) * T))

static void token0_forward(float *out, const float *inp, const int32_t *seq_off, int B, int T, int C) {
    for (int b = 0; b < B; b++) memcpy(out + (size_t)b * C, inp + TOKEN0_ROW(b) * C, sizeof(float) * C);
}

static void token0_backward(float *dinp, const float *dout, const int32_t *seq_off, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        float *d = dinp + TOKEN0_ROW(b) * C;
        const float *g = dout + (size_t)b * C;
        for (int c = 0; c < C; c++) d[c] += g[c];
    }
}

/* ------------------------------------------------------------------ the table */

static const lnn_backend cpu_backend = {
    .name = "cpu",
    .malloc = lnn_malloc,
    .free = lnn_free,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .embedding_forward = embedding_forward,
    .embedding_backward = embedding_backward,
    .matmul_forward = matmul_forward,
    .matmul_backward = matmul_backward,
    .layernorm_forward = layernorm_forward,
    .layernorm_backward = layernorm_backward,
    .bias_act_forward = bias_act_forward,
    .bias_act_backward = bias_act_backward,
    .attention_forward = attention_forward,
    .attention_backward = attention_backward,
    .dropout_forward = dropout_forward,
    .dropout_backward = dropout_backward,
    .tanh_forward = tanh_forward,
    .tanh_backward = tanh_backward,
    .token0_forward = token0_forward,
    .token0_backward = token0_backward,
    .batchnorm1d_forward = lnn_head_batchnorm1d_forward,
    .batchnorm1d_backward = lnn_head_batchnorm1d_backward,
    .pool_forward = lnn_head_pool_forward,
    .pool_backward = lnn_head_pool_backward,
    .concat_forward = lnn_head_concat_forward,
    .concat_backward = lnn_head_concat_backward,
    .cross_entropy = lnn_cross_entropy_forward_backward,
    .bce_with_logits = lnn_bce_with_logits_forward_backward,
    .mse = lnn_mse_forward_backward,
    .clip_grad_norm = lnn_clip_grad_norm,
    .adam_step = lnn_adam_step,
};

const lnn_backend *lnn_backend_cpu(void) { return &cpu_backend; }
