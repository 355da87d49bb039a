/* models/encoder.h: the DistilBERT / BERT encoder, a body (models/body.h): its configuration, its
 * tensors in the parameter table, its activation arena, and the one forward/backward graph
 * (models/encoder.c) written over the backend op table. No Python here. */
#ifndef LNN_MODELS_ENCODER_H
#define LNN_MODELS_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "models/body.h"

enum { LNN_DISTILBERT = 0, LNN_BERT = 1 };

typedef struct {
    int model_type;      /* LNN_DISTILBERT or LNN_BERT */
    int vocab_size;
    int max_pos;         /* max_position_embeddings */
    int type_vocab_size; /* 0 for DistilBERT */
    int C;               /* hidden size (dim) */
    int n_layers;
    int NH;              /* attention heads */
    int F;               /* FFN size (hidden_dim / intermediate_size) */
    int act;             /* LNN_ACT_* */
    int pad_id;          /* padding_idx of the word embeddings (-1: none) */
    float ln_eps;        /* 1e-12 for DistilBERT */
    float hidden_dropout;/* embeddings, (BERT: attention output), FFN output */
    float attn_dropout;  /* attention probabilities */
    int pooler;          /* BERT: has the pooler (dense + tanh on token 0) */
} lnn_config;

/* ---- named views of the weights (A, body.wact) or of the gradients (F32; NULL = frozen) ---- */
#define LNN_LAYER_NT 12
typedef union {
    struct { /* qkv_w (3C,C) = q, k, v weights stacked; qkv_b (3C) */
        void *qkv_w, *qkv_b, *o_w, *o_b, *ln1_w, *ln1_b, *f1_w, *f1_b, *f2_w, *f2_b, *ln2_w, *ln2_b;
    };
    void *t[LNN_LAYER_NT];
} lnn_layer_params;

#define LNN_TOP_NT 7
typedef union {
    struct { /* wte (V,C), wpe (P,C), wtt (TV,C) BERT only, emb LayerNorm, pooler (BERT only) */
        void *wte, *wpe, *wtt, *emb_ln_w, *emb_ln_b, *pool_w, *pool_b;
    };
    void *t[LNN_TOP_NT];
} lnn_top_params;

typedef struct {
    lnn_top_params top;
    lnn_layer_params *layers; /* n_layers */
} lnn_params_view;

/* ---- LoRA adapters (peft's lora.Linear) on the encoder's linears ----
 * Sites: per layer q, k, v, the attention output, FFN in and out (LNN_LORA_*), and BERT's pooler. A site
 * with an adapter has two tensors, registered after every encoder tensor and before any appended by the
 * owner: "<linear>.lora_A.weight" (r, in) and "<linear>.lora_B.weight" (out, r), <linear> the HF name of
 * the layer without ".weight". The branch adds scale * B A drop(x) to the linear's output (backend op
 * lora_forward); its dropout draws stream LNN_LORA_STREAM0 + 8 l + kind (the pooler: + 8 L). */
enum { LNN_LORA_Q, LNN_LORA_K, LNN_LORA_V, LNN_LORA_O, LNN_LORA_F1, LNN_LORA_F2, LNN_LORA_NK };
#define LNN_LORA_STREAM0 0x20000000u

typedef struct {
    int r;                   /* rank >= 1 */
    float scale;             /* alpha / r (alpha / sqrt(r) with rslora) */
    float dropout;           /* on the branch's input, in training */
    const unsigned *layers;  /* n_layers masks: bit k set = site k of layer l has an adapter */
    int pooler;              /* the BERT pooler's dense has an adapter */
} lnn_lora_config;

/* ---- activations (backend memory, A unless noted), one arena sized by (B, T) ---- */
typedef struct {
    void *qkv;            /* (N,3C) */
    void *att_saved;      /* what the attention backward needs (backend-defined) */
    void *att;            /* (N,C) attention output, heads concatenated */
    void *r1;             /* (N,C) out_lin(att) (+dropout) + x: input of LN1 */
    float *mean1, *rstd1; /* F32 (N) */
    void *h1;             /* (N,C) LN1 output */
    void *f1;             /* (N,F) lin1 output + bias (pre-activation) */
    void *g;              /* (N,F) activation */
    void *r2;             /* (N,C) lin2(g) (+dropout) + h1: input of LN2 */
    float *mean2, *rstd2; /* F32 (N) */
    void *out;            /* (N,C) layer output */
    void *lora_u[LNN_LORA_NK]; /* (N,r) per LoRA site: drop(x) @ A^T */
} lnn_layer_acts;

typedef struct {
    int32_t *ids, *types, *mask, *pos;      /* I32 (N): token, type, mask, position of each row */
    int32_t *seq_off;                       /* I32 (B+1) packed rows: sequence b is rows seq_off[b].. */
    int32_t *emb_idx;                       /* I32 (3 x lnn_emb_index_ints(N)) the embedding tables' id-sorted
                                               row indexes (training with LNN_PATH_SORTED_EMBED) */
    void *emb_res;                          /* (N,C) */
    float *emb_mean, *emb_rstd;             /* F32 (N) */
    void *x0;                               /* (N,C) embeddings output */
    lnn_layer_acts *layers;                 /* n_layers slots in training, 1 (reused) in inference */
    void *att_scratch;                      /* the attention ops' transient memory, shared by the layers */
    void *cls, *pooled;                     /* (B,C) pooler input / output */
    void *xcls;                             /* (B,C) token-0 rows of the last layer's input */
    void *pool_u;                           /* (B,r) the pooler's LoRA drop(cls) @ A^T */
    /* backward (training layout only) */
    void *dX, *dR, *dA;                     /* (N,C); dX: the gradient w.r.t. the last hidden rows */
    void *dqkv;                             /* (N,3C) */
    void *dG;                               /* (N,F) */
    void *dcls, *dpool;                     /* (B,C) */
} lnn_acts;

typedef struct lnn_model {
    lnn_body body;                 /* first member: an encoder is a body */
    lnn_config cfg;
    int top_idx[LNN_TOP_NT];       /* table index per top tensor, -1 if absent */
    int (*layer_idx)[LNN_LAYER_NT];/* table index per layer tensor */
    lnn_params_view p, g;          /* weights (A) and gradients (F32, NULL when frozen) */
    /* LoRA: table index of lora_A per (layer, site) and of the pooler's (-1: none; lora_B is the next) */
    int (*lora_idx)[LNN_LORA_NK];
    int lora_pool_idx;
    int lora_r;
    float lora_scale, lora_dropout;
    int lora_off;                  /* the branches are skipped (merged into the base weights) */
    int n_enc_tensors;             /* the encoder's own tensors: table indices 0 .. n_enc_tensors-1 */
    /* arena */
    void *arena;
    size_t arena_bytes;
    lnn_acts a;
    int B, T, train_layout;        /* the shape the arena views are laid out for */
    /* the last forward */
    int fwd_B, fwd_T, fwd_has_types;
    int fwd_cls;                   /* its last layer ran for token 0 only (out holds B rows) */
    int fwd_packed;                /* it ran packed (the real tokens of right-padded rows only) */
    size_t fwd_N;                  /* its rows */
    int32_t *host_off;             /* (B+1) host copy of seq_off (capacity host_off_cap) */
    int host_off_cap;
    int32_t *stage;                /* host staging of ids/types/positions (capacity stage_cap ints) */
    size_t stage_cap;
    int32_t *idx_host;             /* host build of the embedding indexes + the sort's scratch (idx_cap ints) */
    size_t idx_cap;
    lnn_emb_index emb_index[3];    /* the last training forward's indexes (wte, wpe, wtt), in a->emb_idx */
    int has_emb_index;
    uint64_t seed;
    uint32_t step;
} lnn_model;

/* Create a model on device `device` of backend be, with activation dtype act (tf32: F32 GEMMs may use
 * TF32), and register the encoder tensors (not allocated yet: more tensors, e.g. a head's, may be
 * appended to m->body.tab first). */
lnn_status lnn_model_create(lnn_model **out, const lnn_config *cfg, const lnn_backend *be, int device, lnn_dtype act,
                            int tf32);
/* The encoder behind a body, or NULL when the body is another kind (an LSTM). */
lnn_model *lnn_body_encoder(lnn_body *b);
/* Register LoRA adapters (after lnn_model_create, before any other tensor is appended). */
lnn_status lnn_model_add_lora(lnn_model *m, const lnn_lora_config *lc);
/* Allocate params, grads (zeroed) and the weight copy, and build the views. */
lnn_status lnn_model_allocate(lnn_model *m);
/* Rebuild the gradient views after changing LNN_TENSOR_FROZEN flags. */
void lnn_model_update_views(lnn_model *m);
void lnn_model_free(lnn_model *m);

/* Forward on host inputs (the body's forward). hidden: NULL, or host F32 (L+1, B, T, C) that receives
 * every layer's output (it turns unpadding and the token-0 last layer off: every position is
 * computed, as HF does). Unpadding: with unpad set and a right-padded mask, the encoder runs on
 * the real tokens only (packed rows), which gives the padded run's values on every real token (and
 * its dropout masks). read & LNN_READ_TOKEN0 without LNN_READ_ROWS: the last layer runs its
 * attention for query 0 only and everything after it on B rows. */
lnn_status lnn_model_forward(lnn_model *m, const lnn_batch *in, int train, uint64_t seed, uint32_t step, int unpad,
                             unsigned read, float *hidden);
/* Backward after a training forward (the body's backward): gradients accumulate into body.grads. */
lnn_status lnn_model_backward(lnn_model *m, int has_dout, const void *dpooled);

/* The model boundary for callers on the host (the Engine binding): the last hidden state (B,T,C) F32
 * with zeros at the positions the forward did not compute; the pooler output (B,C) F32; a backward
 * from host gradients (either may be NULL = zero). */
lnn_status lnn_model_read_last(lnn_model *m, float *host);
lnn_status lnn_model_read_pooled(lnn_model *m, float *host);
lnn_status lnn_model_backward_host(lnn_model *m, const float *dlast, const float *dpooled);

#endif /* LNN_MODELS_ENCODER_H */
