/* backend.h: the table of compute ops the model graph (model.c) is written over.
 *
 * A backend (CPU now: backend_cpu.c; CUDA later) fills one lnn_backend with function pointers.
 * All pointers are backend memory (host memory for the CPU). Shapes: B batch, T sequence,
 * C hidden, NH heads, N rows, OC output features. Row-major, contiguous.
 *
 * Rows are either padded (N = B*T, row b*T + t) or packed ("unpadded": only the real tokens of
 * right-padded sequences, sequence b in rows seq_off[b] .. seq_off[b+1]-1, N = seq_off[B]); the
 * row-wise ops do not care, the ops that need to know take seq_off (NULL = padded).
 *
 * Gradient conventions:
 * - weight/bias gradients are ACCUMULATED (+=); a NULL gradient pointer skips that work
 *   (frozen tensors);
 * - activation gradients of matmul / layernorm / attention / embedding / token0 are accumulated
 *   too (the model zeroes its scratch first); the elementwise ops (dropout, bias_act, tanh)
 *   transform their gradient in place-able fashion (dinp may alias dout, it is overwritten).
 */
#ifndef LNN_BACKEND_H
#define LNN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "lnn_common.h"
#include "philox.h"
#include "train_ops.h"

/* activation functions of the FFN (config `activation` / `hidden_act`) */
enum { LNN_ACT_GELU = 0, LNN_ACT_RELU = 1, LNN_ACT_GELU_TANH = 2 };

typedef struct lnn_backend {
    const char *name;

    /* ---- memory ---- */
    void *(*malloc)(size_t nbytes);                                 /* NULL on failure */
    void (*free)(void *p);
    void (*zero)(void *p, size_t nbytes);
    void (*copy)(void *dst, const void *src, size_t nbytes);         /* backend -> backend */
    void (*to_device)(void *dst, const void *host, size_t nbytes);   /* host -> backend */
    void (*to_host)(void *host, const void *src, size_t nbytes);     /* backend -> host */

    /* ---- ops ---- */
    /* out(N,C) = wte[ids] + wpe[pos] (+ wtt[types] when wtt); ids, types, pos (N) int32, checked */
    void (*embedding_forward)(float *out, const int32_t *ids, const int32_t *types, const int32_t *pos,
                              const float *wte, const float *wpe, const float *wtt, int N, int C);
    /* dwte[ids] += dout (row pad_id left untouched), dwpe[pos] += .., dwtt[types] += ..; NULL skips */
    void (*embedding_backward)(float *dwte, float *dwpe, float *dwtt, const float *dout, const int32_t *ids,
                               const int32_t *types, const int32_t *pos, int N, int C, int pad_id);

    /* out(N,OC) = inp(N,C) @ w(OC,C)^T (+ b(OC) when b) -- nn.Linear */
    void (*matmul_forward)(float *out, const float *inp, const float *w, const float *b, int N, int C, int OC);
    /* dinp(N,C) += dout(N,OC) @ w; dw(OC,C) += dout^T @ inp; db(OC) += colsum(dout); NULLs skip */
    void (*matmul_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, int N, int C, int OC);

    /* res(N,C) = a + r (r may be NULL; res may alias a); out = (res-mean)*rstd*w + b; mean,rstd (N) */
    void (*layernorm_forward)(float *out, float *mean, float *rstd, float *res, const float *a,
                              const float *r, const float *w, const float *b, int N, int C, float eps);
    /* dres(N,C) += dLN/dres . dout; dw, db (C) += (NULL skips) */
    void (*layernorm_backward)(float *dres, float *dw, float *db, const float *dout, const float *res,
                               const float *w, const float *mean, const float *rstd, int N, int C);

    /* x(N,OC) += b (in place, the pre-activation is kept); out(N,OC) = act(x) */
    void (*bias_act_forward)(float *out, float *x, const float *b, int N, int OC, int act);
    /* dx(N,OC) = dout * act'(x) (dx may alias dout); db(OC) += colsum(dx) (NULL skips) */
    void (*bias_act_backward)(float *dx, float *db, const float *dout, const float *x, int N, int OC, int act);

    /* qkv (N,3C) = [Q|K|V]; probs(B,NH,T,T) = softmax(Q K^T / sqrt(C/NH) + mask), masked keys
     * (mask[b,t] == 0) add -FLT_MAX as HF does; pdrop(B,NH,T,T) = dropout(probs) (scratch, used
     * when drop.p > 0); out(N,C) = pdrop @ V, heads concatenated. mask may be NULL.
     * keep (the probs layout, uint8) receives the dropout mask for the backward (when drop.p > 0).
     * Packed (seq_off given, mask ignored): sequence b of length L_b has its (NH,L_b,L_b) probs at
     * prob_off[b] (int64, B+1), and its dropout mask is the padded layout's (b, h, i, j) element.
     * q_first: only each sequence's first query (the last layer of a token-0 head): out (B,C), probs
     * (B,NH,T) with the row of L_b keys at (b*NH+h)*T, the dropout mask the full attention's row 0. */
    void (*attention_forward)(float *out, float *probs, float *pdrop, uint8_t *keep, const float *qkv,
                              const int32_t *mask, const int32_t *seq_off, const int64_t *prob_off, int q_first,
                              int B, int T, int C, int NH, lnn_dropout_t drop);
    /* dqkv(N,3C) += (with q_first: query row 0 and every key/value row; dout (B,C)); keep is the
     * forward's mask; dprobs, pdrop (the probs layout) are scratch */
    void (*attention_backward)(float *dqkv, float *dprobs, float *pdrop, const uint8_t *keep, const float *dout,
                               const float *qkv, const float *probs, const int32_t *seq_off, const int64_t *prob_off,
                               int q_first, int B, int T, int C, int NH, lnn_dropout_t drop);

    /* out(n) = inp * keep(drop.offset + i) / (1-p) (out may alias inp) */
    void (*dropout_forward)(float *out, const float *inp, size_t n, lnn_dropout_t drop);
    /* dinp(n) = dout * keep(drop.offset + i) / (1-p) (dinp may alias dout) */
    void (*dropout_backward)(float *dinp, const float *dout, size_t n, lnn_dropout_t drop);

    /* out(n) = tanh(inp) (out may alias inp): the pooler activation */
    void (*tanh_forward)(float *out, const float *inp, size_t n);
    /* dinp(n) = dout * (1 - out^2) (dinp may alias dout) */
    void (*tanh_backward)(float *dinp, const float *dout, const float *out, size_t n);

    /* out(B,C) = the first row of each sequence: inp(B,T,C)[:, 0, :], or row seq_off[b] when packed */
    void (*token0_forward)(float *out, const float *inp, const int32_t *seq_off, int B, int T, int C);
    /* dinp[that row] += dout(B,C) */
    void (*token0_backward)(float *dinp, const float *dout, const int32_t *seq_off, int B, int T, int C);
    /* ---- fine-tuning ops (the kernels of train_ops.h; see there for the semantics) ---- */
    /* BatchNorm1d over x (N,C), torch train/eval semantics, running stats updated in training */
    lnn_status (*batchnorm1d_forward)(float *out, float *save_mean, float *save_rstd, const float *x,
                                      const float *gamma, const float *beta, float *running_mean,
                                      float *running_var, int64_t N, int64_t C, int training, float momentum,
                                      float eps);
    /* dx (N,C) +=, dgamma/dbeta (C) += (NULL skips) */
    void (*batchnorm1d_backward)(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                                 const float *gamma, const float *save_mean, const float *save_rstd, int64_t N,
                                 int64_t C, int batch_stats);
    /* out (B,C) or (B,T*C) = pool(h (B,T,C)), mask (B,T) int64 (LNN_POOL_*) */
    lnn_status (*pool_forward)(float *out, const float *h, const int64_t *mask, int64_t B, int64_t T, int64_t C,
                               int mode);
    /* dh (B,T,C) += */
    lnn_status (*pool_backward)(float *dh, const float *dout, const int64_t *mask, int64_t B, int64_t T, int64_t C,
                                int mode);
    /* out (B,H+F) = [h (B,H) | f (B,F)]; backward dh, df += (NULL skips) */
    void (*concat_forward)(float *out, const float *h, const float *f, int64_t B, int64_t H, int64_t F);
    void (*concat_backward)(float *dh, float *df, const float *dout, int64_t B, int64_t H, int64_t F);
    /* losses: loss_out (host) = mean loss; dlogits WRITTEN (NULL skips) */
    lnn_status (*cross_entropy)(const float *logits, const int64_t *labels, const float *class_weight, int64_t N,
                                int64_t C, int64_t ignore_index, float grad_scale, float *dlogits,
                                double *loss_out);
    lnn_status (*bce_with_logits)(const float *logits, const float *targets, const float *pos_weight, int64_t N,
                                  int64_t K, float grad_scale, float *dlogits, double *loss_out);
    lnn_status (*mse)(const float *preds, const float *targets, int64_t n, float grad_scale, float *dpreds,
                      double *loss_out);
    /* global-norm clipping over the trainable segments -> the pre-clip norm */
    double (*clip_grad_norm)(float *grads, int64_t n, const lnn_segment *segs, int64_t nseg, double max_norm);
    /* Adam / AdamW step over segments (compact state m, v) */
    lnn_status (*adam_step)(float *params, const float *grads, float *m, float *v, int64_t n, int64_t nstate,
                            const lnn_segment *segs, int64_t nseg, int64_t *steps, const float *lr_scale,
                            double lr, double beta1, double beta2, double eps, double weight_decay,
                            int decoupled);
} lnn_backend;

/* The CPU backend (BLAS GEMMs, OpenMP loops). */
const lnn_backend *lnn_backend_cpu(void);

#endif /* LNN_BACKEND_H */
