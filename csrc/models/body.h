/* models/body.h: the interface between a network body (the DistilBERT/BERT encoder of
 * models/encoder.c; a recurrent body later) and the head on top of it (models/classifier.c).
 *
 * A body owns the backend context, the parameter table (its tensors first; the head appends its
 * own, so params, grads and the optimizer state are each one buffer) and its activations. Its
 * forward takes host token ids and leaves its outputs in backend memory, for the head to read:
 *   out (rows.N, width) A   the last hidden state, token rows in the layout `rows` (core/backend.h);
 *   pooled (B, width) A     a pooled vector (BERT's pooler) when has_pooled.
 * For the backward the head fills dout (the gradient w.r.t. out, same layout; zeroed by
 * lnn_body_clear_dout) and passes a gradient w.r.t. pooled. */
#ifndef LNN_MODELS_BODY_H
#define LNN_MODELS_BODY_H

#include <stdint.h>

#include "core/backend.h"
#include "core/params.h"

typedef struct lnn_body lnn_body;

/* A batch of host inputs: (B, T) I32 token ids, token types and attention mask (types and mask may
 * be NULL). The mask is 1 for real tokens; a right-padded mask lets a body skip the padding. */
typedef struct {
    const int32_t *ids, *types, *mask;
    int B, T;
} lnn_batch;

/* What the owner reads after a forward, so the body can skip the rest. */
enum {
    LNN_READ_ROWS = 1,    /* every token row of out */
    LNN_READ_TOKEN0 = 2,  /* only token 0 of each sequence (of out, or through pooled) */
    LNN_READ_POOLED = 4,  /* pooled */
    LNN_READ_PADDED = 8,  /* out must be in the padded layout (flatten pooling) */
};

typedef struct {
    const char *name;
    /* Forward on host inputs; train: dropout on (keyed by (seed, step)), activations kept. unpad:
     * packed rows are allowed. read: LNN_READ_* bits. */
    lnn_status (*forward)(lnn_body *b, const lnn_batch *in, int train, uint64_t seed, uint32_t step, int unpad,
                          unsigned read);
    /* Backward after a training forward: gradients accumulate into grads; has_dout: dout was filled;
     * dpooled (B, width) A backend memory or NULL. */
    lnn_status (*backward)(lnn_body *b, int has_dout, const void *dpooled);
    /* Zero the dout rows of the last forward (the head then adds into them). */
    void (*clear_dout)(lnn_body *b);
    /* Does any body tensor train (not frozen)? */
    int (*trainable)(const lnn_body *b);
} lnn_body_ops;

struct lnn_body {
    const lnn_body_ops *ops;
    lnn_ctx ctx;          /* backend, device, activation dtype */
    lnn_param_table tab;  /* the body's tensors, then any appended by the owner */
    float *params;        /* F32 (tab.numel), backend memory */
    float *grads;         /* F32 (tab.numel), backend memory */
    void *wact;           /* the A copy of params the forward ops read (== params when A is F32) */
    size_t wact_bytes;
    int width;            /* features per output row */
    int has_pooled;
    /* the outputs of the last forward (backend memory) */
    void *out;
    lnn_rows rows;
    const int32_t *mask;  /* the staged (B,T) mask when rows are padded and a mask was given, else NULL */
    void *pooled;
    void *dout;
    int has_train_forward;
};

/* Allocate params, grads (zeroed) and the A weight copy for the table as it stands. */
lnn_status lnn_body_allocate(lnn_body *b);
/* Refresh the A weight copy from params (after the parameters change; nothing to do for F32). */
void lnn_body_sync_weights(lnn_body *b);
/* A tensor's address in params (F32), in the A copy, or in grads (NULL when frozen). */
float *lnn_body_param(const lnn_body *b, int idx);
void *lnn_body_weight(const lnn_body *b, int idx);
float *lnn_body_grad(const lnn_body *b, int idx);
/* Copies between host F32 and backend A buffers of n elements (a cast through scratch when A is not
 * F32): the boundary's way in and out for activations. */
void lnn_body_to_host_act(lnn_body *b, float *host, const void *src, size_t n);
void lnn_body_to_device_act(lnn_body *b, void *dst, const float *host, size_t n);
/* Free what lnn_body_allocate made, the table and the context. */
void lnn_body_release(lnn_body *b);

#endif /* LNN_MODELS_BODY_H */
