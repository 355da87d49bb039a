// csrc/cuda/embedding.cu: token + position (+ token type) embeddings, or token embeddings alone. The
// backward adds each row's gradient into the table rows of its ids without atomics, two ways:
// - serial: a thread per column walks all N rows in order (24 warps for C = 768: ~10 ms at 32x512);
// - sorted (LNN_PATH_SORTED_EMBED, LYRICNN_CUDA_EMBED=sorted): by the id-sorted row indexes the encoder builds
//   on the host (core/embed_index.h), a block per chunk of one id's rows, then a block per id split into
//   several chunks: parallel over ids, and each table row sums its rows in (id, row) order, as the CPU's
//   indexed path does, so the bits equal the CPU's and repeat on every run.
#include <stdlib.h>
#include <string.h>

#include "cuda/internal.cuh"

// The embedding backward when LYRICNN_CUDA_EMBED is unset: "serial" until tools/gpu_check.sh has verified the
// sorted path on a GPU (tests/test_cuda.py compares the two and float64); it then flips to "sorted".
static const char *const EMBED_DEFAULT = "serial";

unsigned cuda_embed_paths_wanted(void) {
    const char *e = getenv("LYRICNN_CUDA_EMBED");
    if (!e || !*e) e = EMBED_DEFAULT;
    return !strcmp(e, "sorted") ? (unsigned)LNN_PATH_SORTED_EMBED : 0u;
}

// out(N,C) = wte[ids] (+ wtt[types]) + wpe[pos] (wpe NULL: none)
template <typename T>
__global__ void embedding_forward_kernel(T *out, const int32_t *ids, const int32_t *types, const int32_t *pos,
                                         const T *wte, const T *wpe, const T *wtt, int N, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    int n = (int)(i / C), c = (int)(i % C);
    float v = load_f(wte + (size_t)ids[n] * C + c);
    if (wtt) v = v + load_f(wtt + (size_t)(types ? types[n] : 0) * C + c);
    if (wpe) v = v + load_f(wpe + (size_t)pos[n] * C + c);
    store_f(out + i, v);
}

void cuda_embedding_forward(lnn_ctx *ctx, void *out, const int32_t *ids, const int32_t *types, const int32_t *pos,
                            const void *wte, const void *wpe, const void *wtt, int N, int C) {
    cuda_enter(ctx);
    LNN_CUDA_DISPATCH(ctx, T, embedding_forward_kernel<T><<<blocks_for((size_t)N * C, 256), 256, 0, stream_of(ctx)>>>(
                                  (T *)out, ids, types, pos, (const T *)wte, (const T *)wpe, (const T *)wtt, N, C));
    CUDA_LAUNCHED(ctx, "embedding_forward");
}

// dwte[ids] += dout except the pad row; dwpe[pos] += dout; dwtt[types] += dout: a thread per column
template <typename T>
__global__ void embedding_backward_kernel(float *dwte, float *dwpe, float *dwtt, const T *dout, const int32_t *ids,
                                          const int32_t *types, const int32_t *pos, int N, int C, int pad_id) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int n = 0; n < N; n++) {
        float g = load_f(dout + (size_t)n * C + c);
        if (dwte && ids[n] != pad_id) dwte[(size_t)ids[n] * C + c] += g;
        if (dwpe) dwpe[(size_t)pos[n] * C + c] += g;
        if (dwtt) dwtt[(size_t)(types ? types[n] : 0) * C + c] += g;
    }
}

// One table by its index: a block per chunk (threads over columns), its rows' sum in row order added onto the
// table row (the key's only chunk) or written to its partial slot
template <typename T>
__global__ void emb_chunk_kernel(float *table, float *part, const T *dout, lnn_emb_index x, int C) {
    int ch = blockIdx.x, k = x.ckey[ch], r0 = x.chunk[ch], r1 = x.chunk[ch + 1];
    float *dst = k >= 0 ? table + (size_t)k * C : part + (size_t)(-1 - k) * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float s = k >= 0 ? dst[c] : 0.f;
        for (int r = r0; r < r1; r++) s += load_f(dout + (size_t)x.rows[r] * C + c);
        dst[c] = s;
    }
}

// then a block per key with several chunks: its slots' sums in order onto the table row
__global__ void emb_run_kernel(float *table, const float *part, lnn_emb_index x, int C) {
    int k = blockIdx.x;
    float *dst = table + (size_t)x.rkey[k] * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float s = dst[c];
        for (int sl = x.run[k]; sl < x.run[k + 1]; sl++) s += part[(size_t)sl * C + c];
        dst[c] = s;
    }
}

static void emb_indexed(lnn_ctx *ctx, float *table, const void *dout, const lnn_emb_index &x, int C) {
    if (!table || x.nchunk < 1) return;
    float *part = NULL;
    if (x.nslot && !(part = (float *)cuda_scratch(ctx, (size_t)x.nslot * C * sizeof(float)))) return;
    int threads = C >= 256 ? 256 : (C + 31) / 32 * 32;
    LNN_CUDA_DISPATCH(ctx, T, emb_chunk_kernel<T><<<x.nchunk, threads, 0, stream_of(ctx)>>>(table, part, (const T *)dout,
                                                                                         x, C));
    if (x.nrun) emb_run_kernel<<<x.nrun, threads, 0, stream_of(ctx)>>>(table, part, x, C);
}

void cuda_embedding_backward(lnn_ctx *ctx, float *dwte, float *dwpe, float *dwtt, const void *dout, const int32_t *ids,
                             const int32_t *types, const int32_t *pos, int N, int C, int pad_id,
                             const lnn_emb_index *idx) {
    cuda_enter(ctx);
    if (idx) {
        emb_indexed(ctx, dwte, dout, idx[0], C);
        emb_indexed(ctx, dwpe, dout, idx[1], C);
        emb_indexed(ctx, dwtt, dout, idx[2], C);
        CUDA_LAUNCHED(ctx, "embedding_backward (sorted)");
        return;
    }
    LNN_CUDA_DISPATCH(ctx, T, embedding_backward_kernel<T><<<(C + 63) / 64, 64, 0, stream_of(ctx)>>>(
                                  dwte, dwpe, dwtt, (const T *)dout, ids, types, pos, N, C, pad_id));
    CUDA_LAUNCHED(ctx, "embedding_backward");
}
