// csrc/cuda/lstm.cu: the fused LSTM cell of one time step (torch's nn.LSTM gate order i, f, g, o), forward
// and backward: a thread per (row, unit). The GEMMs around it are matmul ops (models/lstm.c).
#include "cuda/internal.cuh"

__device__ __forceinline__ float sigmoid_f(float x) { return 1.f / (1.f + expf(-x)); }

// h, c (N,H) from gates (N,4H) (in: x W_ih^T + b_ih; out: the activations), gh (N,4H), c_prev (Np,H).
// What the backward reads (the activations, c) is stored first and read back, so both passes see the
// same (rounded) values.
template <typename T>
__global__ void lstm_cell_forward_kernel(T *h, T *c, T *gates, const T *gh, const T *c_prev, int N, int Np, int H) {
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= (size_t)N * H) return;
    int n = (int)(k / H), j = (int)(k % H);
    T *g4 = gates + (size_t)n * 4 * H + j;
    const T *r4 = gh + (size_t)n * 4 * H + j;
    store_f(g4, sigmoid_f(load_f(g4) + load_f(r4)));
    store_f(g4 + H, sigmoid_f(load_f(g4 + H) + load_f(r4 + H)));
    store_f(g4 + 2 * H, tanhf(load_f(g4 + 2 * H) + load_f(r4 + 2 * H)));
    store_f(g4 + 3 * H, sigmoid_f(load_f(g4 + 3 * H) + load_f(r4 + 3 * H)));
    float i = load_f(g4), f = load_f(g4 + H), g = load_f(g4 + 2 * H), o = load_f(g4 + 3 * H);
    float cv = i * g + f * (n < Np ? load_f(c_prev + (size_t)n * H + j) : 0.f); // f * c0, as torch: NaN stays
    store_f(c + k, cv);
    store_f(h + k, o * tanhf(load_f(c + k)));
}

// dgates (N,4H) and dc_prev (Np,H; NULL skips it), both written, from dh, dc (N,H)
template <typename T>
__global__ void lstm_cell_backward_kernel(T *dgates, T *dc_prev, const T *dh, const T *dc, const T *gates, const T *c,
                                          const T *c_prev, int N, int Np, int H) {
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= (size_t)N * H) return;
    int n = (int)(k / H), j = (int)(k % H);
    const T *g4 = gates + (size_t)n * 4 * H + j;
    T *d4 = dgates + (size_t)n * 4 * H + j;
    float i = load_f(g4), f = load_f(g4 + H), g = load_f(g4 + 2 * H), o = load_f(g4 + 3 * H);
    float tc = tanhf(load_f(c + k)), dhv = load_f(dh + k);
    float dct = load_f(dc + k) + dhv * o * (1.f - tc * tc);
    float cp = n < Np ? load_f(c_prev + (size_t)n * H + j) : 0.f;
    store_f(d4, dct * g * i * (1.f - i));
    store_f(d4 + H, dct * cp * f * (1.f - f));
    store_f(d4 + 2 * H, dct * i * (1.f - g * g));
    store_f(d4 + 3 * H, dhv * tc * o * (1.f - o));
    if (dc_prev && n < Np) store_f(dc_prev + (size_t)n * H + j, dct * f);
}

void cuda_lstm_cell_forward(lnn_ctx *ctx, void *h, void *c, void *gates, const void *gh, const void *c_prev, int N,
                            int Np, int H) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, lstm_cell_forward_kernel<T><<<blocks_for((size_t)N * H, 256), 256, 0, stream_of(ctx)>>>(
                                  (T *)h, (T *)c, (T *)gates, (const T *)gh, (const T *)c_prev, N, Np, H));
    CUDA_LAUNCHED(ctx, "lstm_cell_forward");
}

void cuda_lstm_cell_backward(lnn_ctx *ctx, void *dgates, void *dc_prev, const void *dh, const void *dc,
                             const void *gates, const void *c, const void *c_prev, int N, int Np, int H) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, lstm_cell_backward_kernel<T><<<blocks_for((size_t)N * H, 256), 256, 0, stream_of(ctx)>>>(
                                  (T *)dgates, (T *)dc_prev, (const T *)dh, (const T *)dc, (const T *)gates,
                                  (const T *)c, (const T *)c_prev, N, Np, H));
    CUDA_LAUNCHED(ctx, "lstm_cell_backward");
}
