/* models/lstm.h: a word-embedding + stacked LSTM body (torch's nn.Embedding(V, E, padding_idx) followed by
 * nn.LSTM(E, H, num_layers, bidirectional, dropout) over packed sequences), a body (models/body.h) beside
 * the encoder. Its tensors carry torch's state-dict names (embedding.weight, lstm.weight_ih_l0, ...,
 * lstm.bias_hh_l1_reverse); the head on top (models/classifier.c, source "pooler") reads `pooled`: each
 * sequence's final hidden state of the last layer, torch's h_n (B, H), or (B, 2H) [forward | reverse] for a
 * bidirectional LSTM (the forward direction's state at the last real token, the reverse direction's at the
 * first, after it ran from the last real token back).
 *
 * Packed-sequence semantics: the lengths come from the right-padded attention mask; padding never enters
 * the recurrence. The sequences are sorted by length (longest first), so at time step t the sequences
 * still running are the first bs[t] rows, and the tokens sit in a time-major packed layout: step t in
 * rows off[t] .. off[t] + bs[t] - 1 (torch's PackedSequence.data). Per layer and direction: one GEMM
 * projects every step's input (x W_ih^T + b_ih, all N tokens at once), then per step a recurrent GEMM
 * (h_prev W_hh^T + b_hh, the running rows only) and the fused cell op; the backward runs the steps the
 * other way and ends with one GEMM each for dW_ih and dW_hh. A length-0 sequence has the zero state.
 *
 * The first layer's input is a function of the token id alone (no dropout on the embeddings), so its
 * input projection runs over the batch's U distinct words, not its N tokens (a batch of 64 songs has
 * ~5x fewer distinct words than tokens): forward P = emb[words] W_ih^T + b_ih (U,4H), then each token's
 * row of P; backward, the tokens' dG rows summed per word (U,4H), then dW_ih, db_ih and the embedding
 * rows' gradient from those U rows. The same sums in another order (float rounding aside).
 * No Python here. */
#ifndef LNN_MODELS_LSTM_H
#define LNN_MODELS_LSTM_H

#include <stddef.h>
#include <stdint.h>

#include "models/body.h"

typedef struct {
    int vocab_size;     /* V */
    int E;              /* embedding_dim */
    int H;              /* hidden_size */
    int n_layers;
    int bidirectional;  /* 0 or 1 */
    float dropout;      /* on the outputs of every layer but the last (training only), as nn.LSTM */
    int pad_id;         /* padding_idx of the embedding (its row gets no gradient), -1: none */
} lnn_lstm_config;

/* Table indices of one layer and direction's tensors. */
typedef struct {
    int w_ih, w_hh, b_ih, b_hh;
} lnn_lstm_tensors;

/* One layer and direction's activations for the N packed tokens (backend memory, A). */
typedef struct {
    void *G;  /* (N,4H) input projection, then the gate activations */
    void *Hs; /* (N,H) hidden states */
    void *Cs; /* (N,H) cell states */
    void *Hp; /* (N,H) each row's previous hidden state (zero where a sequence starts) */
} lnn_lstm_slot;

typedef struct {
    int32_t *word;       /* I32 (N) each packed token's word: its index among the batch's distinct ids */
    int32_t *uids;       /* I32 (U) the batch's distinct token ids */
    int32_t *idx;        /* I32 (D*B) the packed row of each sequence's final state per direction (-1: empty) */
    void *eu;            /* (U,E) the distinct words' embeddings */
    void *pu;            /* (U,4H) their input projection (one direction at a time) */
    void **xin;          /* n_layers: the input of layer l > 0 (N,D*H) (xin[0] unused) */
    lnn_lstm_slot *slot; /* n_layers*D in training; D in inference (reused by the layers) */
    void *gh;            /* (B,4H) the recurrent GEMM of one step */
    void *part[2];       /* (B,H) each direction's final states (bidirectional) */
    void *pooled;        /* (B,D*H) */
    /* backward (training layout only) */
    void *dG;            /* (N,4H) */
    void *dC;            /* (N,H) */
    void *dH[2];         /* (N,H) per direction */
    void *dX;            /* (N,D*H) the gradient w.r.t. a layer's input (bidirectional) */
    void *sdg;           /* (U,4H) the first layer's dG summed per word */
    void *deu;           /* (U,E) the gradient w.r.t. the distinct words' embeddings */
    void *dpart[2];      /* (B,H) */
} lnn_lstm_acts;

typedef struct lnn_lstm {
    lnn_body body;              /* first member: an LSTM is a body */
    lnn_lstm_config cfg;
    int D;                      /* directions */
    int emb;                    /* table index of embedding.weight */
    lnn_lstm_tensors *t;        /* n_layers * D, layer-major */
    int n_body_tensors;         /* the body's tensors come first in the table */
    /* arena */
    void *arena;
    size_t arena_bytes;
    lnn_lstm_acts a;
    /* the last forward (host) */
    int B, N, U, Tmax, train;
    int32_t *bs, *off;          /* (Tmax), (Tmax+1): the rows running at step t and where step t starts */
    int32_t *host;              /* staging: lengths, order, ranks (B each), word (N), idx (D*B), uids (U) */
    size_t host_cap, steps_cap;
    int32_t *umap;              /* (V) id -> its index among the distinct ids while staging, else -1 */
    uint64_t seed;
    uint32_t step;
} lnn_lstm;

/* Create an LSTM body on device `device` of backend be (activation dtype act; tf32: F32 GEMMs may use
 * TF32) and register its tensors (not allocated yet: the owner appends its head's first). */
lnn_status lnn_lstm_create(lnn_lstm **out, const lnn_lstm_config *cfg, const lnn_backend *be, int device,
                           lnn_dtype act, int tf32);
/* Allocate params, grads (zeroed) and the weight copy. */
lnn_status lnn_lstm_allocate(lnn_lstm *m);
void lnn_lstm_free(lnn_lstm *m);
/* The LSTM behind a body, or NULL when the body is another kind. */
lnn_lstm *lnn_body_lstm(lnn_body *b);

#endif /* LNN_MODELS_LSTM_H */
