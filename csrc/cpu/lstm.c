/* cpu/lstm.c: the fused LSTM cell of one time step (torch's nn.LSTM gate order i, f, g, o), forward and
 * backward; the GEMMs around it are matmul ops (models/lstm.c). Rows are independent: one OpenMP loop over
 * them, so the results do not depend on the thread count. */
#include "cpu/internal.h"

/* sigmoid and tanh, branch-free so the row loops vectorize; a few ulp from the float64 values */
static inline float lstm_sigmoid(float x) { return 1.0f / (1.0f + lnn_expf(-x)); }

/* Cephes' tanhf: an odd polynomial for |x| <= 0.625, 1 - 2 / (exp(2|x|) + 1) above, signed */
static inline float lstm_tanh(float x) {
    float a = fabsf(x), s = x * x;
    float p = ((((-5.70498872745e-3f * s + 2.06390887954e-2f) * s - 5.37397155531e-2f) * s + 1.33314422036e-1f) * s -
               3.33332819422e-1f) * s * x + x;
    float e = lnn_expf(2.0f * (a > 44.0f ? 44.0f : a));
    float q = 1.0f - 2.0f / (e + 1.0f);
    return a <= 0.625f ? p : (x < 0.f ? -q : q);
}

/* h, c (N,H) from gates (N,4H) (in: x W_ih^T + b_ih; out: the activations), gh (N,4H), c_prev (Np,H) */
void cpu_lstm_cell_forward(lnn_ctx *ctx, void *h_, void *c_, void *gates_, const void *gh_, const void *c_prev_, int N,
                           int Np, int H) {
    float *h = h_, *c = c_, *gates = gates_;
    const float *gh = gh_, *c_prev = c_prev_;
    LNN_OMP_FOR
    for (int n = 0; n < N; n++) {
        float *gi = gates + (size_t)n * 4 * H, *gf = gi + H, *gg = gi + 2 * H, *go = gi + 3 * H;
        const float *ri = gh + (size_t)n * 4 * H, *rf = ri + H, *rg = ri + 2 * H, *ro = ri + 3 * H;
        const float *cp = n < Np ? c_prev + (size_t)n * H : NULL;
        float *cn = c + (size_t)n * H, *hn = h + (size_t)n * H;
        for (int j = 0; j < H; j++) {
            float i = lstm_sigmoid(gi[j] + ri[j]), f = lstm_sigmoid(gf[j] + rf[j]);
            float g = lstm_tanh(gg[j] + rg[j]), o = lstm_sigmoid(go[j] + ro[j]);
            gi[j] = i;
            gf[j] = f;
            gg[j] = g;
            go[j] = o;
            float cv = i * g + (cp ? f * cp[j] : 0.0f);
            cn[j] = cv;
            hn[j] = o * lstm_tanh(cv);
        }
    }
}

/* dgates (N,4H) and dc_prev (Np,H; NULL skips it), both written, from dh, dc (N,H) */
void cpu_lstm_cell_backward(lnn_ctx *ctx, void *dgates_, void *dc_prev_, const void *dh_, const void *dc_,
                            const void *gates_, const void *c_, const void *c_prev_, int N, int Np, int H) {
    float *dgates = dgates_, *dc_prev = dc_prev_;
    const float *dh = dh_, *dc = dc_, *gates = gates_, *c = c_, *c_prev = c_prev_;
    LNN_OMP_FOR
    for (int n = 0; n < N; n++) {
        const float *gi = gates + (size_t)n * 4 * H, *gf = gi + H, *gg = gi + 2 * H, *go = gi + 3 * H;
        float *di = dgates + (size_t)n * 4 * H, *df = di + H, *dg = di + 2 * H, *dout = di + 3 * H;
        const float *cp = n < Np ? c_prev + (size_t)n * H : NULL;
        float *dcp = dc_prev && n < Np ? dc_prev + (size_t)n * H : NULL;
        const float *dhn = dh + (size_t)n * H, *dcn = dc + (size_t)n * H, *cn = c + (size_t)n * H;
        for (int j = 0; j < H; j++) {
            float i = gi[j], f = gf[j], g = gg[j], o = go[j], tc = lstm_tanh(cn[j]);
            float dct = dcn[j] + dhn[j] * o * (1.0f - tc * tc);
            di[j] = dct * g * i * (1.0f - i);
            df[j] = cp ? dct * cp[j] * f * (1.0f - f) : 0.0f;
            dg[j] = dct * i * (1.0f - g * g);
            dout[j] = dhn[j] * tc * o * (1.0f - o);
            if (dcp) dcp[j] = dct * f;
        }
    }
}
