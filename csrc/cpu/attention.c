/* cpu/attention.c: multi-head self-attention, one (sequence, head) pair per task: scores, mask,
 * softmax, dropout and P V as single-threaded library GEMMs inside the OpenMP loop (the results do
 * not depend on the thread count). The probabilities are kept for the backward.
 *
 * saved (per layer):  probs F32 (P) | keep U8 (P) when dropout is on;
 * scratch (shared):   prob_off I64 (B+1) | pdrop F32 (P) when dropout is on | dprobs F32 (P) in training;
 * P = B*NH*T*T, enough for every layout: padded (b, h) at ((b*NH + h)*T*T), packed at prob_off[b] +
 * h*L*L with L the sequence's length, first query only at (b*NH + h)*T. */
#include <float.h>

#include "core/arena.h"
#include "cpu/internal.h"

typedef struct {
    float *probs, *pdrop, *dprobs;
    uint8_t *keep;
    int64_t *prob_off;
} att_bufs;

static size_t nprobs(int B, int T, int NH) { return (size_t)B * NH * T * T; }

static size_t saved_layout(att_bufs *a, void *base, int B, int T, int NH, float p) {
    lnn_plan pl = lnn_plan_begin(base);
    size_t P = nprobs(B, T, NH);
    lnn_take(&pl, (void **)&a->probs, P, LNN_F32);
    lnn_take(&pl, (void **)&a->keep, p > 0.f ? P : 0, LNN_U8);
    return pl.used;
}

static size_t scratch_layout(att_bufs *a, void *base, int B, int T, int NH, int train, float p) {
    lnn_plan pl = lnn_plan_begin(base);
    size_t P = nprobs(B, T, NH);
    lnn_take(&pl, (void **)&a->prob_off, (size_t)B + 1, LNN_I64);
    lnn_take(&pl, (void **)&a->pdrop, p > 0.f ? P : 0, LNN_F32);
    lnn_take(&pl, (void **)&a->dprobs, train ? P : 0, LNN_F32);
    return pl.used;
}

size_t cpu_attention_saved_bytes(const lnn_ctx *ctx, int B, int T, int NH, int train, float p) {
    att_bufs a;
    return saved_layout(&a, NULL, B, T, NH, train ? p : 0.f);
}

size_t cpu_attention_scratch_bytes(const lnn_ctx *ctx, int B, int T, int NH, int train, float p) {
    att_bufs a;
    return scratch_layout(&a, NULL, B, T, NH, train, train ? p : 0.f);
}

/* Where the (b, h) task works: the rows of its keys/values (row0, L of them), its Lq queries (all
 * L, or only the first when q_first) and their out rows (orow; row b when q_first), its (Lq, L)
 * probs slab (prob0), and the dropout element index of its (0, 0) entry in the padded layout
 * (drop0). */
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

/* prob_off[b] = where packed sequence b's (NH, L, L) probs start */
static void packed_prob_offsets(int64_t *prob_off, const int32_t *seq_off, int B, int NH) {
    if (!seq_off) return;
    prob_off[0] = 0;
    for (int b = 0; b < B; b++) {
        int64_t L = seq_off[b + 1] - seq_off[b];
        prob_off[b + 1] = prob_off[b] + (int64_t)NH * L * L;
    }
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
        cpu_dropout_serial(out, keep, inp, (size_t)Lq * L, drop0, d);
        return;
    }
    for (int i = 0; i < Lq; i++)
        cpu_dropout_serial(out + (size_t)i * L, keep + (size_t)i * L, inp + (size_t)i * L, (size_t)L,
                           drop0 + (size_t)i * T, d);
}

void cpu_attention_forward(lnn_ctx *ctx, void *out_, void *saved, void *scratch, const void *qkv_,
                           const int32_t *mask, const int32_t *seq_off, int q_first, int B, int T, int C, int NH,
                           lnn_dropout_t drop) {
    float *out = out_;
    const float *qkv = qkv_;
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    att_bufs ab;
    saved_layout(&ab, saved, B, T, NH, drop.p);
    scratch_layout(&ab, scratch, B, T, NH, 0, drop.p);
    if (seq_off) mask = NULL;
    packed_prob_offsets(ab.prob_off, seq_off, B, NH);
    if (lnn_blas_get_num_threads() != 1) lnn_blas_set_num_threads(1);
    LNN_OMP_FOR_DYNAMIC
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        att_task w = att_where(seq_off, ab.prob_off, q_first, b, h, T, NH);
        int L = w.L, Lq = w.Lq;
        if (L < 1) continue;
        const float *q = qkv + w.row0 * C3 + h * hs, *k = q + C, *v = q + 2 * C;
        float *S = ab.probs + w.prob0;
        const int32_t *mb = mask ? mask + (size_t)b * T : NULL;
        /* S (Lq,L) = scale * Q K^T; softmax; dropout */
        lnn_sgemm(0, 1, Lq, L, hs, scale, q, C3, k, C3, 0.f, S, L);
        for (int i = 0; i < Lq; i++) softmax_row(S + (size_t)i * L, mb, L);
        const float *P = S;
        if (drop.p > 0.f) {
            float *Pd = ab.pdrop + w.prob0;
            att_dropout(Pd, ab.keep + w.prob0, S, Lq, L, T, w.drop0, drop);
            P = Pd;
        }
        /* out_h (Lq,hs) = P V_h, into the head's columns of out */
        lnn_sgemm(0, 0, Lq, hs, L, 1.f, P, L, v, C3, 0.f, out + w.orow * C + h * hs, C);
    }
}

/* (out, the forward's output, is not needed here: the probabilities are saved) */
void cpu_attention_backward(lnn_ctx *ctx, void *dqkv_, const void *dout_, const void *out, const void *saved,
                            void *scratch, const void *qkv_, const int32_t *seq_off, int q_first, int B, int T, int C,
                            int NH, lnn_dropout_t drop) {
    float *dqkv = dqkv_;
    const float *dout = dout_, *qkv = qkv_;
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    att_bufs ab;
    saved_layout(&ab, (void *)saved, B, T, NH, drop.p);
    scratch_layout(&ab, scratch, B, T, NH, 1, drop.p);
    packed_prob_offsets(ab.prob_off, seq_off, B, NH);
    if (lnn_blas_get_num_threads() != 1) lnn_blas_set_num_threads(1);
    LNN_OMP_FOR_DYNAMIC
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        att_task w = att_where(seq_off, ab.prob_off, q_first, b, h, T, NH);
        int L = w.L, Lq = w.Lq;
        if (L < 1) continue;
        size_t o3 = w.row0 * C3 + h * hs, n = (size_t)Lq * L;
        const float *q = qkv + o3, *k = q + C, *v = q + 2 * C;
        float *dq = dqkv + o3, *dk = dq + C, *dv = dq + 2 * C;
        const float *P = ab.probs + w.prob0, *Pd = P;
        const float *dO = dout + w.orow * C + h * hs;
        float *dP = ab.dprobs + w.prob0;
        const uint8_t *kb = drop.p > 0.f ? ab.keep + w.prob0 : NULL;
        if (kb) {
            cpu_keep_apply(ab.pdrop + w.prob0, P, kb, n, drop.p);
            Pd = ab.pdrop + w.prob0;
        }
        /* dPd (Lq,L) = dO V^T; dV (L,hs) += Pd^T dO */
        lnn_sgemm(0, 1, Lq, L, hs, 1.f, dO, C, v, C3, 0.f, dP, L);
        lnn_sgemm(1, 0, L, hs, Lq, 1.f, Pd, L, dO, C, 1.f, dv, C3);
        if (kb) cpu_keep_apply(dP, dP, kb, n, drop.p);
        for (int i = 0; i < Lq; i++) softmax_row_backward(dP + (size_t)i * L, P + (size_t)i * L, L, scale);
        /* dQ (Lq,hs) += dS K; dK (L,hs) += dS^T Q */
        lnn_sgemm(0, 0, Lq, hs, L, 1.f, dP, L, k, C3, 1.f, dq, C3);
        lnn_sgemm(1, 0, L, hs, Lq, 1.f, dP, L, q, C3, 1.f, dk, C3);
    }
}
