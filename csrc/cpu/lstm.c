/* cpu/lstm.c: the fused LSTM cell of one time step (torch's nn.LSTM gate order i, f, g, o), forward and
 * backward; the GEMMs around it are matmul ops (models/lstm.c). Rows are independent: one OpenMP loop over
 * them, so the results do not depend on the thread count. A step of a batch is small (64 x 128 units is
 * ~20 us on one core) and an LSTM runs thousands of them; below PAR_MIN elements (32 rows of 128) the loop
 * stays in the calling thread, where a fork/join would cost more than it saves. Splitting steps from 32
 * rows up rather than 512 made the 3-artist epoch of bench/lstm.py about 10% faster on 2 cores. Each cell
 * is a short parallel region (core/common.h): beside a busy process it runs on the calling thread. */
#include "cpu/internal.h"

#define PAR_MIN (1 << 12)
/* rows a thread takes at a time: a thread that waits for a core leaves the rest to the others */
#define ROWS_PER_CHUNK 8

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

/* One row: the gates g4 (4H; in: pre-activations less gh; out: activations), c and h (H); cp NULL: c_prev = 0 */
static inline void cell_row(float *restrict h, float *restrict c, float *restrict g4, const float *restrict r4,
                            const float *restrict cp, int H) {
    float *gi = g4, *gf = g4 + H, *gg = g4 + 2 * H, *go = g4 + 3 * H;
    const float *ri = r4, *rf = r4 + H, *rg = r4 + 2 * H, *ro = r4 + 3 * H;
    LNN_PRAGMA(omp simd)
    for (int j = 0; j < H; j++) {
        float i = lstm_sigmoid(gi[j] + ri[j]), f = lstm_sigmoid(gf[j] + rf[j]);
        float g = lstm_tanh(gg[j] + rg[j]), o = lstm_sigmoid(go[j] + ro[j]);
        gi[j] = i;
        gf[j] = f;
        gg[j] = g;
        go[j] = o;
        float cv = i * g + f * (cp ? cp[j] : 0.0f); /* f * c0 with c0 = 0, as torch: a NaN f stays NaN */
        c[j] = cv;
        h[j] = o * lstm_tanh(cv);
    }
}

/* h, c (N,H) from gates (N,4H) (in: x W_ih^T + b_ih; out: the activations), gh (N,4H), c_prev (Np,H) */
void cpu_lstm_cell_forward(lnn_ctx *ctx, void *h_, void *c_, void *gates_, const void *gh_, const void *c_prev_, int N,
                           int Np, int H) {
    float *h = h_, *c = c_, *gates = gates_;
    const float *gh = gh_, *c_prev = c_prev_;
    int nt = (size_t)N * H >= PAR_MIN ? lnn_short_threads() : 1;
    double t0 = lnn_now(), work = 0;
    LNN_PRAGMA(omp parallel num_threads(nt) reduction(+ : work) if(nt > 1))
    {
        double s = lnn_now();
        unsigned csr = lnn_ftz_begin();
        LNN_PRAGMA(omp for schedule(dynamic, ROWS_PER_CHUNK) nowait)
        for (int n = 0; n < N; n++) {
            size_t r = (size_t)n * H, r4 = (size_t)n * 4 * H;
            if (n < Np) cell_row(h + r, c + r, gates + r4, gh + r4, c_prev + r, H);
            else cell_row(h + r, c + r, gates + r4, gh + r4, NULL, H);
        }
        lnn_ftz_end(csr);
        work += lnn_now() - s;
    }
    lnn_short_report(nt, lnn_now() - t0, work);
}

/* One row of the backward: dg4 (4H) and dcp (H; NULL: skipped) from dh, dc (H); cp NULL: c_prev = 0 */
static inline void cell_row_backward(float *restrict dg4, float *restrict dcp, const float *restrict dh,
                                     const float *restrict dc, const float *restrict g4, const float *restrict c,
                                     const float *restrict cp, int H) {
    const float *gi = g4, *gf = g4 + H, *gg = g4 + 2 * H, *go = g4 + 3 * H;
    float *di = dg4, *df = dg4 + H, *dg = dg4 + 2 * H, *dout = dg4 + 3 * H;
    LNN_PRAGMA(omp simd)
    for (int j = 0; j < H; j++) {
        float i = gi[j], f = gf[j], g = gg[j], o = go[j], tc = lstm_tanh(c[j]);
        float dct = dc[j] + dh[j] * o * (1.0f - tc * tc);
        di[j] = dct * g * i * (1.0f - i);
        df[j] = dct * (cp ? cp[j] : 0.0f) * f * (1.0f - f);
        dg[j] = dct * i * (1.0f - g * g);
        dout[j] = dh[j] * tc * o * (1.0f - o);
        if (dcp) dcp[j] = dct * f;
    }
}

/* dgates (N,4H) and dc_prev (Np,H; NULL skips it), both written, from dh, dc (N,H) */
void cpu_lstm_cell_backward(lnn_ctx *ctx, void *dgates_, void *dc_prev_, const void *dh_, const void *dc_,
                            const void *gates_, const void *c_, const void *c_prev_, int N, int Np, int H) {
    float *dgates = dgates_, *dc_prev = dc_prev_;
    const float *dh = dh_, *dc = dc_, *gates = gates_, *c = c_, *c_prev = c_prev_;
    int nt = (size_t)N * H >= PAR_MIN ? lnn_short_threads() : 1;
    double t0 = lnn_now(), work = 0;
    LNN_PRAGMA(omp parallel num_threads(nt) reduction(+ : work) if(nt > 1))
    {
        double s = lnn_now();
        unsigned csr = lnn_ftz_begin();
        LNN_PRAGMA(omp for schedule(dynamic, ROWS_PER_CHUNK) nowait)
        for (int n = 0; n < N; n++) {
            size_t r = (size_t)n * H, r4 = (size_t)n * 4 * H;
            if (n < Np && dc_prev)
                cell_row_backward(dgates + r4, dc_prev + r, dh + r, dc + r, gates + r4, c + r, c_prev + r, H);
            else if (n < Np)
                cell_row_backward(dgates + r4, NULL, dh + r, dc + r, gates + r4, c + r, c_prev + r, H);
            else
                cell_row_backward(dgates + r4, NULL, dh + r, dc + r, gates + r4, c + r, NULL, H);
        }
        lnn_ftz_end(csr);
        work += lnn_now() - s;
    }
    lnn_short_report(nt, lnn_now() - t0, work);
}
