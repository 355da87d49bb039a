/* models/encoder.c: the DistilBERT / BERT encoder graph, forward and backward, over the backend op
 * table. No BLAS or OpenMP here: every computation is a call into the backend (m->body.ctx.be),
 * and host memory is touched only at the boundary: staging the inputs, and the read/write
 * functions at the end of this file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "models/encoder.h"

/* ------------------------------------------------------------------ creation */

static int add1(lnn_param_table *tab, const char *name, int64_t d0, unsigned flags) {
    int64_t s[1] = {d0};
    return lnn_params_add(tab, name, 1, s, flags);
}

static int add2(lnn_param_table *tab, const char *name, int64_t d0, int64_t d1, unsigned flags) {
    int64_t s[2] = {d0, d1};
    return lnn_params_add(tab, name, 2, s, flags);
}

static lnn_status check_config(const lnn_config *c) {
#define REQ LNN_REQUIRE
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
    lnn_param_table *tab = &m->body.tab;
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


static lnn_status enc_forward(lnn_body *b, const lnn_batch *in, int train, uint64_t seed, uint32_t step, int unpad,
                              unsigned read);
static lnn_status enc_backward(lnn_body *b, int has_dout, const void *dpooled);
static void enc_clear_dout(lnn_body *b);
static int enc_trainable(const lnn_body *b);

static const lnn_body_ops encoder_ops = {"encoder", enc_forward, enc_backward, enc_clear_dout, enc_trainable};

lnn_model *lnn_body_encoder(lnn_body *b) { return b && b->ops == &encoder_ops ? (lnn_model *)b : NULL; }

lnn_status lnn_model_create(lnn_model **out, const lnn_config *cfg, const lnn_backend *be, int device, lnn_dtype act,
                            int tf32) {
    *out = NULL;
    lnn_status st = check_config(cfg);
    if (st) return st;
    lnn_model *m = calloc(1, sizeof *m);
    if (!m) {
        lnn_set_error("out of memory");
        return LNN_ERR_MEMORY;
    }
    m->cfg = *cfg;
    m->lora_pool_idx = -1;
    st = lnn_ctx_init(&m->body.ctx, be, device, act);
    if (st) {
        free(m);
        return st;
    }
    m->body.ctx.allow_tf32 = tf32;
    m->body.ops = &encoder_ops;
    m->body.width = cfg->C;
    m->body.has_pooled = cfg->model_type == LNN_BERT && cfg->pooler;
    st = register_encoder(m);
    if (st) {
        if (st == LNN_ERR_MEMORY && strstr(lnn_get_error(), "memory") == NULL) st = LNN_ERR_VALUE;
        lnn_model_free(m);
        return st;
    }
    m->n_enc_tensors = m->body.tab.n;
    *out = m;
    return LNN_OK;
}

/* ------------------------------------------------------------------ LoRA adapters */

/* in / out features of LoRA site k, and the table index of the base weight it adapts */
static int lora_in(const lnn_config *c, int k) { return k == LNN_LORA_F2 ? c->F : c->C; }
static int lora_out(const lnn_config *c, int k) { return k == LNN_LORA_F1 ? c->F : c->C; }
static int lora_base(const lnn_model *m, int l, int k) {
    static const int slot[LNN_LORA_NK] = {0, 0, 0, 2, 6, 8}; /* q, k, v weights are adjacent */
    return m->layer_idx[l][slot[k]] + (k <= LNN_LORA_V ? k : 0);
}

/* "<linear>.lora_A.weight" (r, in) and "<linear>.lora_B.weight" (out, r) for the base weight at index w;
 * the index of lora_A, or -1 (error set) */
static int add_lora_pair(lnn_model *m, int w, int r, int in, int out) {
    lnn_param_table *tab = &m->body.tab;
    const char *base = tab->t[w].name;
    size_t n = strlen(base) - strlen(".weight");
    char nm[LNN_NAME_MAX];
    if (n + strlen(".lora_A.weight") >= sizeof nm) {
        lnn_set_error("tensor name %s is too long for a LoRA adapter", base);
        return -1;
    }
    snprintf(nm, sizeof nm, "%.*s.lora_A.weight", (int)n, base);
    int a = add2(tab, nm, r, in, 0);
    snprintf(nm, sizeof nm, "%.*s.lora_B.weight", (int)n, base);
    int b = a < 0 ? -1 : add2(tab, nm, out, r, 0);
    return b < 0 ? -1 : a;
}

lnn_status lnn_model_add_lora(lnn_model *m, const lnn_lora_config *lc) {
    const lnn_config *c = &m->cfg;
    if (m->body.params || m->lora_idx || m->body.tab.n != m->n_enc_tensors) {
        lnn_set_error("LoRA adapters are registered once, right after the encoder's tensors and before allocation");
        return LNN_ERR_RUNTIME;
    }
    if (lc->r < 1 || lc->r > (1 << 16) || !isfinite(lc->scale) || !(lc->dropout >= 0.f && lc->dropout < 1.f)) {
        lnn_set_error("LoRA needs r in 1..65536 (got %d), a finite scale (got %g) and dropout in [0, 1) (got %g)",
                      lc->r, (double)lc->scale, (double)lc->dropout);
        return LNN_ERR_VALUE;
    }
    if (lc->pooler && !(c->model_type == LNN_BERT && c->pooler)) {
        lnn_set_error("a LoRA adapter on the pooler needs a BERT encoder with its pooler");
        return LNN_ERR_VALUE;
    }
    m->lora_idx = malloc(sizeof *m->lora_idx * (size_t)(c->n_layers ? c->n_layers : 1));
    if (!m->lora_idx) {
        lnn_set_error("out of memory");
        return LNN_ERR_MEMORY;
    }
    m->lora_r = lc->r;
    m->lora_scale = lc->scale;
    m->lora_dropout = lc->dropout;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < LNN_LORA_NK; k++) {
            m->lora_idx[l][k] = -1;
            if (!lc->layers || !(lc->layers[l] & (1u << k))) continue;
            m->lora_idx[l][k] = add_lora_pair(m, lora_base(m, l, k), lc->r, lora_in(c, k), lora_out(c, k));
            if (m->lora_idx[l][k] < 0) return LNN_ERR_VALUE;
        }
    if (lc->pooler) {
        m->lora_pool_idx = add_lora_pair(m, m->top_idx[5], lc->r, c->C, c->C);
        if (m->lora_pool_idx < 0) return LNN_ERR_VALUE;
    }
    return LNN_OK;
}

/* The LoRA branch of the site whose lora_A is at table index idx (-1: none) on the linear x -> y. */
static void lora_fwd(lnn_model *m, int idx, void *y, int ldy, const void *x, void *u, lnn_rows rows, int in, int out,
                     float p, uint32_t stream) {
    if (idx < 0 || m->lora_off) return;
    lnn_body *bd = &m->body;
    lnn_dropout_t d = {p, m->seed, m->step, stream};
    bd->ctx.be->lora_forward(&bd->ctx, y, ldy, x, lnn_body_weight(bd, idx), lnn_body_weight(bd, idx + 1), u, rows, in,
                             m->lora_r, out, m->lora_scale, d);
}

static void lora_bwd(lnn_model *m, int idx, void *dx, const void *dy, int ldy, const void *x, const void *u,
                     lnn_rows rows, int in, int out, uint32_t stream) {
    if (idx < 0 || m->lora_off) return;
    lnn_body *bd = &m->body;
    float *dA = lnn_body_grad(bd, idx), *dB = lnn_body_grad(bd, idx + 1);
    if (!dx && !dA && !dB) return;
    lnn_dropout_t d = {m->lora_dropout, m->seed, m->step, stream};
    bd->ctx.be->lora_backward(&bd->ctx, dx, dA, dB, dy, ldy, x, lnn_body_weight(bd, idx), lnn_body_weight(bd, idx + 1),
                              u, rows, in, m->lora_r, out, m->lora_scale, d);
}

/* a LoRA site at table index idx has a trainable tensor */
static int lora_trains(const lnn_model *m, int idx) {
    return idx >= 0 && !m->lora_off && (lnn_body_grad(&m->body, idx) || lnn_body_grad(&m->body, idx + 1));
}

static uint32_t lora_stream(int l, int k) { return LNN_LORA_STREAM0 + 8u * (uint32_t)l + (uint32_t)k; }

void lnn_model_update_views(lnn_model *m) {
    const lnn_body *bd = &m->body;
    for (int pass = 0; pass < 2; pass++) {
        lnn_params_view *v = pass ? &m->g : &m->p;
        for (int i = 0; i < LNN_TOP_NT; i++)
            v->top.t[i] = pass ? (void *)lnn_body_grad(bd, m->top_idx[i]) : lnn_body_weight(bd, m->top_idx[i]);
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int k = 0; k < LNN_LAYER_NT; k++) {
                int i0 = m->layer_idx[l][k];
                void *p = pass ? (void *)lnn_body_grad(bd, i0) : lnn_body_weight(bd, i0);
                /* q/k/v are one unit: frozen only when all three are */
                if (pass && (k == 0 || k == 1) && !p &&
                    (!(bd->tab.t[i0 + 1].flags & LNN_TENSOR_FROZEN) || !(bd->tab.t[i0 + 2].flags & LNN_TENSOR_FROZEN)))
                    p = bd->grads + bd->tab.t[i0].offset;
                v->layers[l].t[k] = p;
            }
    }
}

lnn_status lnn_model_allocate(lnn_model *m) {
    lnn_status st = lnn_body_allocate(&m->body);
    if (st) return st;
    int L = m->cfg.n_layers ? m->cfg.n_layers : 1;
    m->p.layers = calloc((size_t)L, sizeof(lnn_layer_params));
    m->g.layers = calloc((size_t)L, sizeof(lnn_layer_params));
    m->a.layers = calloc((size_t)L, sizeof(lnn_layer_acts));
    if (!m->p.layers || !m->g.layers || !m->a.layers) {
        lnn_set_error("out of memory");
        return LNN_ERR_MEMORY;
    }
    lnn_model_update_views(m);
    return LNN_OK;
}

void lnn_model_free(lnn_model *m) {
    if (!m) return;
    if (m->body.ctx.be) m->body.ctx.be->free(&m->body.ctx, m->arena);
    lnn_body_release(&m->body);
    free(m->p.layers);
    free(m->g.layers);
    free(m->a.layers);
    free(m->host_off);
    free(m->stage);
    free(m->idx_host);
    free(m->layer_idx);
    free(m->lora_idx);
    free(m);
}

/* ------------------------------------------------------------------ activation arena */

/* Lay the activations for (B, T) out (from p->base; counting when NULL). */
static void layout_acts(lnn_model *m, lnn_acts *a, lnn_plan *p, int B, int T, int train) {
    const lnn_config *c = &m->cfg;
    const lnn_ctx *ctx = &m->body.ctx;
    const lnn_backend *be = ctx->be;
    lnn_dtype A = ctx->act;
    size_t N = (size_t)B * T, C = (size_t)c->C, F = (size_t)c->F, BC = (size_t)B * C;
    float ap = train ? c->attn_dropout : 0.f;
#define TAKE(ptr, count, dt) lnn_take(p, (void **)&(ptr), (count), (dt))
    TAKE(a->ids, N, LNN_I32);
    TAKE(a->types, N, LNN_I32);
    TAKE(a->mask, N, LNN_I32);
    TAKE(a->pos, N, LNN_I32);
    TAKE(a->seq_off, (size_t)B + 1, LNN_I32);
    TAKE(a->emb_idx, train && (ctx->paths & LNN_PATH_SORTED_EMBED) ? 3 * lnn_emb_index_ints(N) : 0, LNN_I32);
    TAKE(a->emb_res, N * C, A);
    TAKE(a->emb_mean, N, LNN_F32);
    TAKE(a->emb_rstd, N, LNN_F32);
    TAKE(a->x0, N * C, A);
    int slots = train ? c->n_layers : (c->n_layers ? 1 : 0);
    size_t saved = be->attention_saved_bytes(ctx, B, T, c->NH, train, ap);
    for (int s = 0; s < slots; s++) {
        lnn_layer_acts *l = &a->layers[s];
        TAKE(l->qkv, 3 * N * C, A);
        lnn_take_bytes(p, &l->att_saved, saved);
        TAKE(l->att, N * C, A);
        TAKE(l->r1, N * C, A);
        TAKE(l->mean1, N, LNN_F32);
        TAKE(l->rstd1, N, LNN_F32);
        TAKE(l->h1, N * C, A);
        TAKE(l->f1, N * F, A);
        TAKE(l->g, N * F, A);
        TAKE(l->r2, N * C, A);
        TAKE(l->mean2, N, LNN_F32);
        TAKE(l->rstd2, N, LNN_F32);
        TAKE(l->out, N * C, A);
        for (int k = 0; k < LNN_LORA_NK; k++) TAKE(l->lora_u[k], m->lora_idx ? N * (size_t)m->lora_r : 0, A);
    }
    for (int s = slots; s < c->n_layers; s++) a->layers[s] = a->layers[0]; /* inference: one slot, reused */
    lnn_take_bytes(p, &a->att_scratch, be->attention_scratch_bytes(ctx, B, T, c->NH, train, ap));
    TAKE(a->cls, BC, A);
    TAKE(a->xcls, BC, A);
    TAKE(a->pooled, BC, A);
    TAKE(a->pool_u, m->lora_pool_idx >= 0 ? (size_t)B * m->lora_r : 0, A);
    size_t nb = train ? 1 : 0; /* the backward's buffers: training layout only */
    TAKE(a->dX, nb * N * C, A);
    TAKE(a->dR, nb * N * C, A);
    TAKE(a->dA, nb * N * C, A);
    TAKE(a->dqkv, nb * 3 * N * C, A);
    TAKE(a->dG, nb * N * F, A);
    TAKE(a->dcls, nb * BC, A);
    TAKE(a->dpool, nb * BC, A);
#undef TAKE
}

/* Make the arena fit (B, T, train), growing it when needed, and lay the views out. */
static lnn_status ensure_arena(lnn_model *m, int B, int T, int train) {
    lnn_plan p = lnn_plan_begin(NULL);
    layout_acts(m, &m->a, &p, B, T, train);
    if (p.used > m->arena_bytes || !m->arena) {
        char what[96];
        snprintf(what, sizeof what, "the activations for batch %d x sequence %d", B, T);
        m->body.has_train_forward = 0;
        lnn_status st = lnn_reserve(&m->body.ctx, &m->arena, &m->arena_bytes, p.used, what);
        if (st) return st;
    }
    p = lnn_plan_begin(m->arena);
    layout_acts(m, &m->a, &p, B, T, train);
    m->B = B;
    m->T = T;
    m->train_layout = train;
    return LNN_OK;
}

/* ------------------------------------------------------------------ forward */

/* dropout sites: 0 embeddings; per layer l: 1+3l attention probs, 2+3l attention output (BERT),
 * 3+3l FFN output */
static lnn_dropout_t site(const lnn_model *m, float p, uint32_t stream) {
    lnn_dropout_t d = {p, m->seed, m->step, stream};
    return d;
}

/* The token rows of the last forward: packed or padded, or (first) token 0 of each sequence only. */
static lnn_rows fwd_rows(const lnn_model *m, int first) {
    lnn_rows r = {first ? m->fwd_B : (int)m->fwd_N, m->fwd_B, m->fwd_T, NULL, first};
    if (m->fwd_packed && !first) r.seq_off = m->a.seq_off;
    return r;
}

static void *at(void *p, size_t elems, lnn_dtype t) { return (char *)p + elems * lnn_dtype_size(t); }

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

/* The id-sorted row indexes of the three embedding tables (core/embed_index.h) for the N staged rows, built on
 * the host and copied to the backend in one piece (LNN_PATH_SORTED_EMBED, training): token ids without the pad
 * id, positions, token types (NULL: all type 0). */
static lnn_status stage_emb_index(lnn_model *m, const int32_t *ids, const int32_t *pos, const int32_t *types, int N) {
    size_t per = lnn_emb_index_ints((size_t)N), need = 3 * per + lnn_emb_index_scratch_ints((size_t)N);
    if (m->idx_cap < need) {
        int32_t *p = realloc(m->idx_host, sizeof(int32_t) * need);
        if (!p) {
            lnn_set_error("out of memory");
            return LNN_ERR_MEMORY;
        }
        m->idx_host = p;
        m->idx_cap = need;
    }
    const int32_t *keys[3] = {ids, pos, types};
    int exclude[3] = {m->cfg.pad_id, -1, -1};
    lnn_emb_index_host h[3];
    size_t off = 0;
    for (int t = 0; t < 3; t++) { /* packed one after the other, each 4-byte aligned as I32 needs */
        lnn_emb_index_build(&h[t], m->idx_host + off, m->idx_host + 3 * per, keys[t], N, exclude[t]);
        m->emb_index[t] = lnn_emb_index_at(&h[t], m->a.emb_idx + off);
        off += h[t].used;
    }
    m->body.ctx.be->to_device(&m->body.ctx, m->a.emb_idx, m->idx_host, off * sizeof(int32_t));
    m->has_emb_index = 1;
    return LNN_OK;
}

/* Stage ids/types/positions (packed or padded) on the host and copy them to the backend; with index set, the
 * embedding tables' sorted row indexes too. */
static lnn_status stage_inputs(lnn_model *m, const lnn_batch *in, int pack, int index) {
    lnn_ctx *ctx = &m->body.ctx;
    const lnn_backend *be = ctx->be;
    lnn_acts *a = &m->a;
    int B = in->B, T = in->T;
    size_t N = pack ? (size_t)m->host_off[B] : (size_t)B * T;
    if (m->stage_cap < 3 * N) {
        int32_t *s = realloc(m->stage, sizeof(int32_t) * 3 * N);
        if (!s) {
            lnn_set_error("out of memory");
            return LNN_ERR_MEMORY;
        }
        m->stage = s;
        m->stage_cap = 3 * N;
    }
    int32_t *hid = m->stage, *htt = m->stage + N, *hpos = m->stage + 2 * N;
    if (pack) {
        for (int b = 0; b < B; b++) {
            int r0 = m->host_off[b], L = m->host_off[b + 1] - r0;
            memcpy(hid + r0, in->ids + (size_t)b * T, sizeof(int32_t) * L);
            if (in->types) memcpy(htt + r0, in->types + (size_t)b * T, sizeof(int32_t) * L);
            for (int t = 0; t < L; t++) hpos[r0 + t] = t;
        }
        be->to_device(ctx, a->ids, hid, N * sizeof(int32_t));
        if (in->types) be->to_device(ctx, a->types, htt, N * sizeof(int32_t));
        be->to_device(ctx, a->seq_off, m->host_off, ((size_t)B + 1) * sizeof(int32_t));
    } else {
        for (size_t i = 0; i < N; i++) hpos[i] = (int32_t)(i % (size_t)T);
        be->to_device(ctx, a->ids, in->ids, N * sizeof(int32_t));
        if (in->types) be->to_device(ctx, a->types, in->types, N * sizeof(int32_t));
        if (in->mask) be->to_device(ctx, a->mask, in->mask, N * sizeof(int32_t));
    }
    be->to_device(ctx, a->pos, hpos, N * sizeof(int32_t));
    m->has_emb_index = 0;
    if (index)
        return stage_emb_index(m, pack ? hid : in->ids, hpos, in->types ? (pack ? htt : in->types) : NULL, (int)N);
    return LNN_OK;
}

static lnn_status check_batch(const lnn_model *m, const lnn_batch *in) {
    const lnn_config *c = &m->cfg;
    int B = in->B, T = in->T;
    if (!m->body.params) {
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
        if (in->ids[i] < 0 || in->ids[i] >= c->vocab_size) {
            lnn_set_error("input_ids[%zu, %zu] = %d is outside the vocabulary [0, %d)", i / T, i % T, in->ids[i],
                          c->vocab_size);
            return LNN_ERR_INDEX;
        }
    }
    if (in->types) {
        int tv = c->model_type == LNN_BERT ? c->type_vocab_size : 0;
        for (size_t i = 0; i < NT; i++) {
            if (in->types[i] < 0 || in->types[i] >= tv) {
                lnn_set_error("token_type_ids[%zu, %zu] = %d is outside [0, %d)", i / T, i % T, in->types[i], tv);
                return LNN_ERR_INDEX;
            }
        }
    }
    return LNN_OK;
}

lnn_status lnn_model_forward(lnn_model *m, const lnn_batch *in, int train, uint64_t seed, uint32_t step, int unpad,
                             unsigned read, float *hidden) {
    const lnn_config *c = &m->cfg;
    lnn_body *bd = &m->body;
    lnn_ctx *ctx = &bd->ctx;
    const lnn_backend *be = ctx->be;
    lnn_status st = check_batch(m, in);
    if (st) return st;
    int B = in->B, T = in->T;
    bd->has_train_forward = 0;
    st = ensure_arena(m, B, T, train);
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
    int pack = unpad && !(read & LNN_READ_PADDED) && in->mask && !hidden && packed_offsets(in->mask, B, T, m->host_off);
    st = stage_inputs(m, in, pack, train && (ctx->paths & LNN_PATH_SORTED_EMBED));
    if (st) return st;
    lnn_acts *a = &m->a;
    m->seed = seed;
    m->step = step;
    m->fwd_B = B;
    m->fwd_T = T;
    m->fwd_packed = pack;
    m->fwd_cls = unpad && (read & LNN_READ_TOKEN0) && !(read & (LNN_READ_ROWS | LNN_READ_PADDED)) && !hidden &&
                 c->n_layers > 0;
    size_t N = pack ? (size_t)m->host_off[B] : (size_t)B * T;
    m->fwd_N = N;
    int C = c->C, F = c->F, NH = c->NH, L = c->n_layers, bert = c->model_type == LNN_BERT;
    float hp = train ? c->hidden_dropout : 0.f, ap = train ? c->attn_dropout : 0.f;
    float lp = train ? m->lora_dropout : 0.f;
    const int32_t *dtypes = in->types ? a->types : NULL, *dmask = in->mask && !pack ? a->mask : NULL;
    const int32_t *doff = pack ? a->seq_off : NULL;
    lnn_rows rows = fwd_rows(m, 0), rows0 = fwd_rows(m, 1);

    /* embeddings -> LayerNorm -> dropout */
    be->embedding_forward(ctx, a->emb_res, a->ids, dtypes, a->pos, m->p.top.wte, m->p.top.wpe,
                          bert ? m->p.top.wtt : NULL, (int)N, C);
    be->layernorm_forward(ctx, a->x0, a->emb_mean, a->emb_rstd, a->emb_res, a->emb_res, NULL, m->p.top.emb_ln_w,
                          m->p.top.emb_ln_b, (int)N, C, c->ln_eps);
    if (hp > 0.f) be->dropout_forward(ctx, a->x0, a->x0, rows, C, site(m, hp, 0));
    if (hidden) lnn_body_to_host_act(&m->body, hidden, a->x0, N * C);

    void *x = a->x0;
    for (int l = 0; l < L; l++) {
        const lnn_layer_params *w = &m->p.layers[l];
        lnn_layer_acts *s = &a->layers[l];
        int cls = m->fwd_cls && l == L - 1; /* token 0 only from the attention output on */
        int R = cls ? B : (int)N;            /* rows after the attention */
        lnn_rows rr = cls ? rows0 : rows;
        const void *xres = x;
        const int *li = m->lora_idx ? m->lora_idx[l] : NULL;
        be->matmul_forward(ctx, s->qkv, x, w->qkv_w, w->qkv_b, (int)N, C, 3 * C);
        for (int j = 0; li && j < 3; j++)
            lora_fwd(m, li[j], at(s->qkv, (size_t)j * C, ctx->act), 3 * C, x, s->lora_u[j], rows, C, C, lp,
                     lora_stream(l, j));
        be->attention_forward(ctx, s->att, s->att_saved, a->att_scratch, s->qkv, dmask, doff, cls, B, T, C, NH,
                              site(m, ap, 1 + 3 * l));
        if (cls) {
            be->token0_forward(ctx, a->xcls, x, rows, C);
            xres = a->xcls;
        }
        be->matmul_forward(ctx, s->r1, s->att, w->o_w, w->o_b, R, C, C);
        if (li) lora_fwd(m, li[LNN_LORA_O], s->r1, C, s->att, s->lora_u[LNN_LORA_O], rr, C, C, lp, lora_stream(l, LNN_LORA_O));
        if (bert && hp > 0.f) be->dropout_forward(ctx, s->r1, s->r1, rr, C, site(m, hp, 2 + 3 * l));
        be->layernorm_forward(ctx, s->h1, s->mean1, s->rstd1, s->r1, s->r1, xres, w->ln1_w, w->ln1_b, R, C, c->ln_eps);
        be->matmul_forward(ctx, s->f1, s->h1, w->f1_w, NULL, R, C, F);
        if (li) lora_fwd(m, li[LNN_LORA_F1], s->f1, F, s->h1, s->lora_u[LNN_LORA_F1], rr, C, F, lp, lora_stream(l, LNN_LORA_F1));
        be->bias_act_forward(ctx, s->g, s->f1, w->f1_b, R, F, c->act);
        be->matmul_forward(ctx, s->r2, s->g, w->f2_w, w->f2_b, R, F, C);
        if (li) lora_fwd(m, li[LNN_LORA_F2], s->r2, C, s->g, s->lora_u[LNN_LORA_F2], rr, F, C, lp, lora_stream(l, LNN_LORA_F2));
        if (hp > 0.f) be->dropout_forward(ctx, s->r2, s->r2, rr, C, site(m, hp, 3 + 3 * l));
        be->layernorm_forward(ctx, s->out, s->mean2, s->rstd2, s->r2, s->r2, s->h1, w->ln2_w, w->ln2_b, R, C, c->ln_eps);
        if (hidden) lnn_body_to_host_act(&m->body, hidden + (size_t)(l + 1) * N * C, s->out, N * C);
        x = s->out;
    }
    lnn_rows xrows = m->fwd_cls ? rows0 : rows; /* the rows of the last hidden state */
    if (bert && c->pooler) { /* pooled = tanh(token 0 @ Wp^T + bp) */
        be->token0_forward(ctx, a->cls, x, xrows, C);
        be->matmul_forward(ctx, a->pooled, a->cls, m->p.top.pool_w, m->p.top.pool_b, B, C, C);
        lora_fwd(m, m->lora_pool_idx, a->pooled, C, a->cls, a->pool_u, lnn_rows_plain(B), C, C, lp, lora_stream(L, 0));
        be->tanh_forward(ctx, a->pooled, a->pooled, (size_t)B * C);
    }
    bd->out = x;
    bd->rows = xrows;
    bd->mask = dmask;
    bd->pooled = bert && c->pooler ? a->pooled : NULL;
    bd->dout = train ? a->dX : NULL;
    if (train) {
        bd->has_train_forward = 1;
        m->fwd_has_types = in->types != NULL;
    }
    return LNN_OK;
}

/* ------------------------------------------------------------------ backward */

/* Does any tensor at or below this level need a gradient? level 0: embeddings; l+1: layer l. */
static int lowest_trainable_level(const lnn_model *m) {
    const lnn_top_params *g = &m->g.top;
    if (g->wte || g->wpe || g->wtt || g->emb_ln_w || g->emb_ln_b) return 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        for (int k = 0; k < LNN_LAYER_NT; k++)
            if (m->g.layers[l].t[k]) return l + 1;
        for (int k = 0; m->lora_idx && k < LNN_LORA_NK; k++)
            if (lora_trains(m, m->lora_idx[l][k])) return l + 1;
    }
    return m->cfg.n_layers + 1; /* only the pooler (or nothing) */
}

lnn_status lnn_model_backward(lnn_model *m, int has_dout, const void *dpooled) {
    const lnn_config *c = &m->cfg;
    lnn_body *bd = &m->body;
    lnn_ctx *ctx = &bd->ctx;
    const lnn_backend *be = ctx->be;
    if (!bd->has_train_forward || !m->train_layout) {
        lnn_set_error("backward() needs a training forward first: call the encoder with train=True, then backward()");
        return LNN_ERR_RUNTIME;
    }
    lnn_acts *a = &m->a;
    int B = m->fwd_B, T = m->fwd_T, C = c->C, F = c->F, NH = c->NH, L = c->n_layers;
    int bert = c->model_type == LNN_BERT;
    size_t N = m->fwd_N, esz = lnn_dtype_size(ctx->act), NC = N * C * esz;
    float hp = c->hidden_dropout, ap = c->attn_dropout;
    const int32_t *doff = m->fwd_packed ? a->seq_off : NULL;
    const int32_t *dtypes = m->fwd_has_types ? a->types : NULL;
    lnn_rows rows = fwd_rows(m, 0), rows0 = fwd_rows(m, 1);
    int lowest = lowest_trainable_level(m);
    if (lowest > L + 1 || (lowest == L + 1 && !(bert && c->pooler && dpooled))) return LNN_OK; /* nothing to do */

    /* dX: the gradient w.r.t. the last hidden rows (filled by the owner, or zero) */
    if (!has_dout) enc_clear_dout(bd);
    if (bert && c->pooler && dpooled) { /* pooled = tanh(cls @ Wp^T + bp), cls = token 0 of x */
        size_t BC = (size_t)B * C;
        be->tanh_backward(ctx, a->dpool, dpooled, a->pooled, BC);
        be->zero(ctx, a->dcls, BC * esz);
        be->matmul_backward(ctx, lowest <= L ? a->dcls : NULL, m->g.top.pool_w, m->g.top.pool_b, a->dpool, a->cls,
                            m->p.top.pool_w, B, C, C);
        lora_bwd(m, m->lora_pool_idx, lowest <= L ? a->dcls : NULL, a->dpool, C, a->cls, a->pool_u, lnn_rows_plain(B),
                 C, C, lora_stream(L, 0));
        if (lowest <= L) be->token0_backward(ctx, a->dX, a->dcls, m->fwd_cls ? rows0 : rows, C);
    }

    for (int l = L - 1; l >= 0 && l + 1 >= lowest; l--) {
        const lnn_layer_params *w = &m->p.layers[l], *gw = &m->g.layers[l];
        lnn_layer_acts *s = &a->layers[l];
        const void *x = l ? a->layers[l - 1].out : a->x0;
        int need_dx = l + 1 > lowest; /* something below needs the gradient w.r.t. x */
        int cls = m->fwd_cls && l == L - 1;
        int R = cls ? B : (int)N; /* rows after the attention (dX holds R rows on entry) */
        lnn_rows rr = cls ? rows0 : rows;
        size_t RC = (size_t)R * C * esz;
        const int *li = m->lora_idx ? m->lora_idx[l] : NULL;
        /* out = LN2(r2), r2 = drop(lin2(g)) + h1 */
        be->zero(ctx, a->dR, RC);
        be->layernorm_backward(ctx, a->dR, gw->ln2_w, gw->ln2_b, a->dX, s->r2, w->ln2_w, s->mean2, s->rstd2, R, C);
        const void *dff = a->dR;
        if (hp > 0.f) {
            be->dropout_backward(ctx, a->dA, a->dR, rr, C, site(m, hp, 3 + 3 * l));
            dff = a->dA;
        }
        be->zero(ctx, a->dG, (size_t)R * F * esz);
        be->matmul_backward(ctx, a->dG, gw->f2_w, gw->f2_b, dff, s->g, w->f2_w, R, F, C);
        if (li) lora_bwd(m, li[LNN_LORA_F2], a->dG, dff, C, s->g, s->lora_u[LNN_LORA_F2], rr, F, C, lora_stream(l, LNN_LORA_F2));
        be->bias_act_backward(ctx, a->dG, gw->f1_b, a->dG, s->f1, R, F, c->act);
        be->matmul_backward(ctx, a->dR, gw->f1_w, NULL, a->dG, s->h1, w->f1_w, R, C, F); /* dR = d h1 */
        if (li) lora_bwd(m, li[LNN_LORA_F1], a->dR, a->dG, F, s->h1, s->lora_u[LNN_LORA_F1], rr, C, F, lora_stream(l, LNN_LORA_F1));
        /* h1 = LN1(r1), r1 = drop(out_lin(att)) + x */
        be->zero(ctx, a->dX, RC);
        be->layernorm_backward(ctx, a->dX, gw->ln1_w, gw->ln1_b, a->dR, s->r1, w->ln1_w, s->mean1, s->rstd1, R, C);
        const void *dao = a->dX;
        if (bert && hp > 0.f) {
            be->dropout_backward(ctx, a->dA, a->dX, rr, C, site(m, hp, 2 + 3 * l));
            dao = a->dA;
        }
        be->zero(ctx, a->dR, RC);
        be->matmul_backward(ctx, a->dR, gw->o_w, gw->o_b, dao, s->att, w->o_w, R, C, C); /* dR = d att */
        if (li) lora_bwd(m, li[LNN_LORA_O], a->dR, dao, C, s->att, s->lora_u[LNN_LORA_O], rr, C, C, lora_stream(l, LNN_LORA_O));
        if (cls && need_dx) { /* the residual gradient of the token-0 rows, scattered into all N rows */
            be->copy(ctx, a->dA, a->dX, RC);
            be->zero(ctx, a->dX, NC);
            be->token0_backward(ctx, a->dX, a->dA, rows, C);
        }
        be->zero(ctx, a->dqkv, 3 * NC);
        be->attention_backward(ctx, a->dqkv, a->dR, s->att, s->att_saved, a->att_scratch, s->qkv, doff, cls, B, T, C,
                               NH, site(m, ap, 1 + 3 * l));
        /* dX (holding the residual part) += dqkv @ Wqkv */
        be->matmul_backward(ctx, need_dx ? a->dX : NULL, gw->qkv_w, gw->qkv_b, a->dqkv, x, w->qkv_w, (int)N, C,
                            3 * C);
        for (int j = 0; li && j < 3; j++)
            lora_bwd(m, li[j], need_dx ? a->dX : NULL, at(a->dqkv, (size_t)j * C, ctx->act), 3 * C, x, s->lora_u[j], rows,
                     C, C, lora_stream(l, j));
    }

    if (lowest == 0) {
        const lnn_top_params *g = &m->g.top;
        if (hp > 0.f) be->dropout_backward(ctx, a->dX, a->dX, rows, C, site(m, hp, 0));
        be->zero(ctx, a->dR, NC);
        be->layernorm_backward(ctx, a->dR, g->emb_ln_w, g->emb_ln_b, a->dX, a->emb_res, m->p.top.emb_ln_w,
                               a->emb_mean, a->emb_rstd, (int)N, C);
        be->embedding_backward(ctx, g->wte, g->wpe, bert ? g->wtt : NULL, a->dR, a->ids, dtypes, a->pos, (int)N, C,
                               c->pad_id, m->has_emb_index ? m->emb_index : NULL);
    }
    return LNN_OK;
}

/* ------------------------------------------------------------------ the body interface */

static lnn_status enc_forward(lnn_body *b, const lnn_batch *in, int train, uint64_t seed, uint32_t step, int unpad,
                              unsigned read) {
    return lnn_model_forward((lnn_model *)b, in, train, seed, step, unpad, read, NULL);
}

static lnn_status enc_backward(lnn_body *b, int has_dout, const void *dpooled) {
    return lnn_model_backward((lnn_model *)b, has_dout, dpooled);
}

static void enc_clear_dout(lnn_body *b) {
    lnn_model *m = (lnn_model *)b;
    size_t rows = m->fwd_cls ? (size_t)m->fwd_B : m->fwd_N;
    b->ctx.be->zero(&b->ctx, m->a.dX, rows * m->cfg.C * lnn_dtype_size(b->ctx.act));
}

static int enc_trainable(const lnn_body *b) {
    const lnn_model *m = (const lnn_model *)b;
    return lowest_trainable_level(m) <= m->cfg.n_layers || m->g.top.pool_w || m->g.top.pool_b ||
           lora_trains(m, m->lora_pool_idx);
}

/* ------------------------------------------------------------------ the host boundary */

/* Move the rows of the last hidden state between the backend (x) and host (B,T,C), sequence by
 * sequence when packed or token-0 only. to_host also zeroes the positions that were not computed
 * (padding when packed, all but token 0 when the last layer ran for token 0 only); the other way
 * (gradients) leaves them out. */
static void rows_move(lnn_model *m, float *host, void *x, int to_host) {
    size_t C = (size_t)m->cfg.C, T = (size_t)m->fwd_T;
    lnn_dtype A = m->body.ctx.act;
    if (!m->fwd_cls && !m->fwd_packed) {
        if (to_host) lnn_body_to_host_act(&m->body, host, x, m->fwd_N * C);
        else lnn_body_to_device_act(&m->body, x, host, m->fwd_N * C);
        return;
    }
    for (int b = 0; b < m->fwd_B; b++) {
        size_t r0 = m->fwd_cls ? (size_t)b : (size_t)m->host_off[b];
        size_t L = m->fwd_cls ? 1 : (size_t)(m->host_off[b + 1] - m->host_off[b]);
        float *h = host + b * T * C;
        if (to_host) {
            lnn_body_to_host_act(&m->body, h, at(x, r0 * C, A), L * C);
            memset(h + L * C, 0, (T - L) * C * sizeof(float));
        } else {
            lnn_body_to_device_act(&m->body, at(x, r0 * C, A), h, L * C);
        }
    }
}

lnn_status lnn_model_read_last(lnn_model *m, float *host) {
    rows_move(m, host, m->body.out, 1);
    return lnn_sync(&m->body.ctx);
}

lnn_status lnn_model_read_pooled(lnn_model *m, float *host) {
    if (!m->body.pooled) {
        lnn_set_error("this encoder has no pooler");
        return LNN_ERR_VALUE;
    }
    lnn_body_to_host_act(&m->body, host, m->body.pooled, (size_t)m->fwd_B * m->cfg.C);
    return lnn_sync(&m->body.ctx);
}

lnn_status lnn_model_backward_host(lnn_model *m, const float *dlast, const float *dpooled) {
    if (!m->body.has_train_forward || !m->train_layout) {
        lnn_set_error("backward() needs a training forward first: call the encoder with train=True, then backward()");
        return LNN_ERR_RUNTIME;
    }
    if (dlast) rows_move(m, (float *)dlast, m->a.dX, 0);
    if (dpooled) lnn_body_to_device_act(&m->body, m->a.dpool, dpooled, (size_t)m->fwd_B * m->cfg.C);
    lnn_status st = lnn_model_backward(m, dlast != NULL, dpooled ? m->a.dpool : NULL);
    lnn_status st2 = lnn_sync(&m->body.ctx);
    return st ? st : st2;
}
