/* models/lstm.c: the embedding + stacked LSTM graph (models/lstm.h), forward and backward (BPTT), over
 * the backend op table. No BLAS or OpenMP here: every computation is a call into the backend, and host
 * memory is touched only to stage the batch (lengths, the packed order, the token ids). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "models/lstm.h"

static lnn_status lstm_forward(lnn_body *b, const lnn_batch *in, int train, uint64_t seed, uint32_t step, int unpad,
                               unsigned read);
static lnn_status lstm_backward(lnn_body *b, int has_dout, const void *dpooled);
static void lstm_clear_dout(lnn_body *b) { (void)b; }
static int lstm_trainable(const lnn_body *b);

static const lnn_body_ops lstm_ops = {"lstm", lstm_forward, lstm_backward, lstm_clear_dout, lstm_trainable};

lnn_lstm *lnn_body_lstm(lnn_body *b) { return b && b->ops == &lstm_ops ? (lnn_lstm *)b : NULL; }

/* ------------------------------------------------------------------ creation */

static lnn_status check_config(const lnn_lstm_config *c) {
#define REQ LNN_REQUIRE
    REQ(c->vocab_size >= 1, "vocab_size must be >= 1 (the vocabulary holds at least <pad>), got %d", c->vocab_size);
    REQ(c->E >= 1 && c->E <= (1 << 16), "embedding_dim must be in 1..65536, got %d", c->E);
    REQ(c->H >= 1 && c->H <= (1 << 16), "hidden_size must be in 1..65536, got %d", c->H);
    REQ(c->n_layers >= 1 && c->n_layers <= 64, "num_layers must be in 1..64, got %d", c->n_layers);
    REQ(c->bidirectional == 0 || c->bidirectional == 1, "bidirectional must be 0 or 1");
    REQ(c->dropout >= 0.f && c->dropout < 1.f, "dropout must be in [0, 1), got %g", (double)c->dropout);
    REQ(c->pad_id >= -1 && c->pad_id < c->vocab_size, "pad_id must be -1 (none) or in [0, vocab_size), got %d",
        c->pad_id);
    REQ((int64_t)c->vocab_size * c->E <= ((int64_t)1 << 36), "vocab_size x embedding_dim is too large");
    return LNN_OK;
#undef REQ
}

/* torch's nn.LSTM names and order: per layer, the forward direction then the reverse one, each
 * weight_ih, weight_hh, bias_ih, bias_hh */
static lnn_status register_tensors(lnn_lstm *m) {
    const lnn_lstm_config *c = &m->cfg;
    lnn_param_table *tab = &m->body.tab;
    int64_t s[2] = {c->vocab_size, c->E};
    m->emb = lnn_params_add(tab, "embedding.weight", 2, s, 0);
    if (m->emb < 0) return LNN_ERR_VALUE;
    m->t = calloc((size_t)c->n_layers * m->D, sizeof *m->t);
    if (!m->t) {
        lnn_set_error("out of memory");
        return LNN_ERR_MEMORY;
    }
    for (int l = 0; l < c->n_layers; l++)
        for (int d = 0; d < m->D; d++) {
            lnn_lstm_tensors *t = &m->t[l * m->D + d];
            const char *sfx = d ? "_reverse" : "";
            char nm[LNN_NAME_MAX];
            int64_t in_w = l ? (int64_t)m->D * c->H : c->E, G4 = 4 * (int64_t)c->H;
            int64_t wih[2] = {G4, in_w}, whh[2] = {G4, c->H}, bias[1] = {G4};
            snprintf(nm, sizeof nm, "lstm.weight_ih_l%d%s", l, sfx);
            t->w_ih = lnn_params_add(tab, nm, 2, wih, 0);
            snprintf(nm, sizeof nm, "lstm.weight_hh_l%d%s", l, sfx);
            t->w_hh = lnn_params_add(tab, nm, 2, whh, 0);
            snprintf(nm, sizeof nm, "lstm.bias_ih_l%d%s", l, sfx);
            t->b_ih = lnn_params_add(tab, nm, 1, bias, LNN_TENSOR_NO_DECAY);
            snprintf(nm, sizeof nm, "lstm.bias_hh_l%d%s", l, sfx);
            t->b_hh = lnn_params_add(tab, nm, 1, bias, LNN_TENSOR_NO_DECAY);
            if (t->w_ih < 0 || t->w_hh < 0 || t->b_ih < 0 || t->b_hh < 0) return LNN_ERR_VALUE;
        }
    m->n_body_tensors = tab->n;
    return LNN_OK;
}

lnn_status lnn_lstm_create(lnn_lstm **out, const lnn_lstm_config *cfg, const lnn_backend *be, int device,
                           lnn_dtype act, int tf32) {
    *out = NULL;
    lnn_status st = check_config(cfg);
    if (st) return st;
    lnn_lstm *m = calloc(1, sizeof *m);
    if (!m) {
        lnn_set_error("out of memory");
        return LNN_ERR_MEMORY;
    }
    m->cfg = *cfg;
    m->D = cfg->bidirectional ? 2 : 1;
    st = lnn_ctx_init(&m->body.ctx, be, device, act);
    if (st) {
        free(m);
        return st;
    }
    m->body.ctx.allow_tf32 = tf32;
    m->body.ops = &lstm_ops;
    m->body.width = m->D * cfg->H;
    m->body.has_pooled = 1;
    st = register_tensors(m);
    if (st) {
        lnn_lstm_free(m);
        return st;
    }
    *out = m;
    return LNN_OK;
}

lnn_status lnn_lstm_allocate(lnn_lstm *m) {
    lnn_status st = lnn_body_allocate(&m->body);
    if (st) return st;
    m->a.xin = calloc((size_t)m->cfg.n_layers, sizeof *m->a.xin);
    m->a.slot = calloc((size_t)m->cfg.n_layers * m->D, sizeof *m->a.slot);
    m->umap = malloc(sizeof(int32_t) * (size_t)m->cfg.vocab_size); /* at most the embedding table's size / E */
    if (!m->a.xin || !m->a.slot || !m->umap) {
        lnn_set_error("out of memory");
        return LNN_ERR_MEMORY;
    }
    memset(m->umap, 0xff, sizeof(int32_t) * (size_t)m->cfg.vocab_size);
    return LNN_OK;
}

void lnn_lstm_free(lnn_lstm *m) {
    if (!m) return;
    if (m->body.ctx.be) m->body.ctx.be->free(&m->body.ctx, m->arena);
    lnn_body_release(&m->body);
    free(m->t);
    free(m->a.xin);
    free(m->a.slot);
    free(m->bs);
    free(m->host);
    free(m->umap);
    free(m);
}

/* ------------------------------------------------------------------ activation arena */

static void layout_acts(lnn_lstm *m, lnn_plan *p, int B, int N, int U, int train) {
    const lnn_lstm_config *c = &m->cfg;
    lnn_lstm_acts *a = &m->a;
    lnn_dtype A = m->body.ctx.act;
    size_t n = (size_t)N, u = (size_t)U, H = (size_t)c->H, DH = (size_t)m->D * H, E = (size_t)c->E, b = (size_t)B;
    size_t nb = train ? 1 : 0, two = m->D == 2 ? 1 : 0;
#define TAKE(ptr, count, dt) lnn_take(p, (void **)&(ptr), (count), (dt))
    TAKE(a->word, n, LNN_I32);
    TAKE(a->uids, u, LNN_I32);
    TAKE(a->idx, (size_t)m->D * b, LNN_I32);
    TAKE(a->eu, u * E, A);
    TAKE(a->pu, u * 4 * H, A);
    a->xin[0] = NULL;
    for (int l = 1; l < c->n_layers; l++) TAKE(a->xin[l], n * DH, A);
    int slots = (train ? c->n_layers : 1) * m->D;
    for (int s = 0; s < slots; s++) {
        lnn_lstm_slot *sl = &a->slot[s];
        TAKE(sl->G, n * 4 * H, A);
        TAKE(sl->Hs, n * H, A);
        TAKE(sl->Cs, n * H, A);
        TAKE(sl->Hp, n * H, A);
    }
    TAKE(a->gh, b * 4 * H, A);
    TAKE(a->part[0], two * b * H, A);
    TAKE(a->part[1], two * b * H, A);
    TAKE(a->pooled, b * DH, A);
    TAKE(a->dG, nb * n * 4 * H, A);
    TAKE(a->dC, nb * n * H, A);
    TAKE(a->dH[0], nb * n * H, A);
    TAKE(a->dH[1], nb * two * n * H, A);
    TAKE(a->dX, nb * two * (c->n_layers > 1) * n * DH, A);
    TAKE(a->sdg, nb * u * 4 * H, A);
    TAKE(a->deu, nb * u * E, A);
    TAKE(a->dpart[0], nb * two * b * H, A);
    TAKE(a->dpart[1], nb * two * b * H, A);
#undef TAKE
}

static lnn_status ensure_arena(lnn_lstm *m, int B, int N, int U, int train) {
    lnn_plan p = lnn_plan_begin(NULL);
    layout_acts(m, &p, B, N, U, train);
    if (p.used > m->arena_bytes || !m->arena) {
        char what[96];
        snprintf(what, sizeof what, "the LSTM activations for %d sequences of %d tokens in all", B, N);
        m->body.has_train_forward = 0;
        lnn_status st = lnn_reserve(&m->body.ctx, &m->arena, &m->arena_bytes, p.used, what);
        if (st) return st;
    }
    p = lnn_plan_begin(m->arena);
    layout_acts(m, &p, B, N, U, train);
    return LNN_OK;
}

/* the slot of layer l, direction d (inference reuses the first layer's) */
static lnn_lstm_slot *slot_of(lnn_lstm *m, int l, int d) { return &m->a.slot[(m->train ? l : 0) * m->D + d]; }

static void *at(void *p, size_t elems, lnn_dtype t) { return (char *)p + elems * lnn_dtype_size(t); }

/* ------------------------------------------------------------------ the batch: lengths and the packed order */

static int cmp_i64(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b;
}

static int32_t *grow_i32(int32_t **buf, size_t *cap, size_t need) {
    if (*cap < need) {
        int32_t *q = realloc(*buf, sizeof(int32_t) * need);
        if (!q) return NULL;
        *buf = q;
        *cap = need;
    }
    return *buf;
}

/* Lengths from the mask, the sorted order, bs / off, each packed token's word among the batch's distinct
 * ids, and the final-state rows (host), all checked. */
static lnn_status stage_batch(lnn_lstm *m, const lnn_batch *in) {
    const lnn_lstm_config *c = &m->cfg;
    int B = in->B, T = in->T, D = m->D;
    /* lengths (host[0..B)), then the order (host[B..2B)) and the ranks (host[2B..3B)) */
    if (!grow_i32(&m->host, &m->host_cap, 3 * (size_t)B)) goto oom;
    int32_t *len = m->host, *order = m->host + B, *rank = m->host + 2 * B;
    size_t N = 0;
    int Tmax = 0;
    for (int b = 0; b < B; b++) {
        const int32_t *r = in->mask ? in->mask + (size_t)b * T : NULL;
        int n = 0;
        if (r) {
            while (n < T && r[n]) n++;
            for (int t = n; t < T; t++)
                if (r[t]) {
                    lnn_set_error("attention_mask row %d has a 0 at position %d before a 1 at position %d; the LSTM reads "
                                  "right-padded batches (each row's real tokens first, then the padding)", b, n, t);
                    return LNN_ERR_VALUE;
                }
        } else {
            n = T;
        }
        for (int t = 0; t < n; t++) {
            int32_t id = in->ids[(size_t)b * T + t];
            if (id < 0 || id >= c->vocab_size) {
                lnn_set_error("input_ids[%d, %d] = %d is outside the vocabulary [0, %d)", b, t, id, c->vocab_size);
                return LNN_ERR_INDEX;
            }
        }
        len[b] = n;
        N += (size_t)n;
        if (n > Tmax) Tmax = n;
    }
    /* longest first; ties in batch order */
    int64_t *key = malloc(sizeof(int64_t) * (size_t)B);
    if (!key) goto oom;
    for (int b = 0; b < B; b++) key[b] = ((int64_t)(T - len[b]) << 32) | (int64_t)b;
    qsort(key, (size_t)B, sizeof *key, cmp_i64);
    for (int s = 0; s < B; s++) {
        order[s] = (int32_t)(key[s] & 0xFFFFFFFF);
        rank[order[s]] = s;
    }
    free(key);
    if (m->steps_cap < (size_t)Tmax + 1) {
        int32_t *q = realloc(m->bs, sizeof(int32_t) * 2 * ((size_t)Tmax + 1));
        if (!q) goto oom;
        m->bs = q;
        m->steps_cap = (size_t)Tmax + 1;
    }
    m->off = m->bs + m->steps_cap;
    m->off[0] = 0;
    for (int t = 0, s = B; t < Tmax; t++) {
        while (s > 0 && len[order[s - 1]] <= t) s--;
        m->bs[t] = s;
        m->off[t + 1] = m->off[t] + s;
    }
    /* after the three int arrays above: the packed tokens' words, the final-state rows, the distinct ids (in
     * order of first appearance) */
    if (!grow_i32(&m->host, &m->host_cap, 3 * (size_t)B + 2 * N + (size_t)D * B)) goto oom;
    len = m->host, order = m->host + B, rank = m->host + 2 * B;
    int32_t *word = m->host + 3 * (size_t)B, *idx = word + N, *uids = idx + (size_t)D * B;
    int U = 0;
    for (int t = 0; t < Tmax; t++)
        for (int s = 0; s < m->bs[t]; s++) {
            int32_t id = in->ids[(size_t)order[s] * T + t];
            if (m->umap[id] < 0) {
                m->umap[id] = U;
                uids[U++] = id;
            }
            word[m->off[t] + s] = m->umap[id];
        }
    for (int u = 0; u < U; u++) m->umap[uids[u]] = -1;
    for (int b = 0; b < B; b++) {
        idx[b] = len[b] ? m->off[len[b] - 1] + rank[b] : -1;
        if (D == 2) idx[B + b] = len[b] ? rank[b] : -1;
    }
    m->B = B;
    m->N = (int)N;
    m->U = U;
    m->Tmax = Tmax;
    return LNN_OK;
oom:
    lnn_set_error("out of memory staging a batch of %d x %d tokens", B, T);
    return LNN_ERR_MEMORY;
}

/* ------------------------------------------------------------------ forward */

static lnn_dropout_t site(const lnn_lstm *m, float p, int l) {
    lnn_dropout_t d = {p, m->seed, m->step, (uint32_t)(1 + l)};
    return d;
}

/* The step order of direction d: the k-th step processed is step t = step_at(d, k); the previous step of t
 * (whose states t continues) and how many of t's rows continue one. */
static int step_at(const lnn_lstm *m, int d, int k) { return d ? m->Tmax - 1 - k : k; }
static int prev_step(int d, int t) { return d ? t + 1 : t - 1; }
static int n_continue(const lnn_lstm *m, int d, int t) {
    if (d) return t + 1 < m->Tmax ? m->bs[t + 1] : 0;
    return t > 0 ? m->bs[t] : 0;
}

/* One layer and direction: its input (the embeddings of the words, or the layer below's states) -> the
 * slot's states */
static void layer_forward(lnn_lstm *m, int l, int d) {
    lnn_ctx *ctx = &m->body.ctx;
    const lnn_backend *be = ctx->be;
    lnn_dtype A = ctx->act;
    const lnn_lstm_tensors *t4 = &m->t[l * m->D + d];
    lnn_lstm_slot *s = slot_of(m, l, d);
    size_t H = (size_t)m->cfg.H, esz = lnn_dtype_size(A);
    const void *w_hh = lnn_body_weight(&m->body, t4->w_hh), *b_hh = lnn_body_weight(&m->body, t4->b_hh);
    /* every step's input projection: G (N,4H) = x W_ih^T + b_ih; the first layer's per distinct word */
    const void *w_ih = lnn_body_weight(&m->body, t4->w_ih), *b_ih = lnn_body_weight(&m->body, t4->b_ih);
    if (l == 0) {
        be->matmul_forward(ctx, m->a.pu, m->a.eu, w_ih, b_ih, m->U, m->cfg.E, (int)(4 * H));
        be->embedding_forward(ctx, s->G, m->a.word, NULL, NULL, m->a.pu, NULL, NULL, m->N, (int)(4 * H));
    } else {
        be->matmul_forward(ctx, s->G, m->a.xin[l], w_ih, b_ih, m->N, m->D * (int)H, (int)(4 * H));
    }
    for (int k = 0; k < m->Tmax; k++) {
        int t = step_at(m, d, k), n = m->bs[t], np = n_continue(m, d, t), tp = prev_step(d, t);
        size_t r = (size_t)m->off[t], rp = np ? (size_t)m->off[tp] : 0;
        /* h_prev of the running rows: the previous step's states, zero where a sequence starts */
        if (np) be->copy(ctx, at(s->Hp, r * H, A), at(s->Hs, rp * H, A), (size_t)np * H * esz);
        if (n > np) be->zero(ctx, at(s->Hp, (r + np) * H, A), (size_t)(n - np) * H * esz);
        be->matmul_forward(ctx, m->a.gh, at(s->Hp, r * H, A), w_hh, b_hh, n, (int)H, (int)(4 * H));
        be->lstm_cell_forward(ctx, at(s->Hs, r * H, A), at(s->Cs, r * H, A), at(s->G, r * 4 * H, A), m->a.gh,
                              np ? at(s->Cs, rp * H, A) : NULL, n, np, (int)H);
    }
}

static lnn_status lstm_forward(lnn_body *b, const lnn_batch *in, int train, uint64_t seed, uint32_t step, int unpad,
                               unsigned read) {
    lnn_lstm *m = (lnn_lstm *)b;
    const lnn_lstm_config *c = &m->cfg;
    lnn_ctx *ctx = &b->ctx;
    const lnn_backend *be = ctx->be;
    (void)unpad; /* the LSTM always runs on the real tokens only */
    if (!(read & LNN_READ_POOLED) || (read & (LNN_READ_ROWS | LNN_READ_PADDED))) {
        lnn_set_error("the LSTM gives each sequence's final hidden state only: its head reads source 'pooler'");
        return LNN_ERR_VALUE;
    }
    if (!b->params) {
        lnn_set_error("the model's parameters are not allocated");
        return LNN_ERR_RUNTIME;
    }
    if (in->B < 1 || in->T < 1 || (size_t)in->B * in->T > ((size_t)1 << 28)) {
        lnn_set_error("input_ids must have shape (batch, seq) with both >= 1 and at most 2^28 tokens, got (%d, %d)",
                      in->B, in->T);
        return LNN_ERR_VALUE;
    }
    b->has_train_forward = 0;
    lnn_status st = stage_batch(m, in);
    if (!st) st = ensure_arena(m, in->B, m->N, m->U, train);
    if (st) return st;
    lnn_lstm_acts *a = &m->a;
    int B = m->B, N = m->N, H = c->H, D = m->D, DH = D * H;
    m->train = train;
    m->seed = seed;
    m->step = step;
    const int32_t *host_word = m->host + 3 * (size_t)B, *host_idx = host_word + N, *host_uids = host_idx + D * B;
    be->to_device(ctx, a->idx, host_idx, (size_t)D * B * sizeof(int32_t));
    if (N) {
        be->to_device(ctx, a->word, host_word, (size_t)N * sizeof(int32_t));
        be->to_device(ctx, a->uids, host_uids, (size_t)m->U * sizeof(int32_t));
        be->embedding_forward(ctx, a->eu, a->uids, NULL, NULL, lnn_body_weight(b, m->emb), NULL, NULL, m->U, c->E);
        for (int l = 0; l < c->n_layers; l++) {
            for (int d = 0; d < D; d++) layer_forward(m, l, d);
            if (l + 1 == c->n_layers) break;
            /* the next layer's input: [h_fwd | h_rev], dropped out in training */
            void *x = a->xin[l + 1];
            lnn_dropout_t drop = site(m, train ? c->dropout : 0.f, l);
            if (D == 2) {
                be->concat_forward(ctx, x, slot_of(m, l, 0)->Hs, slot_of(m, l, 1)->Hs, N, H, H);
                if (drop.p > 0.f) be->dropout_forward(ctx, x, x, lnn_rows_plain(N), DH, drop);
            } else {
                be->dropout_forward(ctx, x, slot_of(m, l, 0)->Hs, lnn_rows_plain(N), H, drop);
            }
        }
    }
    /* pooled (B, D*H): each direction's final state of the last layer (zero for an empty sequence) */
    int top = c->n_layers - 1;
    if (D == 1) {
        be->gather_rows_forward(ctx, a->pooled, slot_of(m, top, 0)->Hs, a->idx, B, H);
    } else {
        be->gather_rows_forward(ctx, a->part[0], slot_of(m, top, 0)->Hs, a->idx, B, H);
        be->gather_rows_forward(ctx, a->part[1], slot_of(m, top, 1)->Hs, a->idx + B, B, H);
        be->concat_forward(ctx, a->pooled, a->part[0], a->part[1], B, H, H);
    }
    b->out = NULL;
    b->rows = lnn_rows_plain(B);
    b->mask = NULL;
    b->pooled = a->pooled;
    b->dout = NULL;
    b->has_train_forward = train;
    return LNN_OK;
}

/* ------------------------------------------------------------------ backward */

/* Does any tensor at or below this level train? level 0: the embedding; l+1: layer l. */
static int layer_trainable(const lnn_lstm *m, int l) {
    for (int d = 0; d < m->D; d++) {
        const lnn_lstm_tensors *t4 = &m->t[l * m->D + d];
        if (lnn_body_grad(&m->body, t4->w_ih) || lnn_body_grad(&m->body, t4->w_hh) ||
            lnn_body_grad(&m->body, t4->b_ih) || lnn_body_grad(&m->body, t4->b_hh))
            return 1;
    }
    return 0;
}

static int lowest_trainable_level(const lnn_lstm *m) {
    if (lnn_body_grad(&m->body, m->emb)) return 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (layer_trainable(m, l)) return l + 1;
    return m->cfg.n_layers + 1;
}

static int lstm_trainable(const lnn_body *b) {
    const lnn_lstm *m = (const lnn_lstm *)b;
    return lowest_trainable_level(m) <= m->cfg.n_layers;
}

/* One layer and direction, the steps the other way: dH (N,H) (the gradient w.r.t. the hidden states from
 * above) -> dG (N,4H), the recurrent part added into dH on the way; then the weight gradients and, when
 * dx is not NULL, dx += dG W_ih: (N,D*H) above the first layer, (U,E) per distinct word in it. dx may be
 * dH (one direction above layer 0: the gradient w.r.t. the layer's input is the layer below's dH): it is
 * zeroed once the steps are done with it. */
static void layer_backward(lnn_lstm *m, int l, int d, void *dH, void *dx) {
    lnn_ctx *ctx = &m->body.ctx;
    const lnn_backend *be = ctx->be;
    lnn_dtype A = ctx->act;
    lnn_lstm_acts *a = &m->a;
    const lnn_lstm_tensors *t4 = &m->t[l * m->D + d];
    lnn_lstm_slot *s = slot_of(m, l, d);
    size_t H = (size_t)m->cfg.H, esz = lnn_dtype_size(A);
    const void *w_hh = lnn_body_weight(&m->body, t4->w_hh);
    be->zero(ctx, a->dC, (size_t)m->N * H * esz);
    for (int k = m->Tmax - 1; k >= 0; k--) {
        int t = step_at(m, d, k), n = m->bs[t], np = n_continue(m, d, t), tp = prev_step(d, t);
        size_t r = (size_t)m->off[t], rp = np ? (size_t)m->off[tp] : 0;
        be->lstm_cell_backward(ctx, at(a->dG, r * 4 * H, A), np ? at(a->dC, rp * H, A) : NULL, at(dH, r * H, A),
                               at(a->dC, r * H, A), at(s->G, r * 4 * H, A), at(s->Cs, r * H, A),
                               np ? at(s->Cs, rp * H, A) : NULL, n, np, (int)H);
        /* dh_prev += dgates W_hh, into the previous step's rows */
        if (np)
            be->matmul_backward(ctx, at(dH, rp * H, A), NULL, NULL, at(a->dG, r * 4 * H, A), at(s->Hp, r * H, A),
                                w_hh, np, (int)H, (int)(4 * H));
    }
    /* dW_ih, db_ih (and dx) over every step at once; dW_hh, db_hh against each row's h_prev */
    float *gw_ih = lnn_body_grad(&m->body, t4->w_ih), *gb_ih = lnn_body_grad(&m->body, t4->b_ih);
    float *gw_hh = lnn_body_grad(&m->body, t4->w_hh), *gb_hh = lnn_body_grad(&m->body, t4->b_hh);
    const void *w_ih = lnn_body_weight(&m->body, t4->w_ih);
    if (dx == dH) be->zero(ctx, dx, (size_t)m->N * H * esz);
    if (l == 0 && (dx || gw_ih || gb_ih)) { /* per distinct word: their tokens' dG rows summed */
        be->zero(ctx, a->sdg, (size_t)m->U * 4 * H * esz);
        be->gather_rows_backward(ctx, a->sdg, a->dG, a->word, m->N, (int)(4 * H));
        be->matmul_backward(ctx, dx, gw_ih, gb_ih, a->sdg, a->eu, w_ih, m->U, m->cfg.E, (int)(4 * H));
    } else if (dx || gw_ih || gb_ih) {
        be->matmul_backward(ctx, dx, gw_ih, gb_ih, a->dG, a->xin[l], w_ih, m->N, m->D * (int)H, (int)(4 * H));
    }
    if (gw_hh || gb_hh)
        be->matmul_backward(ctx, NULL, gw_hh, gb_hh, a->dG, s->Hp, w_hh, m->N, (int)H, (int)(4 * H));
}

static lnn_status lstm_backward(lnn_body *b, int has_dout, const void *dpooled) {
    lnn_lstm *m = (lnn_lstm *)b;
    const lnn_lstm_config *c = &m->cfg;
    lnn_ctx *ctx = &b->ctx;
    const lnn_backend *be = ctx->be;
    lnn_lstm_acts *a = &m->a;
    (void)has_dout; /* no token rows: the gradient comes through pooled */
    if (!b->has_train_forward || !m->train) {
        lnn_set_error("backward() needs a training forward first");
        return LNN_ERR_RUNTIME;
    }
    int lowest = lowest_trainable_level(m);
    if (!dpooled || m->N == 0 || lowest > c->n_layers) return LNN_OK;
    int B = m->B, N = m->N, H = c->H, D = m->D, DH = D * H;
    size_t esz = lnn_dtype_size(ctx->act), NH = (size_t)N * H * esz;
    /* pooled -> the last layer's dH rows of each sequence's final state */
    for (int d = 0; d < D; d++) be->zero(ctx, a->dH[d], NH);
    if (D == 1) {
        be->gather_rows_backward(ctx, a->dH[0], dpooled, a->idx, B, H);
    } else {
        be->zero(ctx, a->dpart[0], (size_t)B * H * esz);
        be->zero(ctx, a->dpart[1], (size_t)B * H * esz);
        be->concat_backward(ctx, a->dpart[0], a->dpart[1], dpooled, B, H, H);
        be->gather_rows_backward(ctx, a->dH[0], a->dpart[0], a->idx, B, H);
        be->gather_rows_backward(ctx, a->dH[1], a->dpart[1], a->idx + B, B, H);
    }
    for (int l = c->n_layers - 1; l >= 0 && l + 1 >= lowest; l--) {
        int need_dx = l + 1 > lowest;
        /* dx: the gradient w.r.t. this layer's input (the distinct words' embeddings for the first; one
         * direction above it: dH[0], reused) */
        void *dx = !need_dx ? NULL : l == 0 ? a->deu : D == 1 ? a->dH[0] : a->dX;
        if (dx && dx != a->dH[0]) be->zero(ctx, dx, (l ? (size_t)N * DH : (size_t)m->U * c->E) * esz);
        for (int d = 0; d < D; d++) layer_backward(m, l, d, a->dH[d], dx);
        if (!need_dx) break;
        if (l == 0) {
            be->embedding_backward(ctx, lnn_body_grad(b, m->emb), NULL, NULL, dx, a->uids, NULL, NULL, m->U, c->E,
                                   c->pad_id, NULL);
            break;
        }
        if (c->dropout > 0.f) be->dropout_backward(ctx, dx, dx, lnn_rows_plain(N), DH, site(m, c->dropout, l - 1));
        if (D == 2) {
            be->zero(ctx, a->dH[0], NH);
            be->zero(ctx, a->dH[1], NH);
            be->concat_backward(ctx, a->dH[0], a->dH[1], dx, N, H, H);
        }
    }
    return LNN_OK;
}
