/* model.c: the DistilBERT / BERT encoder graph, forward and backward, over the backend op table.
 * No BLAS or OpenMP here: every computation is a call into m->be. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* ------------------------------------------------------------------ parameter registry */

int lnn_params_find(const lnn_param_table *tab, const char *name) {
    for (int i = 0; i < tab->n; i++)
        if (strcmp(tab->t[i].name, name) == 0) return i;
    return -1;
}

int lnn_params_add(lnn_param_table *tab, const char *name, int ndim, const int64_t *shape, unsigned flags) {
    if (!name || strlen(name) >= LNN_NAME_MAX) {
        lnn_set_error("tensor name is missing or longer than %d characters", LNN_NAME_MAX - 1);
        return -1;
    }
    if (ndim < 1 || ndim > LNN_MAX_NDIM) {
        lnn_set_error("tensor %s: ndim must be 1..%d, got %d", name, LNN_MAX_NDIM, ndim);
        return -1;
    }
    if (lnn_params_find(tab, name) >= 0) {
        lnn_set_error("tensor %s is registered twice", name);
        return -1;
    }
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1 || shape[i] > ((int64_t)1 << 31)) {
            lnn_set_error("tensor %s: dimension %d is %lld", name, i, (long long)shape[i]);
            return -1;
        }
        numel *= (size_t)shape[i];
        if (numel > ((size_t)1 << 36)) {
            lnn_set_error("tensor %s is too large", name);
            return -1;
        }
    }
    if (tab->n == tab->cap) {
        int cap = tab->cap ? tab->cap * 2 : 64;
        lnn_tensor_info *t = realloc(tab->t, sizeof *t * (size_t)cap);
        if (!t) {
            lnn_set_error("out of memory registering tensor %s", name);
            return -1;
        }
        tab->t = t;
        tab->cap = cap;
    }
    lnn_tensor_info *ti = &tab->t[tab->n];
    memset(ti, 0, sizeof *ti);
    snprintf(ti->name, sizeof ti->name, "%s", name);
    ti->ndim = ndim;
    for (int i = 0; i < ndim; i++) ti->shape[i] = shape[i];
    ti->offset = tab->numel;
    ti->numel = numel;
    ti->flags = flags;
    tab->numel += numel;
    return tab->n++;
}

void lnn_params_free(lnn_param_table *tab) {
    free(tab->t);
    memset(tab, 0, sizeof *tab);
}

/* ------------------------------------------------------------------ model creation */

static int add1(lnn_param_table *tab, const char *name, int64_t d0, unsigned flags) {
    int64_t s[1] = {d0};
    return lnn_params_add(tab, name, 1, s, flags);
}

static int add2(lnn_param_table *tab, const char *name, int64_t d0, int64_t d1, unsigned flags) {
    int64_t s[2] = {d0, d1};
    return lnn_params_add(tab, name, 2, s, flags);
}

static lnn_status check_config(const lnn_config *c) {
#define REQ(cond, ...)                 \
    do {                               \
        if (!(cond)) {                 \
            lnn_set_error(__VA_ARGS__); \
            return LNN_ERR_VALUE;      \
        }                              \
    } while (0)
    REQ(c->model_type == LNN_DISTILBERT || c->model_type == LNN_BERT, "model_type must be distilbert or bert");
    REQ(c->vocab_size >= 1, "vocab_size must be >= 1, got %d", c->vocab_size);
    REQ(c->max_pos >= 1 && c->max_pos <= (1 << 20), "max_position_embeddings must be in 1..2^20, got %d", c->max_pos);
    REQ(c->C >= 1 && c->C <= (1 << 16), "hidden size must be in 1..65536, got %d", c->C);
    REQ(c->n_layers >= 0 && c->n_layers <= 1024, "number of layers must be in 0..1024, got %d", c->n_layers);
    REQ(c->NH >= 1 && c->C % c->NH == 0, "hidden size %d must be a multiple of the number of heads %d", c->C, c->NH);
    REQ(c->F >= 1 && c->F <= (1 << 18), "FFN size must be in 1..2^18, got %d", c->F);
    REQ(c->act == LNN_ACT_GELU || c->act == LNN_ACT_RELU || c->act == LNN_ACT_GELU_TANH, "unknown activation %d", c->act);
    REQ(c->model_type == LNN_DISTILBERT || c->type_vocab_size >= 1, "type_vocab_size must be >= 1 for BERT");
    REQ(c->ln_eps > 0.f, "layer_norm_eps must be > 0");
    REQ(c->hidden_dropout >= 0.f && c->hidden_dropout <= 1.f, "dropout must be in [0, 1], got %g", c->hidden_dropout);
    REQ(c->attn_dropout >= 0.f && c->attn_dropout <= 1.f, "attention dropout must be in [0, 1], got %g", c->attn_dropout);
    return LNN_OK;
#undef REQ
}

/* Register the encoder tensors with their HF names (prefix-free). q, k, v weights are adjacent
 * (then q, k, v biases), so one GEMM with 3C outputs computes all three. */
static lnn_status register_encoder(lnn_model *m) {
    const lnn_config *c = &m->cfg;
    lnn_param_table *tab = &m->tab;
    int bert = c->model_type == LNN_BERT;
    const unsigned ND = LNN_TENSOR_NO_DECAY;
    char nm[LNN_NAME_MAX];
    int *ti = m->top_idx;
    for (int i = 0; i < LNN_TOP_NT; i++) ti[i] = -1;
    ti[0] = add2(tab, "embeddings.word_embeddings.weight", c->vocab_size, c->C, 0);
    ti[1] = add2(tab, "embeddings.position_embeddings.weight", c->max_pos, c->C, 0);
    if (bert) ti[2] = add2(tab, "embeddings.token_type_embeddings.weight", c->type_vocab_size, c->C, 0);
    ti[3] = add1(tab, "embeddings.LayerNorm.weight", c->C, ND);
    ti[4] = add1(tab, "embeddings.LayerNorm.bias", c->C, ND);
    if (ti[0] < 0 || ti[1] < 0 || (bert && ti[2] < 0) || ti[3] < 0 || ti[4] < 0) return LNN_ERR_MEMORY;
    m->layer_idx = calloc((size_t)(c->n_layers ? c->n_layers : 1), sizeof *m->layer_idx);
    if (!m->layer_idx) {
        lnn_set_error("out of memory");
        return LNN_ERR_MEMORY;
    }
    static const char *dn[LNN_LAYER_NT] = {
        "attention.%s_lin.weight", "attention.%s_lin.bias", "attention.out_lin.weight", "attention.out_lin.bias",
        "sa_layer_norm.weight", "sa_layer_norm.bias", "ffn.lin1.weight", "ffn.lin1.bias",
        "ffn.lin2.weight", "ffn.lin2.bias", "output_layer_norm.weight", "output_layer_norm.bias"};
    static const char *bn[LNN_LAYER_NT] = {
        "attention.self.%s.weight", "attention.self.%s.bias", "attention.output.dense.weight",
        "attention.output.dense.bias", "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
        "intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight", "output.dense.bias",
        "output.LayerNorm.weight", "output.LayerNorm.bias"};
    static const char *dqkv[3] = {"q", "k", "v"}, *bqkv[3] = {"query", "key", "value"};
    const char **names = bert ? bn : dn;
    const char **qkv = bert ? bqkv : dqkv;
    const char *pre = bert ? "encoder.layer.%d." : "transformer.layer.%d.";
    for (int l = 0; l < c->n_layers; l++) {
        char lp[48], fmt[LNN_NAME_MAX];
        snprintf(lp, sizeof lp, pre, l);
        int *li = m->layer_idx[l];
        /* q, k, v weights then q, k, v biases */
        for (int wb = 0; wb < 2; wb++) {
            for (int j = 0; j < 3; j++) {
                snprintf(fmt, sizeof fmt, "%s%s", lp, names[wb]);
                snprintf(nm, sizeof nm, fmt, qkv[j]);
                int id = wb ? add1(tab, nm, c->C, ND) : add2(tab, nm, c->C, c->C, 0);
                if (id < 0) return LNN_ERR_MEMORY;
                if (j == 0) li[wb] = id;
            }
        }
        for (int k = 2; k < LNN_LAYER_NT; k++) {
            snprintf(nm, sizeof nm, "%s%s", lp, names[k]);
            int is_b = (k % 2) == 1, is_ln = (k == 4 || k == 10);
            int64_t rows = (k == 6 || k == 7) ? c->F : c->C, cols = (k == 8) ? c->F : c->C;
            int id = (is_b || is_ln) ? add1(tab, nm, rows, ND) : add2(tab, nm, rows, cols, 0);
            if (id < 0) return LNN_ERR_MEMORY;
            li[k] = id;
        }
    }
    if (bert && c->pooler) {
        ti[5] = add2(tab, "pooler.dense.weight", c->C, c->C, 0);
        ti[6] = add1(tab, "pooler.dense.bias", c->C, ND);
        if (ti[5] < 0 || ti[6] < 0) return LNN_ERR_MEMORY;
    }
    return LNN_OK;
}

lnn_status lnn_model_create(lnn_model **out, const lnn_config *cfg, const lnn_backend *be) {
    *out = NULL;
    lnn_status st = check_config(cfg);
    if (st) return st;
    lnn_model *m = calloc(1, sizeof *m);
    if (!m) {
        lnn_set_error("out of memory");
        return LNN_ERR_MEMORY;
    }
    m->cfg = *cfg;
    m->be = be;
    st = register_encoder(m);
    if (st) {
        if (st == LNN_ERR_MEMORY && strstr(lnn_get_error(), "memory") == NULL) st = LNN_ERR_VALUE;
        lnn_model_free(m);
        return st;
    }
    *out = m;
    return LNN_OK;
}

static float *view(const lnn_model *m, float *base, int idx, int for_grad) {
    if (idx < 0 || !base) return NULL;
    if (for_grad && (m->tab.t[idx].flags & LNN_TENSOR_FROZEN)) return NULL;
    return base + m->tab.t[idx].offset;
}

void lnn_model_update_views(lnn_model *m) {
    for (int pass = 0; pass < 2; pass++) {
        lnn_params_view *v = pass ? &m->g : &m->p;
        float *base = pass ? m->grads : m->params;
        for (int i = 0; i < LNN_TOP_NT; i++) v->top.t[i] = view(m, base, m->top_idx[i], pass);
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int k = 0; k < LNN_LAYER_NT; k++) {
                float *p = view(m, base, m->layer_idx[l][k], pass);
                /* q/k/v are one unit: frozen only when all three are */
                if (pass && (k == 0 || k == 1) && !p) {
                    int i0 = m->layer_idx[l][k];
                    if (!(m->tab.t[i0 + 1].flags & LNN_TENSOR_FROZEN) || !(m->tab.t[i0 + 2].flags & LNN_TENSOR_FROZEN))
                        p = base + m->tab.t[i0].offset;
                }
                v->layers[l].t[k] = p;
            }
    }
}

lnn_status lnn_model_allocate(lnn_model *m) {
    if (m->params) {
        lnn_set_error("the model's parameters are already allocated");
        return LNN_ERR_RUNTIME;
    }
    size_t nb = m->tab.numel * sizeof(float);
    int L = m->cfg.n_layers ? m->cfg.n_layers : 1;
    m->params = m->be->malloc(nb);
    m->grads = m->be->malloc(nb);
    m->p.layers = calloc((size_t)L, sizeof(lnn_layer_params));
    m->g.layers = calloc((size_t)L, sizeof(lnn_layer_params));
    if (!m->params || !m->grads || !m->p.layers || !m->g.layers) {
        lnn_set_error("out of memory allocating %zu parameters", m->tab.numel);
        return LNN_ERR_MEMORY;
    }
    m->be->zero(m->params, nb);
    m->be->zero(m->grads, nb);
    lnn_model_update_views(m);
    return LNN_OK;
}

void lnn_model_free(lnn_model *m) {
    if (!m) return;
    if (m->be) {
        m->be->free(m->params);
        m->be->free(m->grads);
        m->be->free(m->arena);
    }
    free(m->p.layers);
    free(m->g.layers);
    free(m->a.layers);
    free(m->host_off);
    free(m->layer_idx);
    lnn_params_free(&m->tab);
    free(m);
}

/* ------------------------------------------------------------------ activation arena */

/* Lay the activations for (B, T) out from base (NULL: only count). Returns the floats needed. */
static size_t layout_acts(lnn_model *m, lnn_acts *a, float *base, int B, int T, int train) {
    const lnn_config *c = &m->cfg;
    size_t N = (size_t)B * T, C = (size_t)c->C, F = (size_t)c->F, P = (size_t)B * c->NH * T * T;
    size_t off = 0;
#define TAKE(ptr, count)                                        \
    do {                                                        \
        *(void **)&(ptr) = base ? (void *)(base + off) : NULL;  \
        off += ((size_t)(count) + 15) & ~(size_t)15;            \
    } while (0)
    TAKE(a->ids, N);
    TAKE(a->types, N);
    TAKE(a->mask, N);
    TAKE(a->pos, N);
    TAKE(a->seq_off, (size_t)B + 1);
    TAKE(a->prob_off, 2 * ((size_t)B + 1));
    TAKE(a->emb_res, N * C);
    TAKE(a->emb_mean, N);
    TAKE(a->emb_rstd, N);
    TAKE(a->x0, N * C);
    int slots = train ? c->n_layers : (c->n_layers ? 1 : 0);
    int drop = train && (c->attn_dropout > 0.f);
    for (int s = 0; s < slots; s++) {
        lnn_layer_acts *l = &a->layers[s];
        TAKE(l->qkv, 3 * N * C);
        TAKE(l->probs, P);
        TAKE(l->keep, drop ? (P + 3) / 4 : 0);
        TAKE(l->att, N * C);
        TAKE(l->r1, N * C);
        TAKE(l->mean1, N);
        TAKE(l->rstd1, N);
        TAKE(l->h1, N * C);
        TAKE(l->f1, N * F);
        TAKE(l->g, N * F);
        TAKE(l->r2, N * C);
        TAKE(l->mean2, N);
        TAKE(l->rstd2, N);
        TAKE(l->out, N * C);
    }
    for (int s = slots; s < c->n_layers; s++) a->layers[s] = a->layers[0]; /* inference: one slot, reused */
    TAKE(a->pdrop, drop ? P : 0);
    TAKE(a->cls, (size_t)B * C);
    TAKE(a->xcls, (size_t)B * C);
    TAKE(a->pooled, (size_t)B * C);
    if (train) {
        TAKE(a->dX, N * C);
        TAKE(a->dR, N * C);
        TAKE(a->dA, N * C);
        TAKE(a->dqkv, 3 * N * C);
        TAKE(a->dG, N * F);
        TAKE(a->dprobs, P);
        TAKE(a->dcls, (size_t)B * C);
        TAKE(a->dpool, (size_t)B * C);
    } else {
        a->dX = a->dR = a->dA = a->dqkv = a->dG = a->dprobs = a->dcls = a->dpool = NULL;
    }
#undef TAKE
    return off;
}

/* Make the arena fit (B, T, train), growing it when needed, and lay the views out. */
static lnn_status ensure_arena(lnn_model *m, int B, int T, int train) {
    if (!m->a.layers) {
        m->a.layers = calloc((size_t)(m->cfg.n_layers ? m->cfg.n_layers : 1), sizeof(lnn_layer_acts));
        if (!m->a.layers) {
            lnn_set_error("out of memory");
            return LNN_ERR_MEMORY;
        }
    }
    lnn_acts tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.layers = m->a.layers;
    size_t need = layout_acts(m, &tmp, NULL, B, T, train);
    if (need > m->arena_floats) {
        m->be->free(m->arena);
        m->arena = NULL;
        m->arena_floats = 0;
        m->has_train_forward = 0;
        m->arena = m->be->malloc(need * sizeof(float));
        if (!m->arena) {
            lnn_set_error("out of memory: the activations for batch %d x sequence %d need %.1f MiB", B, T,
                          need * 4.0 / (1 << 20));
            return LNN_ERR_MEMORY;
        }
        m->arena_floats = need;
    }
    layout_acts(m, &m->a, m->arena, B, T, train);
    m->B = B;
    m->T = T;
    m->train_layout = train;
    return LNN_OK;
}

/* ------------------------------------------------------------------ forward */

/* dropout sites: 0 embeddings; per layer l: 1+3l attention probs, 2+3l attention output (BERT),
 * 3+3l FFN output */
static lnn_dropout_t site(const lnn_model *m, float p, uint32_t stream) {
    lnn_dropout_t d = {p, m->seed, m->step, stream, 0};
    return d;
}

/* Hidden-state dropout over the rows of the last forward (forward or backward: the op is its own
 * adjoint). Packed rows take the padded layout's element indices, sequence by sequence, so the
 * two layouts drop the same entries. */
static void dropout_rows(const lnn_model *m, float *out, const float *inp, float p, uint32_t stream, int cls) {
    const lnn_backend *be = m->be;
    size_t C = (size_t)m->cfg.C;
    lnn_dropout_t d = site(m, p, stream);
    if (cls) { /* the token-0 rows (B,C) of the last layer */
        for (int b = 0; b < m->fwd_B; b++) {
            d.offset = (uint64_t)b * m->fwd_T * C;
            be->dropout_forward(out + b * C, inp + b * C, C, d);
        }
        return;
    }
    if (!m->fwd_packed) {
        be->dropout_forward(out, inp, m->fwd_N * C, d);
        return;
    }
    for (int b = 0; b < m->fwd_B; b++) {
        size_t r0 = (size_t)m->host_off[b], n = (size_t)(m->host_off[b + 1] - m->host_off[b]) * C;
        d.offset = (uint64_t)b * m->fwd_T * C;
        be->dropout_forward(out + r0 * C, inp + r0 * C, n, d);
    }
}

/* Lengths of a right-padded mask (ones then zeros, at least one one per row) into off (B+1);
 * returns 0 when the mask is not of that form or has no padding (then the padded run is used). */
static int packed_offsets(const int32_t *mask, int B, int T, int32_t *off) {
    off[0] = 0;
    for (int b = 0; b < B; b++) {
        const int32_t *r = mask + (size_t)b * T;
        int len = 0;
        while (len < T && r[len]) len++;
        if (len == 0) return 0;
        for (int t = len; t < T; t++)
            if (r[t]) return 0;
        off[b + 1] = off[b] + len;
    }
    return off[B] < B * T;
}

/* Stage ids/types/positions (packed or padded) on the host and copy them to the backend. */
static lnn_status stage_inputs(lnn_model *m, const int32_t *ids, const int32_t *types, const int32_t *mask, int B,
                               int T, int pack) {
    const lnn_backend *be = m->be;
    lnn_acts *a = &m->a;
    size_t N = pack ? (size_t)m->host_off[B] : (size_t)B * T;
    int32_t *h = malloc(sizeof(int32_t) * 3 * N);
    int64_t *po = pack ? malloc(sizeof(int64_t) * ((size_t)B + 1)) : NULL;
    if (!h || (pack && !po)) {
        free(h);
        free(po);
        lnn_set_error("out of memory");
        return LNN_ERR_MEMORY;
    }
    int32_t *hid = h, *htt = h + N, *hpos = h + 2 * N;
    if (pack) {
        po[0] = 0;
        for (int b = 0; b < B; b++) {
            int r0 = m->host_off[b], L = m->host_off[b + 1] - r0;
            memcpy(hid + r0, ids + (size_t)b * T, sizeof(int32_t) * L);
            if (types) memcpy(htt + r0, types + (size_t)b * T, sizeof(int32_t) * L);
            for (int t = 0; t < L; t++) hpos[r0 + t] = t;
            po[b + 1] = po[b] + (int64_t)m->cfg.NH * L * L;
        }
        be->to_device(a->ids, hid, N * sizeof(int32_t));
        if (types) be->to_device(a->types, htt, N * sizeof(int32_t));
        be->to_device(a->seq_off, m->host_off, ((size_t)B + 1) * sizeof(int32_t));
        be->to_device(a->prob_off, po, ((size_t)B + 1) * sizeof(int64_t));
    } else {
        for (size_t i = 0; i < N; i++) hpos[i] = (int32_t)(i % (size_t)T);
        be->to_device(a->ids, ids, N * sizeof(int32_t));
        if (types) be->to_device(a->types, types, N * sizeof(int32_t));
        if (mask) be->to_device(a->mask, mask, N * sizeof(int32_t));
    }
    be->to_device(a->pos, hpos, N * sizeof(int32_t));
    free(h);
    free(po);
    return LNN_OK;
}

/* Move the rows of the last layer's output between the backend (x) and host (B,T,C), sequence by
 * sequence when packed or token-0 only. to_host also zeroes the positions that were not computed
 * (padding when packed, all but token 0 when the last layer ran for token 0 only); the other way
 * (gradients) leaves them out. */
static void rows_move(const lnn_model *m, float *host, float *x, int to_host) {
    size_t C = (size_t)m->cfg.C, T = (size_t)m->fwd_T, row = C * sizeof(float);
    if (!m->fwd_cls && !m->fwd_packed) {
        if (to_host) m->be->to_host(host, x, m->fwd_N * row);
        else m->be->to_device(x, host, m->fwd_N * row);
        return;
    }
    for (int b = 0; b < m->fwd_B; b++) {
        size_t r0 = m->fwd_cls ? (size_t)b : (size_t)m->host_off[b];
        size_t L = m->fwd_cls ? 1 : (size_t)(m->host_off[b + 1] - m->host_off[b]);
        float *h = host + b * T * C;
        if (to_host) {
            m->be->to_host(h, x + r0 * C, L * row);
            memset(h + L * C, 0, (T - L) * row);
        } else {
            m->be->to_device(x + r0 * C, h, L * row);
        }
    }
}

lnn_status lnn_model_forward(lnn_model *m, const int32_t *ids, const int32_t *types, const int32_t *mask, int B,
                             int T, int train, uint64_t seed, uint32_t step, float *last, float *pooled,
                             float *hidden) {
    const lnn_config *c = &m->cfg;
    const lnn_backend *be = m->be;
    if (!m->params) {
        lnn_set_error("the model's parameters are not allocated");
        return LNN_ERR_RUNTIME;
    }
    if (B < 1 || T < 1) {
        lnn_set_error("input_ids must have at least one row and one position, got shape (%d, %d)", B, T);
        return LNN_ERR_VALUE;
    }
    if ((size_t)B * T > ((size_t)1 << 26)) {
        lnn_set_error("batch %d x sequence %d is too large for one call; split the batch", B, T);
        return LNN_ERR_VALUE;
    }
    if (T > c->max_pos) {
        lnn_set_error("sequence length %d is longer than max_position_embeddings=%d; truncate the inputs "
                      "(e.g. max_length=%d)", T, c->max_pos, c->max_pos);
        return LNN_ERR_VALUE;
    }
    size_t NT = (size_t)B * T;
    for (size_t i = 0; i < NT; i++) {
        if (ids[i] < 0 || ids[i] >= c->vocab_size) {
            lnn_set_error("input_ids[%zu, %zu] = %d is outside the vocabulary [0, %d)", i / T, i % T, ids[i],
                          c->vocab_size);
            return LNN_ERR_INDEX;
        }
    }
    if (types) {
        int tv = c->model_type == LNN_BERT ? c->type_vocab_size : 0;
        for (size_t i = 0; i < NT; i++) {
            if (types[i] < 0 || types[i] >= tv) {
                lnn_set_error("token_type_ids[%zu, %zu] = %d is outside [0, %d)", i / T, i % T, types[i], tv);
                return LNN_ERR_INDEX;
            }
        }
    }
    m->has_train_forward = 0;
    lnn_status st = ensure_arena(m, B, T, train);
    if (st) return st;
    if (m->host_off_cap < B + 1) {
        int32_t *o = realloc(m->host_off, sizeof(int32_t) * ((size_t)B + 1));
        if (!o) {
            lnn_set_error("out of memory");
            return LNN_ERR_MEMORY;
        }
        m->host_off = o;
        m->host_off_cap = B + 1;
    }
    int pack = m->unpad && mask && !hidden && packed_offsets(mask, B, T, m->host_off);
    st = stage_inputs(m, ids, types, mask, B, T, pack);
    if (st) return st;
    lnn_acts *a = &m->a;
    m->seed = seed;
    m->step = step;
    m->fwd_B = B;
    m->fwd_T = T;
    m->fwd_packed = pack;
    m->fwd_cls = m->cls_only && !hidden && c->n_layers > 0;
    size_t N = pack ? (size_t)m->host_off[B] : (size_t)B * T;
    m->fwd_N = N;
    int C = c->C, F = c->F, NH = c->NH, L = c->n_layers, bert = c->model_type == LNN_BERT;
    float hp = train ? c->hidden_dropout : 0.f, ap = train ? c->attn_dropout : 0.f;
    const int32_t *dtypes = types ? a->types : NULL, *dmask = mask && !pack ? a->mask : NULL;
    const int32_t *doff = pack ? a->seq_off : NULL;
    const int64_t *dpoff = pack ? a->prob_off : NULL;

    /* embeddings -> LayerNorm -> dropout */
    be->embedding_forward(a->emb_res, a->ids, dtypes, a->pos, m->p.top.wte, m->p.top.wpe, bert ? m->p.top.wtt : NULL,
                          (int)N, C);
    be->layernorm_forward(a->x0, a->emb_mean, a->emb_rstd, a->emb_res, a->emb_res, NULL, m->p.top.emb_ln_w,
                          m->p.top.emb_ln_b, (int)N, C, c->ln_eps);
    if (hp > 0.f) dropout_rows(m, a->x0, a->x0, hp, 0, 0);
    if (hidden) be->to_host(hidden, a->x0, N * C * sizeof(float));

    const float *x = a->x0;
    for (int l = 0; l < L; l++) {
        const lnn_layer_params *w = &m->p.layers[l];
        lnn_layer_acts *s = &a->layers[l];
        int cls = m->fwd_cls && l == L - 1; /* token 0 only from the attention output on */
        int R = cls ? B : (int)N;            /* rows after the attention */
        const float *xres = x;
        be->matmul_forward(s->qkv, x, w->qkv_w, w->qkv_b, (int)N, C, 3 * C);
        be->attention_forward(s->att, s->probs, a->pdrop, s->keep, s->qkv, dmask, doff, dpoff, cls, B, T, C, NH,
                              site(m, ap, 1 + 3 * l));
        if (cls) {
            be->token0_forward(a->xcls, x, doff, B, T, C);
            xres = a->xcls;
        }
        be->matmul_forward(s->r1, s->att, w->o_w, w->o_b, R, C, C);
        if (bert && hp > 0.f) dropout_rows(m, s->r1, s->r1, hp, 2 + 3 * l, cls);
        be->layernorm_forward(s->h1, s->mean1, s->rstd1, s->r1, s->r1, xres, w->ln1_w, w->ln1_b, R, C, c->ln_eps);
        be->matmul_forward(s->f1, s->h1, w->f1_w, NULL, R, C, F);
        be->bias_act_forward(s->g, s->f1, w->f1_b, R, F, c->act);
        be->matmul_forward(s->r2, s->g, w->f2_w, w->f2_b, R, F, C);
        if (hp > 0.f) dropout_rows(m, s->r2, s->r2, hp, 3 + 3 * l, cls);
        be->layernorm_forward(s->out, s->mean2, s->rstd2, s->r2, s->r2, s->h1, w->ln2_w, w->ln2_b, R, C, c->ln_eps);
        if (hidden) be->to_host(hidden + (size_t)(l + 1) * N * C, s->out, N * C * sizeof(float));
        x = s->out;
    }
    if (last) rows_move(m, last, (float *)x, 1);
    if (bert && c->pooler) {
        if (m->fwd_cls) be->copy(a->cls, x, (size_t)B * C * sizeof(float)); /* x holds the token-0 rows */
        else be->token0_forward(a->cls, x, doff, B, T, C);
        be->matmul_forward(a->pooled, a->cls, m->p.top.pool_w, m->p.top.pool_b, B, C, C);
        be->tanh_forward(a->pooled, a->pooled, (size_t)B * C);
        if (pooled) be->to_host(pooled, a->pooled, (size_t)B * C * sizeof(float));
    }
    if (train) {
        m->has_train_forward = 1;
        m->fwd_has_types = types != NULL;
    }
    return LNN_OK;
}

/* ------------------------------------------------------------------ backward */

/* Does any tensor at or below this level need a gradient? level 0: embeddings; l+1: layer l. */
static int lowest_trainable_level(const lnn_model *m) {
    const lnn_top_params *g = &m->g.top;
    if (g->wte || g->wpe || g->wtt || g->emb_ln_w || g->emb_ln_b) return 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < LNN_LAYER_NT; k++)
            if (m->g.layers[l].t[k]) return l + 1;
    return m->cfg.n_layers + 1; /* only the pooler (or nothing) */
}

lnn_status lnn_model_backward(lnn_model *m, const float *dlast, const float *dpooled) {
    const lnn_config *c = &m->cfg;
    const lnn_backend *be = m->be;
    if (!m->has_train_forward || !m->train_layout) {
        lnn_set_error("backward() needs a training forward first: call the encoder with train=True, then backward()");
        return LNN_ERR_RUNTIME;
    }
    lnn_acts *a = &m->a;
    int B = m->fwd_B, T = m->fwd_T, C = c->C, F = c->F, NH = c->NH, L = c->n_layers;
    int bert = c->model_type == LNN_BERT;
    size_t N = m->fwd_N, NC = N * C * sizeof(float);
    float hp = c->hidden_dropout, ap = c->attn_dropout;
    const int32_t *doff = m->fwd_packed ? a->seq_off : NULL;
    const int64_t *dpoff = m->fwd_packed ? a->prob_off : NULL;
    const int32_t *dtypes = m->fwd_has_types ? a->types : NULL;
    int lowest = lowest_trainable_level(m);
    if (lowest > L + 1 || (lowest == L + 1 && !(bert && c->pooler && dpooled))) return LNN_OK; /* nothing to do */

    /* dX: gradient w.r.t. the last hidden state */
    if (dlast) rows_move(m, (float *)dlast, a->dX, 0);
    else be->zero(a->dX, NC);

    if (bert && c->pooler && dpooled) { /* pooled = tanh(cls @ Wp^T + bp), cls = x[:, 0] */
        size_t BC = (size_t)B * C;
        be->to_device(a->dpool, dpooled, BC * sizeof(float));
        be->tanh_backward(a->dpool, a->dpool, a->pooled, BC);
        be->zero(a->dcls, BC * sizeof(float));
        be->matmul_backward(lowest <= L ? a->dcls : NULL, m->g.top.pool_w, m->g.top.pool_b, a->dpool, a->cls,
                            m->p.top.pool_w, B, C, C);
        if (lowest <= L) {
            if (m->fwd_cls) be->token0_backward(a->dX, a->dcls, NULL, B, 1, C); /* dX holds token-0 rows */
            else be->token0_backward(a->dX, a->dcls, doff, B, T, C);
        }
    }

    for (int l = L - 1; l >= 0 && l + 1 >= lowest; l--) {
        const lnn_layer_params *w = &m->p.layers[l], *gw = &m->g.layers[l];
        lnn_layer_acts *s = &a->layers[l];
        const float *x = l ? a->layers[l - 1].out : a->x0;
        int need_dx = l + 1 > lowest; /* something below needs the gradient w.r.t. x */
        int cls = m->fwd_cls && l == L - 1;
        int R = cls ? B : (int)N; /* rows after the attention (dX holds R rows on entry) */
        size_t RC = (size_t)R * C * sizeof(float);
        /* out = LN2(r2), r2 = drop(lin2(g)) + h1 */
        be->zero(a->dR, RC);
        be->layernorm_backward(a->dR, gw->ln2_w, gw->ln2_b, a->dX, s->r2, w->ln2_w, s->mean2, s->rstd2, R, C);
        const float *dff = a->dR;
        if (hp > 0.f) {
            dropout_rows(m, a->dA, a->dR, hp, 3 + 3 * l, cls);
            dff = a->dA;
        }
        be->zero(a->dG, (size_t)R * F * sizeof(float));
        be->matmul_backward(a->dG, gw->f2_w, gw->f2_b, dff, s->g, w->f2_w, R, F, C);
        be->bias_act_backward(a->dG, gw->f1_b, a->dG, s->f1, R, F, c->act);
        be->matmul_backward(a->dR, gw->f1_w, NULL, a->dG, s->h1, w->f1_w, R, C, F); /* dR = d h1 */
        /* h1 = LN1(r1), r1 = drop(out_lin(att)) + x */
        be->zero(a->dX, RC);
        be->layernorm_backward(a->dX, gw->ln1_w, gw->ln1_b, a->dR, s->r1, w->ln1_w, s->mean1, s->rstd1, R, C);
        const float *dao = a->dX;
        if (bert && hp > 0.f) {
            dropout_rows(m, a->dA, a->dX, hp, 2 + 3 * l, cls);
            dao = a->dA;
        }
        be->zero(a->dR, RC);
        be->matmul_backward(a->dR, gw->o_w, gw->o_b, dao, s->att, w->o_w, R, C, C); /* dR = d att */
        if (cls && need_dx) { /* the residual gradient of the token-0 rows, scattered into all N rows */
            be->copy(a->dA, a->dX, RC);
            be->zero(a->dX, NC);
            be->token0_backward(a->dX, a->dA, doff, B, T, C);
        }
        be->zero(a->dqkv, 3 * NC);
        be->attention_backward(a->dqkv, a->dprobs, a->pdrop, s->keep, a->dR, s->qkv, s->probs, doff, dpoff, cls, B, T,
                               C, NH, site(m, ap, 1 + 3 * l));
        /* dX (holding the residual part) += dqkv @ Wqkv */
        be->matmul_backward(need_dx ? a->dX : NULL, gw->qkv_w, gw->qkv_b, a->dqkv, x, w->qkv_w, (int)N, C, 3 * C);
    }

    if (lowest == 0) {
        const lnn_top_params *g = &m->g.top;
        if (hp > 0.f) dropout_rows(m, a->dX, a->dX, hp, 0, 0);
        be->zero(a->dR, NC);
        be->layernorm_backward(a->dR, g->emb_ln_w, g->emb_ln_b, a->dX, a->emb_res, m->p.top.emb_ln_w, a->emb_mean,
                               a->emb_rstd, (int)N, C);
        be->embedding_backward(g->wte, g->wpe, bert ? g->wtt : NULL, a->dR, a->ids, dtypes, a->pos, (int)N, C,
                               c->pad_id);
    }
    return LNN_OK;
}
