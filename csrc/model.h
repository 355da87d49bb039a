/* model.h: the DistilBERT / BERT encoder: configuration, parameter registry and layout,
 * activation arena, and the one forward/backward graph (model.c), written over the op table
 * of backend.h. No Python here. */
#ifndef LNN_MODEL_H
#define LNN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "lnn_common.h"

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

/* ---- the parameter registry: every tensor has its HF name (without the model prefix) ---- */
enum { LNN_TENSOR_NO_DECAY = 1, LNN_TENSOR_FROZEN = 2 };
#define LNN_NAME_MAX 112
#define LNN_MAX_NDIM 4

typedef struct {
    char name[LNN_NAME_MAX];
    int ndim;
    int64_t shape[LNN_MAX_NDIM];
    size_t offset; /* in floats, into the params / grads buffers */
    size_t numel;
    unsigned flags; /* LNN_TENSOR_* */
} lnn_tensor_info;

typedef struct {
    lnn_tensor_info *t;
    int n, cap;
    size_t numel; /* total floats */
} lnn_param_table;

/* Append a tensor (laid out right after the previous one). Returns its index, or -1 (error set)
 * on a duplicate name, a bad shape or no memory. */
int lnn_params_add(lnn_param_table *tab, const char *name, int ndim, const int64_t *shape, unsigned flags);
int lnn_params_find(const lnn_param_table *tab, const char *name);
void lnn_params_free(lnn_param_table *tab);

/* ---- views of one buffer (params or grads): named pointers; NULL = absent (or frozen, for grads) ---- */
#define LNN_LAYER_NT 12
typedef union {
    struct { /* qkv_w (3C,C) = q, k, v weights stacked; qkv_b (3C) */
        float *qkv_w, *qkv_b, *o_w, *o_b, *ln1_w, *ln1_b, *f1_w, *f1_b, *f2_w, *f2_b, *ln2_w, *ln2_b;
    };
    float *t[LNN_LAYER_NT];
} lnn_layer_params;

#define LNN_TOP_NT 7
typedef union {
    struct { /* wte (V,C), wpe (P,C), wtt (TV,C) BERT only, emb LayerNorm, pooler (BERT only) */
        float *wte, *wpe, *wtt, *emb_ln_w, *emb_ln_b, *pool_w, *pool_b;
    };
    float *t[LNN_TOP_NT];
} lnn_top_params;

typedef struct {
    lnn_top_params top;
    lnn_layer_params *layers; /* n_layers */
} lnn_params_view;

/* ---- activations, in one arena sized by (B, T) ---- */
typedef struct {
    float *qkv;           /* (N,3C) */
    float *probs;         /* (B,NH,T,T) softmax, before dropout */
    uint8_t *keep;        /* (B,NH,T,T) attention dropout mask (training with attention dropout) */
    float *att;           /* (N,C) attention output, heads concatenated */
    float *r1;            /* (N,C) out_lin(att) (+dropout) + x: input of LN1 */
    float *mean1, *rstd1; /* (N) */
    float *h1;            /* (N,C) LN1 output */
    float *f1;            /* (N,F) lin1 output + bias (pre-activation) */
    float *g;             /* (N,F) activation */
    float *r2;            /* (N,C) lin2(g) (+dropout) + h1: input of LN2 */
    float *mean2, *rstd2; /* (N) */
    float *out;           /* (N,C) layer output */
} lnn_layer_acts;

typedef struct {
    int32_t *ids, *types, *mask, *pos;      /* (N): token, type, mask, position of each row */
    int32_t *seq_off;                       /* (B+1) packed rows: sequence b is rows seq_off[b].. */
    int64_t *prob_off;                      /* (B+1) packed: where sequence b's (NH,L,L) probs start */
    float *emb_res, *emb_mean, *emb_rstd;   /* (N,C), (N), (N) */
    float *x0;                              /* (N,C) embeddings output */
    lnn_layer_acts *layers;                 /* n_layers slots in training, 1 (reused) in inference */
    float *pdrop;                           /* (B,NH,T,T) dropped probs scratch */
    float *cls, *pooled;                    /* (B,C) pooler input / output */
    float *xcls;                            /* (B,C) token-0 rows of the last layer's input */
    /* backward scratch (training layout only) */
    float *dX, *dR, *dA;                    /* (N,C) */
    float *dqkv;                            /* (N,3C) */
    float *dG;                              /* (N,F) */
    float *dprobs;                          /* (B,NH,T,T) */
    float *dcls, *dpool;                    /* (B,C) */
} lnn_acts;

typedef struct lnn_model {
    lnn_config cfg;
    const lnn_backend *be;
    lnn_param_table tab;
    int layer_idx0;                /* table index of the first encoder tensor of layer 0 */
    int top_idx[LNN_TOP_NT];       /* table index per top tensor, -1 if absent */
    int (*layer_idx)[LNN_LAYER_NT];/* table index per layer tensor */
    float *params, *grads;         /* backend buffers of tab.numel floats (NULL before allocate) */
    lnn_params_view p, g;          /* views; g has NULL for frozen tensors */
    /* arena */
    float *arena;
    size_t arena_floats;
    lnn_acts a;
    int B, T, train_layout;        /* the shape the arena views are laid out for */
    /* state of the last forward */
    int has_train_forward;         /* backward allowed */
    int fwd_B, fwd_T, fwd_has_types;
    /* unpadding: when unpad is set and a mask shows right padding, the forward runs on the real
     * tokens only (packed rows; attention per sequence), which gives the padded run's values on
     * every real token (and its dropout masks); `last` then holds zeros at padded positions. */
    int unpad;                     /* allowed (set by the owner; the HF-parity Encoder keeps it off) */
    /* cls_only: the owner reads token 0 of the last layer only (a CLS or pooler head), so that layer
     * runs its attention for query 0 and everything after it on B rows; `last` then holds the
     * token-0 rows and zeros elsewhere. Set by the owner per call, like unpad. */
    int cls_only;
    int fwd_cls;                   /* the last forward ran its last layer for token 0 only */
    int fwd_packed;                /* the last forward ran packed */
    size_t fwd_N;                  /* rows of the last forward */
    int32_t *host_off;             /* (B+1) host copy of seq_off (capacity host_off_cap) */
    int host_off_cap;
    uint64_t seed;
    uint32_t step;
} lnn_model;

/* Create a model and register the encoder tensors (parameters are not allocated yet: more tensors,
 * e.g. heads, may be appended with lnn_params_add on m->tab first). */
lnn_status lnn_model_create(lnn_model **out, const lnn_config *cfg, const lnn_backend *be);
/* Allocate the params and grads buffers (zeroed) and build the views. */
lnn_status lnn_model_allocate(lnn_model *m);
/* Rebuild the gradient views after changing LNN_TENSOR_FROZEN flags. */
void lnn_model_update_views(lnn_model *m);
void lnn_model_free(lnn_model *m);

/* Forward on host inputs ids/types/mask (B,T) int32 (types, mask may be NULL). Writes
 * last (B,T,C) and, for BERT, pooled (B,C) (may be NULL) on the host; hidden (L+1,B,T,C) if not NULL
 * (hidden turns unpadding off: every position is computed as HF does).
 * train: dropout on, activations kept for backward; masks are keyed by (seed, step). */
lnn_status lnn_model_forward(lnn_model *m, const int32_t *ids, const int32_t *types, const int32_t *mask, int B,
                             int T, int train, uint64_t seed, uint32_t step, float *last, float *pooled,
                             float *hidden);
/* Backward after a training forward: accumulates into m->grads. dlast (B,T,C), dpooled (B,C) host,
 * either may be NULL (= zero). */
lnn_status lnn_model_backward(lnn_model *m, const float *dlast, const float *dpooled);

#endif /* LNN_MODEL_H */
