/* io/tokenizer.c: BERT WordPiece tokenizer core (see tokenizer.h for the pipeline).
 *
 * The vocab is a trie over code points: a double array for ASCII edges (one cache line per step)
 * plus an open-addressing hash of (node, code point) for the others. Greedy longest-match walks
 * the trie once per piece, so a word costs O(len * longest token) at most (words are capped at
 * max_input_chars_per_word); a per-thread cache of recent words skips the walk for repeats.
 * Normalization streams char by char; only runs of combining marks are buffered (canonical
 * reordering, sorted in linear time). No heap allocation happens per token: buffers grow
 * geometrically and batches copy their rows into per-thread arenas. */
#include "io/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/unicode_tables.h"

typedef struct {
    int32_t base;  /* ASCII children at base + c; -1: none */
    int32_t check; /* parent slot; -1 root, -2 reached by a non-ASCII edge, -3 free */
    int32_t term;  /* token id ending here, or -1 */
} da_node;

/* Per-thread cache of recent words -> their WordPiece tokens (words repeat a lot in real text). It
 * lives in thread-local storage, is tagged with the tokenizer's unique id, and is reset when another
 * tokenizer uses the thread. */
#define WC_SIZE 2048
#define WC_MAXLEN 16
#define WC_MAXTOK 8
typedef struct {
    uint32_t hash;
    uint8_t len, ntok;
    uint8_t ends[WC_MAXTOK];
    int32_t ids[WC_MAXTOK];
    uint32_t cp[WC_MAXLEN];
} wc_entry;

static _Thread_local wc_entry *tl_wc;
static _Thread_local uint64_t tl_wc_owner;
static uint64_t next_uid = 1;

struct lnn_tokenizer {
    lnn_tok_config cfg;
    uint64_t uid;          /* unique per tokenizer ever created (word-cache tag) */
    int strip;             /* resolved strip_accents */
    int64_t n_vocab;
    int32_t unk_id;
    /* trie: a double array for ASCII edges (node = slot; child = base[node] + c if check[child] == node)
     * plus a hash of (node, cp) -> child for the other edges. While building: all edges in the hash,
     * term[] per node. */
    da_node *da;
    int64_t da_size;
    int32_t *term;         /* build time only: node -> token id or -1 */
    int64_t n_nodes;
    uint64_t *keys;        /* (node << 21 | cp) + 1, 0 = empty */
    int32_t *vals;
    uint64_t mask;
    int hbits;
    int32_t root_ascii[128];
    int32_t cont;          /* node of the continuing prefix, -1 if absent */
    int32_t cont_ascii[128];
    /* added tokens */
    int n_added;
    uint32_t **added_cp;
    int *added_len;
    int32_t *added_id;
    uint8_t added_first_ascii[128];
    uint32_t added_min_nonascii; /* smallest non-ASCII first char, to skip quickly */
};

/* ---------- UTF-8 ---------- */

/* Decode one UTF-8 code point at s[*i] (n bytes); returns -1 on invalid input. */
static int64_t utf8_next(const unsigned char *s, size_t n, size_t *i) {
    size_t k = *i;
    unsigned c = s[k];
    uint32_t cp;
    int len;
    if (c < 0x80) { *i = k + 1; return c; }
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return -1;
    if (k + (size_t)len > n) return -1;
    for (int j = 1; j < len; j++) {
        unsigned d = s[k + (size_t)j];
        if ((d & 0xC0) != 0x80) return -1;
        cp = (cp << 6) | (d & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return -1;
    *i = k + (size_t)len;
    return cp;
}

/* ---------- trie ---------- */

static inline uint64_t hkey(int32_t node, uint32_t cp) { return (((uint64_t)node << 21) | cp) + 1; }

static inline uint64_t hslot(const lnn_tokenizer *t, uint64_t key) {
    return (key * 0x9E3779B97F4A7C15ull) >> (64 - t->hbits);
}

static inline int32_t hash_child(const lnn_tokenizer *t, int32_t node, uint32_t cp) {
    uint64_t key = hkey(node, cp);
    uint64_t s = hslot(t, key);
    for (;;) {
        uint64_t k = t->keys[s];
        if (k == key) return t->vals[s];
        if (k == 0) return -1;
        s = (s + 1) & t->mask;
    }
}

static int32_t trie_add_child(lnn_tokenizer *t, int32_t node, uint32_t cp) {
    uint64_t key = hkey(node, cp);
    uint64_t s = hslot(t, key);
    for (;;) {
        uint64_t k = t->keys[s];
        if (k == key) return t->vals[s];
        if (k == 0) break;
        s = (s + 1) & t->mask;
    }
    int32_t child = (int32_t)t->n_nodes++;
    t->term[child] = -1;
    t->keys[s] = key;
    t->vals[s] = child;
    return child;
}

/* Child of node by cp in the final trie, -1 if none. */
static inline int32_t trie_child(const lnn_tokenizer *t, int32_t node, uint32_t cp) {
    if (cp < 128) {
        int32_t b = t->da[node].base;
        if (b < 0) return -1;
        int32_t s = b + (int32_t)cp;
        return t->da[s].check == node ? s : -1;
    }
    return hash_child(t, node, cp);
}

static int da_reserve(lnn_tokenizer *t, int64_t need) {
    if (need <= t->da_size) return 0;
    int64_t cap = t->da_size ? t->da_size : 1024;
    while (cap < need) cap *= 2;
    if (cap > INT32_MAX) return -1;
    da_node *d = realloc(t->da, (size_t)cap * sizeof *d);
    if (!d) return -1;
    for (int64_t i = t->da_size; i < cap; i++) { d[i].base = -1; d[i].check = -3; d[i].term = -1; }
    t->da = d;
    t->da_size = cap;
    return 0;
}

/* Turn the build-time hash trie into the double array + a hash of the non-ASCII edges. */
static lnn_status build_da(lnn_tokenizer *t) {
    lnn_status st = LNN_ERR_MEMORY;
    int64_t N = t->n_nodes;
    uint64_t hsize = t->mask + 1;
    int64_t *start = calloc((size_t)N + 2, sizeof *start);
    uint32_t *ecp = NULL;
    int32_t *ech = NULL, *slot_of = NULL, *queue = NULL;
    uint64_t *nkeys = NULL;
    int32_t *nvals = NULL;
    int64_t E = 0, E_na = 0;
    if (!start) goto done;
    for (uint64_t s = 0; s < hsize; s++)
        if (t->keys[s]) {
            start[((t->keys[s] - 1) >> 21) + 1]++;
            E++;
            if (((t->keys[s] - 1) & 0x1FFFFF) >= 128) E_na++;
        }
    for (int64_t i = 0; i < N; i++) start[i + 1] += start[i];
    ecp = malloc(((size_t)E + 1) * sizeof *ecp);
    ech = malloc(((size_t)E + 1) * sizeof *ech);
    slot_of = malloc(((size_t)N + 1) * sizeof *slot_of);
    queue = malloc(((size_t)N + 1) * sizeof *queue);
    if (!ecp || !ech || !slot_of || !queue) goto done;
    {
        int64_t *fill = calloc((size_t)N + 1, sizeof *fill);
        if (!fill) goto done;
        for (uint64_t s = 0; s < hsize; s++)
            if (t->keys[s]) {
                int64_t p = (int64_t)((t->keys[s] - 1) >> 21);
                int64_t k = start[p] + fill[p]++;
                ecp[k] = (uint32_t)((t->keys[s] - 1) & 0x1FFFFF);
                ech[k] = t->vals[s];
            }
        free(fill);
    }
    int hb = 4;
    while (((uint64_t)1 << hb) < 2 * (uint64_t)E_na + 16) hb++;
    nkeys = calloc((size_t)1 << hb, sizeof *nkeys);
    nvals = malloc(((size_t)1 << hb) * sizeof *nvals);
    if (!nkeys || !nvals) goto done;
    if (da_reserve(t, 2 * N + 256)) goto done;
    t->da[0].check = -1;
    slot_of[0] = 0;
    int64_t qh = 0, qt = 0, first_free = 1;
    queue[qt++] = 0;
    while (qh < qt) {
        int32_t p = queue[qh++];
        int32_t ps = slot_of[p];
        t->da[ps].term = t->term[p];
        int minc = 128, nasc = 0;
        for (int64_t k = start[p]; k < start[p + 1]; k++)
            if (ecp[k] < 128) { nasc++; if ((int)ecp[k] < minc) minc = (int)ecp[k]; }
        if (nasc) {
            int64_t b = first_free - minc;
            if (b < 1) b = 1;
            for (;; b++) {
                if (da_reserve(t, b + 129)) goto done;
                int ok = 1;
                for (int64_t k = start[p]; k < start[p + 1] && ok; k++)
                    if (ecp[k] < 128 && t->da[b + ecp[k]].check != -3) ok = 0;
                if (ok) break;
            }
            if (b + 128 >= INT32_MAX) goto done;
            t->da[ps].base = (int32_t)b;
            for (int64_t k = start[p]; k < start[p + 1]; k++)
                if (ecp[k] < 128) {
                    int32_t s = (int32_t)(b + ecp[k]);
                    t->da[s].check = ps;
                    slot_of[ech[k]] = s;
                    queue[qt++] = ech[k];
                }
        }
        for (int64_t k = start[p]; k < start[p + 1]; k++) {
            if (ecp[k] < 128) continue;
            while (first_free < t->da_size && t->da[first_free].check != -3) first_free++;
            if (da_reserve(t, first_free + 129)) goto done;
            int32_t s = (int32_t)first_free;
            t->da[s].check = -2;
            slot_of[ech[k]] = s;
            queue[qt++] = ech[k];
            uint64_t key = hkey(ps, ecp[k]);
            uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> (64 - hb);
            while (nkeys[h]) h = (h + 1) & (((uint64_t)1 << hb) - 1);
            nkeys[h] = key;
            nvals[h] = s;
        }
        while (first_free < t->da_size && t->da[first_free].check != -3) first_free++;
    }
    free(t->keys); free(t->vals); free(t->term);
    t->term = NULL;
    t->keys = nkeys; t->vals = nvals; nkeys = NULL; nvals = NULL;
    t->hbits = hb;
    t->mask = ((uint64_t)1 << hb) - 1;
    st = LNN_OK;
done:
    if (st) lnn_set_error("out of memory building the vocab trie");
    free(start); free(ecp); free(ech); free(slot_of); free(queue); free(nkeys); free(nvals);
    return st;
}

/* Walk cps[0..n) from the root; -1 if absent. */
static int32_t trie_find(const lnn_tokenizer *t, const uint32_t *cps, int64_t n) {
    int32_t node = 0;
    for (int64_t i = 0; i < n && node >= 0; i++) node = trie_child(t, node, cps[i]);
    return node;
}

void lnn_tok_free(lnn_tokenizer *t) {
    if (!t) return;
    free(t->term);
    free(t->da);
    free(t->keys);
    free(t->vals);
    if (t->added_cp)
        for (int i = 0; i < t->n_added; i++) free(t->added_cp[i]);
    free(t->added_cp);
    free(t->added_len);
    free(t->added_id);
    free(t);
}

int64_t lnn_tok_vocab_size(const lnn_tokenizer *t) { return t->n_vocab; }
int32_t lnn_tok_unk_id(const lnn_tokenizer *t) { return t->unk_id; }

/* Decode a NUL-terminated UTF-8 string into a malloc'd code point array. */
static lnn_status decode_cstr(const char *s, const char *what, uint32_t **out, int *n_out) {
    size_t n = strlen(s), i = 0;
    uint32_t *cps = malloc((n + 1) * sizeof *cps);
    if (!cps) { lnn_set_error("out of memory"); return LNN_ERR_MEMORY; }
    int k = 0;
    while (i < n) {
        int64_t cp = utf8_next((const unsigned char *)s, n, &i);
        if (cp < 0) { free(cps); lnn_set_error("%s is not valid UTF-8", what); return LNN_ERR_VALUE; }
        cps[k++] = (uint32_t)cp;
    }
    *out = cps;
    *n_out = k;
    return LNN_OK;
}

lnn_status lnn_tok_create(const lnn_tok_config *cfg, const char *vocab, size_t nbytes, lnn_tokenizer **out) {
    *out = NULL;
    if (!cfg || !cfg->unk_token || !cfg->continuing_prefix || (cfg->n_added > 0 && (!cfg->added_tokens || !cfg->added_ids)) ||
        cfg->n_added < 0) {
        lnn_set_error("tokenizer config is incomplete (unk_token, continuing_prefix and added tokens are required)");
        return LNN_ERR_VALUE;
    }
    if (!vocab || nbytes == 0) { lnn_set_error("the vocab is empty: expected one token per line"); return LNN_ERR_VALUE; }
    if (nbytes > ((size_t)1 << 40)) { lnn_set_error("the vocab is too large"); return LNN_ERR_VALUE; }
    lnn_tokenizer *t = calloc(1, sizeof *t);
    if (!t) { lnn_set_error("out of memory"); return LNN_ERR_MEMORY; }
    t->cfg = *cfg;
    t->uid = __atomic_fetch_add(&next_uid, 1, __ATOMIC_RELAXED);
    t->cfg.added_tokens = NULL; t->cfg.added_ids = NULL; t->cfg.unk_token = NULL; t->cfg.continuing_prefix = NULL;
    t->strip = cfg->strip_accents < 0 ? (cfg->lowercase != 0) : (cfg->strip_accents != 0);
    if (t->cfg.max_input_chars_per_word < 0) t->cfg.max_input_chars_per_word = 0;
    lnn_status st = LNN_OK;
    const unsigned char *v = (const unsigned char *)vocab;

    /* Upper bounds: nodes <= code points + 1 (<= bytes + 1). */
    uint64_t cap_nodes = (uint64_t)nbytes + 2;
    if (cap_nodes > ((uint64_t)1 << 31) - 2) { lnn_free(t); lnn_set_error("the vocab is too large"); return LNN_ERR_VALUE; }
    int hbits = 4;
    while (((uint64_t)1 << hbits) < 2 * cap_nodes + 16) hbits++;
    t->hbits = hbits;
    t->mask = ((uint64_t)1 << hbits) - 1;
    t->term = malloc(cap_nodes * sizeof *t->term);
    t->keys = calloc((size_t)1 << hbits, sizeof *t->keys);
    t->vals = malloc(((size_t)1 << hbits) * sizeof *t->vals);
    if (!t->term || !t->keys || !t->vals) { st = LNN_ERR_MEMORY; lnn_set_error("out of memory building the vocab trie"); goto fail; }
    t->n_nodes = 1;
    t->term[0] = -1;

    int64_t line = 0;
    size_t pos = 0;
    while (pos < nbytes) {
        size_t end = pos;
        while (end < nbytes && v[end] != '\n') end++;
        size_t tend = end;
        if (tend > pos && v[tend - 1] == '\r') tend--;
        if (line >= INT32_MAX) { st = LNN_ERR_VALUE; lnn_set_error("the vocab has too many tokens"); goto fail; }
        int32_t node = 0;
        size_t i = pos;
        while (i < tend) {
            int64_t cp = utf8_next(v, tend, &i);
            if (cp < 0) {
                st = LNN_ERR_VALUE;
                lnn_set_error("vocab line %lld (token id %lld) is not valid UTF-8 (byte %zu of the file); "
                              "the vocab file must be UTF-8 text", (long long)line + 1, (long long)line, i);
                goto fail;
            }
            node = trie_add_child(t, node, (uint32_t)cp);
        }
        if (t->term[node] >= 0) {
            st = LNN_ERR_VALUE;
            int shown = (int)(tend - pos > 60 ? 60 : tend - pos);
            lnn_set_error("duplicate token '%.*s' in the vocab: ids %d and %lld (lines %d and %lld); "
                          "each token must appear once", shown, (const char *)v + pos, t->term[node],
                          (long long)line, t->term[node] + 1, (long long)line + 1);
            goto fail;
        }
        t->term[node] = (int32_t)line;
        line++;
        pos = end + 1;
    }
    t->n_vocab = line;
    if ((st = build_da(t))) goto fail;

    /* unk */
    {
        uint32_t *cps; int n;
        if ((st = decode_cstr(cfg->unk_token, "unk_token", &cps, &n))) goto fail;
        int32_t node = n > 0 ? trie_find(t, cps, n) : -1;
        free(cps);
        if (node < 0 || t->da[node].term < 0) {
            st = LNN_ERR_VALUE;
            lnn_set_error("the unknown token '%.60s' is not in the vocab; add it (BERT vocabs have [UNK]) "
                          "or set unk_token", cfg->unk_token);
            goto fail;
        }
        t->unk_id = t->da[node].term;
    }
    /* continuing prefix */
    {
        uint32_t *cps; int n;
        if ((st = decode_cstr(cfg->continuing_prefix, "continuing_subword_prefix", &cps, &n))) goto fail;
        t->cont = trie_find(t, cps, n);
        free(cps);
    }
    for (int c = 0; c < 128; c++) {
        t->root_ascii[c] = trie_child(t, 0, (uint32_t)c);
        t->cont_ascii[c] = t->cont >= 0 ? trie_child(t, t->cont, (uint32_t)c) : -1;
    }
    /* added tokens */
    t->n_added = cfg->n_added;
    t->added_min_nonascii = 0xFFFFFFFFu;
    if (cfg->n_added > 0) {
        t->added_cp = calloc((size_t)cfg->n_added, sizeof *t->added_cp);
        t->added_len = calloc((size_t)cfg->n_added, sizeof *t->added_len);
        t->added_id = calloc((size_t)cfg->n_added, sizeof *t->added_id);
        if (!t->added_cp || !t->added_len || !t->added_id) { st = LNN_ERR_MEMORY; lnn_set_error("out of memory"); goto fail; }
        for (int k = 0; k < cfg->n_added; k++) {
            if ((st = decode_cstr(cfg->added_tokens[k], "an added token", &t->added_cp[k], &t->added_len[k]))) goto fail;
            if (t->added_len[k] == 0) { st = LNN_ERR_VALUE; lnn_set_error("added token %d is empty", k); goto fail; }
            if (cfg->added_ids[k] < 0) { st = LNN_ERR_VALUE; lnn_set_error("added token %d has a negative id", k); goto fail; }
            t->added_id[k] = cfg->added_ids[k];
            uint32_t f = t->added_cp[k][0];
            if (f < 128) t->added_first_ascii[f] = 1;
            else if (f < t->added_min_nonascii) t->added_min_nonascii = f;
        }
    }
    *out = t;
    return LNN_OK;
fail:
    lnn_tok_free(t);
    return st;
}

/* ---------- sequences and scratch ---------- */

void lnn_tok_seq_free(lnn_tok_seq *s) {
    free(s->ids);
    free(s->offs);
    s->ids = NULL; s->offs = NULL; s->n = s->cap = 0;
}

static int seq_grow(lnn_tok_seq *s, int64_t need) {
    if (need <= s->cap) return 0;
    int64_t cap = s->cap ? s->cap : 64;
    while (cap < need) cap *= 2;
    int32_t *ids = realloc(s->ids, (size_t)cap * sizeof *ids);
    if (!ids) return -1;
    s->ids = ids;
    int32_t *offs = realloc(s->offs, (size_t)cap * 2 * sizeof *offs);
    if (!offs) return -1;
    s->offs = offs;
    s->cap = cap;
    return 0;
}

static inline int seq_push(lnn_tok_seq *s, int32_t id, int32_t a, int32_t b) {
    if (s->n >= s->cap && seq_grow(s, s->n + 1)) return -1;
    s->ids[s->n] = id;
    s->offs[2 * s->n] = a;
    s->offs[2 * s->n + 1] = b;
    s->n++;
    return 0;
}

void lnn_tok_work_free(lnn_tok_work *w) {
    free(w->cp); free(w->orig);
    free(w->rcp); free(w->rccc); free(w->rchg); free(w->rsrc);
    free(w->tmp_cp); free(w->tmp_ccc); free(w->tmp_chg);
    memset(w, 0, sizeof *w);
}

/* ---------- encoding ---------- */

typedef struct {
    const lnn_tokenizer *t;
    lnn_tok_work *w;
    lnn_tok_seq *out;
    int64_t wlen;      /* chars in the current word (may exceed the stored capacity) */
    int32_t last_src;  /* original index of the last char NFD consumed (alignment of inserted chars) */
    int32_t first_orig, last_orig;
    int64_t limit;
    int oom;
    wc_entry *wc;      /* word cache or NULL */
} enc_state;

/* WordPiece over the stored word; appends tokens. */
static void flush_word(enc_state *S) {
    if (S->wlen == 0) return;
    const lnn_tokenizer *t = S->t;
    lnn_tok_work *w = S->w;
    int64_t n = S->wlen;
    S->wlen = 0;
    if (n > t->cfg.max_input_chars_per_word) {
        if (seq_push(S->out, t->unk_id, S->first_orig, S->last_orig + 1)) S->oom = 1;
        return;
    }
    const uint32_t *cp = w->cp;
    int64_t n0 = S->out->n;
    wc_entry *e = NULL;
    uint32_t h = 0;
    if (S->wc && n <= WC_MAXLEN) {
        h = 2166136261u;
        for (int64_t k = 0; k < n; k++) h = (h ^ cp[k]) * 16777619u;
        e = &S->wc[(h ^ (h >> 15)) & (WC_SIZE - 1)];
        if (e->len == n && e->hash == h && !memcmp(e->cp, cp, (size_t)n * sizeof *cp)) {
            int64_t st = 0;
            for (int k = 0; k < e->ntok; k++) {
                if (seq_push(S->out, e->ids[k], w->orig[st], w->orig[e->ends[k] - 1] + 1)) { S->oom = 1; return; }
                st = e->ends[k];
            }
            return;
        }
    }
    int64_t start = 0;
    uint8_t ends[WC_MAXTOK];
    int nends = 0;
    while (start < n) {
        int32_t node;
        uint32_t c = cp[start];
        if (start == 0) node = c < 128 ? t->root_ascii[c] : trie_child(t, 0, c);
        else node = t->cont < 0 ? -1 : (c < 128 ? t->cont_ascii[c] : trie_child(t, t->cont, c));
        int64_t best_end = -1;
        int32_t best_id = -1;
        int64_t i = start + 1;
        while (node >= 0) {
            int32_t tid = t->da[node].term;
            if (tid >= 0) { best_end = i; best_id = tid; }
            if (i >= n) break;
            node = trie_child(t, node, cp[i]);
            i++;
        }
        if (best_end < 0) {
            S->out->n = n0; /* the whole word becomes unk */
            if (seq_push(S->out, t->unk_id, w->orig[0], w->orig[n - 1] + 1)) { S->oom = 1; return; }
            ends[0] = (uint8_t)n;
            nends = 1;
            break;
        }
        if (seq_push(S->out, best_id, w->orig[start], w->orig[best_end - 1] + 1)) { S->oom = 1; return; }
        if (nends < WC_MAXTOK) ends[nends] = (uint8_t)best_end;
        nends++;
        start = best_end;
    }
    if (e && nends <= WC_MAXTOK) { /* remember this word */
        e->hash = h;
        e->len = (uint8_t)n;
        e->ntok = (uint8_t)nends;
        memcpy(e->cp, cp, (size_t)n * sizeof *cp);
        for (int k = 0; k < nends; k++) {
            e->ids[k] = S->out->ids[n0 + k];
            e->ends[k] = ends[k];
        }
    }
}

static inline int word_reserve(enc_state *S) {
    lnn_tok_work *w = S->w;
    int64_t need = (int64_t)S->t->cfg.max_input_chars_per_word + 8;
    if (w->cap >= need) return 0;
    uint32_t *cp = realloc(w->cp, (size_t)need * sizeof *cp);
    if (cp) w->cp = cp;
    int32_t *orig = realloc(w->orig, (size_t)need * sizeof *orig);
    if (orig) w->orig = orig;
    if (!cp || !orig) return -1;
    w->cap = need;
    return 0;
}

/* Append one normalized char to the current word. */
static inline void word_append(enc_state *S, uint32_t c, int32_t orig) {
    lnn_tok_work *w = S->w;
    int64_t n = S->wlen;
    if (n == 0) S->first_orig = orig;
    if (n < w->cap) {
        w->cp[n] = c;
        w->orig[n] = orig;
    }
    S->last_orig = orig;
    S->wlen = n + 1;
}

/* Route one fully normalized char through the pre-tokenizer. */
static inline void pretok_char(enc_state *S, uint32_t c, int32_t orig) {
    uint32_t f = lnn_uc_flags_inline(c);
    if (f & LNN_UC_WHITESPACE) {
        flush_word(S);
    } else if (f & LNN_UC_PUNCT) {
        flush_word(S);
        word_append(S, c, orig);
        flush_word(S);
    } else {
        word_append(S, c, orig);
    }
}

/* Lowercase (if on) then pre-tokenize. */
static inline void lower_char(enc_state *S, uint32_t c, int32_t orig) {
    if (S->t->cfg.lowercase) {
        if (c < 128) {
            if (c - 'A' < 26u) c += 32;
        } else if (lnn_uc_flags_inline(c) & LNN_UC_HAS_LOWER) {
            uint32_t l[3];
            int k = lnn_uc_lower(c, l);
            for (int j = 0; j < k; j++) pretok_char(S, l[j], orig);
            return;
        }
    }
    pretok_char(S, c, orig);
}

/* Canonical ordering as tokenizers does it: the run of non-starters is stably sorted by combining
 * class, but alignments are handed out in output order: each char that NFD did not insert takes the
 * next original char (input order), an inserted one (chg) shares the last taken. Then Mn are dropped
 * and the rest lowercased. */
static void run_flush(enc_state *S) {
    lnn_tok_work *w = S->w;
    int64_t n = w->rn;
    if (n == 0) return;
    w->rn = 0;
    uint32_t *cp = w->rcp;
    uint8_t *ccc = w->rccc, *chg = w->rchg;
    if (n <= 32) { /* stable insertion sort */
        for (int64_t i = 1; i < n; i++) {
            uint32_t c = cp[i];
            uint8_t k = ccc[i], g = chg[i];
            int64_t j = i;
            while (j > 0 && ccc[j - 1] > k) { cp[j] = cp[j - 1]; ccc[j] = ccc[j - 1]; chg[j] = chg[j - 1]; j--; }
            cp[j] = c; ccc[j] = k; chg[j] = g;
        }
    } else { /* stable counting sort, linear in the run */
        int64_t cnt[257] = {0};
        for (int64_t i = 0; i < n; i++) cnt[ccc[i] + 1]++;
        for (int b = 0; b < 256; b++) cnt[b + 1] += cnt[b];
        for (int64_t i = 0; i < n; i++) {
            int64_t p = cnt[ccc[i]]++;
            w->tmp_cp[p] = cp[i]; w->tmp_ccc[p] = ccc[i]; w->tmp_chg[p] = chg[i];
        }
        memcpy(cp, w->tmp_cp, (size_t)n * sizeof *cp);
        memcpy(ccc, w->tmp_ccc, (size_t)n);
        memcpy(chg, w->tmp_chg, (size_t)n);
    }
    int64_t q = 0;
    int32_t last = S->last_src;
    for (int64_t i = 0; i < n; i++) {
        if (!chg[i] && q < w->rnsrc) last = w->rsrc[q++];
        if (lnn_uc_flags_inline(cp[i]) & LNN_UC_MN) continue;
        lower_char(S, cp[i], last);
    }
    if (w->rnsrc) S->last_src = w->rsrc[w->rnsrc - 1];
    w->rnsrc = 0;
}

static int run_grow(lnn_tok_work *w) {
    int64_t cap = w->rcap ? 2 * w->rcap : 16;
    uint32_t *a = realloc(w->rcp, (size_t)cap * sizeof *a); if (a) w->rcp = a;
    uint8_t *b = realloc(w->rccc, (size_t)cap); if (b) w->rccc = b;
    uint8_t *c = realloc(w->rchg, (size_t)cap); if (c) w->rchg = c;
    int32_t *d = realloc(w->rsrc, (size_t)cap * sizeof *d); if (d) w->rsrc = d;
    uint32_t *e = realloc(w->tmp_cp, (size_t)cap * sizeof *e); if (e) w->tmp_cp = e;
    uint8_t *f = realloc(w->tmp_ccc, (size_t)cap); if (f) w->tmp_ccc = f;
    uint8_t *g = realloc(w->tmp_chg, (size_t)cap); if (g) w->tmp_chg = g;
    if (!a || !b || !c || !d || !e || !f || !g) return -1;
    w->rcap = cap;
    return 0;
}

/* A word boundary outside the pre-tokenizer (whitespace, CJK padding, added token, end of text). */
static inline void boundary(enc_state *S) {
    if (S->w->rn) run_flush(S);
    flush_word(S);
}

/* Strip accents (NFD, canonical order, drop Mn) if on, then lowercase. */
static inline void strip_char(enc_state *S, uint32_t c, int32_t orig) {
    if (!S->t->strip || c < 128) {
        if (S->w->rn) run_flush(S);
        S->last_src = orig;
        lower_char(S, c, orig);
        return;
    }
    uint32_t d[4];
    int k = 1;
    d[0] = c;
    if (lnn_uc_flags_inline(c) & LNN_UC_HAS_NFD) k = lnn_uc_nfd(c, d);
    for (int j = 0; j < k; j++) {
        uint8_t ccc = lnn_uc_ccc(d[j]);
        if (ccc) {
            lnn_tok_work *w = S->w;
            if (w->rn >= w->rcap || w->rnsrc >= w->rcap) {
                if (run_grow(w)) { S->oom = 1; return; }
            }
            w->rcp[w->rn] = d[j]; w->rccc[w->rn] = ccc; w->rchg[w->rn] = (uint8_t)(j > 0);
            w->rn++;
            if (j == 0) w->rsrc[w->rnsrc++] = orig;
            continue;
        }
        if (S->w->rn) run_flush(S);
        if (j == 0) S->last_src = orig;
        if (lnn_uc_flags_inline(d[j]) & LNN_UC_MN) continue;
        lower_char(S, d[j], S->last_src);
    }
}

/* clean_text and handle_chinese_chars for one raw char. */
static inline void raw_char(enc_state *S, uint32_t c, int32_t orig) {
    const lnn_tokenizer *t = S->t;
    uint32_t f = lnn_uc_flags_inline(c);
    if (t->cfg.clean_text) {
        if (f & LNN_UC_CONTROL) return;
        if (f & LNN_UC_WHITESPACE) { boundary(S); S->last_src = orig; return; }
    }
    if ((f & LNN_UC_CJK) && t->cfg.handle_chinese_chars) {
        boundary(S);
        strip_char(S, c, orig);
        boundary(S);
        return;
    }
    strip_char(S, c, orig);
}

static inline uint32_t rd(const void *d, int kind, int64_t i) {
    return kind == 1 ? ((const uint8_t *)d)[i] : kind == 2 ? ((const uint16_t *)d)[i] : ((const uint32_t *)d)[i];
}

/* Length of the longest added token matching at i, its index in *which; 0 if none. */
static inline int match_added(const lnn_tokenizer *t, const void *d, int kind, int64_t len, int64_t i, int *which) {
    int best = 0;
    for (int k = 0; k < t->n_added; k++) {
        int n = t->added_len[k];
        if (n <= best || i + n > len) continue;
        const uint32_t *a = t->added_cp[k];
        int j = 0;
        while (j < n && rd(d, kind, i + j) == a[j]) j++;
        if (j == n) { best = n; *which = k; }
    }
    return best;
}

static __attribute__((always_inline)) inline lnn_status encode_kind(const lnn_tokenizer *t, const void *d, const int kind,
                                                                    int64_t len, enc_state *S) {
    const int has_added = t->n_added > 0;
    for (int64_t i = 0; i < len; i++) {
        uint32_t c = rd(d, kind, i);
        if (has_added && (c < 128 ? t->added_first_ascii[c] : c >= t->added_min_nonascii)) {
            int k = -1;
            int m = match_added(t, d, kind, len, i, &k);
            if (m) {
                boundary(S);
                if (seq_push(S->out, t->added_id[k], (int32_t)i, (int32_t)(i + m))) S->oom = 1;
                i += m - 1;
                goto next;
            }
        }
        if (c < 128) {
            /* ASCII fast path: flags are in a table, strip/NFD is the identity. */
            uint32_t f = lnn_uc_ascii_flags[c];
            if (f & (LNN_UC_CONTROL | LNN_UC_WHITESPACE | LNN_UC_PUNCT)) {
                raw_char(S, c, (int32_t)i);
            } else {
                if (S->w->rn) run_flush(S);
                if (t->cfg.lowercase && c - 'A' < 26u) c += 32;
                word_append(S, c, (int32_t)i);
            }
        } else {
            raw_char(S, c, (int32_t)i);
        }
    next:
        if (S->oom) break;
        if (S->limit >= 0 && S->out->n >= S->limit) return LNN_OK;
    }
    boundary(S);
    return LNN_OK;
}

lnn_status lnn_tok_encode(const lnn_tokenizer *t, const void *text, int kind, int64_t len, int64_t limit,
                          lnn_tok_work *w, lnn_tok_seq *out) {
    out->n = 0;
    if (len < 0 || (len > 0 && !text) || (kind != 1 && kind != 2 && kind != 4)) {
        lnn_set_error("bad text buffer (kind %d, length %lld)", kind, (long long)len);
        return LNN_ERR_VALUE;
    }
    if (len >= INT32_MAX) { lnn_set_error("text too long (%lld characters; at most 2^31-2)", (long long)len); return LNN_ERR_VALUE; }
    if (kind != 1) {
        for (int64_t i = 0; i < len; i++) {
            uint32_t c = rd(text, kind, i);
            if (c - 0xD800u < 0x800u) {
                lnn_set_error("lone surrogate U+%04X at index %lld cannot be tokenized; fix the text's "
                              "encoding (e.g. s.encode('utf-16', 'surrogatepass').decode('utf-16'))",
                              (unsigned)c, (long long)i);
                return LNN_ERR_VALUE;
            }
            if (c > 0x10FFFF) { lnn_set_error("invalid code point at index %lld", (long long)i); return LNN_ERR_VALUE; }
        }
    }
    enc_state S = {t, w, out, 0, 0, 0, 0, limit, 0, NULL};
    w->rn = w->rnsrc = 0;
    if (len >= 64) { /* the word cache pays off on texts with repeated words */
        if (!tl_wc) tl_wc = calloc(WC_SIZE, sizeof *tl_wc);
        else if (tl_wc_owner != t->uid) memset(tl_wc, 0, WC_SIZE * sizeof *tl_wc);
        if (tl_wc) tl_wc_owner = t->uid;
        S.wc = tl_wc;
    }
    if (word_reserve(&S)) { lnn_set_error("out of memory"); return LNN_ERR_MEMORY; }
    if (limit == 0) return LNN_OK;
    if (kind == 1) encode_kind(t, text, 1, len, &S);
    else if (kind == 2) encode_kind(t, text, 2, len, &S);
    else encode_kind(t, text, 4, len, &S);
    if (S.oom) { lnn_set_error("out of memory while tokenizing"); return LNN_ERR_MEMORY; }
    if (limit >= 0 && out->n > limit) out->n = limit;
    return LNN_OK;
}

/* ---------- post-processing ---------- */

lnn_status lnn_tok_truncate(int strategy, int64_t max_len, int64_t na, int64_t nb, int64_t *keep_a, int64_t *keep_b) {
    *keep_a = na;
    *keep_b = nb;
    if (strategy == LNN_TRUNC_NONE) return LNN_OK;
    if (max_len <= 0) { /* tokenizers: max_length 0 empties both */
        *keep_a = 0;
        if (nb >= 0) *keep_b = 0;
        return LNN_OK;
    }
    int64_t total = na + (nb > 0 ? nb : 0);
    if (total <= max_len) return LNN_OK;
    int64_t to_remove = total - max_len;
    if (strategy == LNN_TRUNC_HEAD_TAIL && nb >= 0) {
        lnn_set_error("truncation='head_tail' takes single texts, not pairs; use 'longest_first', 'only_first' or "
                      "'only_second' with text_pair");
        return LNN_ERR_VALUE;
    }
    if (strategy == LNN_TRUNC_LONGEST_FIRST || strategy == LNN_TRUNC_HEAD_TAIL) {
        if (nb >= 0) {
            int64_t n1 = na, n2 = nb;
            int swap = 0;
            if (n1 > n2) { swap = 1; int64_t x = n1; n1 = n2; n2 = x; }
            if (n1 > max_len) n2 = n1;
            else n2 = n1 > max_len - n1 ? n1 : max_len - n1;
            if (n1 + n2 > max_len) { n1 = max_len / 2; n2 = n1 + max_len % 2; }
            if (swap) { int64_t x = n1; n1 = n2; n2 = x; }
            *keep_a = n1 < na ? n1 : na;
            *keep_b = n2 < nb ? n2 : nb;
        } else {
            *keep_a = na - to_remove;
        }
        return LNN_OK;
    }
    if (strategy == LNN_TRUNC_ONLY_SECOND && nb < 0) {
        lnn_set_error("Truncation error: Second sequence not provided (truncation='only_second' needs text_pair)");
        return LNN_ERR_VALUE;
    }
    int64_t tl = strategy == LNN_TRUNC_ONLY_FIRST ? na : nb;
    if (tl <= to_remove) {
        lnn_set_error("Truncation error: Sequence to truncate too short to respect the provided max_length "
                      "(truncation='%s' would have to remove %lld of its %lld tokens; raise max_length or use "
                      "truncation='longest_first')", strategy == LNN_TRUNC_ONLY_FIRST ? "only_first" : "only_second",
                      (long long)to_remove, (long long)tl);
        return LNN_ERR_VALUE;
    }
    if (strategy == LNN_TRUNC_ONLY_FIRST) *keep_a = na - to_remove;
    else *keep_b = nb - to_remove;
    return LNN_OK;
}

/* A thread's arena: a list of large blocks; rows copy their kept tokens here. */
typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    int32_t data[];
} arena_block;

struct lnn_tok_batch_mem {
    int nth;
    arena_block **heads; /* one list per thread */
};

static int32_t *arena_alloc(arena_block **head, size_t n) {
    arena_block *b = *head;
    if (!b || b->cap - b->used < n) {
        /* blocks grow from 16 KiB to 4 MiB, so a one-text batch stays cheap */
        size_t cap = b ? (b->cap < ((size_t)1 << 20) ? 2 * b->cap : b->cap) : ((size_t)1 << 12);
        if (cap < n) cap = n;
        arena_block *nb = malloc(sizeof *nb + cap * sizeof(int32_t));
        if (!nb) return NULL;
        nb->next = b;
        nb->used = 0;
        nb->cap = cap;
        *head = b = nb;
    }
    int32_t *p = b->data + b->used;
    b->used += n;
    return p;
}

void lnn_tok_batch_mem_free(lnn_tok_batch_mem *m) {
    if (!m) return;
    for (int k = 0; k < m->nth; k++) {
        arena_block *b = m->heads[k];
        while (b) {
            arena_block *nx = b->next;
            free(b);
            b = nx;
        }
    }
    free(m->heads);
    free(m);
}

/* Per-thread state of a batch. */
typedef struct {
    lnn_tok_work w;
    lnn_tok_seq sa, sb;
} thread_scratch;

/* Windows of a sequence of n tokens cut to m per window, advancing by m - stride (tokenizers'
 * Encoding::truncate): one when m >= n; m = 0 gives an empty window, then the whole sequence. */
static int64_t seq_windows(int64_t n, int64_t m, int64_t stride) {
    if (m >= n) return 1;
    if (m == 0) return 2;
    int64_t step = m - stride; /* > 0: check_stride refused the rest */
    return (n - m + step - 1) / step + 1;
}

/* Window i of such a sequence: [*start, *start + *len). */
static void seq_window(int64_t n, int64_t m, int64_t stride, int left, int64_t i, int64_t *start, int64_t *len) {
    if (m >= n) { *start = 0; *len = n; return; }
    if (m == 0) { *start = 0; *len = i == 0 ? 0 : n; return; }
    int64_t step = m - stride, s, e;
    if (left) {
        e = n - i * step;
        s = e - m > 0 ? e - m : 0;
    } else {
        s = i * step;
        e = s + m < n ? s + m : n;
    }
    *start = s;
    *len = e - s;
}

/* Windows must advance: tokenizers asserts stride < m whenever a sequence of n > m > 0 tokens is cut. */
static lnn_status check_stride(const lnn_tok_opts *o, int64_t n, int64_t m, int second, int pair) {
    if (o->stride <= 0 || m <= 0 || m >= n || o->stride < m) return LNN_OK;
    static const char *names[] = {"", "longest_first", "only_first", "only_second", "head_tail"};
    lnn_set_error("stride=%lld is too large for max_length=%lld here: truncation='%s' leaves %lld tokens of %s per "
                  "window%s, and consecutive windows overlap by stride tokens, so stride must be < %lld (Hugging Face: "
                  "`stride` must be strictly less than `max_len=%lld`); use a smaller stride or a larger max_length",
                  (long long)o->stride, (long long)o->max_length, names[o->trunc], (long long)m,
                  second ? "text_pair" : "the text",
                  pair ? (o->add_special ? " (besides the other sequence and 3 special tokens)" : " (besides the other "
                          "sequence)") : "", (long long)m, (long long)m);
    return LNN_ERR_VALUE;
}

/* Copy len tokens (ids, then offsets) of seq from start into p (3 * len int32). */
static void copy_tokens(int32_t *p, const lnn_tok_seq *seq, int64_t start, int64_t len) {
    if (len <= 0) return;
    memcpy(p, seq->ids + start, (size_t)len * sizeof *p);
    memcpy(p + len, seq->offs + 2 * start, 2 * (size_t)len * sizeof *p);
}

static lnn_status encode_row(const lnn_tokenizer *t, const lnn_tok_text *a, const lnn_tok_text *b, const lnn_tok_opts *o,
                             thread_scratch *ts, arena_block **arena, lnn_tok_row *r) {
    int nspec = o->add_special ? (b ? 3 : 2) : 0;
    int64_t budget = o->max_length - nspec;
    /* A single sequence can stop early: truncation keeps its first `budget` tokens (and no other window). */
    int64_t limit = (!b && !o->trunc_left && !o->overflow &&
                     (o->trunc == LNN_TRUNC_LONGEST_FIRST || o->trunc == LNN_TRUNC_ONLY_FIRST))
                        ? (budget > 0 ? budget : 0) : -1;
    lnn_status st = lnn_tok_encode(t, a->data, a->kind, a->len, limit, &ts->w, &ts->sa);
    if (st) return st;
    int64_t na = ts->sa.n, nb = -1;
    if (b) {
        st = lnn_tok_encode(t, b->data, b->kind, b->len, -1, &ts->w, &ts->sb);
        if (st) {
            char m[900];
            snprintf(m, sizeof m, "%s", lnn_get_error());
            lnn_set_error("text_pair: %s", m);
            return st;
        }
        nb = ts->sb.n;
    }
    int64_t ka, kb;
    st = lnn_tok_truncate(o->trunc, budget, na, nb, &ka, &kb);
    if (st) return st;
    if (o->trunc && ((st = check_stride(o, na, ka, 0, b != NULL)) || (b && (st = check_stride(o, nb, kb, 1, 1)))))
        return st;
    /* what is stored: the kept tokens, or with overflow the whole sequences */
    int64_t sa = o->overflow ? na : ka, sb = o->overflow ? nb : kb;
    size_t need = 3 * (size_t)sa + (sb > 0 ? 3 * (size_t)sb : 0);
    int32_t *p = arena_alloc(arena, need ? need : 1);
    if (!p) { lnn_set_error("out of memory"); return LNN_ERR_MEMORY; }
    if (o->overflow) {
        copy_tokens(p, &ts->sa, 0, na);
        if (nb > 0) copy_tokens(p + 3 * na, &ts->sb, 0, nb);
    } else if (o->trunc == LNN_TRUNC_HEAD_TAIL && ka < na) {
        int64_t h = o->head_tokens < ka ? o->head_tokens : ka, tl = ka - h; /* head, then tail */
        memcpy(p, ts->sa.ids, (size_t)h * sizeof *p);
        memcpy(p + h, ts->sa.ids + na - tl, (size_t)tl * sizeof *p);
        memcpy(p + ka, ts->sa.offs, 2 * (size_t)h * sizeof *p);
        memcpy(p + ka + 2 * h, ts->sa.offs + 2 * (na - tl), 2 * (size_t)tl * sizeof *p);
    } else {
        copy_tokens(p, &ts->sa, o->trunc_left ? na - ka : 0, ka);
        if (kb > 0) copy_tokens(p + 3 * ka, &ts->sb, o->trunc_left ? nb - kb : 0, kb);
    }
    r->a_ids = p;
    r->a_offs = p + sa;
    r->b_ids = r->b_offs = NULL;
    if (sb > 0) {
        r->b_ids = p + 3 * sa;
        r->b_offs = p + 3 * sa + sb;
    }
    r->na = sa;
    r->nb = sb;
    r->ma = ka;
    r->mb = kb;
    r->pa = o->overflow ? seq_windows(na, ka, o->stride) : 1;
    r->pb = o->overflow && b ? seq_windows(nb, kb, o->stride) : 1;
    /* the first window: ka (and kb) tokens, or none when a window is empty (m = 0) */
    r->len = ka + (kb > 0 ? kb : 0) + nspec;
    return LNN_OK;
}

void lnn_tok_window(const lnn_tok_row *text, const lnn_tok_opts *o, int64_t k, lnn_tok_row *win) {
    int64_t i = 0, j = 0, q = text->pb; /* (A window, B window) of window k */
    if (k > 0) {
        if (k <= (text->pa - 1) * q) { i = 1 + (k - 1) / q; j = (k - 1) % q; }
        else { i = 0; j = k - (text->pa - 1) * q; }
    }
    int64_t s, n;
    *win = *text;
    seq_window(text->na, text->ma, o->stride, o->trunc_left, i, &s, &n);
    win->a_ids = text->a_ids + s;
    win->a_offs = text->a_offs + 2 * s;
    win->na = n;
    if (text->nb >= 0) {
        seq_window(text->nb, text->mb, o->stride, o->trunc_left, j, &s, &n);
        win->b_ids = text->b_ids ? text->b_ids + s : NULL;
        win->b_offs = text->b_offs ? text->b_offs + 2 * s : NULL;
        win->nb = n;
    }
    win->ma = win->na;
    win->mb = win->nb;
    win->pa = win->pb = 1;
    win->len = win->na + (win->nb > 0 ? win->nb : 0) + (o->add_special ? (text->nb >= 0 ? 3 : 2) : 0);
}

lnn_status lnn_tok_encode_batch(const lnn_tokenizer *t, const lnn_tok_text *a, const lnn_tok_text *b, int64_t n,
                                const lnn_tok_opts *o, lnn_tok_row *rows, int64_t *err_row, lnn_tok_batch_mem **mem) {
    int64_t first_err = -1;
    lnn_status first_st = LNN_OK;
    char msg[1024] = {0};
    int nth = 1;
    *err_row = -1;
#ifdef _OPENMP
    nth = lnn_num_threads > 0 ? lnn_num_threads : 1;
    if (n < 2 * (int64_t)nth) nth = n > 1 ? (int)(n < nth ? n : nth) : 1;
#endif
    lnn_tok_batch_mem *m = calloc(1, sizeof *m);
    thread_scratch *ts = calloc((size_t)nth, sizeof *ts);
    if (m) m->heads = calloc((size_t)nth, sizeof *m->heads);
    *mem = m;
    if (!m || !ts || !m->heads) { free(ts); lnn_set_error("out of memory"); return LNN_ERR_MEMORY; }
    m->nth = nth;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nth) schedule(dynamic, 4) if (nth > 1)
#endif
    for (int64_t i = 0; i < n; i++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        lnn_status st = encode_row(t, &a[i], b ? &b[i] : NULL, o, &ts[tid], &m->heads[tid], &rows[i]);
        if (st) {
#ifdef _OPENMP
#pragma omp critical(lnn_tok_err)
#endif
            {
                if (first_err < 0 || i < first_err) {
                    first_err = i;
                    first_st = st;
                    snprintf(msg, sizeof msg, "%s", lnn_get_error());
                }
            }
        }
    }
    for (int k = 0; k < nth; k++) {
        lnn_tok_work_free(&ts[k].w);
        lnn_tok_seq_free(&ts[k].sa);
        lnn_tok_seq_free(&ts[k].sb);
    }
    free(ts);
    *err_row = first_err;
    if (first_err >= 0) lnn_set_error("%s", msg);
    return first_st;
}

static inline void put(void *arr, int elem, int64_t i, int64_t v) {
    if (elem == 8) ((int64_t *)arr)[i] = v;
    else ((int32_t *)arr)[i] = (int32_t)v;
}

void lnn_tok_row_write(const lnn_tok_row *r, const lnn_tok_opts *o, int64_t width, int left, int32_t pad_id, int elem,
                       void *ids, void *type_ids, void *mask, void *offs, void *special) {
    int64_t len = r->len, pad = width - len;
    if (pad < 0) pad = 0;
    int64_t p0 = left ? pad : 0;
    /* padding */
    int64_t pstart = left ? 0 : len, pend = left ? pad : len + pad;
    for (int64_t j = pstart; j < pend; j++) {
        if (ids) put(ids, elem, j, pad_id);
        if (type_ids) put(type_ids, elem, j, 0);
        if (mask) put(mask, elem, j, 0);
        if (offs) { put(offs, elem, 2 * j, 0); put(offs, elem, 2 * j + 1, 0); }
        if (special) put(special, elem, j, 1);
    }
    int64_t j = p0;
#define EMIT(ID, TYPE, A, B, SP) do { \
        if (ids) { put(ids, elem, j, (ID)); } \
        if (type_ids) { put(type_ids, elem, j, (TYPE)); } \
        if (mask) { put(mask, elem, j, 1); } \
        if (offs) { put(offs, elem, 2 * j, (A)); put(offs, elem, 2 * j + 1, (B)); } \
        if (special) { put(special, elem, j, (SP)); } \
        j++; } while (0)
    if (o->add_special) EMIT(o->cls_id, 0, 0, 0, 1);
    if (elem == 8 && ids && !type_ids && !mask && !offs && !special) {
        int64_t *dst = (int64_t *)ids;
        for (int64_t k = 0; k < r->na; k++) dst[j + k] = r->a_ids[k];
        j += r->na;
    } else {
        for (int64_t k = 0; k < r->na; k++) EMIT(r->a_ids[k], 0, r->a_offs[2 * k], r->a_offs[2 * k + 1], 0);
    }
    if (o->add_special) EMIT(o->sep_id, 0, 0, 0, 1);
    if (r->nb >= 0) {
        for (int64_t k = 0; k < r->nb; k++) EMIT(r->b_ids[k], 1, r->b_offs[2 * k], r->b_offs[2 * k + 1], 0);
        if (o->add_special) EMIT(o->sep_id, 1, 0, 0, 1);
    }
#undef EMIT
}
