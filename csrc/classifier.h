/* classifier.h: a sequence classifier = the encoder (model.h) + a head + a loss + the optimizer,
 * one graph over the backend op table (forward, loss, backward, clipping, Adam step). No Python.
 *
 * The head is a list of ops over a (B, width) activation, fed by a source:
 *   LNN_SRC_CLS     token 0 of the last hidden state (B, C)        DistilBERT head, pooling="cls"
 *   LNN_SRC_MEAN    masked mean of the last hidden state (B, C)    pooling="mean"
 *   LNN_SRC_FLATTEN all T vectors (B, T*C), T fixed                 pooling="flatten"
 *   LNN_SRC_POOLER  BERT's pooler output tanh(W h0 + b) (B, C)     BERT head
 * Head tensors live in the encoder's parameter table (appended after the encoder's), so params,
 * grads and the Adam state are each one contiguous buffer. BatchNorm running statistics live in
 * the classifier's own buffer (they are not parameters). */
#ifndef LNN_CLASSIFIER_H
#define LNN_CLASSIFIER_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

enum { LNN_SRC_CLS = 0, LNN_SRC_MEAN = 1, LNN_SRC_FLATTEN = 2, LNN_SRC_POOLER = 3 };
enum { LNN_HOP_LINEAR = 0, LNN_HOP_RELU = 1, LNN_HOP_TANH = 2, LNN_HOP_DROPOUT = 3, LNN_HOP_BATCHNORM = 4,
       LNN_HOP_CONCAT = 5 };
enum { LNN_LOSS_CE = 0, LNN_LOSS_BCE = 1, LNN_LOSS_MSE = 2 };

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
} lnn_head_spec;

typedef struct {
    double lr, beta1, beta2, eps, weight_decay, max_grad_norm; /* max_grad_norm <= 0: no clipping */
    int decoupled;                                              /* 1 AdamW, 0 Adam */
} lnn_optim_config;

typedef struct lnn_classifier {
    lnn_model *enc;       /* borrowed: owned by the caller */
    lnn_head_spec spec;   /* ops copied */
    lnn_head_op *ops;
    int n_enc_tensors;    /* table indices [0, n_enc_tensors) are the encoder's */
    int unpad;            /* run the encoder on the real tokens only (model.h); on unless flatten */
    float *buffers;       /* BatchNorm running stats (backend memory) */
    size_t n_buffers;
    /* activations for batch B */
    float *arena;
    size_t arena_floats;
    int aB, aT;
    float **act;          /* n_ops + 1: act[0] = source output, act[i+1] = op i output */
    float **bn_mean, **bn_rstd; /* per op (BATCHNORM only) */
    float *last, *dlast;  /* (B,T,C) */
    float *pooled;        /* (B,C) */
    int64_t *mask64;      /* (B,T) */
    float *feat;          /* (B,F) */
    float *dA, *dB;       /* (B, max width) */
    float *labels_f;      /* (B,K) */
    int64_t *labels_i;    /* (B) */
    float *cw;            /* (K) class_weight / pos_weight */
    /* optimizer */
    lnn_segment *segs;
    int64_t nseg, nstate;
    int64_t *steps;       /* (nseg) */
    float *m, *v;         /* (nstate) each, one buffer each */
    lnn_optim_config opt;
    int has_opt;
} lnn_classifier;

/* Build the classifier over an allocated encoder model whose table holds the head tensors. Checks the
 * spec (widths chain, tensor shapes). */
lnn_status lnn_classifier_create(lnn_classifier **out, lnn_model *enc, const lnn_head_spec *spec);
void lnn_classifier_free(lnn_classifier *c);

/* Forward on host inputs: ids/types/mask (B,T) int32 (types, mask may be NULL), features (B,F) or NULL.
 * train: dropout on (keyed by (seed, step)), BatchNorm with batch stats (running stats updated).
 * logits (B,K) host. */
lnn_status lnn_classifier_forward(lnn_classifier *c, const int32_t *ids, const int32_t *types, const int32_t *mask,
                                  const float *features, int B, int T, int train, uint64_t seed, uint32_t step,
                                  float *logits);

/* Set up (or reset) the optimizer: segments over the parameter buffer (sorted, compact state of nstate
 * floats; the state is zeroed). */
lnn_status lnn_classifier_configure_optimizer(lnn_classifier *c, const lnn_segment *segs, int64_t nseg,
                                              int64_t nstate, const lnn_optim_config *cfg);

/* One training step: forward (train), loss, backward, clip, optimizer step. labels_i (B) int64 for CE,
 * targets (B,K) float for BCE / MSE; weight: class_weight (K) for CE, pos_weight (K) for BCE, or NULL.
 * loss_out: the mean loss; gnorm_out: the pre-clip global gradient norm (may be NULL). */
lnn_status lnn_classifier_train_step(lnn_classifier *c, const int32_t *ids, const int32_t *types,
                                     const int32_t *mask, const float *features, int B, int T,
                                     const int64_t *labels_i, const float *targets, const float *weight,
                                     uint64_t seed, uint32_t step, double *loss_out, double *gnorm_out);

#endif /* LNN_CLASSIFIER_H */
