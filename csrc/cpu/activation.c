/* cpu/activation.c: the elementwise ops: bias + GELU/ReLU, tanh, and the dtype cast. */
#include "cpu/internal.h"

#define LNN_SQRT1_2 0.70710678118654752f
#define LNN_INV_SQRT_2PI 0.39894228040143268f
#define LNN_GELU_K 0.79788456080286536f /* sqrt(2/pi) */

/* NaN in, NaN out, as torch: relu(x) = x < 0 ? 0 : x keeps NaN (and -0, as torch.relu); its gradient is
 * torch's threshold_backward, x <= 0 ? 0 : dout (a select, so a NaN dout where x <= 0 gives 0, as torch). */
static inline float act_f(float x, int act) {
    if (act == LNN_ACT_RELU) return x < 0.f ? 0.f : x;
    if (act == LNN_ACT_GELU_TANH)
        return 0.5f * x * (1.f + lnn_tanh_fast(LNN_GELU_K * (x + 0.044715f * x * x * x)));
    return 0.5f * x * (1.f + lnn_erff(x * LNN_SQRT1_2));
}

static inline float act_df(float x, int act) {
    if (act == LNN_ACT_RELU) return x <= 0.f ? 0.f : 1.f;
    if (act == LNN_ACT_GELU_TANH) {
        float th = lnn_tanh_fast(LNN_GELU_K * (x + 0.044715f * x * x * x));
        return 0.5f * (1.f + th) + 0.5f * x * (1.f - th * th) * LNN_GELU_K * (1.f + 3.f * 0.044715f * x * x);
    }
    return 0.5f * (1.f + lnn_erff(x * LNN_SQRT1_2)) + x * LNN_INV_SQRT_2PI * lnn_expf(-0.5f * x * x);
}

/* x(N,OC) += b; out = act(x) */
void cpu_bias_act_forward(lnn_ctx *ctx, void *out_, void *x_, const void *b_, int N, int OC, int act) {
    float *out = out_, *x = x_;
    const float *b = b_;
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

/* dx(N,OC) = dout * act'(x); db += colsum(dx) (by column blocks) */
void cpu_bias_act_backward(lnn_ctx *ctx, void *dx_, float *db, const void *dout_, const void *x_, int N, int OC,
                           int act) {
    float *dx = dx_;
    const float *dout = dout_, *x = x_;
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
                for (int j = 0; j < nc; j++) { d[j] = xn[j] <= 0.f ? 0.f : g[j]; acc[j] += d[j]; }
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

/* out(n) = tanh(inp) */
void cpu_tanh_forward(lnn_ctx *ctx, void *out_, const void *inp_, size_t n) {
    float *out = out_;
    const float *inp = inp_;
    for (size_t i = 0; i < n; i++) out[i] = tanhf(inp[i]);
}

/* dinp(n) = dout * (1 - out^2) */
void cpu_tanh_backward(lnn_ctx *ctx, void *dinp_, const void *dout_, const void *out_, size_t n) {
    float *dinp = dinp_;
    const float *dout = dout_, *out = out_;
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * (1.f - out[i] * out[i]);
}

/* dst(n) = src(n) converted: F32 <-> BF16 or F16 (round to nearest even), or a copy. (The CPU runs F32
 * activations only; the casts serve the op bench and host-side conversions.) */
void cpu_cast(lnn_ctx *ctx, void *dst, lnn_dtype dt, const void *src, lnn_dtype st, size_t n) {
    if (dt == st) {
        if (dst != src) memcpy(dst, src, n * lnn_dtype_size(dt));
        return;
    }
    if (dt == LNN_BF16 && st == LNN_F32) {
        uint16_t *d = dst;
        const float *s = src;
        LNN_OMP_FOR
        for (size_t i = 0; i < n; i++) d[i] = lnn_f32_to_bf16(s[i]);
    } else if (dt == LNN_F32 && st == LNN_BF16) {
        float *d = dst;
        const uint16_t *s = src;
        LNN_OMP_FOR
        for (size_t i = 0; i < n; i++) d[i] = lnn_bf16_to_f32(s[i]);
    } else if (dt == LNN_F16 && st == LNN_F32) {
        uint16_t *d = dst;
        const float *s = src;
        LNN_OMP_FOR
        for (size_t i = 0; i < n; i++) d[i] = lnn_f32_to_f16(s[i]);
    } else if (dt == LNN_F32 && st == LNN_F16) {
        float *d = dst;
        const uint16_t *s = src;
        LNN_OMP_FOR
        for (size_t i = 0; i < n; i++) d[i] = lnn_f16_to_f32(s[i]);
    } else {
        lnn_ctx_fail(ctx, LNN_ERR_VALUE, "cast from %s to %s is not supported", lnn_dtype_name(st), lnn_dtype_name(dt));
    }
}
