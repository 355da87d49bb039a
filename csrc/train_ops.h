/* train_ops.h: heads, losses and the optimizer of fine-tuning (pure C core, no Python).
 *
 * Conventions (see lnn_common.h): row-major float32 buffers; every layer is a
 * name_forward / name_backward pair; backward ACCUMULATES (+=) into every gradient it
 * writes (dx, dweight, ...), so callers zero gradient buffers once per step. Gradient
 * pointers may be NULL where documented (no work is done for them). Losses are the exception:
 * they WRITE dlogits (= grad_scale * d mean_loss / d logits), since they start the backward pass.
 * Functions that can fail on user data return an lnn_status and set lnn_set_error().
 * All symbols carry the lnn_ prefix (lnn_head_* for head layers) so that they cannot clash
 * with the encoder's layers inside the one extension module.
 */
#ifndef LNN_TRAIN_OPS_H
#define LNN_TRAIN_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "lnn_common.h"

/* ---------------------------------------------------------------- losses */

/* Softmax cross-entropy, PyTorch F.cross_entropy(reduction='mean') semantics:
 * loss = sum_i w[y_i] * nll_i / sum_i w[y_i] over rows with y_i != ignore_index
 * (w = 1 without class weights). All rows ignored (or total weight 0): loss = NaN, dlogits = 0.
 * logits (N, C), labels (N) int64, class_weight (C) or NULL, dlogits (N, C) written or NULL.
 * Errors: a label outside [0, C) that is not ignore_index (LNN_ERR_INDEX). */
lnn_status lnn_cross_entropy_forward_backward(const float *logits, const int64_t *labels,
                                              const float *class_weight, int64_t N, int64_t C,
                                              int64_t ignore_index, float grad_scale,
                                              float *dlogits, double *loss_out);

/* BCE-with-logits, mean over all N*K elements, PyTorch semantics (numerically stable):
 * l = (1 - y) * x + (1 + (pw - 1) * y) * softplus(-x).
 * logits (N, K), targets (N, K), pos_weight (K) or NULL, dlogits (N, K) written or NULL. */
lnn_status lnn_bce_with_logits_forward_backward(const float *logits, const float *targets,
                                                const float *pos_weight, int64_t N, int64_t K,
                                                float grad_scale, float *dlogits, double *loss_out);

/* Mean squared error over n elements: preds (n), targets (n), dpreds (n) written or NULL. */
lnn_status lnn_mse_forward_backward(const float *preds, const float *targets, int64_t n,
                                    float grad_scale, float *dpreds, double *loss_out);

/* ---------------------------------------------------------------- head layers */

/* Linear like torch.nn.Linear: x (N, K), weight (M, K), bias (M) or NULL -> out (N, M). */
void lnn_head_linear_forward(float *out, const float *x, const float *weight, const float *bias,
                             int64_t N, int64_t K, int64_t M);
/* dout (N, M) -> dx (N, K) += dout @ W, dweight (M, K) += dout^T @ x, dbias (M) += sum dout;
 * each gradient pointer may be NULL. */
void lnn_head_linear_backward(float *dx, float *dweight, float *dbias, const float *dout,
                              const float *x, const float *weight, int64_t N, int64_t K, int64_t M);

/* ReLU: x (n) -> out (n); out may equal x (in place). */
void lnn_head_relu_forward(float *out, const float *x, int64_t n);
/* dout (n), out = relu output (n) -> dx (n) += dout * (out > 0). */
void lnn_head_relu_backward(float *dx, const float *dout, const float *out, int64_t n);

/* Tanh (BERT pooler): x (n) -> out (n); backward dx += dout * (1 - out^2). */
void lnn_head_tanh_forward(float *out, const float *x, int64_t n);
void lnn_head_tanh_backward(float *dx, const float *dout, const float *out, int64_t n);

/* Inverted dropout with a counter-based RNG (reproducible for a given seed, independent of
 * threads): keep with prob 1 - p, scale kept by 1/(1-p). x (n) -> out (n), mask (n) uint8
 * written. p == 0 copies x and sets mask to 1. Errors: p outside [0, 1). */
lnn_status lnn_head_dropout_forward(float *out, uint8_t *mask, const float *x, int64_t n, float p,
                                    uint64_t seed);
/* dout (n), mask (n) -> dx (n) += dout * mask / (1 - p). */
void lnn_head_dropout_backward(float *dx, const float *dout, const uint8_t *mask, int64_t n, float p);

/* BatchNorm1d over x (N, C), torch semantics. training (or no running stats): normalise with the
 * batch mean and biased variance, and (if running stats given) update
 * running = (1 - momentum) * running + momentum * batch_stat with the UNBIASED variance;
 * eval: normalise with the running stats. gamma/beta (C) or NULL (affine=False).
 * Saves mean (C) and rstd = 1/sqrt(var + eps) (C) for the backward. -> out (N, C).
 * Errors: training with N < 2 (as torch: "Expected more than 1 value per channel"). */
lnn_status lnn_head_batchnorm1d_forward(float *out, float *save_mean, float *save_rstd,
                                        const float *x, const float *gamma, const float *beta,
                                        float *running_mean, float *running_var, int64_t N,
                                        int64_t C, int training, float momentum, float eps);
/* dout (N, C), x (N, C), saved mean/rstd (C) -> dx (N, C) += ..., dgamma/dbeta (C) += ...;
 * batch_stats = 1 if the forward normalised with batch statistics (train mode). */
void lnn_head_batchnorm1d_backward(float *dx, float *dgamma, float *dbeta, const float *dout,
                                   const float *x, const float *gamma, const float *save_mean,
                                   const float *save_rstd, int64_t N, int64_t C, int batch_stats);

/* Pooling of encoder states h (B, T, C) with attention mask (B, T) int64:
 * LNN_POOL_CLS: token 0 -> out (B, C);
 * LNN_POOL_MEAN: sum_t mask*h / max(sum_t mask, 1e-9) -> out (B, C) (sentence-transformers);
 * LNN_POOL_FLATTEN: all T vectors -> out (B, T*C) (mask ignored). mask may be NULL for cls/flatten. */
enum { LNN_POOL_CLS = 0, LNN_POOL_MEAN = 1, LNN_POOL_FLATTEN = 2 };
lnn_status lnn_head_pool_forward(float *out, const float *h, const int64_t *mask, int64_t B,
                                 int64_t T, int64_t C, int mode);
/* dout (B, C) or (B, T*C) -> dh (B, T, C) += ... */
lnn_status lnn_head_pool_backward(float *dh, const float *dout, const int64_t *mask, int64_t B,
                                  int64_t T, int64_t C, int mode);

/* Concatenation: h (B, H), f (B, F) -> out (B, H+F). */
void lnn_head_concat_forward(float *out, const float *h, const float *f, int64_t B, int64_t H,
                             int64_t F);
/* dout (B, H+F) -> dh (B, H) += dout[:, :H], df (B, F) += dout[:, H:]; dh or df may be NULL. */
void lnn_head_concat_backward(float *dh, float *df, const float *dout, int64_t B, int64_t H,
                              int64_t F);

/* ---------------------------------------------------------------- optimizer */

/* One tensor of the flat parameter buffer. Segments must be sorted by offset and disjoint.
 * Parameters outside every segment, and FROZEN segments, are never touched (nor their state).
 * The optimizer state (m, v) is compact: a trainable segment's state lives at
 * [state_offset, state_offset + size) of m and v, so frozen tensors need no state memory. */
enum { LNN_SEG_DECAY = 1, LNN_SEG_FROZEN = 2 };
typedef struct {
    int64_t offset, size;  /* elements, into params / grads */
    int64_t flags;         /* LNN_SEG_DECAY: apply weight decay; LNN_SEG_FROZEN: skip entirely */
    int64_t state_offset;  /* elements, into m / v (ignored for frozen segments) */
} lnn_segment;

/* Check segments against a parameter buffer of n elements and state buffers of nstate elements
 * (nstate < 0: do not check the state ranges): in range, sorted, disjoint, known flags. */
lnn_status lnn_segments_check(const lnn_segment *segs, int64_t nseg, int64_t n, int64_t nstate);

/* One Adam / AdamW step, torch.optim.Adam / AdamW semantics (amsgrad=False, maximize=False).
 * params, grads: the flat buffers (n); m, v: the state buffers (nstate). steps (nseg) int64: per-segment step counters
 * (optimizer state, incremented here for every trainable segment). lr_scale (nseg) or NULL:
 * per-segment lr multiplier (torch param groups with their own lr). decoupled = 1: AdamW
 * (p *= 1 - lr*wd), 0: Adam (g += wd * p, grads buffer untouched). */
lnn_status lnn_adam_step(float *params, const float *grads, float *m, float *v, int64_t n,
                         int64_t nstate, const lnn_segment *segs, int64_t nseg, int64_t *steps,
                         const float *lr_scale, double lr, double beta1, double beta2, double eps,
                         double weight_decay, int decoupled);

/* Global L2 norm of grads (f64 accumulation, independent of the thread count) over the
 * trainable segments (all n if segs is NULL). NaN if out of memory. */
double lnn_grad_norm(const float *grads, int64_t n, const lnn_segment *segs, int64_t nseg);

/* torch.nn.utils.clip_grad_norm_(norm_type=2): total = global norm,
 * coef = min(max_norm / (total + 1e-6), 1); grads *= coef (over the trainable segments).
 * Returns the pre-clip total norm. Like torch, a NaN/inf total propagates into the grads:
 * check the returned norm. (Out of memory: returns NaN and leaves the grads untouched.) */
double lnn_clip_grad_norm(float *grads, int64_t n, const lnn_segment *segs, int64_t nseg,
                          double max_norm);

#endif /* LNN_TRAIN_OPS_H */
