/* models/classifier.h: a sequence classifier = a body (models/body.h: the encoder) + a head + a
 * loss + the optimizer, one graph over the backend op table (forward, loss, backward, clipping,
 * Adam step). No Python.
 *
 * The head is a list of ops over a (B, width) activation, fed by a source:
 *   LNN_SRC_CLS     token 0 of the last hidden state (B, C)        DistilBERT head, pooling="cls"
 *   LNN_SRC_MEAN    masked mean of the last hidden state (B, C)    pooling="mean"
 *   LNN_SRC_FLATTEN all T vectors (B, T*C), T fixed                 pooling="flatten"
 *   LNN_SRC_POOLER  the body's pooled output (BERT: tanh(W h0 + b)) BERT head
 * Songs as windows (window_pool >= 0): the body runs on every window of the batch's songs, packed as any
 * other sequences; the source vector of each window is pooled across its song's windows (segment_pool:
 * mean, max, or a softmax over a learned scorer's scores), and the head runs once per song. The batch then
 * comes with windows_of (B windows -> song, sorted, HF's overflow_to_sample_mapping) and the head's
 * features, labels and logits have one row per song.
 * Head tensors live in the body's parameter table (appended after the body's), so params, grads
 * and the Adam state are each one contiguous buffer. BatchNorm running statistics live in the
 * classifier's own buffer (they are not parameters). The enums' names (lnn_*_names) are what the
 * Python side passes, so the two sides share one list. */
#ifndef LNN_MODELS_CLASSIFIER_H
#define LNN_MODELS_CLASSIFIER_H

#include <stddef.h>
#include <stdint.h>

#include "core/optim.h"
#include "models/body.h"

enum { LNN_SRC_CLS = 0, LNN_SRC_MEAN = 1, LNN_SRC_FLATTEN = 2, LNN_SRC_POOLER = 3, LNN_NSRC };
enum { LNN_HOP_LINEAR = 0, LNN_HOP_RELU = 1, LNN_HOP_TANH = 2, LNN_HOP_DROPOUT = 3, LNN_HOP_BATCHNORM = 4,
       LNN_HOP_CONCAT = 5, LNN_NHOP };
enum { LNN_LOSS_CE = 0, LNN_LOSS_BCE = 1, LNN_LOSS_MSE = 2, LNN_NLOSS };
extern const char *const lnn_source_names[LNN_NSRC];  /* "cls", "mean", "flatten", "pooler" */
extern const char *const lnn_head_op_names[LNN_NHOP]; /* "linear", "relu", "tanh", "dropout", "batchnorm", "concat" */
extern const char *const lnn_loss_names[LNN_NLOSS];   /* the HF problem types */
extern const char *const lnn_window_pool_names[LNN_NSEGPOOL]; /* "mean", "max", "attention" (LNN_SEGPOOL_*) */
/* The index of s in names (n entries), or -1. */
int lnn_name_index(const char *const *names, int n, const char *s);

/* Dropout streams of the head (the encoder uses 0 .. 3L). */
#define LNN_HEAD_STREAM0 0x40000000u

typedef struct {
    int kind;        /* LNN_HOP_* */
    int in, out;     /* widths (CONCAT: out = in + num_features) */
    int w, b;        /* parameter table indices (LINEAR: weight (out,in), bias (out); BATCHNORM: gamma, beta), -1 = none */
    float p;         /* DROPOUT probability */
    float momentum;  /* BATCHNORM */
    float eps;       /* BATCHNORM */
    size_t buf;      /* BATCHNORM: running_mean at buffers[buf], running_var at buffers[buf + out] */
} lnn_head_op;

typedef struct {
    int source;       /* LNN_SRC_* */
    int flatten_T;    /* LNN_SRC_FLATTEN: the fixed sequence length */
    int n_ops;
    const lnn_head_op *ops;
    int num_labels;   /* width of the logits */
    int num_features; /* width of the feature vector (CONCAT), 0 = none */
    int loss;         /* LNN_LOSS_* */
    int window_pool;  /* LNN_SEGPOOL_* (core/backend.h): the windows of a song are pooled; -1 = no windows */
    int scorer;       /* LNN_SEGPOOL_ATTN: the scorer's weight (1, width), a parameter table index; else -1 */
} lnn_head_spec;

/* Dynamic loss scaling with torch.amp.GradScaler's semantics (precision "fp16"; it runs on any backend and
 * dtype): the loss gradient is multiplied by scale; the gradients are unscaled (and clipped) before the
 * step; a step whose gradients are not all finite is skipped (no update, no step count) and scale *=
 * backoff; after `interval` finite steps in a row, scale *= growth (when that stays finite). */
typedef struct {
    int enabled;
    float scale, growth, backoff; /* GradScaler defaults: 65536, 2, 0.5 */
    int interval;                 /* 2000 */
    int tracker;                  /* finite steps since the last change (GradScaler's _growth_tracker) */
    int skipped;                  /* the last step was skipped */
} lnn_loss_scaler;

/* GradScaler's update (torch._amp_update_scale_) after a step whose gradients were finite or not. */
void lnn_loss_scaler_update(lnn_loss_scaler *s, int found_inf);

typedef struct lnn_classifier {
    lnn_body *body;       /* borrowed: owned by the caller */
    lnn_head_spec spec;   /* ops copied */
    lnn_head_op *ops;
    int unpad;            /* let the body run on the real tokens only; on unless flatten */
    float *buffers;       /* F32 BatchNorm running stats (backend memory) */
    size_t n_buffers;
    /* activations for batch B (backend memory, A unless noted) */
    void *arena;
    size_t arena_bytes;
    void **act;           /* n_ops + 1: act[0] = the head's input (per song), act[i+1] = op i output */
    void *src;            /* (B windows, width) the source vector of each window (CLS, MEAN: arena) */
    void *wpool;          /* (S, width) the windows pooled per song (windows), then act[0] */
    void *scores, *dscores; /* (B) the scorer's output and its gradient (attention pooling) */
    void *dsrc;           /* (B, width) the gradient w.r.t. src (windows) */
    int32_t *seg_off;     /* I32 (S+1) the songs' first windows (windows) */
    float **bn_mean, **bn_rstd; /* F32, per op (BATCHNORM only) */
    void *feat;           /* (B,F) */
    void *dA, *dB;        /* (B, max width) */
    void *labels_f;       /* (B,K) */
    int64_t *labels_i;    /* I64 (B) */
    float *cw;            /* F32 (K) class_weight / pos_weight */
    double *scalars;      /* F64 [loss, grad norm], read back once per step; then the F32 gradient factor */
    /* optimizer (backend memory but for the host copy of the segments) */
    lnn_segment *segs;    /* host */
    lnn_segment *dsegs;   /* backend copy */
    int nseg;
    int64_t nstate;
    int64_t *steps;       /* I64 (nseg) */
    float *m, *v;         /* F32 (nstate) each */
    lnn_optim_config opt;
    int has_opt;
    lnn_loss_scaler scaler;
} lnn_classifier;

/* Build the classifier over an allocated body whose table holds the head tensors. Checks the spec
 * (widths chain, tensor shapes). */
lnn_status lnn_classifier_create(lnn_classifier **out, lnn_body *body, const lnn_head_spec *spec);
void lnn_classifier_free(lnn_classifier *c);

/* The number of songs in windows_of (host I32 (B): the song of each window of the batch, sorted, songs
 * numbered from 0 without gaps); NULL: B (each row its own song). An error naming the first bad entry
 * when windows_of is unsorted or out of range, or is given to a head without window pooling. */
lnn_status lnn_classifier_songs(const lnn_classifier *c, const int32_t *windows_of, int B, int *songs);

/* Forward on host inputs; windows_of: see lnn_classifier_songs (S songs); features (S,F) F32 host or
 * NULL. train: dropout on (keyed by (seed, step)), BatchNorm with batch stats (running stats updated).
 * logits (S,K) F32 host. */
lnn_status lnn_classifier_forward(lnn_classifier *c, const lnn_batch *in, const int32_t *windows_of,
                                  const float *features, int train, uint64_t seed, uint32_t step, float *logits);

/* Set up (or reset) the optimizer: host segments over the parameter buffer (sorted, compact state of
 * nstate floats; the state is zeroed). */
lnn_status lnn_classifier_configure_optimizer(lnn_classifier *c, const lnn_segment *segs, int nseg, int64_t nstate,
                                              const lnn_optim_config *cfg);

/* One training step: forward (train), loss (times the loss scale, when scaling), backward, unscale and clip,
 * optimizer step (skipped on non-finite gradients when scaling), the loss scale's update. Per song (S of
 * them, see lnn_classifier_forward): labels_i (S) I64 for CE, targets (S,K) F32 for BCE / MSE; weight:
 * class_weight (K) for CE, pos_weight (K) for BCE, or NULL (all host). loss_out: the mean loss; gnorm_out:
 * the pre-clip global gradient norm (-1 when not clipping; may be NULL). */
lnn_status lnn_classifier_train_step(lnn_classifier *c, const lnn_batch *in, const int32_t *windows_of,
                                     const float *features,
                                     const int64_t *labels_i, const float *targets, const float *weight, uint64_t seed,
                                     uint32_t step, double *loss_out, double *gnorm_out);

#endif /* LNN_MODELS_CLASSIFIER_H */
