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

/* tok_encode(handle, texts: list|tuple[str], pairs: list|tuple[str]|None, add_special, trunc (0-3),
 *            max_length, cls_id, sep_id, pad_mode (0 none, 1 longest, 2 max_length), pad_length,
 *            pad_multiple (0: none), pad_left, pad_id, want_type_ids, want_mask, want_offsets,
 *            want_special, int32[, trunc_left]) -> dict
 * Padded: 2-D arrays (n, width) (offset_mapping (n, width, 2)). Unpadded or ragged: flat 1-D arrays
 * plus "row_splits" (n + 1). Always "length" (n,). */
static PyObject *py_tok_encode(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *texts_o, *pairs_o;
    int add_special, trunc, cls_id, sep_id, pad_mode, pad_left, pad_id, want_type, want_mask, want_offs, want_special,
        use32, trunc_left = 0;
    long long max_length, pad_length, pad_multiple;
    if (!PyArg_ParseTuple(args, "OOOiiLiiiLLiiiiiii|i:tok_encode", &cap, &texts_o, &pairs_o, &add_special, &trunc,
                          &max_length, &cls_id, &sep_id, &pad_mode, &pad_length, &pad_multiple, &pad_left, &pad_id,
                          &want_type, &want_mask, &want_offs, &want_special, &use32, &trunc_left))
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
    lnn_tok_batch_mem *mem = NULL;
    PyObject *ids = NULL, *type_ids = NULL, *mask = NULL, *offs = NULL, *special = NULL, *length = NULL, *splits = NULL;
    if (!ta || (has_pair && !tb) || !refs || !rows) { PyErr_NoMemory(); goto done; }
    if (collect_texts(texts_o, "text", ta, refs, n) < 0) goto done;
    if (has_pair && collect_texts(pairs_o, "text_pair", tb, refs + n, n) < 0) goto done;

    lnn_tok_opts o = {add_special, trunc, max_length, cls_id, sep_id, trunc_left};
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
    /* layout */
    int64_t maxlen = 0, total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (rows[i].len > maxlen) maxlen = rows[i].len;
        total += rows[i].len;
    }
    int64_t width = 0;
    int padded = 0;
    if (pad_mode != 0) {
        width = pad_mode == 1 ? maxlen : pad_length;
        if (pad_multiple > 0 && width % pad_multiple) width += pad_multiple - width % pad_multiple;
        padded = maxlen <= width;
        if (!padded) { /* padding='max_length' without truncation and longer rows: ragged, as HF */
            total = 0;
            for (Py_ssize_t i = 0; i < n; i++) {
                int64_t w = rows[i].len;
                if (w < width) w = width;
                total += w;
            }
        }
    }
    npy_intp nn = (npy_intp)n;
    length = new_array(1, &nn, elem);
    if (!length) goto done;
    if (padded) {
        npy_intp d2[3] = {n, (npy_intp)width, 2};
        ids = new_array(2, d2, elem);
        if (!ids) goto done;
        if (want_type && !(type_ids = new_array(2, d2, elem))) goto done;
        if (want_mask && !(mask = new_array(2, d2, elem))) goto done;
        if (want_offs && !(offs = new_array(3, d2, elem))) goto done;
        if (want_special && !(special = new_array(2, d2, elem))) goto done;
    } else {
        npy_intp d1[2] = {(npy_intp)total, 2};
        npy_intp ns = (npy_intp)n + 1;
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
        int64_t *sp = splits ? (int64_t *)PyArray_DATA((PyArrayObject *)splits) : NULL;
        if (sp) {
            sp[0] = 0;
            for (Py_ssize_t i = 0; i < n; i++) {
                int64_t w = rows[i].len;
                if (pad_mode != 0 && w < width) w = width;
                sp[i + 1] = sp[i] + w;
            }
        }
        LNN_RELEASE_GIL
#ifdef _OPENMP
        /* parallel only when the batch is big enough to pay for waking the team */
#pragma omp parallel for num_threads(lnn_num_threads) schedule(dynamic, 16) if (n >= 64 && lnn_num_threads > 1)
#endif
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t start = sp ? sp[i] : (int64_t)i * width;
            int64_t w = sp ? sp[i + 1] - sp[i] : width;
            size_t off = (size_t)start * (size_t)elem;
            lnn_tok_row_write(&rows[i], &o, w, pad_left && pad_mode != 0, pad_id, elem, pid + off, ptt ? ptt + off : NULL,
                              pm ? pm + off : NULL, po ? po + 2 * off : NULL, ps ? ps + off : NULL);
            if (elem == 8) ((int64_t *)pl)[i] = rows[i].len;
            else ((int32_t *)pl)[i] = (int32_t)rows[i].len;
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
#undef SETITEM
done:
    Py_XDECREF(ids); Py_XDECREF(type_ids); Py_XDECREF(mask); Py_XDECREF(offs); Py_XDECREF(special);
    Py_XDECREF(length); Py_XDECREF(splits);
    lnn_tok_batch_mem_free(mem);
    if (refs) for (Py_ssize_t i = 0; i < 2 * n; i++) Py_XDECREF(refs[i]);
    free(rows); free(refs); free(ta); free(tb);
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
