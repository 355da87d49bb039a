/* core/backend.h: the seam between the model graphs (models/) and the compute backends (cpu/,
 * cuda/). A backend fills one lnn_backend table; the graphs call nothing else.
 *
 * CONTEXT. Every op takes an lnn_ctx: the backend, the activation dtype of the run, the stream
 * and library handles (CUDA), scratch memory, and a sticky error. Ops are void: their arguments
 * are checked before (at the Python boundary and the model API), and a failure inside an op (no
 * scratch memory, a device error) is recorded in the context; synchronize() waits for the queued
 * work and returns that status (then clears it). The CPU runs ops synchronously.
 *
 * MEMORY. Every pointer an op takes is backend memory, allocated with malloc() of the same
 * backend. Host memory is touched only by to_device() / to_host(), which the model API calls at
 * its boundary (inputs in; outputs, parameters and checkpoints out). caps.host_memory says whether
 * backend memory is host memory (the CPU: zero-copy views are allowed) or not (copies only).
 * Scalars the training loop reads (losses, the gradient norm, the optimizer step counters) are
 * written to backend memory by the ops; the owner reads them back once per step.
 *
 * DTYPES (core/dtype.h). In the shape comments: A = activation dtype (ctx->act; a weight read by
 * a forward op is in A too: the model keeps an A copy of the parameters when A is not F32),
 * F32 / F64 / I32 / I64 / U8 = fixed. Parameter gradients and the optimizer state are F32.
 *
 * SHAPES. Row-major and contiguous: B batch, T padded sequence length, C hidden size, NH heads,
 * N rows, OC output features, K labels. Token rows come in three layouts (lnn_rows).
 *
 * THE GRADIENT RULE (the one place it is written down):
 * - parameter gradients (dw, db, dwte, dgamma, ...) ACCUMULATE (+=); a NULL gradient pointer skips
 *   that work (frozen tensors);
 * - activation gradients are stated per op below, as "+=" (accumulates: the caller zeroes or
 *   pre-fills, e.g. with a residual branch's gradient) or "=" (written; "may alias dout" where the
 *   op is elementwise and may run in place);
 * - losses WRITE their dlogits (they start the backward pass).
 *
 * NaN (as torch): a NaN or inf in any element an op reads reaches every output that depends on it.
 * Products and sums propagate; a max, clamp or comparison keeps NaN (relu(x) = x < 0 ? 0 : x; relu's
 * gradient is torch's select x <= 0 ? 0 : dout); dropout multiplies by the mask (a dropped NaN stays
 * NaN); an LSTM row starting from c = 0 still computes f * 0. What an op's contract does not read stays
 * out: masked tokens and keys (mask == 0), rows outside the packed sequences, labels equal to
 * ignore_index, table rows no id selects; so the padded and packed layouts agree. Tested per op and
 * backend in tests/test_backend_ops.py (test_nan_propagates_as_in_torch).
 */
#ifndef LNN_CORE_BACKEND_H
#define LNN_CORE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "core/dtype.h"
#include "core/embed_index.h"
#include "core/optim.h"
#include "core/philox.h"

typedef struct lnn_backend lnn_backend;

/* A backend context: one per model (and per op-bench handle). */
typedef struct lnn_ctx {
    const lnn_backend *be;
    int device;             /* device ordinal (0 on the CPU) */
    lnn_dtype act;          /* activation dtype of the ops called with this context */
    int allow_tf32;         /* F32 GEMMs may use TF32 tensor cores (precision "tf32"); 0: exact F32 */
    void *stream;           /* the backend's stream (cudaStream_t); NULL on the CPU */
    void *handles;          /* the backend's library handles (cuBLAS, cuBLASLt); NULL on the CPU */
    void *scratch;          /* ops' temporary memory (backend memory), see lnn_scratch() */
    size_t scratch_bytes;
    lnn_status err;         /* sticky: the first failure inside an op, LNN_OK otherwise */
    char errmsg[512];
    unsigned paths;         /* LNN_PATH_* bits: the graph-level variants this backend asks for (ctx_init) */
} lnn_ctx;

/* Graph-level variants a backend may ask for (lnn_ctx.paths; the same results up to the order of sums):
 * FUSED_OPT: the optimizer step as grad_norm_clip with a coefficient out + one adam_step applying it and
 * writing the weight copy (instead of a clip pass, the step, and a cast pass); bit-identical.
 * SORTED_EMBED: the encoder builds the id-sorted row indexes of its embedding tables on the host when it
 * stages a training batch, and passes them to embedding_backward. */
enum { LNN_PATH_FUSED_OPT = 1, LNN_PATH_SORTED_EMBED = 2 };

/* Activation functions of the FFN (config `activation` / `hidden_act`) and of head layers. */
enum { LNN_ACT_GELU = 0, LNN_ACT_RELU = 1, LNN_ACT_GELU_TANH = 2 };

/* How segment_pool pools the rows of a segment (a song's windows). */
enum { LNN_SEGPOOL_MEAN = 0, LNN_SEGPOOL_MAX = 1, LNN_SEGPOOL_ATTN = 2, LNN_NSEGPOOL };

/* Where the token rows of a batch of B sequences padded to T sit in an activation buffer:
 * - padded (seq_off NULL, first_only 0): row b*T + t, N = B*T;
 * - packed (seq_off set): sequence b in rows seq_off[b] .. seq_off[b+1]-1, its real tokens only
 *   (right padding removed), N = seq_off[B];
 * - first (first_only 1): row b is token 0 of sequence b, N = B.
 * Dropout masks are keyed by the padded layout's element index (b*T + t)*C + c, so every layout
 * drops the same entries. A plain (N, C) activation is {N, N, 1, NULL, 0}. */
typedef struct {
    int N, B, T;
    const int32_t *seq_off; /* backend memory, I32 (B+1) */
    int first_only;
} lnn_rows;

static inline lnn_rows lnn_rows_plain(int N) {
    lnn_rows r = {N, N, 1, NULL, 0};
    return r;
}

/* The op table, in one list: the op bench (py/ops_py.c) and supports() use these ids. */
#define LNN_OP_LIST(X)                                                                                    \
    X(cast) X(embedding_forward) X(embedding_backward) X(matmul_forward) X(matmul_backward)               \
    X(lora_forward) X(lora_backward)                                                                      \
    X(layernorm_forward) X(layernorm_backward) X(bias_act_forward) X(bias_act_backward)                   \
    X(attention_forward) X(attention_backward) X(dropout_forward) X(dropout_backward) X(tanh_forward)     \
    X(tanh_backward) X(token0_forward) X(token0_backward) X(mean_pool_forward) X(mean_pool_backward)      \
    X(concat_forward) X(concat_backward) X(batchnorm_forward) X(batchnorm_backward) X(cross_entropy)      \
    X(bce_with_logits) X(mse) X(grad_norm_clip) X(adam_step)                                               \
    X(gather_rows_forward) X(gather_rows_backward) X(lstm_cell_forward) X(lstm_cell_backward)                 \
    X(segment_pool_forward) X(segment_pool_backward)

enum {
#define LNN_OP_ENUM_(name) LNN_OP_##name,
    LNN_OP_LIST(LNN_OP_ENUM_)
#undef LNN_OP_ENUM_
    LNN_NOPS
};
extern const char *const lnn_op_names[LNN_NOPS];

typedef struct {
    int host_memory;   /* backend memory is host memory: zero-copy views allowed */
    unsigned act_dtypes; /* bit (1 << dtype) for each activation dtype the backend supports */
} lnn_caps;

/* What a backend says about one of its devices (lyricnn.cuda_info()). */
typedef struct {
    char name[128];
    int count;                      /* devices of this backend */
    int cc_major, cc_minor;         /* compute capability (GPU) */
    int runtime_version, driver_version;
    size_t total_memory, free_memory;
    unsigned act_dtypes;            /* the activation dtypes this device runs (BF16 from sm_80) */
} lnn_device_info;

struct lnn_backend {
    const char *name;
    lnn_caps caps;
    /* Whether op (LNN_OP_*) runs with activation dtype act. */
    int (*supports)(int op, lnn_dtype act);
    /* Describe device (NULL: the backend has no such description, e.g. the CPU). */
    lnn_status (*device_info)(int device, lnn_device_info *out);

    /* ---- context and memory ---- */
    lnn_status (*ctx_init)(lnn_ctx *ctx, int device); /* ctx->be, act already set; fills the rest */
    void (*ctx_release)(lnn_ctx *ctx);                /* frees what ctx_init made (not the scratch) */
    void *(*malloc)(lnn_ctx *ctx, size_t nbytes);      /* NULL on failure; 64-byte aligned */
    void (*free)(lnn_ctx *ctx, void *p);               /* NULL is a no-op */
    void (*zero)(lnn_ctx *ctx, void *p, size_t nbytes);
    void (*copy)(lnn_ctx *ctx, void *dst, const void *src, size_t nbytes);        /* backend -> backend */
    void (*to_device)(lnn_ctx *ctx, void *dst, const void *host, size_t nbytes); /* host -> backend */
    void (*to_host)(lnn_ctx *ctx, void *host, const void *src, size_t nbytes);   /* backend -> host, then waits */
    lnn_status (*synchronize)(lnn_ctx *ctx); /* waits for queued work; returns and clears ctx->err */

    /* ---- ops ---- */
    /* dst(n) dtype dt = src(n) dtype st (F32 <-> BF16, round to nearest even; same dtype copies) */
    void (*cast)(lnn_ctx *ctx, void *dst, lnn_dtype dt, const void *src, lnn_dtype st, size_t n);

    /* out A(N,C) = wte[ids] + wpe[pos] (+ wtt[types], types NULL = type 0, when wtt); ids, types, pos I32 (N);
     * wpe and pos NULL: no position embeddings (a plain nn.Embedding lookup) */
    void (*embedding_forward)(lnn_ctx *ctx, void *out, const int32_t *ids, const int32_t *types, const int32_t *pos,
                              const void *wte, const void *wpe, const void *wtt, int N, int C);
    /* dwte F32 [ids] += dout A(N,C) except the row pad_id (-1: none); dwpe[pos] +=; dwtt[types] += (pos NULL
     * with dwpe NULL). idx: NULL, or (LNN_PATH_SORTED_EMBED) the three tables' id-sorted row indexes
     * (core/embed_index.h; [0] the ids without pad_id, [1] the positions, [2] the types; their arrays in
     * backend memory): each table row's rows are then summed in parallel over rows, in (key, row) order */
    void (*embedding_backward)(lnn_ctx *ctx, float *dwte, float *dwpe, float *dwtt, const void *dout,
                               const int32_t *ids, const int32_t *types, const int32_t *pos, int N, int C, int pad_id,
                               const lnn_emb_index *idx);

    /* out A(N,OC) = inp A(N,C) @ w A(OC,C)^T (+ b A(OC)) -- nn.Linear */
    void (*matmul_forward)(lnn_ctx *ctx, void *out, const void *inp, const void *w, const void *b, int N, int C,
                           int OC);
    /* dinp A(N,C) += dout A(N,OC) @ w; dw F32(OC,C) += dout^T @ inp; db F32(OC) += colsum(dout) */
    void (*matmul_backward)(lnn_ctx *ctx, void *dinp, float *dw, float *db, const void *dout, const void *inp,
                            const void *w, int N, int C, int OC);

    /* LoRA branch of a frozen nn.Linear (peft's lora.Linear), added to the base layer's output:
     * y A(N, ldy), its first OC columns, += scale * (drop(x) @ A^T) @ B^T, N = rows.N; x A(N,C) in the
     * token-row layout rows (the dropout keys: padded element index, as dropout_forward); A A(r,C),
     * B A(OC,r); u A(N,r) = drop(x) @ A^T, kept for the backward. ldy >= OC lets q, k, v write into
     * their column slices of the fused qkv output. The mask is not kept: the backward draws it again. */
    void (*lora_forward)(lnn_ctx *ctx, void *y, int ldy, const void *x, const void *A, const void *B, void *u,
                         lnn_rows rows, int C, int r, int OC, float scale, lnn_dropout_t drop);
    /* dy A(N, ldy) (first OC columns); dB F32(OC,r) += scale * dy^T u; dA F32(r,C) += scale * (dy B)^T drop(x);
     * dx A(N,C) += drop(scale * (dy B) A) (the same mask); any of dx, dA, dB may be NULL */
    void (*lora_backward)(lnn_ctx *ctx, void *dx, float *dA, float *dB, const void *dy, int ldy, const void *x,
                          const void *A, const void *B, const void *u, lnn_rows rows, int C, int r, int OC,
                          float scale, lnn_dropout_t drop);

    /* res A(N,C) = a + r (r may be NULL; res may alias a); out A(N,C) = (res - mean) * rstd * w + b;
     * mean, rstd F32(N) kept for the backward */
    void (*layernorm_forward)(lnn_ctx *ctx, void *out, float *mean, float *rstd, void *res, const void *a,
                              const void *r, const void *w, const void *b, int N, int C, float eps);
    /* dres A(N,C) += dLN/dres . dout A(N,C); dw, db F32(C) += */
    void (*layernorm_backward)(lnn_ctx *ctx, void *dres, float *dw, float *db, const void *dout, const void *res,
                               const void *w, const float *mean, const float *rstd, int N, int C);

    /* x A(N,OC) += b (in place: the pre-activation is kept; b may be NULL); out A(N,OC) = act(x) */
    void (*bias_act_forward)(lnn_ctx *ctx, void *out, void *x, const void *b, int N, int OC, int act);
    /* dx A(N,OC) = dout * act'(x) (may alias dout); db F32(OC) += colsum(dx) */
    void (*bias_act_backward)(lnn_ctx *ctx, void *dx, float *db, const void *dout, const void *x, int N, int OC,
                              int act);

    /* Multi-head self-attention. qkv A(N,3C) = [Q|K|V] in a padded or packed row layout (seq_off);
     * per head, P = softmax(Q K^T / sqrt(C/NH) + mask) with masked keys (mask I32 (B,T) == 0,
     * padded rows only; NULL = none) adding -FLT_MAX as HF does; P dropped out with drop (keyed
     * by the padded (b, h, i, j) element); out A(N,C) = P V, heads concatenated.
     * q_first: only the first query of each sequence (the last layer of a token-0 head): out A(B,C),
     * dropout mask of the full attention's row 0 (packed: no sequence empty). saved: what the backward needs (per layer,
     * attention_saved_bytes); scratch: transient (attention_scratch_bytes), may be shared by layers. */
    size_t (*attention_saved_bytes)(const lnn_ctx *ctx, int B, int T, int NH, int train, float p);
    size_t (*attention_scratch_bytes)(const lnn_ctx *ctx, int B, int T, int NH, int train, float p);
    void (*attention_forward)(lnn_ctx *ctx, void *out, void *saved, void *scratch, const void *qkv,
                              const int32_t *mask, const int32_t *seq_off, int q_first, int B, int T, int C, int NH,
                              lnn_dropout_t drop);
    /* dqkv A(N,3C) += (with q_first: query row 0 and every key/value row) from dout A(N,C) (q_first: (B,C));
     * out: the forward's output; saved: the forward's, with the same arguments */
    void (*attention_backward)(lnn_ctx *ctx, void *dqkv, const void *dout, const void *out, const void *saved,
                               void *scratch, const void *qkv, const int32_t *seq_off, int q_first, int B, int T, int C,
                               int NH, lnn_dropout_t drop);

    /* out A(rows.N,C) = inp * keep / (1 - p), keep = Philox bits of the padded element index
     * (core/philox.h; drop.offset ignored); out may alias inp */
    void (*dropout_forward)(lnn_ctx *ctx, void *out, const void *inp, lnn_rows rows, int C, lnn_dropout_t drop);
    /* dinp A(rows.N,C) = dout * keep / (1 - p) (may alias dout) */
    void (*dropout_backward)(lnn_ctx *ctx, void *dinp, const void *dout, lnn_rows rows, int C, lnn_dropout_t drop);

    /* out A(n) = tanh(inp) (may alias inp) -- the pooler and head activation */
    void (*tanh_forward)(lnn_ctx *ctx, void *out, const void *inp, size_t n);
    /* dinp A(n) = dout * (1 - out^2) (may alias dout) */
    void (*tanh_backward)(lnn_ctx *ctx, void *dinp, const void *dout, const void *out, size_t n);

    /* out A(B,C) = token 0 of each sequence of inp A(rows.N,C) (packed: no sequence empty) */
    void (*token0_forward)(lnn_ctx *ctx, void *out, const void *inp, lnn_rows rows, int C);
    /* dinp A(rows.N,C) [token 0 rows] += dout A(B,C) */
    void (*token0_backward)(lnn_ctx *ctx, void *dinp, const void *dout, lnn_rows rows, int C);

    /* out A(B,C) = mean over each sequence's tokens of h A(rows.N,C): packed, all its rows; padded,
     * weighted by mask I32 (B,T) != 0 (NULL: all T), a row without tokens gives 0
     * (sum / max(count, 1e-9), sentence-transformers' mean pooling) */
    void (*mean_pool_forward)(lnn_ctx *ctx, void *out, const void *h, const int32_t *mask, lnn_rows rows, int C);
    /* dh A(rows.N,C) += the mean's gradient from dout A(B,C) */
    void (*mean_pool_backward)(lnn_ctx *ctx, void *dh, const void *dout, const int32_t *mask, lnn_rows rows, int C);

    /* out A(B,H+F) = [h A(B,H) | f A(B,F)] */
    void (*concat_forward)(lnn_ctx *ctx, void *out, const void *h, const void *f, int B, int H, int F);
    /* dh A(B,H) += dout[:, :H]; df A(B,F) += dout[:, H:] (either may be NULL) */
    void (*concat_backward)(lnn_ctx *ctx, void *dh, void *df, const void *dout, int B, int H, int F);

    /* BatchNorm1d over x A(N,C), torch semantics: training (or no running stats) normalises with the
     * batch mean and biased variance and updates running F32(C) = (1-momentum) running + momentum
     * stat (unbiased variance; needs N >= 2); eval uses the running stats. gamma, beta A(C) or NULL
     * (affine=False). save_mean, save_rstd F32(C) kept for the backward. out A(N,C). */
    void (*batchnorm_forward)(lnn_ctx *ctx, void *out, float *save_mean, float *save_rstd, const void *x,
                              const void *gamma, const void *beta, float *running_mean, float *running_var, int N,
                              int C, int training, float momentum, float eps);
    /* dx A(N,C) += (NULL skips); dgamma, dbeta F32(C) +=; batch_stats: the forward used batch statistics */
    void (*batchnorm_backward)(lnn_ctx *ctx, void *dx, float *dgamma, float *dbeta, const void *dout, const void *x,
                               const void *gamma, const float *save_mean, const float *save_rstd, int N, int C,
                               int batch_stats);

    /* Losses, torch semantics, mean reduction. *loss F64 (backend memory) = the loss; dlogits A =
     * grad_scale * d loss / d logits, WRITTEN (NULL skips).
     * cross_entropy: logits A(N,K), labels I64(N) in [0, K) or ignore_index, class_weight F32(K) or
     * NULL: sum_i w[y_i] nll_i / sum_i w[y_i]; NaN and zero gradients when every row is ignored. */
    void (*cross_entropy)(lnn_ctx *ctx, double *loss, void *dlogits, const void *logits, const int64_t *labels,
                          const float *class_weight, int N, int K, int64_t ignore_index, float grad_scale);
    /* bce_with_logits: logits, targets A(N,K), pos_weight F32(K) or NULL; mean over N*K */
    void (*bce_with_logits)(lnn_ctx *ctx, double *loss, void *dlogits, const void *logits, const void *targets,
                            const float *pos_weight, int N, int K, float grad_scale);
    /* mse: preds, targets A(n); mean over n */
    void (*mse)(lnn_ctx *ctx, double *loss, void *dpreds, const void *preds, const void *targets, size_t n,
                float grad_scale);

    /* *norm F64 = the global L2 norm of inv_scale * grads F32(n) over the trainable segments (segs backend
     * memory, NULL = all n), independent of the thread count. The gradients' factor c = inv_scale * (clip ?
     * min(max_norm / (norm + 1e-6), 1) : 1): torch's GradScaler.unscale_ (inv_scale = 1 / the loss scale; 1 =
     * none) then clip_grad_norm_ (a NaN norm propagates, as in torch). coef NULL: grads *= c (when clip or
     * inv_scale != 1); coef (backend F32(1)): *coef = c and grads are left for adam_step to scale. */
    void (*grad_norm_clip)(lnn_ctx *ctx, double *norm, float *grads, size_t n, const lnn_segment *segs, int nseg,
                           int clip, double max_norm, float inv_scale, float *coef);
    /* One Adam / AdamW step over the trainable segments (torch semantics, amsgrad off): params,
     * grads F32(n), state m, v F32(nstate) (compact, core/optim.h), steps I64(nseg) per-segment step
     * counters, incremented here; lr_scale F32(nseg) or NULL: per-segment lr multiplier. Fused extras (each
     * NULL = off): gcoef (backend F32(1), grad_norm_clip's coef): grads *= *gcoef first, in place (so grads
     * end as with the separate clip); skip_norm (backend F64(1)): when it is not finite (inf / NaN gradients
     * under loss scaling: GradScaler.step's skip) the step does nothing, counters included; wact: the
     * ctx->act copy of params, refreshed for every element the step updates (the weight cast). */
    void (*adam_step)(lnn_ctx *ctx, float *params, float *grads, float *m, float *v, size_t n, size_t nstate,
                      const lnn_segment *segs, int nseg, int64_t *steps, const float *lr_scale,
                      const lnn_optim_config *cfg, const float *gcoef, const double *skip_norm, void *wact);

    /* out A(N,C) = inp[idx[n]] (rows of inp A(M,C)); idx I32 (N), idx[n] < 0: a row of zeros */
    void (*gather_rows_forward)(lnn_ctx *ctx, void *out, const void *inp, const int32_t *idx, int N, int C);
    /* dinp A(M,C) [idx[n]] += dout A(N,C) (rows with idx[n] < 0 skipped; repeated indices add up) */
    void (*gather_rows_backward)(lnn_ctx *ctx, void *dinp, const void *dout, const int32_t *idx, int N, int C);

    /* One time step of an LSTM (torch's nn.LSTM: gate order i, f, g, o) for the N rows of the sequences
     * active at that step; rows n < Np continue a sequence (c_prev A(Np,H) is its previous cell state),
     * rows n >= Np start one (zero state):
     *   pre = gates + gh; i, f, o = sigmoid(pre_i, pre_f, pre_o); g = tanh(pre_g);
     *   c = f * c_prev + i * g; h = o * tanh(c).
     * gates A(N,4H): in, x W_ih^T + b_ih (the input projection, one GEMM for every step); out, the gate
     * activations (i, f, g, o) the backward reads. gh A(N,4H) = h_prev W_hh^T + b_hh (the recurrent GEMM;
     * zero h_prev rows for the rows that start). c, h A(N,H) written. */
    void (*lstm_cell_forward)(lnn_ctx *ctx, void *h, void *c, void *gates, const void *gh, const void *c_prev, int N,
                              int Np, int H);
    /* From dh, dc A(N,H) (the gradients w.r.t. this step's h and c): dgates A(N,4H) = the gradient w.r.t.
     * pre (so w.r.t. the input projection, gh and both biases), WRITTEN; dc_prev A(Np,H) = the gradient
     * w.r.t. c_prev, WRITTEN (NULL skips it). gates, c, c_prev: the forward's (gates after it ran). */
    void (*lstm_cell_backward)(lnn_ctx *ctx, void *dgates, void *dc_prev, const void *dh, const void *dc,
                               const void *gates, const void *c, const void *c_prev, int N, int Np, int H);

    /* Pooling across segments of rows (the windows of each song, packed song after song): segment s is
     * rows seg_off[s] .. seg_off[s+1]-1 of x A(N,C) (seg_off I32 (S+1): seg_off[0] = 0, seg_off[S] = N,
     * no segment empty). out A(S,C) =
     *   LNN_SEGPOOL_MEAN: the mean of the segment's rows;
     *   LNN_SEGPOOL_MAX:  per column, the largest value of the segment (a NaN wins, as torch.max);
     *   LNN_SEGPOOL_ATTN: sum_n w_n x_n, w = softmax over the segment of scores A(N) (a learned scorer's
     *                     output; NULL for the other modes). */
    void (*segment_pool_forward)(lnn_ctx *ctx, void *out, const void *x, const void *scores, const int32_t *seg_off,
                                 int S, int N, int C, int mode);
    /* dx A(N,C) += the gradient from dout A(S,C) (MAX: per column to the row the forward picked, the
     * segment's first largest value or first NaN); dscores A(N) = the gradient w.r.t. scores, WRITTEN
     * (ATTN only); either may be NULL. x, scores: the forward's. */
    void (*segment_pool_backward)(lnn_ctx *ctx, void *dx, void *dscores, const void *dout, const void *x,
                                  const void *scores, const int32_t *seg_off, int S, int N, int C, int mode);
};

/* The backends of this build. The CUDA backend is a separate shared object (csrc/cuda/, built when nvcc
 * and cuBLAS are found), loaded on first use, so the engine loads on machines without a driver. */
const lnn_backend *lnn_backend_cpu(void);
/* The CPU backend with its memory treated as device memory (caps.host_memory = 0): Python gets
 * copies, never views, as with a GPU backend. It runs every code path a device backend needs
 * above the op table, on machines without one. */
const lnn_backend *lnn_backend_cpu_copy(void);
/* By name ("cpu", "cpu-copy", "cuda"); NULL when it is not available (lnn_backend_missing says why). */
const lnn_backend *lnn_backend_find(const char *name);
/* Why lnn_backend_find(name) gave NULL, for messages. */
const char *lnn_backend_missing(const char *name);
/* Names of the available backends, NULL-terminated (loads the CUDA backend when it is there). */
const char *const *lnn_backend_names(void);
/* The CUDA backend's entry point (csrc/cuda/backend.cu): its table, or NULL with the reason in err
 * (no driver, no device). */
#define LNN_CUDA_LIBRARY "liblyricnn_cuda.so"
#define LNN_CUDA_ENTRY "lnn_cuda_backend"
typedef const lnn_backend *(*lnn_cuda_entry_fn)(char *err, size_t errn);

/* ---- helpers over any backend (core/backend.c) ---- */
/* Set up a context on backend be, device, activation dtype act (which be must support). */
lnn_status lnn_ctx_init(lnn_ctx *ctx, const lnn_backend *be, int device, lnn_dtype act);
void lnn_ctx_release(lnn_ctx *ctx);
/* Wait for the context's queued work; its status, with the message of the first failure set as the
 * thread's error (lnn_get_error), and the sticky error cleared. Call this, not be->synchronize. */
lnn_status lnn_sync(lnn_ctx *ctx);
/* Record a failure inside an op (the first one sticks). */
void lnn_ctx_fail(lnn_ctx *ctx, lnn_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Scratch of at least nbytes (backend memory, valid until the next call); NULL and the sticky error
 * set when it cannot grow. */
void *lnn_scratch(lnn_ctx *ctx, size_t nbytes);
/* Make *buf (backend memory, capacity *cap bytes) hold at least need bytes; what names it in the
 * out-of-memory message. The old contents are not kept. */
lnn_status lnn_reserve(lnn_ctx *ctx, void **buf, size_t *cap, size_t need, const char *what);

#endif /* LNN_CORE_BACKEND_H */
