/* py/ops_py.c: every op of a backend's table, callable from Python (lyricnn._C.Backend): the seam the
 * per-op test bench (tests/test_backend_ops.py) and lyricnn/_train_ops.py stand on.
 *
 *     b = _C.Backend("cpu")                       # a context on a backend of this build (_C.backends())
 *     b.call("matmul_forward", out=out, inp=x, w=w, b=None, N=4, C=3, OC=2)
 *
 * Each op is described once here (OPS below): its arguments in the order of the C signature
 * (core/backend.h), with their kind, dtype and direction, a check of the sizes and index values
 * (so no call can read or write out of bounds), and a one-line runner. Tensor arguments are numpy
 * arrays, copied to backend memory before the call and back (outputs and updated inputs) after it,
 * or Buffer objects (backend memory that persists between calls, e.g. the attention workspaces).
 * Activation ('a') arrays are float32 numpy arrays; with dtype="bf16" or "f16" they are rounded to that
 * dtype on the way in and widened on the way out. */
#include "py/ext.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "cpu/gemm_grid.h"

/* ------------------------------------------------------------------ the Backend and Buffer types */

typedef struct {
    PyObject_HEAD
    lnn_ctx ctx;
    int ready;
} BackendObject;

typedef struct {
    PyObject_HEAD
    BackendObject *owner; /* kept alive: the memory belongs to its context */
    void *p;
    size_t nbytes;
} BufferObject;

static PyTypeObject BackendType, BufferType;

/* ------------------------------------------------------------------ op descriptions */

#define MAXARGS 20

typedef struct {
    const char *name;
    char kind;  /* 't' tensor, 'n' int, 'x' float, 'd' dropout site, 'r' token rows, 'y' dtype name, 'c' optimizer config */
    char dtype; /* tensors: 'a' activation, 'f' F32, 'i' I32, 'l' I64, 'u' U8, 'g' F64, 'w' workspace (a Buffer) */
    char io;    /* tensors: 'i' read, 'o' written, 'u' read and written */
    char opt;   /* tensors: 1 = may be None; floats ('x'): 1 = may be left out (then def) */
    double def;
} argspec;

/* One prepared call: per argument its backend pointer and element count (bytes for workspaces), the
 * host copy of index arrays (for the value checks), and the scalars. */
typedef struct {
    void *p[MAXARGS];
    size_t n[MAXARGS];
    const void *host[MAXARGS];
    int64_t i[MAXARGS];
    double x[MAXARGS];
    lnn_dropout_t drop;
    lnn_rows rows;
    const int32_t *rows_off_host;
    lnn_dtype dt[MAXARGS];
    lnn_optim_config cfg;
    lnn_ctx *ctx;
    void *extra; /* backend memory an op's runner allocated (freed after the call) */
} opcall;

typedef struct {
    const char *name;
    int op; /* LNN_OP_* */
    argspec args[MAXARGS];
    int nargs;
    int (*check)(const opcall *c, char *err, size_t errn); /* 0 ok; else fills err */
    void (*run)(lnn_ctx *ctx, const opcall *c);
} opdesc;

#define T_(nm, dt, io) {nm, 't', dt, io, 0}
#define TO(nm, dt, io) {nm, 't', dt, io, 1}
#define N_(nm) {nm, 'n', 0, 0, 0}
#define X_(nm) {nm, 'x', 0, 0, 0}
#define XD(nm, d) {nm, 'x', 0, 0, 1, d}
#define ND(nm, d) {nm, 'n', 0, 0, 1, d}
#define DROP {"drop", 'd', 0, 0, 0}
#define ROWS {"rows", 'r', 0, 0, 0}
#define AP(k) (c->p[k])
#define AI(k) ((int)c->i[k])
#define AX(k) (c->x[k])

/* check failures: FAIL -> ValueError, FAIL_INDEX (an index out of range) -> IndexError */
#define FAIL(...)                             \
    do {                                      \
        snprintf(err, errn, __VA_ARGS__);     \
        return 1;                             \
    } while (0)
#define FAIL_INDEX(...)                       \
    do {                                      \
        snprintf(err, errn, __VA_ARGS__);     \
        return 2;                             \
    } while (0)
/* argument k (named nm) holds at least need elements (skipped when it is None) */
#define NEED(k, nm, need)                                                                                    \
    do {                                                                                                     \
        size_t need_ = (size_t)(need);                                                                       \
        if (c->p[k] && c->n[k] < need_)                                                                      \
            FAIL("%s has %zu elements but at least %zu are needed", nm, c->n[k], need_);                     \
    } while (0)
#define POS(k, nm)                                                        \
    do {                                                                  \
        if (c->i[k] < 1 || c->i[k] > (1 << 30)) FAIL("%s must be in 1..2^30, got %lld", nm, (long long)c->i[k]); \
    } while (0)

/* host int32 array values in [0, hi) */
static int in_range_i32(const opcall *c, int k, const char *nm, size_t n, int64_t hi, char *err, size_t errn) {
    const int32_t *v = c->host[k];
    if (!v) return 0;
    for (size_t j = 0; j < n; j++)
        if (v[j] < 0 || v[j] >= hi) FAIL_INDEX("%s[%zu] = %d is outside [0, %lld)", nm, j, v[j], (long long)hi);
    return 0;
}

/* the token rows are consistent: N matches the layout, packed offsets start at 0, grow, fit in T */
static int check_rows(const opcall *c, char *err, size_t errn) {
    lnn_rows r = c->rows;
    if (r.B < 1 || r.T < 1 || r.N < 1) FAIL("rows needs N, B, T >= 1, got N=%d B=%d T=%d", r.N, r.B, r.T);
    if (r.first_only) {
        if (r.N != r.B) FAIL("rows with first_only has N == B rows, got N=%d B=%d", r.N, r.B);
    } else if (c->rows_off_host) {
        const int32_t *o = c->rows_off_host;
        if (o[0] != 0) FAIL("rows.seq_off[0] must be 0, got %d", o[0]);
        for (int b = 0; b < r.B; b++)
            if (o[b + 1] < o[b] || o[b + 1] - o[b] > r.T)
                FAIL("rows.seq_off[%d..%d] = %d..%d is not a length in 0..T=%d", b, b + 1, o[b], o[b + 1], r.T);
        if (o[r.B] != r.N) FAIL("rows.seq_off[B] = %d but N = %d", o[r.B], r.N);
    } else if ((int64_t)r.N != (int64_t)r.B * r.T) {
        FAIL("padded rows have N == B*T, got N=%d B=%d T=%d", r.N, r.B, r.T);
    }
    return 0;
}

/* packed sequences that must have a token 0: none empty */
static int no_empty_sequence(const int32_t *off, int B, const char *what, char *err, size_t errn) {
    for (int b = 0; off && b < B; b++)
        if (off[b + 1] == off[b]) FAIL("packed sequence %d is empty; %s needs at least one token per sequence", b, what);
    return 0;
}

/* ---- cast(dst, dt, src, st, n) */
static int chk_cast(const opcall *c, char *err, size_t errn) {
    if (c->i[4] < 0) FAIL("n must be >= 0");
    lnn_dtype dt = c->dt[1], st = c->dt[3];
    int ok = (dt == st && (dt == LNN_F32 || lnn_dtype_is_half(dt))) || (dt == LNN_F32 && lnn_dtype_is_half(st)) ||
             (st == LNN_F32 && lnn_dtype_is_half(dt));
    if (!ok) FAIL("cast converts between f32 and bf16 or f16, got %s -> %s", lnn_dtype_name(st), lnn_dtype_name(dt));
    if (c->n[0] * 4 < (size_t)c->i[4] * lnn_dtype_size(dt) || c->n[2] * 4 < (size_t)c->i[4] * lnn_dtype_size(st))
        FAIL("dst and src (float32 arrays holding the raw data) are too small for n=%lld", (long long)c->i[4]);
    return 0;
}
static void run_cast(lnn_ctx *ctx, const opcall *c) { ctx->be->cast(ctx, AP(0), c->dt[1], AP(2), c->dt[3], (size_t)c->i[4]); }

/* ---- embedding_forward(out, ids, types, pos, wte, wpe, wtt, N, C) (wpe and pos: both or neither) */
static int chk_embedding(const opcall *c, int o, char *err, size_t errn) {
    /* o: index of the first weight argument; N, C at o+3, o+4 */
    POS(o + 3, "N");
    POS(o + 4, "C");
    size_t N = (size_t)c->i[o + 3], C = (size_t)c->i[o + 4];
    int64_t V = (int64_t)(c->n[o] / C), P = c->p[o + 1] ? (int64_t)(c->n[o + 1] / C) : 1;
    int64_t TV = c->p[o + 2] ? (int64_t)(c->n[o + 2] / C) : 1;
    if (!c->p[o + 1] != !c->p[o - 1]) FAIL("wpe and pos go together: pass both, or neither (no position embeddings)");
    NEED(o - 3, "ids", N);
    NEED(o - 2, "types", N);
    NEED(o - 1, "pos", N);
    int r = in_range_i32(c, o - 3, "ids", N, V, err, errn);
    if (!r) r = in_range_i32(c, o - 1, "pos", N, P, err, errn);
    if (!r && c->p[o + 2]) r = in_range_i32(c, o - 2, "types", N, TV, err, errn);
    if (r) return r;
    if (V < 1 || P < 1 || TV < 1) FAIL("the embedding tables need at least one row of C=%zu", C);
    return 0;
}
static int chk_embedding_forward(const opcall *c, char *err, size_t errn) {
    int r = chk_embedding(c, 4, err, errn);
    if (r) return r;
    NEED(0, "out", (size_t)c->i[7] * c->i[8]);
    return 0;
}
static void run_embedding_forward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->embedding_forward(ctx, AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AI(7), AI(8));
}
/* ---- embedding_backward(dwte, dwpe, dwtt, dout, ids, types, pos, N, C, pad_id, sorted=0) */
static int chk_embedding_backward(const opcall *c, char *err, size_t errn) {
    POS(7, "N");
    POS(8, "C");
    size_t N = (size_t)c->i[7], C = (size_t)c->i[8];
    NEED(3, "dout", N * C);
    NEED(4, "ids", N);
    NEED(5, "types", N);
    NEED(6, "pos", N);
    int64_t V = c->p[0] ? (int64_t)(c->n[0] / C) : INT32_MAX, P = c->p[1] ? (int64_t)(c->n[1] / C) : INT32_MAX;
    int64_t TV = c->p[2] ? (int64_t)(c->n[2] / C) : INT32_MAX;
    int r = in_range_i32(c, 4, "ids", N, V, err, errn);
    if (!r) r = in_range_i32(c, 6, "pos", N, P, err, errn);
    if (!r) r = in_range_i32(c, 5, "types", N, TV, err, errn);
    if (r) return r;
    if (c->p[2] && !c->p[5] && TV < 1) FAIL("dwtt needs at least one row");
    if (c->p[1] && !c->p[6]) FAIL("dwpe needs pos");
    return 0;
}
/* sorted (1): the three tables' id-sorted row indexes (core/embed_index.h) built from the host ids, positions
 * and types, as the encoder builds them, and passed in backend memory (freed after the call) */
static void run_embedding_backward(lnn_ctx *ctx, const opcall *c) {
    lnn_emb_index x[3];
    const lnn_emb_index *idx = NULL;
    if (c->i[10]) {
        int N = AI(7);
        size_t per = lnn_emb_index_ints((size_t)N), sc = lnn_emb_index_scratch_ints((size_t)N);
        int32_t *h = malloc(sizeof(int32_t) * (3 * per + sc)), *d = ctx->be->malloc(ctx, sizeof(int32_t) * 3 * per);
        if (!h || !d) {
            free(h);
            ctx->be->free(ctx, d);
            lnn_ctx_fail(ctx, LNN_ERR_MEMORY, "out of memory for the embedding indexes of %d rows", N);
            return;
        }
        const int32_t *keys[3] = {c->host[4], c->host[6], c->host[5]};
        int exclude[3] = {AI(9), -1, -1};
        size_t off = 0;
        for (int t = 0; t < 3; t++) {
            lnn_emb_index_host hh;
            lnn_emb_index_build(&hh, h + off, h + 3 * per, keys[t], N, exclude[t]);
            x[t] = lnn_emb_index_at(&hh, d + off);
            off += hh.used;
        }
        ctx->be->to_device(ctx, d, h, off * sizeof(int32_t));
        free(h);
        ((opcall *)c)->extra = d; /* freed by Backend_call after the op has run */
        idx = x;
    }
    ctx->be->embedding_backward(ctx, AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AI(7), AI(8), AI(9), idx);
}

/* ---- matmul_forward(out, inp, w, b, N, C, OC) */
static int chk_matmul_forward(const opcall *c, char *err, size_t errn) {
    POS(4, "N");
    POS(5, "C");
    POS(6, "OC");
    size_t N = (size_t)c->i[4], C = (size_t)c->i[5], OC = (size_t)c->i[6];
    NEED(0, "out", N * OC);
    NEED(1, "inp", N * C);
    NEED(2, "w", OC * C);
    NEED(3, "b", OC);
    return 0;
}
static void run_matmul_forward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->matmul_forward(ctx, AP(0), AP(1), AP(2), AP(3), AI(4), AI(5), AI(6));
}
/* ---- matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC) */
static int chk_matmul_backward(const opcall *c, char *err, size_t errn) {
    POS(6, "N");
    POS(7, "C");
    POS(8, "OC");
    size_t N = (size_t)c->i[6], C = (size_t)c->i[7], OC = (size_t)c->i[8];
    NEED(0, "dinp", N * C);
    NEED(1, "dw", OC * C);
    NEED(2, "db", OC);
    NEED(3, "dout", N * OC);
    NEED(4, "inp", N * C);
    NEED(5, "w", OC * C);
    return 0;
}
static void run_matmul_backward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->matmul_backward(ctx, AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AI(6), AI(7), AI(8));
}

/* ---- lora_forward(y, ldy, x, A, B, u, rows, C, r, OC, scale, drop) and
 *      lora_backward(dx, dA, dB, dy, ldy, x, A, B, u, rows, C, r, OC, scale, drop)
 * (k: the index of ldy; the backward's arguments sit three places later, bar the first) */
static int chk_lora(const opcall *c, int fwd, char *err, size_t errn) {
    int k = fwd ? 1 : 4;
    if (check_rows(c, err, errn)) return 1;
    POS(k + 6, "C");
    POS(k + 7, "r");
    POS(k + 8, "OC");
    size_t N = (size_t)c->rows.N, C = (size_t)c->i[k + 6], r = (size_t)c->i[k + 7], OC = (size_t)c->i[k + 8];
    if (c->i[k] < (int64_t)OC || c->i[k] > (1 << 30)) FAIL("ldy must be in OC..2^30 (OC=%zu), got %lld", OC, (long long)c->i[k]);
    size_t ny = (N - 1) * (size_t)c->i[k] + OC;
    NEED(fwd ? 0 : 3, fwd ? "y" : "dy", ny);
    NEED(k + 1, "x", N * C);
    NEED(k + 2, "A", r * C);
    NEED(k + 3, "B", OC * r);
    NEED(k + 4, "u", N * r);
    if (!fwd) {
        NEED(0, "dx", N * C);
        NEED(1, "dA", r * C);
        NEED(2, "dB", OC * r);
    }
    if (!isfinite(AX(k + 9))) FAIL("scale must be finite, got %g", AX(k + 9));
    if (!(c->drop.p >= 0.f && c->drop.p <= 1.f)) FAIL("drop.p must be in [0, 1], got %g", (double)c->drop.p);
    return 0;
}
static int chk_lora_forward(const opcall *c, char *err, size_t errn) { return chk_lora(c, 1, err, errn); }
static int chk_lora_backward(const opcall *c, char *err, size_t errn) { return chk_lora(c, 0, err, errn); }
static void run_lora_forward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->lora_forward(ctx, AP(0), AI(1), AP(2), AP(3), AP(4), AP(5), c->rows, AI(7), AI(8), AI(9), (float)AX(10),
                          c->drop);
}
static void run_lora_backward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->lora_backward(ctx, AP(0), AP(1), AP(2), AP(3), AI(4), AP(5), AP(6), AP(7), AP(8), c->rows, AI(10), AI(11),
                           AI(12), (float)AX(13), c->drop);
}

/* ---- layernorm_forward(out, mean, rstd, res, a, r, w, b, N, C, eps) */
static int chk_layernorm_forward(const opcall *c, char *err, size_t errn) {
    POS(8, "N");
    POS(9, "C");
    size_t N = (size_t)c->i[8], C = (size_t)c->i[9];
    NEED(0, "out", N * C);
    NEED(1, "mean", N);
    NEED(2, "rstd", N);
    NEED(3, "res", N * C);
    NEED(4, "a", N * C);
    NEED(5, "r", N * C);
    NEED(6, "w", C);
    NEED(7, "b", C);
    if (!(AX(10) > 0)) FAIL("eps must be > 0");
    return 0;
}
static void run_layernorm_forward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->layernorm_forward(ctx, AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AP(7), AI(8), AI(9), (float)AX(10));
}
/* ---- layernorm_backward(dres, dw, db, dout, res, w, mean, rstd, N, C) */
static int chk_layernorm_backward(const opcall *c, char *err, size_t errn) {
    POS(8, "N");
    POS(9, "C");
    size_t N = (size_t)c->i[8], C = (size_t)c->i[9];
    NEED(0, "dres", N * C);
    NEED(1, "dw", C);
    NEED(2, "db", C);
    NEED(3, "dout", N * C);
    NEED(4, "res", N * C);
    NEED(5, "w", C);
    NEED(6, "mean", N);
    NEED(7, "rstd", N);
    return 0;
}
static void run_layernorm_backward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->layernorm_backward(ctx, AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AP(7), AI(8), AI(9));
}

/* ---- bias_act_forward(out, x, b, N, OC, act) / bias_act_backward(dx, db, dout, x, N, OC, act) */
static int chk_act(int64_t act, char *err, size_t errn) {
    if (act != LNN_ACT_GELU && act != LNN_ACT_RELU && act != LNN_ACT_GELU_TANH)
        FAIL("act must be ACT_GELU, ACT_RELU or ACT_GELU_TANH, got %lld", (long long)act);
    return 0;
}
static int chk_bias_act_forward(const opcall *c, char *err, size_t errn) {
    POS(3, "N");
    POS(4, "OC");
    size_t n = (size_t)c->i[3] * c->i[4];
    NEED(0, "out", n);
    NEED(1, "x", n);
    NEED(2, "b", (size_t)c->i[4]);
    return chk_act(c->i[5], err, errn);
}
static void run_bias_act_forward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->bias_act_forward(ctx, AP(0), AP(1), AP(2), AI(3), AI(4), AI(5));
}
static int chk_bias_act_backward(const opcall *c, char *err, size_t errn) {
    POS(4, "N");
    POS(5, "OC");
    size_t n = (size_t)c->i[4] * c->i[5];
    NEED(0, "dx", n);
    NEED(1, "db", (size_t)c->i[5]);
    NEED(2, "dout", n);
    NEED(3, "x", n);
    return chk_act(c->i[6], err, errn);
}
static void run_bias_act_backward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->bias_act_backward(ctx, AP(0), AP(1), AP(2), AP(3), AI(4), AI(5), AI(6));
}

/* ---- attention_forward(out, saved, scratch, qkv, mask, seq_off, q_first, B, T, C, NH, drop) and
 *      attention_backward(dqkv, dout, out, saved, scratch, qkv, seq_off, q_first, B, T, C, NH, drop)
 * (the backward's arguments from saved on sit one place later: bk = 1) */
static int chk_attention(const opcall *c, int fwd, char *err, size_t errn) {
    int bk = fwd ? 0 : 1;
    POS(7 + bk, "B");
    POS(8 + bk, "T");
    POS(9 + bk, "C");
    POS(10 + bk, "NH");
    int B = AI(7 + bk), T = AI(8 + bk), C = AI(9 + bk), NH = AI(10 + bk), qf = AI(6 + bk) != 0;
    if (C % NH) FAIL("C=%d must be a multiple of NH=%d", C, NH);
    if (!(c->drop.p >= 0.f && c->drop.p <= 1.f)) FAIL("drop.p must be in [0, 1], got %g", (double)c->drop.p);
    int soff = 5 + bk, qkv = fwd ? 3 : 5, outk = fwd ? 0 : 1, saved = fwd ? 1 : 3, scratch = fwd ? 2 : 4;
    size_t N = (size_t)B * T;
    if (c->p[soff]) {
        const int32_t *o2 = c->host[soff];
        NEED(soff, "seq_off", (size_t)B + 1);
        if (o2[0] != 0) FAIL("seq_off[0] must be 0, got %d", o2[0]);
        for (int b = 0; b < B; b++)
            if (o2[b + 1] < o2[b] || o2[b + 1] - o2[b] > T)
                FAIL("seq_off[%d..%d] = %d..%d is not a length in 0..T=%d", b, b + 1, o2[b], o2[b + 1], T);
        N = (size_t)o2[B];
        if (qf && no_empty_sequence(o2, B, "q_first attention", err, errn)) return 1;
    }
    if (fwd) NEED(4, "mask", (size_t)B * T);
    NEED(qkv, "qkv", N * 3 * (size_t)C);
    NEED(outk, fwd ? "out" : "dout", (qf ? (size_t)B : N) * C);
    if (!fwd) {
        NEED(0, "dqkv", N * 3 * (size_t)C);
        NEED(2, "out", (qf ? (size_t)B : N) * C);
    }
    int train = !fwd || c->drop.p > 0.f; /* dropout is on in training only */
    size_t sv = c->ctx->be->attention_saved_bytes(c->ctx, B, T, NH, train, c->drop.p);
    size_t sc = c->ctx->be->attention_scratch_bytes(c->ctx, B, T, NH, train, c->drop.p);
    if (c->n[saved] < sv) FAIL("saved has %zu bytes; this call needs attention_saved_bytes() = %zu", c->n[saved], sv);
    if (c->n[scratch] < sc)
        FAIL("scratch has %zu bytes; this call needs attention_scratch_bytes() = %zu", c->n[scratch], sc);
    return 0;
}
static int chk_attention_forward(const opcall *c, char *err, size_t errn) { return chk_attention(c, 1, err, errn); }
static int chk_attention_backward(const opcall *c, char *err, size_t errn) { return chk_attention(c, 0, err, errn); }
static void run_attention_forward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->attention_forward(ctx, AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AI(6), AI(7), AI(8), AI(9), AI(10), c->drop);
}
static void run_attention_backward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->attention_backward(ctx, AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AI(7), AI(8), AI(9), AI(10),
                                AI(11), c->drop);
}

/* ---- dropout_forward(out, inp, rows, C, drop) / dropout_backward(dinp, dout, rows, C, drop) */
static int chk_dropout(const opcall *c, char *err, size_t errn) {
    if (check_rows(c, err, errn)) return 1;
    POS(3, "C");
    size_t n = (size_t)c->rows.N * c->i[3];
    NEED(0, "out", n);
    NEED(1, "inp", n);
    if (!(c->drop.p >= 0.f && c->drop.p <= 1.f)) FAIL("drop.p must be in [0, 1], got %g", (double)c->drop.p);
    return 0;
}
static int chk_dropout_forward(const opcall *c, char *err, size_t errn) { return chk_dropout(c, err, errn); }
static int chk_dropout_backward(const opcall *c, char *err, size_t errn) { return chk_dropout(c, err, errn); }
static void run_dropout_forward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->dropout_forward(ctx, AP(0), AP(1), c->rows, AI(3), c->drop);
}
static void run_dropout_backward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->dropout_backward(ctx, AP(0), AP(1), c->rows, AI(3), c->drop);
}

/* ---- tanh_forward(out, inp, n) / tanh_backward(dinp, dout, out, n) */
static int chk_tanh_forward(const opcall *c, char *err, size_t errn) {
    if (c->i[2] < 0) FAIL("n must be >= 0");
    NEED(0, "out", c->i[2]);
    NEED(1, "inp", c->i[2]);
    return 0;
}
static void run_tanh_forward(lnn_ctx *ctx, const opcall *c) { ctx->be->tanh_forward(ctx, AP(0), AP(1), (size_t)c->i[2]); }
static int chk_tanh_backward(const opcall *c, char *err, size_t errn) {
    if (c->i[3] < 0) FAIL("n must be >= 0");
    NEED(0, "dinp", c->i[3]);
    NEED(1, "dout", c->i[3]);
    NEED(2, "out", c->i[3]);
    return 0;
}
static void run_tanh_backward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->tanh_backward(ctx, AP(0), AP(1), AP(2), (size_t)c->i[3]);
}

/* ---- token0_forward(out, inp, rows, C) / token0_backward(dinp, dout, rows, C) */
static int chk_token0(const opcall *c, int fwd, char *err, size_t errn) {
    if (check_rows(c, err, errn)) return 1;
    if (!c->rows.first_only && no_empty_sequence(c->rows_off_host, c->rows.B, "token 0", err, errn)) return 1;
    POS(3, "C");
    size_t C = (size_t)c->i[3];
    NEED(fwd ? 0 : 1, fwd ? "out" : "dout", (size_t)c->rows.B * C);
    NEED(fwd ? 1 : 0, fwd ? "inp" : "dinp", (size_t)c->rows.N * C);
    return 0;
}
static int chk_token0_forward(const opcall *c, char *err, size_t errn) { return chk_token0(c, 1, err, errn); }
static int chk_token0_backward(const opcall *c, char *err, size_t errn) { return chk_token0(c, 0, err, errn); }
static void run_token0_forward(lnn_ctx *ctx, const opcall *c) { ctx->be->token0_forward(ctx, AP(0), AP(1), c->rows, AI(3)); }
static void run_token0_backward(lnn_ctx *ctx, const opcall *c) { ctx->be->token0_backward(ctx, AP(0), AP(1), c->rows, AI(3)); }

/* ---- mean_pool_forward(out, h, mask, rows, C) / mean_pool_backward(dh, dout, mask, rows, C) */
static int chk_mean_pool(const opcall *c, int fwd, char *err, size_t errn) {
    if (check_rows(c, err, errn)) return 1;
    if (c->rows.first_only) FAIL("mean pooling reads every token row: rows.first_only must be 0");
    POS(4, "C");
    size_t C = (size_t)c->i[4];
    NEED(fwd ? 0 : 1, fwd ? "out" : "dout", (size_t)c->rows.B * C);
    NEED(fwd ? 1 : 0, fwd ? "h" : "dh", (size_t)c->rows.N * C);
    NEED(2, "mask", (size_t)c->rows.B * c->rows.T);
    return 0;
}
static int chk_mean_pool_forward(const opcall *c, char *err, size_t errn) { return chk_mean_pool(c, 1, err, errn); }
static int chk_mean_pool_backward(const opcall *c, char *err, size_t errn) { return chk_mean_pool(c, 0, err, errn); }
static void run_mean_pool_forward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->mean_pool_forward(ctx, AP(0), AP(1), AP(2), c->rows, AI(4));
}
static void run_mean_pool_backward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->mean_pool_backward(ctx, AP(0), AP(1), AP(2), c->rows, AI(4));
}

/* ---- concat_forward(out, h, f, B, H, F) / concat_backward(dh, df, dout, B, H, F) */
static int chk_concat(const opcall *c, int fwd, char *err, size_t errn) {
    POS(3, "B");
    if (c->i[4] < 0 || c->i[5] < 0 || c->i[4] > (1 << 30) || c->i[5] > (1 << 30)) FAIL("H and F must be >= 0");
    size_t B = (size_t)c->i[3], H = (size_t)c->i[4], F = (size_t)c->i[5];
    NEED(fwd ? 0 : 2, fwd ? "out" : "dout", B * (H + F));
    NEED(fwd ? 1 : 0, fwd ? "h" : "dh", B * H);
    NEED(fwd ? 2 : 1, fwd ? "f" : "df", B * F);
    return 0;
}
static int chk_concat_forward(const opcall *c, char *err, size_t errn) { return chk_concat(c, 1, err, errn); }
static int chk_concat_backward(const opcall *c, char *err, size_t errn) { return chk_concat(c, 0, err, errn); }
static void run_concat_forward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->concat_forward(ctx, AP(0), AP(1), AP(2), AI(3), AI(4), AI(5));
}
static void run_concat_backward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->concat_backward(ctx, AP(0), AP(1), AP(2), AI(3), AI(4), AI(5));
}

/* ---- batchnorm_forward(out, save_mean, save_rstd, x, gamma, beta, running_mean, running_var, N, C,
 *      training, momentum, eps) */
static int chk_batchnorm_forward(const opcall *c, char *err, size_t errn) {
    POS(8, "N");
    POS(9, "C");
    size_t N = (size_t)c->i[8], C = (size_t)c->i[9];
    NEED(0, "out", N * C);
    NEED(1, "save_mean", C);
    NEED(2, "save_rstd", C);
    NEED(3, "x", N * C);
    NEED(4, "gamma", C);
    NEED(5, "beta", C);
    NEED(6, "running_mean", C);
    NEED(7, "running_var", C);
    if (!c->p[6] != !c->p[7]) FAIL("running_mean and running_var must be given together (or both None)");
    int batch_stats = c->i[10] || !c->p[6];
    if (batch_stats && N < 2)
        FAIL("batchnorm: expected more than 1 value per channel when training, got a batch of %zu; use a batch size "
             ">= 2 (or drop_last) or eval mode", N);
    if (!(AX(12) > 0) || !(AX(11) >= 0 && AX(11) <= 1)) FAIL("batchnorm needs eps > 0 and momentum in [0, 1]");
    return 0;
}
static void run_batchnorm_forward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->batchnorm_forward(ctx, AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AP(7), AI(8), AI(9), AI(10), (float)AX(11),
                               (float)AX(12));
}
/* ---- batchnorm_backward(dx, dgamma, dbeta, dout, x, gamma, save_mean, save_rstd, N, C, batch_stats) */
static int chk_batchnorm_backward(const opcall *c, char *err, size_t errn) {
    POS(8, "N");
    POS(9, "C");
    size_t N = (size_t)c->i[8], C = (size_t)c->i[9];
    NEED(0, "dx", N * C);
    NEED(1, "dgamma", C);
    NEED(2, "dbeta", C);
    NEED(3, "dout", N * C);
    NEED(4, "x", N * C);
    NEED(5, "gamma", C);
    NEED(6, "save_mean", C);
    NEED(7, "save_rstd", C);
    return 0;
}
static void run_batchnorm_backward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->batchnorm_backward(ctx, AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AP(7), AI(8), AI(9), AI(10));
}

/* ---- cross_entropy(loss, dlogits, logits, labels, class_weight, N, K, ignore_index, grad_scale) */
static int chk_cross_entropy(const opcall *c, char *err, size_t errn) {
    POS(5, "N");
    POS(6, "K");
    size_t N = (size_t)c->i[5], K = (size_t)c->i[6];
    NEED(0, "loss", 1);
    NEED(1, "dlogits", N * K);
    NEED(2, "logits", N * K);
    NEED(3, "labels", N);
    NEED(4, "class_weight", K);
    const int64_t *y = c->host[3];
    for (size_t i = 0; i < N; i++)
        if (y[i] != c->i[7] && (y[i] < 0 || y[i] >= (int64_t)K))
            FAIL_INDEX("labels[%zu] = %lld is out of range for %zu classes; labels must be in 0..%zu (or ignore_index=%lld "
                 "to skip a row)", i, (long long)y[i], K, K - 1, (long long)c->i[7]);
    return 0;
}
static void run_cross_entropy(lnn_ctx *ctx, const opcall *c) {
    ctx->be->cross_entropy(ctx, AP(0), AP(1), AP(2), AP(3), AP(4), AI(5), AI(6), c->i[7], (float)AX(8));
}
/* ---- bce_with_logits(loss, dlogits, logits, targets, pos_weight, N, K, grad_scale) */
static int chk_bce_with_logits(const opcall *c, char *err, size_t errn) {
    POS(5, "N");
    POS(6, "K");
    size_t N = (size_t)c->i[5], K = (size_t)c->i[6];
    NEED(0, "loss", 1);
    NEED(1, "dlogits", N * K);
    NEED(2, "logits", N * K);
    NEED(3, "targets", N * K);
    NEED(4, "pos_weight", K);
    return 0;
}
static void run_bce_with_logits(lnn_ctx *ctx, const opcall *c) {
    ctx->be->bce_with_logits(ctx, AP(0), AP(1), AP(2), AP(3), AP(4), AI(5), AI(6), (float)AX(7));
}
/* ---- mse(loss, dpreds, preds, targets, n, grad_scale) */
static int chk_mse(const opcall *c, char *err, size_t errn) {
    if (c->i[4] < 0) FAIL("n must be >= 0");
    NEED(0, "loss", 1);
    NEED(1, "dpreds", c->i[4]);
    NEED(2, "preds", c->i[4]);
    NEED(3, "targets", c->i[4]);
    return 0;
}
static void run_mse(lnn_ctx *ctx, const opcall *c) { ctx->be->mse(ctx, AP(0), AP(1), AP(2), AP(3), (size_t)c->i[4], (float)AX(5)); }

/* ---- gather_rows_forward(out, inp, idx, N, C) / gather_rows_backward(dinp, dout, idx, N, C) */
static int chk_gather_rows(const opcall *c, int fwd, char *err, size_t errn) {
    POS(3, "N");
    POS(4, "C");
    size_t N = (size_t)c->i[3], C = (size_t)c->i[4], M = c->n[fwd ? 1 : 0] / C;
    const char *src = fwd ? "inp" : "dinp";
    NEED(fwd ? 0 : 1, fwd ? "out" : "dout", N * C);
    NEED(2, "idx", N);
    const int32_t *v = c->host[2];
    for (size_t j = 0; j < N; j++)
        if (v[j] >= 0 && (size_t)v[j] >= M)
            FAIL_INDEX("idx[%zu] = %d is outside the %zu rows of %s (negative: a row of zeros)", j, v[j], M, src);
    return 0;
}
static int chk_gather_rows_forward(const opcall *c, char *err, size_t errn) { return chk_gather_rows(c, 1, err, errn); }
static int chk_gather_rows_backward(const opcall *c, char *err, size_t errn) { return chk_gather_rows(c, 0, err, errn); }
static void run_gather_rows_forward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->gather_rows_forward(ctx, AP(0), AP(1), AP(2), AI(3), AI(4));
}
static void run_gather_rows_backward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->gather_rows_backward(ctx, AP(0), AP(1), AP(2), AI(3), AI(4));
}

/* ---- lstm_cell_forward(h, c, gates, gh, c_prev, N, Np, H) and
 *      lstm_cell_backward(dgates, dc_prev, dh, dc, gates, c, c_prev, N, Np, H): k0 the index of N */
static int chk_lstm_cell(const opcall *c, int k0, char *err, size_t errn) {
    POS(k0, "N");
    POS(k0 + 2, "H");
    if (c->i[k0 + 1] < 0 || c->i[k0 + 1] > c->i[k0])
        FAIL("Np (the rows that continue a sequence) must be in 0..N=%lld, got %lld", (long long)c->i[k0],
             (long long)c->i[k0 + 1]);
    size_t Np = (size_t)c->i[k0 + 1], H = (size_t)c->i[k0 + 2];
    int kcp = k0 - 1; /* c_prev */
    if (Np && !c->p[kcp]) FAIL("c_prev is needed when Np > 0");
    NEED(kcp, "c_prev", Np * H);
    return 0;
}
static int chk_lstm_cell_forward(const opcall *c, char *err, size_t errn) {
    if (chk_lstm_cell(c, 5, err, errn)) return 1;
    size_t N = (size_t)c->i[5], H = (size_t)c->i[7];
    NEED(0, "h", N * H);
    NEED(1, "c", N * H);
    NEED(2, "gates", N * 4 * H);
    NEED(3, "gh", N * 4 * H);
    return 0;
}
static int chk_lstm_cell_backward(const opcall *c, char *err, size_t errn) {
    if (chk_lstm_cell(c, 7, err, errn)) return 1;
    size_t N = (size_t)c->i[7], Np = (size_t)c->i[8], H = (size_t)c->i[9];
    NEED(0, "dgates", N * 4 * H);
    NEED(1, "dc_prev", Np * H);
    NEED(2, "dh", N * H);
    NEED(3, "dc", N * H);
    NEED(4, "gates", N * 4 * H);
    NEED(5, "c", N * H);
    return 0;
}
static void run_lstm_cell_forward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->lstm_cell_forward(ctx, AP(0), AP(1), AP(2), AP(3), AP(4), AI(5), AI(6), AI(7));
}
static void run_lstm_cell_backward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->lstm_cell_backward(ctx, AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AI(7), AI(8), AI(9));
}

/* ---- segment_pool_forward(out, x, scores, seg_off, S, N, C, mode) and
 *      segment_pool_backward(dx, dscores, dout, x, scores, seg_off, S, N, C, mode): k0 the index of S */
static int chk_segment_pool(const opcall *c, int k0, char *err, size_t errn) {
    POS(k0, "S");
    POS(k0 + 1, "N");
    POS(k0 + 2, "C");
    int64_t mode = c->i[k0 + 3];
    if (mode < 0 || mode >= LNN_NSEGPOOL) FAIL("mode must be 0 (mean), 1 (max) or 2 (attention), got %lld", (long long)mode);
    size_t S = (size_t)c->i[k0], N = (size_t)c->i[k0 + 1];
    int koff = k0 - 1, ksc = k0 - 2;
    NEED(koff, "seg_off", S + 1);
    const int32_t *o = c->host[koff];
    if (o[0] != 0) FAIL("seg_off[0] must be 0, got %d", o[0]);
    for (size_t s = 0; s < S; s++)
        if (o[s + 1] <= o[s]) FAIL("seg_off must grow strictly (no empty segment): seg_off[%zu..%zu] = %d..%d", s, s + 1, o[s], o[s + 1]);
    if ((size_t)o[S] != N) FAIL("seg_off[S] = %d but N = %zu", o[S], N);
    if (mode == LNN_SEGPOOL_ATTN && !c->p[ksc]) FAIL("attention pooling (mode 2) needs scores");
    NEED(ksc, "scores", N);
    return 0;
}
static int chk_segment_pool_forward(const opcall *c, char *err, size_t errn) {
    if (chk_segment_pool(c, 4, err, errn)) return 1;
    NEED(0, "out", (size_t)c->i[4] * c->i[6]);
    NEED(1, "x", (size_t)c->i[5] * c->i[6]);
    return 0;
}
static int chk_segment_pool_backward(const opcall *c, char *err, size_t errn) {
    if (chk_segment_pool(c, 6, err, errn)) return 1;
    size_t S = (size_t)c->i[6], N = (size_t)c->i[7], C = (size_t)c->i[8];
    if (c->p[1] && c->i[9] != LNN_SEGPOOL_ATTN) FAIL("dscores is only written by attention pooling (mode 2); pass None");
    NEED(0, "dx", N * C);
    NEED(1, "dscores", N);
    NEED(2, "dout", S * C);
    NEED(3, "x", N * C);
    return 0;
}
static void run_segment_pool_forward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->segment_pool_forward(ctx, AP(0), AP(1), AP(2), AP(3), AI(4), AI(5), AI(6), AI(7));
}
static void run_segment_pool_backward(lnn_ctx *ctx, const opcall *c) {
    ctx->be->segment_pool_backward(ctx, AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AI(6), AI(7), AI(8), AI(9));
}

/* ---- grad_norm_clip(norm, grads, n, segs, nseg, clip, max_norm, inv_scale, coef) and
 *      adam_step(params, grads, m, v, n, nstate, segs, nseg, steps, lr_scale, cfg, gcoef, skip_norm, wact) */
static int chk_segments(const opcall *c, int ks, int kn, int64_t n, int64_t nstate, char *err, size_t errn) {
    if (!c->p[ks]) return 0;
    if (c->n[ks] % 4 || c->i[kn] < 0 || (size_t)c->i[kn] > c->n[ks] / 4)
        FAIL("segs must be an int64 (S, 4) array with S >= nseg = %lld", (long long)c->i[kn]);
    if (lnn_segments_check(c->host[ks], c->i[kn], n, nstate)) FAIL("%s", lnn_get_error());
    return 0;
}
static int chk_grad_norm_clip(const opcall *c, char *err, size_t errn) {
    if (c->i[2] < 0) FAIL("n must be >= 0");
    NEED(0, "norm", 1);
    NEED(1, "grads", c->i[2]);
    if (chk_segments(c, 3, 4, c->i[2], -1, err, errn)) return 1;
    if (c->i[5] && !(AX(6) >= 0)) FAIL("max_norm must be >= 0, got %g", AX(6));
    if (!(AX(7) > 0 && isfinite((float)AX(7)))) FAIL("inv_scale must be a finite float32 > 0, got %g", AX(7));
    NEED(8, "coef", 1);
    return 0;
}
static void run_grad_norm_clip(lnn_ctx *ctx, const opcall *c) {
    ctx->be->grad_norm_clip(ctx, AP(0), AP(1), (size_t)c->i[2], AP(3), AI(4), AI(5), AX(6), (float)AX(7), AP(8));
}
static int chk_adam_step(const opcall *c, char *err, size_t errn) {
    if (c->i[4] < 0 || c->i[5] < 0) FAIL("n and nstate must be >= 0");
    NEED(0, "params", c->i[4]);
    NEED(1, "grads", c->i[4]);
    NEED(2, "m", c->i[5]);
    NEED(3, "v", c->i[5]);
    if (!c->p[6]) FAIL("adam_step needs segs");
    if (chk_segments(c, 6, 7, c->i[4], c->i[5], err, errn)) return 1;
    NEED(8, "steps", c->i[7]);
    NEED(9, "lr_scale", c->i[7]);
    if (lnn_optim_config_check(&c->cfg)) FAIL("%s", lnn_get_error());
    NEED(11, "gcoef", 1);
    NEED(12, "skip_norm", 1);
    NEED(13, "wact", c->i[4]);
    return 0;
}
static void run_adam_step(lnn_ctx *ctx, const opcall *c) {
    ctx->be->adam_step(ctx, AP(0), AP(1), AP(2), AP(3), (size_t)c->i[4], (size_t)c->i[5], AP(6), AI(7), AP(8), AP(9), &c->cfg,
                       AP(11), AP(12), AP(13));
}

#define OP(nm, ...) {#nm, LNN_OP_##nm, {__VA_ARGS__}, 0, chk_##nm, run_##nm}
static opdesc OPS[] = {
    OP(cast, T_("dst", 'f', 'o'), {"dt", 'y', 0, 0, 0}, T_("src", 'f', 'i'), {"st", 'y', 0, 0, 0}, N_("n")),
    OP(embedding_forward, T_("out", 'a', 'o'), T_("ids", 'i', 'i'), TO("types", 'i', 'i'), TO("pos", 'i', 'i'),
       T_("wte", 'a', 'i'), TO("wpe", 'a', 'i'), TO("wtt", 'a', 'i'), N_("N"), N_("C")),
    OP(embedding_backward, TO("dwte", 'f', 'u'), TO("dwpe", 'f', 'u'), TO("dwtt", 'f', 'u'), T_("dout", 'a', 'i'),
       T_("ids", 'i', 'i'), TO("types", 'i', 'i'), TO("pos", 'i', 'i'), N_("N"), N_("C"), N_("pad_id"), ND("sorted", 0)),
    OP(matmul_forward, T_("out", 'a', 'o'), T_("inp", 'a', 'i'), T_("w", 'a', 'i'), TO("b", 'a', 'i'), N_("N"), N_("C"),
       N_("OC")),
    OP(matmul_backward, TO("dinp", 'a', 'u'), TO("dw", 'f', 'u'), TO("db", 'f', 'u'), T_("dout", 'a', 'i'),
       T_("inp", 'a', 'i'), T_("w", 'a', 'i'), N_("N"), N_("C"), N_("OC")),
    OP(lora_forward, T_("y", 'a', 'u'), N_("ldy"), T_("x", 'a', 'i'), T_("A", 'a', 'i'), T_("B", 'a', 'i'),
       T_("u", 'a', 'o'), ROWS, N_("C"), N_("r"), N_("OC"), X_("scale"), DROP),
    OP(lora_backward, TO("dx", 'a', 'u'), TO("dA", 'f', 'u'), TO("dB", 'f', 'u'), T_("dy", 'a', 'i'), N_("ldy"),
       T_("x", 'a', 'i'), T_("A", 'a', 'i'), T_("B", 'a', 'i'), T_("u", 'a', 'i'), ROWS, N_("C"), N_("r"), N_("OC"),
       X_("scale"), DROP),
    OP(layernorm_forward, T_("out", 'a', 'o'), T_("mean", 'f', 'o'), T_("rstd", 'f', 'o'), T_("res", 'a', 'u'),
       T_("a", 'a', 'i'), TO("r", 'a', 'i'), T_("w", 'a', 'i'), T_("b", 'a', 'i'), N_("N"), N_("C"), X_("eps")),
    OP(layernorm_backward, T_("dres", 'a', 'u'), TO("dw", 'f', 'u'), TO("db", 'f', 'u'), T_("dout", 'a', 'i'),
       T_("res", 'a', 'i'), T_("w", 'a', 'i'), T_("mean", 'f', 'i'), T_("rstd", 'f', 'i'), N_("N"), N_("C")),
    OP(bias_act_forward, T_("out", 'a', 'o'), T_("x", 'a', 'u'), TO("b", 'a', 'i'), N_("N"), N_("OC"), N_("act")),
    OP(bias_act_backward, T_("dx", 'a', 'o'), TO("db", 'f', 'u'), T_("dout", 'a', 'i'), T_("x", 'a', 'i'), N_("N"),
       N_("OC"), N_("act")),
    OP(attention_forward, T_("out", 'a', 'o'), T_("saved", 'w', 'u'), T_("scratch", 'w', 'u'), T_("qkv", 'a', 'i'),
       TO("mask", 'i', 'i'), TO("seq_off", 'i', 'i'), N_("q_first"), N_("B"), N_("T"), N_("C"), N_("NH"), DROP),
    OP(attention_backward, T_("dqkv", 'a', 'u'), T_("dout", 'a', 'i'), T_("out", 'a', 'i'), T_("saved", 'w', 'i'),
       T_("scratch", 'w', 'u'),
       T_("qkv", 'a', 'i'), TO("seq_off", 'i', 'i'), N_("q_first"), N_("B"), N_("T"), N_("C"), N_("NH"), DROP),
    OP(dropout_forward, T_("out", 'a', 'o'), T_("inp", 'a', 'i'), ROWS, N_("C"), DROP),
    OP(dropout_backward, T_("dinp", 'a', 'o'), T_("dout", 'a', 'i'), ROWS, N_("C"), DROP),
    OP(tanh_forward, T_("out", 'a', 'o'), T_("inp", 'a', 'i'), N_("n")),
    OP(tanh_backward, T_("dinp", 'a', 'o'), T_("dout", 'a', 'i'), T_("out", 'a', 'i'), N_("n")),
    OP(token0_forward, T_("out", 'a', 'o'), T_("inp", 'a', 'i'), ROWS, N_("C")),
    OP(token0_backward, T_("dinp", 'a', 'u'), T_("dout", 'a', 'i'), ROWS, N_("C")),
    OP(mean_pool_forward, T_("out", 'a', 'o'), T_("h", 'a', 'i'), TO("mask", 'i', 'i'), ROWS, N_("C")),
    OP(mean_pool_backward, T_("dh", 'a', 'u'), T_("dout", 'a', 'i'), TO("mask", 'i', 'i'), ROWS, N_("C")),
    OP(concat_forward, T_("out", 'a', 'o'), T_("h", 'a', 'i'), T_("f", 'a', 'i'), N_("B"), N_("H"), N_("F")),
    OP(concat_backward, TO("dh", 'a', 'u'), TO("df", 'a', 'u'), T_("dout", 'a', 'i'), N_("B"), N_("H"), N_("F")),
    OP(batchnorm_forward, T_("out", 'a', 'o'), T_("save_mean", 'f', 'o'), T_("save_rstd", 'f', 'o'), T_("x", 'a', 'i'),
       TO("gamma", 'a', 'i'), TO("beta", 'a', 'i'), TO("running_mean", 'f', 'u'), TO("running_var", 'f', 'u'), N_("N"),
       N_("C"), N_("training"), X_("momentum"), X_("eps")),
    OP(batchnorm_backward, TO("dx", 'a', 'u'), TO("dgamma", 'f', 'u'), TO("dbeta", 'f', 'u'), T_("dout", 'a', 'i'),
       T_("x", 'a', 'i'), TO("gamma", 'a', 'i'), T_("save_mean", 'f', 'i'), T_("save_rstd", 'f', 'i'), N_("N"), N_("C"),
       N_("batch_stats")),
    OP(cross_entropy, T_("loss", 'g', 'o'), TO("dlogits", 'a', 'o'), T_("logits", 'a', 'i'), T_("labels", 'l', 'i'),
       TO("class_weight", 'f', 'i'), N_("N"), N_("K"), N_("ignore_index"), X_("grad_scale")),
    OP(bce_with_logits, T_("loss", 'g', 'o'), TO("dlogits", 'a', 'o'), T_("logits", 'a', 'i'), T_("targets", 'a', 'i'),
       TO("pos_weight", 'f', 'i'), N_("N"), N_("K"), X_("grad_scale")),
    OP(mse, T_("loss", 'g', 'o'), TO("dpreds", 'a', 'o'), T_("preds", 'a', 'i'), T_("targets", 'a', 'i'), N_("n"),
       X_("grad_scale")),
    OP(grad_norm_clip, T_("norm", 'g', 'o'), T_("grads", 'f', 'u'), N_("n"), TO("segs", 'l', 'i'), N_("nseg"),
       N_("clip"), X_("max_norm"), XD("inv_scale", 1.0), TO("coef", 'f', 'o')),
    OP(adam_step, T_("params", 'f', 'u'), T_("grads", 'f', 'u'), T_("m", 'f', 'u'), T_("v", 'f', 'u'), N_("n"),
       N_("nstate"), T_("segs", 'l', 'i'), N_("nseg"), T_("steps", 'l', 'u'), TO("lr_scale", 'f', 'i'),
       {"cfg", 'c', 0, 0, 0}, TO("gcoef", 'f', 'i'), TO("skip_norm", 'g', 'i'), TO("wact", 'a', 'u')),
    OP(gather_rows_forward, T_("out", 'a', 'o'), T_("inp", 'a', 'i'), T_("idx", 'i', 'i'), N_("N"), N_("C")),
    OP(gather_rows_backward, T_("dinp", 'a', 'u'), T_("dout", 'a', 'i'), T_("idx", 'i', 'i'), N_("N"), N_("C")),
    OP(lstm_cell_forward, T_("h", 'a', 'o'), T_("c", 'a', 'o'), T_("gates", 'a', 'u'), T_("gh", 'a', 'i'),
       TO("c_prev", 'a', 'i'), N_("N"), N_("Np"), N_("H")),
    OP(lstm_cell_backward, T_("dgates", 'a', 'o'), TO("dc_prev", 'a', 'o'), T_("dh", 'a', 'i'), T_("dc", 'a', 'i'),
       T_("gates", 'a', 'i'), T_("c", 'a', 'i'), TO("c_prev", 'a', 'i'), N_("N"), N_("Np"), N_("H")),
    OP(segment_pool_forward, T_("out", 'a', 'o'), T_("x", 'a', 'i'), TO("scores", 'a', 'i'), T_("seg_off", 'i', 'i'),
       N_("S"), N_("N"), N_("C"), N_("mode")),
    OP(segment_pool_backward, TO("dx", 'a', 'u'), TO("dscores", 'a', 'o'), T_("dout", 'a', 'i'), T_("x", 'a', 'i'),
       TO("scores", 'a', 'i'), T_("seg_off", 'i', 'i'), N_("S"), N_("N"), N_("C"), N_("mode")),
};
#define NOPDESC ((int)(sizeof OPS / sizeof OPS[0]))
_Static_assert(sizeof OPS / sizeof OPS[0] == LNN_NOPS, "every op of the table has its description here");

/* ------------------------------------------------------------------ marshalling */

static int npy_type(char dtype, lnn_dtype act) {
    switch (dtype) {
    case 'a': case 'f': return NPY_FLOAT32;
    case 'i': return NPY_INT32;
    case 'l': return NPY_INT64;
    case 'u': return NPY_UINT8;
    case 'g': return NPY_FLOAT64;
    default: return -1;
    }
}

static lnn_dtype arg_dtype(char dtype, lnn_dtype act) {
    switch (dtype) {
    case 'a': return act;
    case 'f': return LNN_F32;
    case 'i': return LNN_I32;
    case 'l': return LNN_I64;
    case 'u': return LNN_U8;
    case 'g': return LNN_F64;
    default: return LNN_U8;
    }
}

/* What a call allocated: freed (and copied back) after it. */
typedef struct {
    PyArrayObject *arr[MAXARGS];
    void *dev[MAXARGS];
    PyArrayObject *rows_off;
    void *rows_dev;
} staging;

static void staging_free(lnn_ctx *ctx, staging *s) {
    for (int k = 0; k < MAXARGS; k++) ctx->be->free(ctx, s->dev[k]);
    ctx->be->free(ctx, s->rows_dev);
}

/* Host array (float32 when bf16 activations) -> new backend buffer. */
static void *upload(lnn_ctx *ctx, const void *host, size_t n, lnn_dtype t, int act_conv) {
    size_t bytes = n * lnn_dtype_size(t);
    void *d = ctx->be->malloc(ctx, bytes ? bytes : 1);
    if (!d) return NULL;
    if (act_conv && lnn_dtype_is_half(t)) {
        uint16_t *tmp = PyMem_Malloc(n * 2 + 2);
        if (!tmp) {
            ctx->be->free(ctx, d);
            return NULL;
        }
        for (size_t i = 0; i < n; i++)
            tmp[i] = t == LNN_BF16 ? lnn_f32_to_bf16(((const float *)host)[i]) : lnn_f32_to_f16(((const float *)host)[i]);
        ctx->be->to_device(ctx, d, tmp, bytes);
        PyMem_Free(tmp);
    } else if (bytes) {
        ctx->be->to_device(ctx, d, host, bytes);
    }
    return d;
}

static int download(lnn_ctx *ctx, void *host, const void *d, size_t n, lnn_dtype t, int act_conv) {
    size_t bytes = n * lnn_dtype_size(t);
    if (act_conv && lnn_dtype_is_half(t)) {
        uint16_t *tmp = PyMem_Malloc(n * 2 + 2);
        if (!tmp) return -1;
        ctx->be->to_host(ctx, tmp, d, bytes);
        for (size_t i = 0; i < n; i++)
            ((float *)host)[i] = t == LNN_BF16 ? lnn_bf16_to_f32(tmp[i]) : lnn_f16_to_f32(tmp[i]);
        PyMem_Free(tmp);
    } else if (bytes) {
        ctx->be->to_host(ctx, host, d, bytes);
    }
    return 0;
}

static int get_int(PyObject *o, const char *nm, int64_t *out) {
    if (PyBool_Check(o) || !PyLong_Check(o)) {
        if (PyBool_Check(o)) {
            *out = o == Py_True;
            return 0;
        }
        PyErr_Format(PyExc_TypeError, "%s must be an int, got %s", nm, Py_TYPE(o)->tp_name);
        return -1;
    }
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = v;
    return 0;
}

static int get_float(PyObject *o, const char *nm, double *out) {
    double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a number, got %s", nm, Py_TYPE(o)->tp_name);
        return -1;
    }
    *out = v;
    return 0;
}

static PyObject *item(PyObject *d, const char *key, const char *what) {
    PyObject *v = PyDict_GetItemString(d, key);
    if (!v) PyErr_Format(PyExc_KeyError, "%s needs the key %s", what, key);
    return v;
}

static int get_drop(PyObject *o, lnn_dropout_t *d) {
    if (!PyDict_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "drop must be a dict(p=, seed=, step=, stream=)");
        return -1;
    }
    PyObject *p = item(o, "p", "drop"), *seed = item(o, "seed", "drop"), *step = item(o, "step", "drop"),
             *stream = item(o, "stream", "drop");
    double pv;
    if (!p || !seed || !step || !stream || get_float(p, "drop.p", &pv) < 0) return -1;
    unsigned long long sd = PyLong_AsUnsignedLongLong(seed);
    unsigned long long st = PyLong_AsUnsignedLongLong(step), sm = PyLong_AsUnsignedLongLong(stream);
    if (PyErr_Occurred()) return -1;
    if (st > 0xFFFFFFFFull || sm > 0xFFFFFFFFull) {
        PyErr_SetString(PyExc_ValueError, "drop.step and drop.stream must be < 2**32");
        return -1;
    }
    d->p = (float)pv;
    d->seed = sd;
    d->step = (uint32_t)st;
    d->stream = (uint32_t)sm;
    return 0;
}

static int get_rows(PyObject *o, opcall *c, staging *s) {
    if (!PyDict_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "rows must be a dict(N=, B=, T=, seq_off=None, first_only=False)");
        return -1;
    }
    int64_t v[4] = {0, 0, 0, 0};
    const char *keys[3] = {"N", "B", "T"};
    for (int k = 0; k < 3; k++) {
        PyObject *x = item(o, keys[k], "rows");
        if (!x || get_int(x, keys[k], &v[k]) < 0) return -1;
        if (v[k] < 0 || v[k] > (1 << 30)) {
            PyErr_Format(PyExc_ValueError, "rows.%s must be in 0..2^30", keys[k]);
            return -1;
        }
    }
    PyObject *fo = PyDict_GetItemString(o, "first_only");
    if (fo && get_int(fo, "first_only", &v[3]) < 0) return -1;
    c->rows.N = (int)v[0];
    c->rows.B = (int)v[1];
    c->rows.T = (int)v[2];
    c->rows.first_only = v[3] != 0;
    c->rows.seq_off = NULL;
    PyObject *so = PyDict_GetItemString(o, "seq_off");
    if (so && so != Py_None && !c->rows.first_only) {
        npy_intp shp[1] = {(npy_intp)c->rows.B + 1};
        PyArrayObject *a = lnn_check_array(so, "rows.seq_off", NPY_INT32, 1, shp, 0);
        if (!a) return -1;
        s->rows_off = a;
        c->rows_off_host = PyArray_DATA(a);
    }
    return 0;
}

static int get_cfg(PyObject *o, lnn_optim_config *cfg) {
    if (!PyDict_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "cfg must be a dict(lr=, beta1=, beta2=, eps=, weight_decay=, decoupled=)");
        return -1;
    }
    memset(cfg, 0, sizeof *cfg);
    const char *keys[5] = {"lr", "beta1", "beta2", "eps", "weight_decay"};
    double *dst[5] = {&cfg->lr, &cfg->beta1, &cfg->beta2, &cfg->eps, &cfg->weight_decay};
    for (int k = 0; k < 5; k++) {
        PyObject *x = item(o, keys[k], "cfg");
        if (!x || get_float(x, keys[k], dst[k]) < 0) return -1;
    }
    PyObject *dec = PyDict_GetItemString(o, "decoupled");
    int64_t d = 1;
    if (dec && get_int(dec, "decoupled", &d) < 0) return -1;
    cfg->decoupled = d != 0;
    return 0;
}

static lnn_dtype dtype_by_name(PyObject *o, int *ok) {
    const char *s = PyUnicode_Check(o) ? PyUnicode_AsUTF8(o) : NULL;
    for (int t = 0; s && t < LNN_NDTYPES; t++)
        if (strcmp(s, lnn_dtype_name((lnn_dtype)t)) == 0) {
            *ok = 1;
            return (lnn_dtype)t;
        }
    *ok = 0;
    return LNN_F32;
}

static const opdesc *find_op(const char *name) {
    for (int k = 0; k < NOPDESC; k++)
        if (strcmp(OPS[k].name, name) == 0) return &OPS[k];
    return NULL;
}

/* Parse, check, stage, run, copy back. */
static PyObject *Backend_call(BackendObject *self, PyObject *args, PyObject *kw) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    if (!self->ready) {
        PyErr_SetString(lnn_Error, "the Backend is not initialised");
        return NULL;
    }
    lnn_ctx *ctx = &self->ctx;
    const opdesc *od = find_op(name);
    if (!od) {
        PyErr_Format(PyExc_ValueError, "unknown op %s; the ops are listed by Backend.ops()", name);
        return NULL;
    }
    if (!ctx->be->supports(od->op, ctx->act)) {
        PyErr_Format(PyExc_NotImplementedError, "the %s backend does not run %s with %s activations", ctx->be->name,
                     name, lnn_dtype_name(ctx->act));
        return NULL;
    }
    int nargs = 0;
    while (nargs < MAXARGS && od->args[nargs].name) nargs++;
    opcall c;
    staging s;
    memset(&c, 0, sizeof c);
    memset(&s, 0, sizeof s);
    c.ctx = ctx;
    PyObject *ret = NULL;
    /* every keyword must be an argument of the op */
    if (kw) {
        PyObject *key, *val;
        Py_ssize_t pos = 0;
        while (PyDict_Next(kw, &pos, &key, &val)) {
            const char *k = PyUnicode_AsUTF8(key);
            int found = 0;
            for (int a = 0; k && a < nargs; a++) found |= strcmp(od->args[a].name, k) == 0;
            if (!found) {
                PyErr_Format(PyExc_TypeError, "%s has no argument %s", name, k ? k : "?");
                return NULL;
            }
        }
    }
    for (int a = 0; a < nargs; a++) {
        const argspec *sp = &od->args[a];
        PyObject *o = kw ? PyDict_GetItemString(kw, sp->name) : NULL;
        if (!o) {
            if (sp->kind == 't' && sp->opt) continue;
            if (sp->kind == 'x' && sp->opt) {
                c.x[a] = sp->def;
                continue;
            }
            if (sp->kind == 'n' && sp->opt) {
                c.i[a] = (int64_t)sp->def;
                continue;
            }
            PyErr_Format(PyExc_TypeError, "%s needs the argument %s", name, sp->name);
            goto done;
        }
        switch (sp->kind) {
        case 'n':
            if (get_int(o, sp->name, &c.i[a]) < 0) goto done;
            break;
        case 'x':
            if (get_float(o, sp->name, &c.x[a]) < 0) goto done;
            break;
        case 'd':
            if (get_drop(o, &c.drop) < 0) goto done;
            break;
        case 'r':
            if (get_rows(o, &c, &s) < 0) goto done;
            break;
        case 'c':
            if (get_cfg(o, &c.cfg) < 0) goto done;
            break;
        case 'y': {
            int ok;
            c.dt[a] = dtype_by_name(o, &ok);
            if (!ok) {
                PyErr_Format(PyExc_ValueError, "%s must be a dtype name such as 'f32' or 'bf16'", sp->name);
                goto done;
            }
            break;
        }
        case 't':
            if (o == Py_None) {
                if (!sp->opt) {
                    PyErr_Format(PyExc_TypeError, "%s of %s cannot be None", sp->name, name);
                    goto done;
                }
                break;
            }
            if (PyObject_TypeCheck(o, &BufferType)) {
                BufferObject *b = (BufferObject *)o;
                if (b->owner != self) {
                    PyErr_Format(PyExc_ValueError, "%s is a Buffer of another Backend; use this Backend's alloc()",
                                 sp->name);
                    goto done;
                }
                c.p[a] = b->p;
                size_t es = sp->dtype == 'w' ? 1 : lnn_dtype_size(arg_dtype(sp->dtype, ctx->act));
                c.n[a] = b->nbytes / es;
                break;
            }
            if (sp->dtype == 'w') {
                PyErr_Format(PyExc_TypeError, "%s must be a Buffer from Backend.alloc()", sp->name);
                goto done;
            }
            {
                int nt = npy_type(sp->dtype, ctx->act);
                PyArrayObject *arr = PyArray_Check(o) ? (PyArrayObject *)o : NULL;
                if (!arr) {
                    PyErr_Format(PyExc_TypeError, "%s must be a numpy array or a Buffer, got %s", sp->name,
                                 Py_TYPE(o)->tp_name);
                    goto done;
                }
                arr = lnn_check_array(o, sp->name, nt, PyArray_NDIM(arr), NULL, sp->io != 'i');
                if (!arr) goto done;
                lnn_dtype t = arg_dtype(sp->dtype, ctx->act);
                size_t n = (size_t)PyArray_SIZE(arr);
                s.arr[a] = arr;
                s.dev[a] = upload(ctx, PyArray_DATA(arr), n, t, sp->dtype == 'a');
                if (!s.dev[a]) {
                    PyErr_NoMemory();
                    goto done;
                }
                c.p[a] = s.dev[a];
                c.n[a] = n;
                c.host[a] = PyArray_DATA(arr);
                c.dt[a] = t;
            }
            break;
        }
    }
    if (s.rows_off) {
        s.rows_dev = upload(ctx, PyArray_DATA(s.rows_off), (size_t)c.rows.B + 1, LNN_I32, 0);
        if (!s.rows_dev) {
            PyErr_NoMemory();
            goto done;
        }
        c.rows.seq_off = s.rows_dev;
    }
    /* index arrays handed as Buffers cannot be value-checked: refuse them */
    for (int a = 0; a < nargs; a++)
        if (od->args[a].kind == 't' && (od->args[a].dtype == 'i' || od->args[a].dtype == 'l') && c.p[a] && !c.host[a]) {
            PyErr_Format(PyExc_TypeError, "%s holds indices: pass it as a numpy array (checked), not a Buffer",
                         od->args[a].name);
            goto done;
        }
    char err[512];
    int bad = od->check(&c, err, sizeof err);
    if (bad) {
        PyErr_Format(bad == 2 ? PyExc_IndexError : PyExc_ValueError, "%s: %s", name, err);
        goto done;
    }
    lnn_status st;
    LNN_RELEASE_GIL
    od->run(ctx, &c);
    st = lnn_sync(ctx);
    LNN_ACQUIRE_GIL
    if (st) {
        lnn_raise_status(st);
        goto done;
    }
    for (int a = 0; a < nargs; a++) {
        const argspec *sp = &od->args[a];
        if (sp->kind == 't' && s.arr[a] && sp->io != 'i' &&
            download(ctx, PyArray_DATA(s.arr[a]), s.dev[a], c.n[a], c.dt[a], sp->dtype == 'a') < 0) {
            PyErr_NoMemory();
            goto done;
        }
    }
    ret = Py_NewRef(Py_None);
done:
    staging_free(ctx, &s);
    if (c.extra) ctx->be->free(ctx, c.extra);
    return ret;
}

/* ------------------------------------------------------------------ Backend methods */

static int Backend_init(BackendObject *self, PyObject *args, PyObject *kw) {
    static char *kws[] = {"name", "dtype", "device", NULL};
    const char *name = "cpu", *dt = "f32";
    int device = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|ssi", kws, &name, &dt, &device)) return -1;
    if (self->ready) {
        PyErr_SetString(lnn_Error, "Backend is already initialised; create a new one");
        return -1;
    }
    const lnn_backend *be = lnn_backend_find(name);
    if (!be) {
        PyErr_Format(PyExc_ValueError, "backend %s: %s", name, lnn_backend_missing(name));
        return -1;
    }
    int act = -1;
    for (int t = 0; t < LNN_NDTYPES; t++)
        if (strcmp(dt, lnn_dtype_name((lnn_dtype)t)) == 0) act = t;
    if (act != LNN_F32 && act != LNN_BF16 && act != LNN_F16) {
        PyErr_Format(PyExc_ValueError, "dtype must be 'f32', 'bf16' or 'f16', got %s", dt);
        return -1;
    }
    lnn_status st = lnn_ctx_init(&self->ctx, be, device, (lnn_dtype)act);
    if (st) {
        lnn_raise_status(st);
        return -1;
    }
    self->ready = 1;
    return 0;
}

static void Backend_dealloc(BackendObject *self) {
    if (self->ready) lnn_ctx_release(&self->ctx);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int backend_missing(BackendObject *self) {
    if (self->ready) return 0;
    PyErr_SetString(lnn_Error, "the Backend is not initialised");
    return 1;
}

static PyObject *Backend_ops(BackendObject *self, PyObject *unused) {
    if (backend_missing(self)) return NULL;
    PyObject *out = PyDict_New();
    if (!out) return NULL;
    for (int k = 0; k < NOPDESC; k++) {
        int n = 0;
        while (n < MAXARGS && OPS[k].args[n].name) n++;
        PyObject *sig = PyTuple_New(n);
        if (!sig) goto fail;
        for (int a = 0; a < n; a++) {
            const argspec *sp = &OPS[k].args[a];
            char kind[2] = {sp->kind, 0}, dt[2] = {sp->dtype ? sp->dtype : '-', 0}, io[2] = {sp->io ? sp->io : '-', 0};
            PyObject *t = Py_BuildValue("(sssOs)", sp->name, kind, dt, sp->opt ? Py_True : Py_False, io);
            if (!t) {
                Py_DECREF(sig);
                goto fail;
            }
            PyTuple_SET_ITEM(sig, a, t);
        }
        if (PyDict_SetItemString(out, OPS[k].name, sig) < 0) {
            Py_DECREF(sig);
            goto fail;
        }
        Py_DECREF(sig);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyObject *Backend_supports(BackendObject *self, PyObject *args) {
    const char *name, *dt = NULL;
    if (!PyArg_ParseTuple(args, "s|s", &name, &dt)) return NULL;
    if (backend_missing(self)) return NULL;
    const opdesc *od = find_op(name);
    if (!od) {
        PyErr_Format(PyExc_ValueError, "unknown op %s", name);
        return NULL;
    }
    lnn_dtype act = self->ctx.act;
    if (dt) {
        int ok = 0;
        PyObject *s = PyUnicode_FromString(dt);
        if (!s) return NULL;
        act = dtype_by_name(s, &ok);
        Py_DECREF(s);
        if (!ok) {
            PyErr_Format(PyExc_ValueError, "unknown dtype %s", dt);
            return NULL;
        }
    }
    return PyBool_FromLong(self->ctx.be->supports(od->op, act));
}

static PyObject *Backend_alloc(BackendObject *self, PyObject *args) {
    long long nbytes;
    if (!PyArg_ParseTuple(args, "L", &nbytes)) return NULL;
    if (backend_missing(self)) return NULL;
    if (nbytes < 0 || nbytes > ((long long)1 << 40)) {
        PyErr_Format(PyExc_ValueError, "alloc(nbytes): nbytes must be in 0..2^40, got %lld", nbytes);
        return NULL;
    }
    BufferObject *b = PyObject_New(BufferObject, &BufferType);
    if (!b) return NULL;
    b->p = self->ctx.be->malloc(&self->ctx, nbytes ? (size_t)nbytes : 1);
    b->nbytes = (size_t)nbytes;
    if (!b->p) {
        b->owner = NULL;
        Py_DECREF(b);
        return PyErr_NoMemory();
    }
    self->ctx.be->zero(&self->ctx, b->p, b->nbytes);
    b->owner = (BackendObject *)Py_NewRef(self);
    return (PyObject *)b;
}

static PyObject *Backend_attention_bytes(BackendObject *self, PyObject *args, int saved) {
    int B, T, NH, train;
    double p;
    if (!PyArg_ParseTuple(args, "iiipd", &B, &T, &NH, &train, &p)) return NULL;
    if (backend_missing(self)) return NULL;
    if (B < 1 || T < 1 || NH < 1 || B > (1 << 20) || T > (1 << 16) || NH > (1 << 12)) {
        PyErr_SetString(PyExc_ValueError, "B, T, NH must be >= 1 (and B <= 2^20, T <= 2^16, NH <= 2^12)");
        return NULL;
    }
    size_t n = saved ? self->ctx.be->attention_saved_bytes(&self->ctx, B, T, NH, train, (float)p)
                     : self->ctx.be->attention_scratch_bytes(&self->ctx, B, T, NH, train, (float)p);
    return PyLong_FromSize_t(n);
}
static PyObject *Backend_attention_saved_bytes(BackendObject *self, PyObject *args) {
    return Backend_attention_bytes(self, args, 1);
}
static PyObject *Backend_attention_scratch_bytes(BackendObject *self, PyObject *args) {
    return Backend_attention_bytes(self, args, 0);
}

static PyObject *Backend_get_name(BackendObject *self, void *cl) {
    if (backend_missing(self)) return NULL;
    return PyUnicode_FromString(self->ctx.be->name);
}
static PyObject *Backend_get_dtype(BackendObject *self, void *cl) {
    if (backend_missing(self)) return NULL;
    return PyUnicode_FromString(lnn_dtype_name(self->ctx.act));
}
static PyObject *Backend_get_host_memory(BackendObject *self, void *cl) {
    if (backend_missing(self)) return NULL;
    return PyBool_FromLong(self->ctx.be->caps.host_memory);
}

static PyMethodDef Backend_methods[] = {
    {"call", (PyCFunction)(void (*)(void))Backend_call, METH_VARARGS | METH_KEYWORDS,
     "call(op, **arguments): run one op of the table; numpy outputs are written in place."},
    {"ops", (PyCFunction)Backend_ops, METH_NOARGS,
     "ops() -> {op: ((name, kind, dtype, optional, io), ...)} in the order of the C signature."},
    {"supports", (PyCFunction)Backend_supports, METH_VARARGS, "supports(op, dtype=None) -> bool"},
    {"alloc", (PyCFunction)Backend_alloc, METH_VARARGS, "alloc(nbytes) -> Buffer of zeroed backend memory."},
    {"attention_saved_bytes", (PyCFunction)Backend_attention_saved_bytes, METH_VARARGS,
     "attention_saved_bytes(B, T, NH, train, p) -> int"},
    {"attention_scratch_bytes", (PyCFunction)Backend_attention_scratch_bytes, METH_VARARGS,
     "attention_scratch_bytes(B, T, NH, train, p) -> int"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Backend_getset[] = {
    {"name", (getter)Backend_get_name, NULL, "The backend's name.", NULL},
    {"dtype", (getter)Backend_get_dtype, NULL, "The activation dtype of this context.", NULL},
    {"host_memory", (getter)Backend_get_host_memory, NULL, "Backend memory is host memory.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject BackendType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lyricnn._C.Backend",
    .tp_basicsize = sizeof(BackendObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Backend(name='cpu', dtype='f32', device=0): a context on a compute backend; call() runs its ops.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Backend_init,
    .tp_dealloc = (destructor)Backend_dealloc,
    .tp_methods = Backend_methods,
    .tp_getset = Backend_getset,
};

/* ------------------------------------------------------------------ Buffer */

static void Buffer_dealloc(BufferObject *self) {
    if (self->owner) {
        self->owner->ctx.be->free(&self->owner->ctx, self->p);
        Py_DECREF(self->owner);
    }
    PyObject_Free(self);
}

/* read(dtype='f32') -> a numpy copy of the whole buffer as that dtype */
static PyObject *Buffer_read(BufferObject *self, PyObject *args) {
    const char *dt = "f32";
    if (!PyArg_ParseTuple(args, "|s", &dt)) return NULL;
    static const char *names[5] = {"f32", "i32", "i64", "u8", "f64"};
    static const int types[5] = {NPY_FLOAT32, NPY_INT32, NPY_INT64, NPY_UINT8, NPY_FLOAT64};
    static const size_t sizes[5] = {4, 4, 8, 1, 8};
    int k = 0;
    while (k < 5 && strcmp(dt, names[k])) k++;
    if (k == 5) {
        PyErr_Format(PyExc_ValueError, "dtype must be f32, i32, i64, u8 or f64, got %s", dt);
        return NULL;
    }
    int nt = types[k];
    npy_intp n = (npy_intp)(self->nbytes / sizes[k]);
    PyObject *out = PyArray_SimpleNew(1, &n, nt);
    if (!out) return NULL;
    lnn_ctx *ctx = &self->owner->ctx;
    ctx->be->to_host(ctx, PyArray_DATA((PyArrayObject *)out), self->p, (size_t)PyArray_NBYTES((PyArrayObject *)out));
    return out;
}

static PyObject *Buffer_get_nbytes(BufferObject *self, void *cl) { return PyLong_FromSize_t(self->nbytes); }

static PyMethodDef Buffer_methods[] = {
    {"read", (PyCFunction)Buffer_read, METH_VARARGS, "read(dtype='f32') -> numpy copy of the buffer"},
    {NULL, NULL, 0, NULL},
};
static PyGetSetDef Buffer_getset[] = {
    {"nbytes", (getter)Buffer_get_nbytes, NULL, "Size in bytes.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject BufferType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lyricnn._C.Buffer",
    .tp_basicsize = sizeof(BufferObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Backend memory from Backend.alloc(), passed to Backend.call() as it is.",
    .tp_dealloc = (destructor)Buffer_dealloc,
    .tp_methods = Buffer_methods,
    .tp_getset = Buffer_getset,
};

/* ------------------------------------------------------------------ registration */

static PyObject *py_backends(PyObject *self, PyObject *unused) {
    const char *const *names = lnn_backend_names();
    PyObject *out = PyList_New(0);
    for (int i = 0; out && names[i]; i++) {
        PyObject *s = PyUnicode_FromString(names[i]);
        if (!s || PyList_Append(out, s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(s);
    }
    return out;
}

/* gemm_tasks(ta, M, N, K) -> [(m0, m1, n0, n1, k0, k1), ...]: how the CPU GEMM splits C(M,N) += op(A) op(B)
 * (cpu/gemm_grid.h), for the tests and bench/gemm_grid.py */
static PyObject *py_gemm_tasks(PyObject *self, PyObject *args) {
    int ta, M, N, K;
    if (!PyArg_ParseTuple(args, "piii", &ta, &M, &N, &K)) return NULL;
    if (M < 0 || N < 0 || K < 0) {
        PyErr_Format(PyExc_ValueError, "gemm_tasks: M, N and K must be >= 0, got %d, %d, %d", M, N, K);
        return NULL;
    }
    lnn_gemm_grid_t g = lnn_gemm_grid(ta, M, N, K);
    int n = g.gm * g.gn * g.gk;
    PyObject *out = PyList_New(n);
    for (int t = 0; out && t < n; t++) {
        int m0, m1, n0, n1, k0, k1;
        lnn_gemm_task(g, M, N, K, t, &m0, &m1, &n0, &n1, &k0, &k1);
        PyObject *o = Py_BuildValue("(iiiiii)", m0, m1, n0, n1, k0, k1);
        if (!o) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, t, o);
    }
    return out;
}

static PyMethodDef ops_functions[] = {
    {"backends", py_backends, METH_NOARGS, "backends() -> the names of this build's compute backends"},
    {"gemm_tasks", py_gemm_tasks, METH_VARARGS,
     "gemm_tasks(ta, M, N, K) -> [(m0, m1, n0, n1, k0, k1)]: the CPU GEMM's tasks for C(M,N) += op(A)(M,K) op(B)(K,N)"},
    {NULL, NULL, 0, NULL},
};

int lnn_register_ops(PyObject *m) {
    if (lnn_add_type(m, "Backend", &BackendType) < 0) return -1;
    if (PyType_Ready(&BufferType) < 0) return -1;
    Py_INCREF(&BufferType);
    if (PyModule_AddObject(m, "Buffer", (PyObject *)&BufferType) < 0) {
        Py_DECREF(&BufferType);
        return -1;
    }
    return PyModule_AddFunctions(m, ops_functions);
}
