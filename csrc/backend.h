/* backend.h: the table of compute ops the model graph (model.c) is written over.
 *
 * A backend (CPU now: backend_cpu.c; CUDA later) fills one lnn_backend with function pointers.
 * All pointers are backend memory (host memory for the CPU). Shapes: B batch, T sequence,
 * C hidden, NH heads, N = B*T rows, OC output features. Row-major, contiguous.
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
    /* out(B,T,C) = wte[ids] + wpe[t] (+ wtt[types] when wtt); ids, types (B,T) int32, checked */
    void (*embedding_forward)(float *out, const int32_t *ids, const int32_t *types, const float *wte,
                              const float *wpe, const float *wtt, int B, int T, int C);
    /* dwte[ids] += dout (row pad_id left untouched), dwpe[t] += .., dwtt[types] += ..; NULL skips */
    void (*embedding_backward)(float *dwte, float *dwpe, float *dwtt, const float *dout,
                               const int32_t *ids, const int32_t *types, int B, int T, int C, int pad_id);

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

    /* qkv (B,T,3C) = [Q|K|V]; probs(B,NH,T,T) = softmax(Q K^T / sqrt(C/NH) + mask), masked keys
     * (mask[b,t] == 0) add -FLT_MAX as HF does; pdrop(B,NH,T,T) = dropout(probs) (scratch, used
     * when drop.p > 0); out(B,T,C) = pdrop @ V, heads concatenated. mask may be NULL. */
    void (*attention_forward)(float *out, float *probs, float *pdrop, const float *qkv, const int32_t *mask,
                              int B, int T, int C, int NH, lnn_dropout_t drop);
    /* dqkv(B,T,3C) += ; dprobs, pdrop (B,NH,T,T) are scratch */
    void (*attention_backward)(float *dqkv, float *dprobs, float *pdrop, const float *dout, const float *qkv,
                               const float *probs, int B, int T, int C, int NH, lnn_dropout_t drop);

    /* out(n) = inp * keep / (1-p) (out may alias inp) */
    void (*dropout_forward)(float *out, const float *inp, size_t n, lnn_dropout_t drop);
    /* dinp(n) = dout * keep / (1-p) (dinp may alias dout) */
    void (*dropout_backward)(float *dinp, const float *dout, size_t n, lnn_dropout_t drop);

    /* out(n) = tanh(inp) (out may alias inp): the pooler activation */
    void (*tanh_forward)(float *out, const float *inp, size_t n);
    /* dinp(n) = dout * (1 - out^2) (dinp may alias dout) */
    void (*tanh_backward)(float *dinp, const float *dout, const float *out, size_t n);

    /* out(B,C) = inp(B,T,C)[:, 0, :] */
    void (*token0_forward)(float *out, const float *inp, int B, int T, int C);
    /* dinp(B,T,C)[:, 0, :] += dout(B,C) */
    void (*token0_backward)(float *dinp, const float *dout, int B, int T, int C);
} lnn_backend;

/* The CPU backend (BLAS GEMMs, OpenMP loops). */
const lnn_backend *lnn_backend_cpu(void);

#endif /* LNN_BACKEND_H */
