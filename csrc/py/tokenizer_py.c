/* py/tokenizer_py.c: Python binding of the WordPiece tokenizer core (io/tokenizer.c).
 *
 * _C.tok_new(...) -> capsule; _C.tok_encode(capsule, texts, pairs, ...) -> dict of numpy arrays.
 * Texts are read straight from the str objects (PyUnicode_DATA / KIND): no copies, and the GIL
 * is released while the batch is encoded in parallel (each str is referenced meanwhile). */
#include "py/ext.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer.h"

#define TOK_CAPSULE "lyricnn.tokenizer"

static void tok_capsule_free(PyObject *cap) {
    lnn_tokenizer *t = PyCapsule_GetPointer(cap, TOK_CAPSULE);
    if (t) lnn_tok_free(t);
}

static lnn_tokenizer *get_tok(PyObject *cap) {
    if (!PyCapsule_IsValid(cap, TOK_CAPSULE)) {
        PyErr_SetString(PyExc_TypeError, "expected a tokenizer handle from _C.tok_new()");
        return NULL;
    }
    return PyCapsule_GetPointer(cap, TOK_CAPSULE);
}

/* tok_new(vocab: bytes, unk: str, prefix: str, lowercase, strip_accents (-1/0/1), clean_text,
 *         handle_chinese_chars, max_input_chars_per_word, added_tokens: list[str], added_ids: list[int]) */
static PyObject *py_tok_new(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer vocab;
    const char *unk, *prefix;
    int lower, strip, clean, chinese, maxc;
    PyObject *added, *added_ids;
    if (!PyArg_ParseTuple(args, "y*ssiiiiiOO:tok_new", &vocab, &unk, &prefix, &lower, &strip, &clean, &chinese, &maxc,
                          &added, &added_ids))
        return NULL;
    PyObject *res = NULL;
    const char **toks = NULL;
    int32_t *ids = NULL;
    Py_ssize_t na = 0;
    if (!PyList_Check(added) || !PyList_Check(added_ids) || PyList_GET_SIZE(added) != PyList_GET_SIZE(added_ids)) {
        PyErr_SetString(PyExc_TypeError, "tok_new: added_tokens and added_ids must be lists of equal length");
        goto done;
    }
    na = PyList_GET_SIZE(added);
    toks = calloc((size_t)na + 1, sizeof *toks);
    ids = calloc((size_t)na + 1, sizeof *ids);
    if (!toks || !ids) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < na; i++) {
        toks[i] = PyUnicode_AsUTF8(PyList_GET_ITEM(added, i));
        if (!toks[i]) goto done;
        long v = PyLong_AsLong(PyList_GET_ITEM(added_ids, i));
        if (v == -1 && PyErr_Occurred()) goto done;
        if (v < 0 || v > INT32_MAX) { PyErr_Format(PyExc_ValueError, "added token id %ld out of range", v); goto done; }
        ids[i] = (int32_t)v;
    }
    lnn_tok_config cfg = {lower, strip, clean, chinese, maxc, unk, prefix, (int)na, toks, ids};
    lnn_tokenizer *t = NULL;
    lnn_status st;
    LNN_RELEASE_GIL
    st = lnn_tok_create(&cfg, vocab.buf, (size_t)vocab.len, &t);
    LNN_ACQUIRE_GIL
    if (st) {
        if (st == LNN_ERR_VALUE) PyErr_SetString(lnn_CheckpointError, lnn_get_error());
        else lnn_raise_status(st);
        goto done;
    }
    res = PyCapsule_New(t, TOK_CAPSULE, tok_capsule_free);
    if (!res) lnn_tok_free(t);
done:
    free(toks);
    free(ids);
    PyBuffer_Release(&vocab);
    return res;
}

/* Fill texts[] from a list/tuple of str; holds a new reference to each in refs[]. */
static int collect_texts(PyObject *seq, const char *argname, lnn_tok_text *texts, PyObject **refs, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyUnicode_Check(o)) {
            if (o == Py_None)
                PyErr_Format(PyExc_TypeError, "%s[%zd] is None; every text must be a str (drop or fill missing "
                             "values first, e.g. series.fillna(''))", argname, i);
            else if (PyFloat_Check(o) && isnan(PyFloat_AS_DOUBLE(o)))
                PyErr_Format(PyExc_TypeError, "%s[%zd] is NaN (a missing value); every text must be a str (drop or "
                             "fill missing values first, e.g. series.fillna(''))", argname, i);
            else if (!strcmp(Py_TYPE(o)->tp_name, "NAType") || !strcmp(Py_TYPE(o)->tp_name, "NaTType"))
                PyErr_Format(PyExc_TypeError, "%s[%zd] is a missing value (%s); every text must be a str (drop or "
                             "fill missing values first, e.g. series.fillna(''))", argname, i, Py_TYPE(o)->tp_name);
            else
                PyErr_Format(PyExc_TypeError, "%s[%zd] is of type %s; every text must be a str", argname, i,
                             Py_TYPE(o)->tp_name);
            return -1;
        }
#if PY_VERSION_HEX < 0x030C0000
        if (PyUnicode_READY(o) < 0) return -1;
#endif
        Py_INCREF(o);
        refs[i] = o;
        texts[i].data = PyUnicode_DATA(o);
        texts[i].kind = (int)PyUnicode_KIND(o);
        texts[i].len = (int64_t)PyUnicode_GET_LENGTH(o);
    }
    return 0;
}

static PyObject *new_array(int nd, npy_intp *dims, int elem) {
    return PyArray_SimpleNew(nd, dims, elem == 8 ? NPY_INT64 : NPY_INT32);
}

/* tok_encode(handle, texts: list|tuple[str], pairs: list|tuple[str]|None, add_special, trunc (0-4),
 *            max_length, cls_id, sep_id, pad_mode (0 none, 1 longest, 2 max_length), pad_length,
 *            pad_multiple (0: none), pad_left, pad_id, want_type_ids, want_mask, want_offsets,
 *            want_special, int32[, trunc_left, stride, overflow, head_tokens, max_cells]) -> dict
 * One output row per window of each text (one window per text unless overflow).
 * Padded: 2-D arrays (rows, width) (offset_mapping (rows, width, 2)). Unpadded or ragged: flat 1-D arrays
 * plus "row_splits" (rows + 1). Always "length" (rows,); with overflow "overflow_to_sample_mapping" (rows,).
 * max_cells > 0: refuse outputs of more ids than that per array (ValueError). */
static PyObject *py_tok_encode(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *texts_o, *pairs_o;
    int add_special, trunc, cls_id, sep_id, pad_mode, pad_left, pad_id, want_type, want_mask, want_offs, want_special,
        use32, trunc_left = 0, overflow = 0;
    long long max_length, pad_length, pad_multiple, stride = 0, head_tokens = 0, max_cells = 0;
    if (!PyArg_ParseTuple(args, "OOOiiLiiiLLiiiiiii|iLiLL:tok_encode", &cap, &texts_o, &pairs_o, &add_special, &trunc,
                          &max_length, &cls_id, &sep_id, &pad_mode, &pad_length, &pad_multiple, &pad_left, &pad_id,
                          &want_type, &want_mask, &want_offs, &want_special, &use32, &trunc_left, &stride, &overflow,
                          &head_tokens, &max_cells))
        return NULL;
    lnn_tokenizer *t = get_tok(cap);
    if (!t) return NULL;
    if (!PyList_Check(texts_o) && !PyTuple_Check(texts_o)) {
        PyErr_SetString(PyExc_TypeError, "tok_encode: texts must be a list or tuple of str");
        return NULL;
    }
    if (pairs_o != Py_None && !PyList_Check(pairs_o) && !PyTuple_Check(pairs_o)) {
        PyErr_SetString(PyExc_TypeError, "tok_encode: text_pair must be a list or tuple of str");
        return NULL;
    }
    if (trunc < 0 || trunc > LNN_TRUNC_HEAD_TAIL || stride < 0 || head_tokens < 0) {
        PyErr_SetString(PyExc_ValueError, "tok_encode: truncation strategy, stride or head_tokens out of range");
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(texts_o);
    int has_pair = pairs_o != Py_None;
    if (has_pair && PySequence_Fast_GET_SIZE(pairs_o) != n) {
        PyErr_Format(PyExc_ValueError, "text_pair has %zd texts but text has %zd; pass one pair per text",
                     PySequence_Fast_GET_SIZE(pairs_o), n);
        return NULL;
    }
    int elem = use32 ? 4 : 8;
    PyObject *result = NULL;
    lnn_tok_text *ta = calloc((size_t)n + 1, sizeof *ta);
    lnn_tok_text *tb = has_pair ? calloc((size_t)n + 1, sizeof *tb) : NULL;
    PyObject **refs = calloc(2 * (size_t)n + 1, sizeof *refs);
    lnn_tok_row *rows = calloc((size_t)n + 1, sizeof *rows);
    int64_t *wstart = calloc((size_t)n + 1, sizeof *wstart), *wlen = NULL;
    lnn_tok_batch_mem *mem = NULL;
    PyObject *ids = NULL, *type_ids = NULL, *mask = NULL, *offs = NULL, *special = NULL, *length = NULL, *splits = NULL,
             *mapping = NULL;
    if (!ta || (has_pair && !tb) || !refs || !rows || !wstart) { PyErr_NoMemory(); goto done; }
    if (collect_texts(texts_o, "text", ta, refs, n) < 0) goto done;
    if (has_pair && collect_texts(pairs_o, "text_pair", tb, refs + n, n) < 0) goto done;

    lnn_tok_opts o = {add_special, trunc, max_length, cls_id, sep_id, trunc_left, stride, overflow, head_tokens};
    int64_t err_row = -1;
    lnn_status st;
    LNN_RELEASE_GIL
    st = lnn_tok_encode_batch(t, ta, tb, n, &o, rows, &err_row, &mem);
    LNN_ACQUIRE_GIL
    if (st) {
        if (st == LNN_ERR_VALUE) {
            if (n == 1) PyErr_SetString(PyExc_ValueError, lnn_get_error());
            else PyErr_Format(PyExc_ValueError, "text %lld of the batch: %s", (long long)err_row, lnn_get_error());
        } else {
            lnn_raise_status(st);
        }
        goto done;
    }
    /* windows: text i owns output rows wstart[i] .. wstart[i + 1] - 1 */
    int64_t nw = 0, main_max = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        wstart[i] = nw;
        nw += rows[i].pa * rows[i].pb;
        if (rows[i].len > main_max) main_max = rows[i].len;
    }
    wstart[n] = nw;
    wlen = malloc(((size_t)nw + 1) * sizeof *wlen);
    if (!wlen) { PyErr_NoMemory(); goto done; }
    int64_t maxlen = 0, total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        for (int64_t k = 0; k < wstart[i + 1] - wstart[i]; k++) {
            lnn_tok_row w;
            lnn_tok_window(&rows[i], &o, k, &w);
            wlen[wstart[i] + k] = w.len;
            if (w.len > maxlen) maxlen = w.len;
            total += w.len;
        }
    }
    /* layout; padding='longest' pads to the longest first window of a text, as tokenizers does (only a window
     * of an empty cut, max_length - special tokens = 0, is longer: such rows stay ragged) */
    int64_t width = 0;
    int padded = 0;
    if (pad_mode != 0) {
        width = pad_mode == 1 ? main_max : pad_length;
        if (pad_multiple > 0 && width % pad_multiple) width += pad_multiple - width % pad_multiple;
        padded = maxlen <= width;
        if (!padded) { /* padding='max_length' without truncation and longer rows: ragged, as HF */
            total = 0;
            for (int64_t r = 0; r < nw; r++) total += wlen[r] > width ? wlen[r] : width;
        }
    }
    int64_t cells = padded ? nw * width : total;
    if (max_cells > 0 && cells > max_cells) {
        PyErr_Format(PyExc_ValueError, "the output would hold %lld ids per array (%lld %s of %lld texts%s), more than "
                     "the %lld this tokenizer allows (%.1f GiB as int64); use a larger max_length - stride (windows "
                     "advance by max_length - special tokens - stride), less padding, or tokenize in smaller batches",
                     (long long)cells, (long long)nw, overflow ? "windows" : "rows", (long long)n,
                     padded ? " padded" : "", (long long)max_cells, (double)cells * 8 / (1 << 30));
        goto done;
    }
    npy_intp nn = (npy_intp)nw;
    length = new_array(1, &nn, elem);
    if (!length) goto done;
    if (overflow && !(mapping = new_array(1, &nn, elem))) goto done;
    if (padded) {
        npy_intp d2[3] = {(npy_intp)nw, (npy_intp)width, 2};
        ids = new_array(2, d2, elem);
        if (!ids) goto done;
        if (want_type && !(type_ids = new_array(2, d2, elem))) goto done;
        if (want_mask && !(mask = new_array(2, d2, elem))) goto done;
        if (want_offs && !(offs = new_array(3, d2, elem))) goto done;
        if (want_special && !(special = new_array(2, d2, elem))) goto done;
    } else {
        npy_intp d1[2] = {(npy_intp)total, 2};
        npy_intp ns = (npy_intp)nw + 1;
        ids = new_array(1, d1, elem);
        splits = PyArray_SimpleNew(1, &ns, NPY_INT64);
        if (!ids || !splits) goto done;
        if (want_type && !(type_ids = new_array(1, d1, elem))) goto done;
        if (want_mask && !(mask = new_array(1, d1, elem))) goto done;
        if (want_offs && !(offs = new_array(2, d1, elem))) goto done;
        if (want_special && !(special = new_array(1, d1, elem))) goto done;
    }
    {
        char *pid = PyArray_BYTES((PyArrayObject *)ids);
        char *ptt = type_ids ? PyArray_BYTES((PyArrayObject *)type_ids) : NULL;
        char *pm = mask ? PyArray_BYTES((PyArrayObject *)mask) : NULL;
        char *po = offs ? PyArray_BYTES((PyArrayObject *)offs) : NULL;
        char *ps = special ? PyArray_BYTES((PyArrayObject *)special) : NULL;
        char *pl = PyArray_BYTES((PyArrayObject *)length);
        char *pmap = mapping ? PyArray_BYTES((PyArrayObject *)mapping) : NULL;
        int64_t *sp = splits ? (int64_t *)PyArray_DATA((PyArrayObject *)splits) : NULL;
        if (sp) {
            sp[0] = 0;
            for (int64_t r = 0; r < nw; r++) {
                int64_t w = wlen[r];
                if (pad_mode != 0 && w < width) w = width;
                sp[r + 1] = sp[r] + w;
            }
        }
        LNN_RELEASE_GIL
#ifdef _OPENMP
        /* parallel only when the batch is big enough to pay for waking the team */
#pragma omp parallel for num_threads(lnn_num_threads) schedule(dynamic, 16) if (n >= 64 && lnn_num_threads > 1)
#endif
        for (Py_ssize_t i = 0; i < n; i++) {
            for (int64_t r = wstart[i]; r < wstart[i + 1]; r++) {
                lnn_tok_row win;
                lnn_tok_window(&rows[i], &o, r - wstart[i], &win);
                int64_t start = sp ? sp[r] : r * width;
                int64_t w = sp ? sp[r + 1] - sp[r] : width;
                size_t off = (size_t)start * (size_t)elem;
                lnn_tok_row_write(&win, &o, w, pad_left && pad_mode != 0, pad_id, elem, pid + off,
                                  ptt ? ptt + off : NULL, pm ? pm + off : NULL, po ? po + 2 * off : NULL,
                                  ps ? ps + off : NULL);
                if (elem == 8) ((int64_t *)pl)[r] = win.len;
                else ((int32_t *)pl)[r] = (int32_t)win.len;
                if (pmap && elem == 8) ((int64_t *)pmap)[r] = i;
                else if (pmap) ((int32_t *)pmap)[r] = (int32_t)i;
            }
        }
        LNN_ACQUIRE_GIL
    }
    result = PyDict_New();
    if (!result) goto done;
#define SETITEM(k, v) if ((v) && PyDict_SetItemString(result, k, (v)) < 0) { Py_CLEAR(result); goto done; }
    SETITEM("input_ids", ids);
    SETITEM("token_type_ids", type_ids);
    SETITEM("attention_mask", mask);
    SETITEM("offset_mapping", offs);
    SETITEM("special_tokens_mask", special);
    SETITEM("length", length);
    SETITEM("row_splits", splits);
    SETITEM("overflow_to_sample_mapping", mapping);
#undef SETITEM
done:
    Py_XDECREF(ids); Py_XDECREF(type_ids); Py_XDECREF(mask); Py_XDECREF(offs); Py_XDECREF(special);
    Py_XDECREF(length); Py_XDECREF(splits); Py_XDECREF(mapping);
    lnn_tok_batch_mem_free(mem);
    if (refs) for (Py_ssize_t i = 0; i < 2 * n; i++) Py_XDECREF(refs[i]);
    free(rows); free(refs); free(ta); free(tb); free(wstart); free(wlen);
    return result;
}

static PyObject *py_tok_vocab_size(PyObject *self, PyObject *cap) {
    (void)self;
    lnn_tokenizer *t = get_tok(cap);
    if (!t) return NULL;
    return PyLong_FromLongLong(lnn_tok_vocab_size(t));
}

static PyMethodDef tok_methods[] = {
    {"tok_new", py_tok_new, METH_VARARGS, "tok_new(vocab_bytes, unk, prefix, lowercase, strip_accents, clean_text, "
     "handle_chinese_chars, max_input_chars_per_word, added_tokens, added_ids) -> handle"},
    {"tok_encode", py_tok_encode, METH_VARARGS, "tok_encode(handle, texts, pairs, ...) -> dict of arrays"},
    {"tok_vocab_size", py_tok_vocab_size, METH_O, "tok_vocab_size(handle) -> int"},
    {NULL, NULL, 0, NULL},
};

int lnn_register_tokenizer(PyObject *m) { return PyModule_AddFunctions(m, tok_methods); }
