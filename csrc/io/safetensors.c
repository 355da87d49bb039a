/* io/safetensors.c: validated safetensors reading (strict JSON header parser) and writing. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "lyricnn's safetensors I/O assumes a little-endian host"
#endif

/* ---------------------------------------------------------------- dtypes */

static const struct { const char *name; size_t size; } st_dtypes[LNN_ST_NUM_DTYPES] = {
    [LNN_ST_BOOL] = {"BOOL", 1}, [LNN_ST_U8] = {"U8", 1},     [LNN_ST_I8] = {"I8", 1},
    [LNN_ST_F8_E5M2] = {"F8_E5M2", 1}, [LNN_ST_F8_E4M3] = {"F8_E4M3", 1},
    [LNN_ST_I16] = {"I16", 2},   [LNN_ST_U16] = {"U16", 2},   [LNN_ST_F16] = {"F16", 2},
    [LNN_ST_BF16] = {"BF16", 2}, [LNN_ST_I32] = {"I32", 4},   [LNN_ST_U32] = {"U32", 4},
    [LNN_ST_F32] = {"F32", 4},   [LNN_ST_F64] = {"F64", 8},   [LNN_ST_I64] = {"I64", 8},
    [LNN_ST_U64] = {"U64", 8},
};

const char *lnn_st_dtype_name(int dtype) {
    return dtype >= 0 && dtype < LNN_ST_NUM_DTYPES ? st_dtypes[dtype].name : NULL;
}

size_t lnn_st_dtype_size(int dtype) {
    return dtype >= 0 && dtype < LNN_ST_NUM_DTYPES ? st_dtypes[dtype].size : 0;
}

int lnn_st_dtype_from_name(const char *name, size_t len) {
    for (int d = 0; d < LNN_ST_NUM_DTYPES; d++)
        if (strlen(st_dtypes[d].name) == len && memcmp(st_dtypes[d].name, name, len) == 0) return d;
    return -1;
}

void lnn_st_header_free(lnn_st_header *h) {
    if (!h) return;
    free(h->tensors);
    free((void *)h->meta_keys);
    free((void *)h->meta_values);
    free(h->pool);
    memset(h, 0, sizeof *h);
}

/* ---------------------------------------------------------------- strict JSON for this schema */

typedef struct {
    const uint8_t *s;
    size_t n, i;
    char *pool;       /* decoded strings; capacity n + 1 always suffices (see parse_string) */
    size_t pool_used, pool_cap;
} jparser;

static lnn_status jfail(const jparser *p, const char *what) {
    lnn_set_error("invalid safetensors header: %s at byte %zu of the %zu-byte JSON header", what,
                  p->i, p->n);
    return LNN_ERR_VALUE;
}

/* Whole-header UTF-8 check: no overlong forms, no surrogates, nothing above U+10FFFF. */
static lnn_status check_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) { k = 1; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { k = 2; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { k = 3; cp = c & 0x07; min = 0x10000; }
        else goto bad;
        if (n - i <= k) goto bad;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) goto bad;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) goto bad;
        i += k + 1;
    }
    return LNN_OK;
bad:
    lnn_set_error("invalid safetensors header: not valid UTF-8 at byte %zu of the JSON header", i);
    return LNN_ERR_VALUE;
}

static void jws(jparser *p) {
    while (p->i < p->n) {
        uint8_t c = p->s[p->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->i++;
    }
}

static int jpeek(const jparser *p) { return p->i < p->n ? p->s[p->i] : -1; }

static lnn_status jexpect(jparser *p, char c, const char *what) {
    jws(p);
    if (jpeek(p) != (unsigned char)c) return jfail(p, what);
    p->i++;
    return LNN_OK;
}

static int hexval(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static lnn_status read_hex4(jparser *p, uint32_t *out) {
    if (p->n - p->i < 4) return jfail(p, "truncated \\u escape");
    uint32_t v = 0;
    for (int j = 0; j < 4; j++) {
        int h = hexval(p->s[p->i + j]);
        if (h < 0) return jfail(p, "bad hex digit in \\u escape");
        v = (v << 4) | (uint32_t)h;
    }
    p->i += 4;
    *out = v;
    return LNN_OK;
}

/* Decode a JSON string into the pool. Every decoded form is no longer than its escaped form,
 * and the two quotes pay for the NUL terminator, so the pool never needs more than n + 1. */
static lnn_status parse_string(jparser *p, const char **out, size_t *out_len) {
    jws(p);
    if (jpeek(p) != '"') return jfail(p, "expected a string");
    p->i++;
    char *dst = p->pool + p->pool_used;
    size_t len = 0;
    for (;;) {
        if (p->i >= p->n) return jfail(p, "unterminated string");
        uint8_t c = p->s[p->i++];
        if (c == '"') break;
        if (c < 0x20) return jfail(p, "control character in string");
        if (c != '\\') { dst[len++] = (char)c; continue; }
        if (p->i >= p->n) return jfail(p, "unterminated escape");
        uint8_t e = p->s[p->i++];
        uint32_t cp;
        switch (e) {
        case '"': dst[len++] = '"'; continue;
        case '\\': dst[len++] = '\\'; continue;
        case '/': dst[len++] = '/'; continue;
        case 'b': dst[len++] = '\b'; continue;
        case 'f': dst[len++] = '\f'; continue;
        case 'n': dst[len++] = '\n'; continue;
        case 'r': dst[len++] = '\r'; continue;
        case 't': dst[len++] = '\t'; continue;
        case 'u': break;
        default: return jfail(p, "unknown escape in string");
        }
        if (read_hex4(p, &cp)) return LNN_ERR_VALUE;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return jfail(p, "lone low surrogate in \\u escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo;
            if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
                return jfail(p, "high surrogate without a low surrogate");
            p->i += 2;
            if (read_hex4(p, &lo)) return LNN_ERR_VALUE;
            if (lo < 0xDC00 || lo > 0xDFFF) return jfail(p, "high surrogate without a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        if (cp == 0) return jfail(p, "U+0000 in a string is not allowed");
        if (cp < 0x80) {
            dst[len++] = (char)cp;
        } else if (cp < 0x800) {
            dst[len++] = (char)(0xC0 | (cp >> 6));
            dst[len++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            dst[len++] = (char)(0xE0 | (cp >> 12));
            dst[len++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            dst[len++] = (char)(0x80 | (cp & 0x3F));
        } else {
            dst[len++] = (char)(0xF0 | (cp >> 18));
            dst[len++] = (char)(0x80 | ((cp >> 12) & 0x3F));
            dst[len++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            dst[len++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    dst[len] = '\0';
    p->pool_used += len + 1;
    *out = dst;
    if (out_len) *out_len = len;
    return LNN_OK;
}

/* A non-negative JSON integer without sign, fraction or exponent that fits in uint64. */
static lnn_status parse_uint(jparser *p, uint64_t *out) {
    jws(p);
    int c = jpeek(p);
    if (c < '0' || c > '9') return jfail(p, "expected a non-negative integer");
    uint64_t v = 0;
    size_t start = p->i;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        unsigned d = p->s[p->i] - '0';
        if (v > (UINT64_MAX - d) / 10) return jfail(p, "integer overflows 64 bits");
        v = v * 10 + d;
        p->i++;
    }
    if (p->s[start] == '0' && p->i - start > 1) return jfail(p, "integer with a leading zero");
    c = jpeek(p);
    if (c == '.' || c == 'e' || c == 'E') return jfail(p, "expected an integer, got a fraction or exponent");
    *out = v;
    return LNN_OK;
}

/* [a, b, ...] of up to maxn unsigned integers. */
static lnn_status parse_uint_array(jparser *p, uint64_t *vals, int maxn, int *count) {
    if (jexpect(p, '[', "expected '['")) return LNN_ERR_VALUE;
    int k = 0;
    jws(p);
    if (jpeek(p) == ']') { p->i++; *count = 0; return LNN_OK; }
    for (;;) {
        if (k >= maxn) return jfail(p, "too many array elements");
        if (parse_uint(p, &vals[k])) return LNN_ERR_VALUE;
        k++;
        jws(p);
        int c = jpeek(p);
        if (c == ',') { p->i++; continue; }
        if (c == ']') { p->i++; break; }
        return jfail(p, "expected ',' or ']' in an array");
    }
    *count = k;
    return LNN_OK;
}

static lnn_status grow(void **arr, size_t *cap, size_t need, size_t elsize) {
    if (need <= *cap) return LNN_OK;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elsize) goto oom;
        nc *= 2;
    }
    void *q = realloc(*arr, nc * elsize);
    if (!q) goto oom;
    *arr = q;
    *cap = nc;
    return LNN_OK;
oom:
    lnn_set_error("out of memory while parsing a safetensors header");
    return LNN_ERR_MEMORY;
}

static lnn_status parse_metadata(jparser *p, lnn_st_header *h) {
    jws(p);
    if (p->n - p->i >= 4 && memcmp(p->s + p->i, "null", 4) == 0) { p->i += 4; return LNN_OK; }
    if (jexpect(p, '{', "__metadata__ must be an object of strings")) return LNN_ERR_VALUE;
    jws(p);
    if (jpeek(p) == '}') { p->i++; return LNN_OK; }
    for (;;) {
        const char *k, *v;
        if (parse_string(p, &k, NULL)) return LNN_ERR_VALUE;
        if (jexpect(p, ':', "expected ':' in __metadata__")) return LNN_ERR_VALUE;
        jws(p);
        if (jpeek(p) != '"') return jfail(p, "__metadata__ values must be strings");
        if (parse_string(p, &v, NULL)) return LNN_ERR_VALUE;
        size_t c1 = h->cap_meta, c2 = h->cap_meta;
        if (grow((void **)&h->meta_keys, &c1, h->n_meta + 1, sizeof(char *))) return LNN_ERR_MEMORY;
        if (grow((void **)&h->meta_values, &c2, h->n_meta + 1, sizeof(char *))) return LNN_ERR_MEMORY;
        h->cap_meta = c1 < c2 ? c1 : c2;
        h->meta_keys[h->n_meta] = k;
        h->meta_values[h->n_meta] = v;
        h->n_meta++;
        jws(p);
        int c = jpeek(p);
        if (c == ',') { p->i++; continue; }
        if (c == '}') { p->i++; break; }
        return jfail(p, "expected ',' or '}' in __metadata__");
    }
    return LNN_OK;
}

static lnn_status parse_tensor(jparser *p, const char *name, lnn_st_tensor *t) {
    memset(t, 0, sizeof *t);
    t->name = name;
    int have_dtype = 0, have_shape = 0, have_offsets = 0;
    if (jexpect(p, '{', "a tensor entry must be an object")) return LNN_ERR_VALUE;
    jws(p);
    if (jpeek(p) == '}') return jfail(p, "empty tensor entry");
    for (;;) {
        const char *k;
        size_t klen;
        size_t keypos = p->i;
        if (parse_string(p, &k, &klen)) return LNN_ERR_VALUE;
        if (jexpect(p, ':', "expected ':'")) return LNN_ERR_VALUE;
        if (strcmp(k, "dtype") == 0) {
            if (have_dtype++) { p->i = keypos; return jfail(p, "duplicate \"dtype\""); }
            const char *d;
            size_t dlen;
            size_t vpos = p->i;
            if (parse_string(p, &d, &dlen)) return LNN_ERR_VALUE;
            t->dtype = lnn_st_dtype_from_name(d, dlen);
            if (t->dtype < 0) {
                p->i = vpos;
                lnn_set_error("invalid safetensors header: tensor '%.200s' has unknown dtype '%.40s' "
                              "(known: BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 F16 BF16 I32 U32 F32 F64 "
                              "I64 U64)", name, d);
                return LNN_ERR_VALUE;
            }
        } else if (strcmp(k, "shape") == 0) {
            if (have_shape++) { p->i = keypos; return jfail(p, "duplicate \"shape\""); }
            uint64_t dims[LNN_ST_MAX_DIMS];
            int nd;
            if (parse_uint_array(p, dims, LNN_ST_MAX_DIMS, &nd)) return LNN_ERR_VALUE;
            t->ndim = nd;
            for (int j = 0; j < nd; j++) {
                if (dims[j] > (uint64_t)INT64_MAX) return jfail(p, "shape dimension too large");
                t->shape[j] = (int64_t)dims[j];
            }
        } else if (strcmp(k, "data_offsets") == 0) {
            if (have_offsets++) { p->i = keypos; return jfail(p, "duplicate \"data_offsets\""); }
            uint64_t off[2];
            int no;
            if (parse_uint_array(p, off, 2, &no)) return LNN_ERR_VALUE;
            if (no != 2) return jfail(p, "data_offsets must hold exactly [begin, end]");
            t->begin = off[0];
            t->end = off[1];
        } else {
            p->i = keypos;
            lnn_set_error("invalid safetensors header: tensor '%.200s' has unknown field '%.40s' "
                          "(expected dtype, shape, data_offsets)", name, k);
            return LNN_ERR_VALUE;
        }
        jws(p);
        int c = jpeek(p);
        if (c == ',') { p->i++; continue; }
        if (c == '}') { p->i++; break; }
        return jfail(p, "expected ',' or '}' in a tensor entry");
    }
    if (!have_dtype || !have_shape || !have_offsets) {
        lnn_set_error("invalid safetensors header: tensor '%.200s' lacks %s", name,
                      !have_dtype ? "\"dtype\"" : !have_shape ? "\"shape\"" : "\"data_offsets\"");
        return LNN_ERR_VALUE;
    }
    return LNN_OK;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_tensor_offsets(const void *a, const void *b) {
    const lnn_st_tensor *x = *(const lnn_st_tensor *const *)a, *y = *(const lnn_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Sizes, bounds, duplicates and tiling of the data section. */
static lnn_status validate(lnn_st_header *h) {
    for (size_t i = 0; i < h->n_tensors; i++) {
        lnn_st_tensor *t = &h->tensors[i];
        uint64_t numel = 1, nbytes;
        for (int j = 0; j < t->ndim; j++) {
            if (__builtin_mul_overflow(numel, (uint64_t)t->shape[j], &numel)) {
                lnn_set_error("invalid safetensors header: tensor '%.200s': the shape's element "
                              "count overflows 64 bits", t->name);
                return LNN_ERR_VALUE;
            }
        }
        if (__builtin_mul_overflow(numel, (uint64_t)lnn_st_dtype_size(t->dtype), &nbytes) ||
            numel > (uint64_t)INT64_MAX) {
            lnn_set_error("invalid safetensors header: tensor '%.200s': the shape's byte size "
                          "overflows 64 bits", t->name);
            return LNN_ERR_VALUE;
        }
        t->numel = numel;
        if (t->begin > t->end || t->end > h->data_len) {
            lnn_set_error("invalid safetensors header: tensor '%.200s' has data_offsets [%llu, %llu] "
                          "outside the %llu-byte data section (truncated or corrupt file?)", t->name,
                          (unsigned long long)t->begin, (unsigned long long)t->end,
                          (unsigned long long)h->data_len);
            return LNN_ERR_VALUE;
        }
        if (t->end - t->begin != nbytes) {
            lnn_set_error("invalid safetensors header: tensor '%.200s' (%s, %llu elements) needs "
                          "%llu bytes but data_offsets [%llu, %llu] span %llu", t->name,
                          lnn_st_dtype_name(t->dtype), (unsigned long long)numel,
                          (unsigned long long)nbytes, (unsigned long long)t->begin,
                          (unsigned long long)t->end, (unsigned long long)(t->end - t->begin));
            return LNN_ERR_VALUE;
        }
    }
    lnn_status st = LNN_OK;
    size_t nmax = h->n_tensors > h->n_meta ? h->n_tensors : h->n_meta;
    void **tmp = malloc((nmax ? nmax : 1) * sizeof(void *));
    if (!tmp) {
        lnn_set_error("out of memory while validating a safetensors header");
        return LNN_ERR_MEMORY;
    }
    /* duplicate tensor names */
    for (size_t i = 0; i < h->n_tensors; i++) tmp[i] = (void *)h->tensors[i].name;
    qsort(tmp, h->n_tensors, sizeof(void *), cmp_str_ptr);
    for (size_t i = 1; i < h->n_tensors; i++) {
        if (strcmp(tmp[i - 1], tmp[i]) == 0) {
            lnn_set_error("invalid safetensors header: duplicate tensor name '%.200s'", (char *)tmp[i]);
            st = LNN_ERR_VALUE;
            goto done;
        }
    }
    /* duplicate metadata keys */
    for (size_t i = 0; i < h->n_meta; i++) tmp[i] = (void *)h->meta_keys[i];
    qsort(tmp, h->n_meta, sizeof(void *), cmp_str_ptr);
    for (size_t i = 1; i < h->n_meta; i++) {
        if (strcmp(tmp[i - 1], tmp[i]) == 0) {
            lnn_set_error("invalid safetensors header: duplicate __metadata__ key '%.200s'",
                          (char *)tmp[i]);
            st = LNN_ERR_VALUE;
            goto done;
        }
    }
    /* the tensors tile the data section: sorted by offsets, each starts where the last ended */
    for (size_t i = 0; i < h->n_tensors; i++) tmp[i] = &h->tensors[i];
    qsort(tmp, h->n_tensors, sizeof(void *), cmp_tensor_offsets);
    uint64_t pos = 0;
    const char *prev = NULL;
    for (size_t i = 0; i < h->n_tensors; i++) {
        const lnn_st_tensor *t = tmp[i];
        if (t->begin < pos) {
            lnn_set_error("invalid safetensors header: tensor '%.200s' (bytes [%llu, %llu]) "
                          "overlaps tensor '%.200s'", t->name, (unsigned long long)t->begin,
                          (unsigned long long)t->end, prev ? prev : "?");
            st = LNN_ERR_VALUE;
            goto done;
        }
        if (t->begin > pos) {
            lnn_set_error("invalid safetensors header: a hole in the data section at bytes "
                          "[%llu, %llu) before tensor '%.200s'", (unsigned long long)pos,
                          (unsigned long long)t->begin, t->name);
            st = LNN_ERR_VALUE;
            goto done;
        }
        pos = t->end;
        prev = t->name;
    }
    if (pos != h->data_len) {
        lnn_set_error("invalid safetensors header: the tensors cover %llu bytes but the data "
                      "section holds %llu (trailing garbage or a corrupt header)",
                      (unsigned long long)pos, (unsigned long long)h->data_len);
        st = LNN_ERR_VALUE;
    }
done:
    free(tmp);
    return st;
}

lnn_status lnn_st_parse_header(const uint8_t *json, size_t n, uint64_t data_len, lnn_st_header *h) {
    memset(h, 0, sizeof *h);
    lnn_status st;
    if ((uint64_t)n > LNN_ST_MAX_HEADER) {
        lnn_set_error("invalid safetensors header: %zu bytes of JSON exceeds the %llu-byte limit", n,
                      (unsigned long long)LNN_ST_MAX_HEADER);
        return LNN_ERR_VALUE;
    }
    if ((st = check_utf8(json, n))) return st;
    jparser p = {json, n, 0, NULL, 0, n + 1};
    p.pool = malloc(n + 1);
    if (!p.pool) {
        lnn_set_error("out of memory for a %zu-byte safetensors header", n);
        return LNN_ERR_MEMORY;
    }
    h->pool = p.pool;
    h->header_len = n;
    h->data_start = 8 + (uint64_t)n;
    h->data_len = data_len;
    int seen_meta = 0;
    jws(&p);
    if (jpeek(&p) != '{') { st = jfail(&p, "the header must be a JSON object"); goto fail; }
    p.i++;
    jws(&p);
    if (jpeek(&p) == '}') {
        p.i++;
    } else {
        for (;;) {
            const char *key;
            size_t keypos;
            jws(&p);
            keypos = p.i;
            if ((st = parse_string(&p, &key, NULL))) goto fail;
            if ((st = jexpect(&p, ':', "expected ':' after a name"))) goto fail;
            if (strcmp(key, "__metadata__") == 0) {
                if (seen_meta++) { p.i = keypos; st = jfail(&p, "duplicate __metadata__"); goto fail; }
                if ((st = parse_metadata(&p, h))) goto fail;
            } else {
                if ((st = grow((void **)&h->tensors, &h->cap_tensors, h->n_tensors + 1,
                               sizeof(lnn_st_tensor))))
                    goto fail;
                if ((st = parse_tensor(&p, key, &h->tensors[h->n_tensors]))) goto fail;
                h->n_tensors++;
            }
            jws(&p);
            int c = jpeek(&p);
            if (c == ',') { p.i++; continue; }
            if (c == '}') { p.i++; break; }
            st = jfail(&p, "expected ',' or '}' after an entry");
            goto fail;
        }
    }
    jws(&p);
    if (p.i != p.n) { st = jfail(&p, "unexpected bytes after the header object"); goto fail; }
    if ((st = validate(h))) goto fail;
    return LNN_OK;
fail:
    lnn_st_header_free(h);
    return st;
}

static uint64_t le64(const uint8_t *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

static lnn_status check_prefix(uint64_t hlen, uint64_t size) {
    if (size < 8) {
        lnn_set_error("not a safetensors file: %llu bytes is too short for the 8-byte header length",
                      (unsigned long long)size);
        return LNN_ERR_VALUE;
    }
    if (hlen > LNN_ST_MAX_HEADER) {
        lnn_set_error("not a safetensors file (or corrupt): the header length %llu exceeds the "
                      "%llu-byte limit", (unsigned long long)hlen, (unsigned long long)LNN_ST_MAX_HEADER);
        return LNN_ERR_VALUE;
    }
    if (hlen > size - 8) {
        lnn_set_error("truncated or corrupt safetensors file: the header length %llu runs past the "
                      "end of the %llu-byte file", (unsigned long long)hlen, (unsigned long long)size);
        return LNN_ERR_VALUE;
    }
    return LNN_OK;
}

lnn_status lnn_st_parse_memory(const uint8_t *buf, size_t size, lnn_st_header *h) {
    memset(h, 0, sizeof *h);
    uint64_t hlen = size >= 8 ? le64(buf) : 0;
    lnn_status st = check_prefix(hlen, size);
    if (st) return st;
    return lnn_st_parse_header(buf + 8, (size_t)hlen, (uint64_t)size - 8 - hlen, h);
}

/* ---------------------------------------------------------------- file reading */

static lnn_status pread_full(int fd, void *dst, size_t n, uint64_t off) {
    uint8_t *d = dst;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t r = pread(fd, d, chunk, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            lnn_set_error("read error at byte %llu: %s", (unsigned long long)off, strerror(errno));
            return LNN_ERR_IO;
        }
        if (r == 0) {
            lnn_set_error("unexpected end of file at byte %llu (the file was truncated?)",
                          (unsigned long long)off);
            return LNN_ERR_VALUE;
        }
        d += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return LNN_OK;
}

lnn_status lnn_st_read_header_file(const char *path, lnn_st_header *h, int *fd_out) {
    memset(h, 0, sizeof *h);
    if (fd_out) *fd_out = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        lnn_set_error("cannot open %.400s: %s", path, strerror(errno));
        return LNN_ERR_IO;
    }
    struct stat sb;
    lnn_status st;
    uint8_t *json = NULL;
    if (fstat(fd, &sb) != 0) {
        lnn_set_error("cannot stat %.400s: %s", path, strerror(errno));
        st = LNN_ERR_IO;
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        lnn_set_error("%.400s is not a regular file", path);
        st = LNN_ERR_IO;
        goto out;
    }
    uint64_t size = (uint64_t)sb.st_size;
    uint8_t pre[8] = {0};
    if (size >= 8 && (st = pread_full(fd, pre, 8, 0))) goto out;
    uint64_t hlen = le64(pre);
    if ((st = check_prefix(hlen, size))) goto out;
    json = malloc(hlen ? (size_t)hlen : 1);
    if (!json) {
        lnn_set_error("out of memory for a %llu-byte safetensors header", (unsigned long long)hlen);
        st = LNN_ERR_MEMORY;
        goto out;
    }
    if ((st = pread_full(fd, json, (size_t)hlen, 8))) goto out;
    st = lnn_st_parse_header(json, (size_t)hlen, size - 8 - hlen, h);
out:
    free(json);
    if (st == LNN_OK && fd_out) *fd_out = fd;
    else close(fd);
    return st;
}

static inline float bits_f32(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static inline float half_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            bits = sign | (exp << 23) | ((man & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    return bits_f32(bits);
}

lnn_status lnn_st_to_f32(int src_dtype, const void *src, float *dst, size_t n) {
    const uint8_t *s = src;
    switch (src_dtype) {
    case LNN_ST_F32:
        memcpy(dst, src, n * 4);
        return LNN_OK;
    case LNN_ST_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, s + 2 * i, 2);
            dst[i] = half_to_f32(v);
        }
        return LNN_OK;
    case LNN_ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, s + 2 * i, 2);
            dst[i] = bits_f32((uint32_t)v << 16);
        }
        return LNN_OK;
    case LNN_ST_F64:
        for (size_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, s + 8 * i, 8);
            dst[i] = (float)v;
        }
        return LNN_OK;
    default:
        lnn_set_error("cannot convert dtype %s to float32", lnn_st_dtype_name(src_dtype) ?
                      lnn_st_dtype_name(src_dtype) : "?");
        return LNN_ERR_VALUE;
    }
}

lnn_status lnn_st_read_tensor(int fd, const lnn_st_header *h, const lnn_st_tensor *t, void *dst,
                              int to_f32) {
    uint64_t off = h->data_start + t->begin, nbytes = t->end - t->begin;
    if (!to_f32 || t->dtype == LNN_ST_F32) return pread_full(fd, dst, (size_t)nbytes, off);
    size_t es = lnn_st_dtype_size(t->dtype);
    if (t->dtype != LNN_ST_F16 && t->dtype != LNN_ST_BF16 && t->dtype != LNN_ST_F64) {
        lnn_set_error("tensor '%.200s' has dtype %s, which cannot be read as float32", t->name,
                      lnn_st_dtype_name(t->dtype));
        return LNN_ERR_VALUE;
    }
    const size_t chunk_elems = (1u << 20) / 8;
    uint8_t *buf = malloc(chunk_elems * es);
    if (!buf) {
        lnn_set_error("out of memory for a conversion buffer");
        return LNN_ERR_MEMORY;
    }
    float *d = dst;
    lnn_status st = LNN_OK;
    for (uint64_t done = 0; done < t->numel;) {
        size_t k = t->numel - done < chunk_elems ? (size_t)(t->numel - done) : chunk_elems;
        if ((st = pread_full(fd, buf, k * es, off + done * es))) break;
        lnn_st_to_f32(t->dtype, buf, d + done, k);
        done += k;
    }
    free(buf);
    return st;
}

/* ---------------------------------------------------------------- writing */

typedef struct {
    char *b;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *s, const char *x, size_t k) {
    if (s->oom) return;
    if (s->n + k + 1 > s->cap) {
        size_t nc = s->cap ? s->cap : 256;
        while (nc < s->n + k + 1) nc *= 2;
        char *q = realloc(s->b, nc);
        if (!q) { s->oom = 1; return; }
        s->b = q;
        s->cap = nc;
    }
    memcpy(s->b + s->n, x, k);
    s->n += k;
    s->b[s->n] = '\0';
}

static void sb_str(sbuf *s, const char *x) { sb_put(s, x, strlen(x)); }

static void sb_u64(sbuf *s, uint64_t v) {
    char t[24];
    int k = snprintf(t, sizeof t, "%llu", (unsigned long long)v);
    sb_put(s, t, (size_t)k);
}

/* A JSON string; x must be valid UTF-8 (checked by the caller). */
static void sb_json_str(sbuf *s, const char *x) {
    sb_put(s, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)x; *c; c++) {
        if (*c == '"') sb_put(s, "\\\"", 2);
        else if (*c == '\\') sb_put(s, "\\\\", 2);
        else if (*c == '\n') sb_put(s, "\\n", 2); /* serde_json's escapes, so headers match */
        else if (*c == '\t') sb_put(s, "\\t", 2);
        else if (*c == '\r') sb_put(s, "\\r", 2);
        else if (*c == '\b') sb_put(s, "\\b", 2);
        else if (*c == '\f') sb_put(s, "\\f", 2);
        else if (*c < 0x20) {
            char t[8];
            snprintf(t, sizeof t, "\\u%04x", *c);
            sb_put(s, t, 6);
        } else sb_put(s, (const char *)c, 1);
    }
    sb_put(s, "\"", 1);
}

static lnn_status tensor_nbytes(const lnn_st_wtensor *t, uint64_t *nbytes) {
    uint64_t numel = 1;
    if (lnn_st_dtype_size(t->dtype) == 0) {
        lnn_set_error("tensor '%.200s': unknown dtype code %d", t->name, t->dtype);
        return LNN_ERR_VALUE;
    }
    if (t->ndim < 0 || t->ndim > LNN_ST_MAX_DIMS) {
        lnn_set_error("tensor '%.200s': %d dimensions (at most %d supported)", t->name, t->ndim,
                      LNN_ST_MAX_DIMS);
        return LNN_ERR_VALUE;
    }
    for (int j = 0; j < t->ndim; j++) {
        if (t->shape[j] < 0 || __builtin_mul_overflow(numel, (uint64_t)t->shape[j], &numel)) {
            lnn_set_error("tensor '%.200s': invalid shape", t->name);
            return LNN_ERR_VALUE;
        }
    }
    if (__builtin_mul_overflow(numel, (uint64_t)lnn_st_dtype_size(t->dtype), nbytes)) {
        lnn_set_error("tensor '%.200s': size overflows", t->name);
        return LNN_ERR_VALUE;
    }
    return LNN_OK;
}

lnn_status lnn_st_build_header(const lnn_st_wtensor *tensors, const size_t *order, size_t n,
                               const char *const *meta_keys, const char *const *meta_values,
                               size_t n_meta, char **out, size_t *padded_len) {
    *out = NULL;
    sbuf s = {0};
    sb_str(&s, "{");
    int first = 1;
    if (n_meta > 0) {
        sb_str(&s, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            if (i) sb_str(&s, ",");
            sb_json_str(&s, meta_keys[i]);
            sb_str(&s, ":");
            sb_json_str(&s, meta_values[i]);
        }
        sb_str(&s, "}");
        first = 0;
    }
    uint64_t off = 0;
    for (size_t k = 0; k < n; k++) {
        const lnn_st_wtensor *t = &tensors[order[k]];
        uint64_t nb;
        lnn_status st = tensor_nbytes(t, &nb);
        if (st) { free(s.b); return st; }
        if (!first) sb_str(&s, ",");
        first = 0;
        sb_json_str(&s, t->name);
        sb_str(&s, ":{\"dtype\":\"");
        sb_str(&s, lnn_st_dtype_name(t->dtype));
        sb_str(&s, "\",\"shape\":[");
        for (int j = 0; j < t->ndim; j++) {
            if (j) sb_str(&s, ",");
            sb_u64(&s, (uint64_t)t->shape[j]);
        }
        sb_str(&s, "],\"data_offsets\":[");
        sb_u64(&s, off);
        sb_str(&s, ",");
        if (__builtin_add_overflow(off, nb, &off)) { free(s.b); lnn_set_error("total size overflows"); return LNN_ERR_VALUE; }
        sb_u64(&s, off);
        sb_str(&s, "]}");
    }
    sb_str(&s, "}");
    while (s.n % 8) sb_str(&s, " ");
    if (s.oom) {
        free(s.b);
        lnn_set_error("out of memory while building a safetensors header");
        return LNN_ERR_MEMORY;
    }
    *out = s.b;
    *padded_len = s.n;
    return LNN_OK;
}

static int cmp_write_order(const void *a, const void *b) {
    const lnn_st_wtensor *x = *(const lnn_st_wtensor *const *)a, *y = *(const lnn_st_wtensor *const *)b;
    /* dtype codes follow the reference implementation's enum order, which is also by element
     * size, so sorting by decreasing code keeps every tensor aligned and gives its byte layout */
    if (x->dtype != y->dtype) return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

typedef struct {
    int fd;
    int64_t budget; /* bytes left before the simulated failure, or -1 */
} wfile;

static lnn_status write_full(wfile *w, const void *src, uint64_t n, const char *path) {
    const uint8_t *p = src;
    while (n > 0) {
        size_t chunk = n > ((uint64_t)1 << 30) ? ((size_t)1 << 30) : (size_t)n;
        if (w->budget >= 0) {
            if (w->budget == 0) {
                lnn_set_error("simulated write failure on %.400s (test hook)", path);
                return LNN_ERR_IO;
            }
            if ((int64_t)chunk > w->budget) chunk = (size_t)w->budget;
        }
        ssize_t r = write(w->fd, p, chunk);
        if (r < 0) {
            if (errno == EINTR) continue;
            lnn_set_error("cannot write %.400s: %s", path, strerror(errno));
            return LNN_ERR_IO;
        }
        p += r;
        n -= (uint64_t)r;
        if (w->budget >= 0) w->budget -= r;
    }
    return LNN_OK;
}

lnn_status lnn_st_write_file(const char *path, const lnn_st_wtensor *tensors, size_t n,
                             const char *const *meta_keys, const char *const *meta_values,
                             size_t n_meta, int64_t fail_after) {
    lnn_status st = LNN_OK;
    size_t *order = malloc((n ? n : 1) * sizeof(size_t));
    char *hdr = NULL;
    size_t hlen = 0;
    int fd = -1;
    if (!order) {
        lnn_set_error("out of memory");
        return LNN_ERR_MEMORY;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t nb;
        order[i] = i;
        if ((st = tensor_nbytes(&tensors[i], &nb))) goto out;
        if (check_utf8((const uint8_t *)tensors[i].name, strlen(tensors[i].name)) ||
            strcmp(tensors[i].name, "__metadata__") == 0) {
            lnn_set_error("invalid tensor name '%.200s' (must be valid UTF-8 and not __metadata__)",
                          tensors[i].name);
            st = LNN_ERR_VALUE;
            goto out;
        }
        total += nb;
    }
    for (size_t i = 0; i < n_meta; i++) {
        if (check_utf8((const uint8_t *)meta_keys[i], strlen(meta_keys[i])) ||
            check_utf8((const uint8_t *)meta_values[i], strlen(meta_values[i]))) {
            lnn_set_error("metadata must be valid UTF-8 strings");
            st = LNN_ERR_VALUE;
            goto out;
        }
    }
    { /* decreasing dtype (hence element size), then name, as the reference writer does */
        const lnn_st_wtensor **ptrs = malloc((n ? n : 1) * sizeof *ptrs);
        if (!ptrs) {
            lnn_set_error("out of memory");
            st = LNN_ERR_MEMORY;
            goto out;
        }
        for (size_t i = 0; i < n; i++) ptrs[i] = &tensors[i];
        qsort(ptrs, n, sizeof *ptrs, cmp_write_order);
        for (size_t i = 0; i < n; i++) order[i] = (size_t)(ptrs[i] - tensors);
        free(ptrs);
    }
    if ((st = lnn_st_build_header(tensors, order, n, meta_keys, meta_values, n_meta, &hdr, &hlen)))
        goto out;
    { /* self-check: what we write must pass our own validation (duplicates included) */
        lnn_st_header chk;
        if ((st = lnn_st_parse_header((const uint8_t *)hdr, hlen, total, &chk))) goto out;
        lnn_st_header_free(&chk);
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        lnn_set_error("cannot create %.400s: %s", path, strerror(errno));
        st = LNN_ERR_IO;
        goto out;
    }
    wfile w = {fd, fail_after};
    uint8_t pre[8];
    for (int i = 0; i < 8; i++) pre[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    if ((st = write_full(&w, pre, 8, path))) goto out;
    if ((st = write_full(&w, hdr, hlen, path))) goto out;
    for (size_t k = 0; k < n; k++) {
        const lnn_st_wtensor *t = &tensors[order[k]];
        uint64_t nb;
        tensor_nbytes(t, &nb);
        if ((st = write_full(&w, t->data, nb, path))) goto out;
    }
    if (fsync(fd) != 0) {
        lnn_set_error("cannot sync %.400s: %s", path, strerror(errno));
        st = LNN_ERR_IO;
        goto out;
    }
out:
    if (fd >= 0 && close(fd) != 0 && st == LNN_OK) {
        lnn_set_error("cannot close %.400s: %s", path, strerror(errno));
        st = LNN_ERR_IO;
    }
    free(hdr);
    free(order);
    return st;
}
