/* py/checkpoint_py.c: Python binding of the safetensors reader/writer (io/safetensors.c). */
#include "py/ext.h"

#include <unistd.h>

#include "io/safetensors.h"

/* numpy type for a safetensors dtype read without conversion; -1 if numpy has none. */
static int st_npy_type(int dtype) {
    switch (dtype) {
    case LNN_ST_BOOL: return NPY_BOOL;
    case LNN_ST_U8: return NPY_UINT8;
    case LNN_ST_I8: return NPY_INT8;
    case LNN_ST_I16: return NPY_INT16;
    case LNN_ST_U16: return NPY_UINT16;
    case LNN_ST_F16: return NPY_FLOAT16;
    case LNN_ST_I32: return NPY_INT32;
    case LNN_ST_U32: return NPY_UINT32;
    case LNN_ST_F32: return NPY_FLOAT32;
    case LNN_ST_F64: return NPY_FLOAT64;
    case LNN_ST_I64: return NPY_INT64;
    case LNN_ST_U64: return NPY_UINT64;
    default: return -1;
    }
}

static int st_is_float(int dtype) {
    return dtype == LNN_ST_F32 || dtype == LNN_ST_F16 || dtype == LNN_ST_BF16 || dtype == LNN_ST_F64;
}

/* Raise the error of a failed C call on path: CheckpointError for bad or unreadable files. */
static PyObject *raise_st(lnn_status st, PyObject *path) {
    if (st == LNN_ERR_MEMORY) return PyErr_NoMemory();
    PyErr_Format(lnn_CheckpointError, "%s: %s", PyBytes_AS_STRING(path), lnn_get_error());
    return NULL;
}

static PyObject *meta_dict(const lnn_st_header *h) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (size_t i = 0; i < h->n_meta; i++) {
        PyObject *v = PyUnicode_FromString(h->meta_values[i]);
        if (!v || PyDict_SetItemString(d, h->meta_keys[i], v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyObject *shape_tuple(const lnn_st_tensor *t) {
    PyObject *s = PyTuple_New(t->ndim);
    if (!s) return NULL;
    for (int j = 0; j < t->ndim; j++) {
        PyObject *v = PyLong_FromLongLong(t->shape[j]);
        if (!v) { Py_DECREF(s); return NULL; }
        PyTuple_SET_ITEM(s, j, v);
    }
    return s;
}

static lnn_status read_header(PyObject *pathb, lnn_st_header *h, int *fd) {
    lnn_status st;
    const char *cpath = PyBytes_AS_STRING(pathb);
    LNN_RELEASE_GIL
    st = lnn_st_read_header_file(cpath, h, fd);
    LNN_ACQUIRE_GIL
    return st;
}

static PyObject *py_st_header(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *pathb = NULL;
    if (!PyArg_ParseTuple(args, "O&:st_header", PyUnicode_FSConverter, &pathb)) return NULL;
    lnn_st_header h;
    PyObject *list = NULL, *meta = NULL, *res = NULL;
    lnn_status st = read_header(pathb, &h, NULL);
    if (st) { raise_st(st, pathb); goto out; }
    list = PyList_New(0);
    if (!list) goto out;
    for (size_t i = 0; i < h.n_tensors; i++) {
        const lnn_st_tensor *t = &h.tensors[i];
        PyObject *shape = shape_tuple(t);
        if (!shape) goto out;
        PyObject *e = Py_BuildValue("{s:s, s:s, s:N, s:(KK)}", "name", t->name, "dtype",
                                    lnn_st_dtype_name(t->dtype), "shape", shape, "data_offsets",
                                    (unsigned long long)t->begin, (unsigned long long)t->end);
        if (!e || PyList_Append(list, e) < 0) { Py_XDECREF(e); goto out; }
        Py_DECREF(e);
    }
    meta = meta_dict(&h);
    if (!meta) goto out;
    res = PyTuple_Pack(2, list, meta);
out:
    lnn_st_header_free(&h);
    Py_XDECREF(list);
    Py_XDECREF(meta);
    Py_XDECREF(pathb);
    return res;
}

/* st_read(path, to_float32=True, skip_non_float=False) -> (dict name -> ndarray, metadata)
 * to_float32: F16/BF16/F64 become float32 (BF16 always does: numpy has no bfloat16).
 * skip_non_float: leave out integer and bool tensors (position_ids buffers). */
static PyObject *py_st_read(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"path", "to_float32", "skip_non_float", NULL};
    PyObject *pathb = NULL;
    int to_f32 = 1, skip = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|pp:st_read", kwlist, PyUnicode_FSConverter,
                                     &pathb, &to_f32, &skip))
        return NULL;
    lnn_st_header h;
    int fd = -1;
    PyObject *dict = NULL, *meta = NULL, *res = NULL;
    PyArrayObject **arrs = NULL;
    int *conv = NULL;
    lnn_status st = read_header(pathb, &h, &fd);
    if (st) { raise_st(st, pathb); goto out; }
    arrs = calloc(h.n_tensors ? h.n_tensors : 1, sizeof *arrs);
    conv = calloc(h.n_tensors ? h.n_tensors : 1, sizeof *conv);
    if (!arrs || !conv) { PyErr_NoMemory(); goto out; }
    for (size_t i = 0; i < h.n_tensors; i++) {
        const lnn_st_tensor *t = &h.tensors[i];
        int isf = st_is_float(t->dtype);
        if (skip && !isf && t->dtype != LNN_ST_F8_E5M2 && t->dtype != LNN_ST_F8_E4M3) continue;
        int typenum;
        if (isf && (to_f32 || t->dtype == LNN_ST_BF16)) {
            typenum = NPY_FLOAT32;
            conv[i] = 1;
        } else {
            typenum = st_npy_type(t->dtype);
        }
        if (typenum < 0) {
            PyErr_Format(lnn_CheckpointError, "%s: tensor '%s' has dtype %s, which lyricnn cannot "
                         "read (supported: F32, F16, BF16, F64 and integer/bool types)", PyBytes_AS_STRING(pathb),
                         t->name, lnn_st_dtype_name(t->dtype));
            goto out;
        }
        npy_intp dims[LNN_ST_MAX_DIMS];
        for (int j = 0; j < t->ndim; j++) dims[j] = (npy_intp)t->shape[j];
        arrs[i] = (PyArrayObject *)PyArray_SimpleNew(t->ndim, dims, typenum);
        if (!arrs[i]) goto out;
    }
    LNN_RELEASE_GIL
    for (size_t i = 0; i < h.n_tensors && st == LNN_OK; i++)
        if (arrs[i]) st = lnn_st_read_tensor(fd, &h, &h.tensors[i], PyArray_DATA(arrs[i]), conv[i]);
    LNN_ACQUIRE_GIL
    if (st) { raise_st(st, pathb); goto out; }
    dict = PyDict_New();
    if (!dict) goto out;
    for (size_t i = 0; i < h.n_tensors; i++)
        if (arrs[i] && PyDict_SetItemString(dict, h.tensors[i].name, (PyObject *)arrs[i]) < 0) goto out;
    meta = meta_dict(&h);
    if (!meta) goto out;
    res = PyTuple_Pack(2, dict, meta);
out:
    if (fd >= 0) close(fd);
    if (arrs)
        for (size_t i = 0; i < h.n_tensors; i++) Py_XDECREF(arrs[i]);
    free(arrs);
    free(conv);
    lnn_st_header_free(&h);
    Py_XDECREF(dict);
    Py_XDECREF(meta);
    Py_XDECREF(pathb);
    return res;
}

/* safetensors dtype of a numpy array, or -1. */
static int np_st_dtype(PyArrayObject *a) {
    PyArray_Descr *d = PyArray_DESCR(a);
    int es = (int)PyArray_ITEMSIZE(a);
    switch (d->kind) {
    case 'b': return es == 1 ? LNN_ST_BOOL : -1;
    case 'f': return es == 2 ? LNN_ST_F16 : es == 4 ? LNN_ST_F32 : es == 8 ? LNN_ST_F64 : -1;
    case 'i': return es == 1 ? LNN_ST_I8 : es == 2 ? LNN_ST_I16 : es == 4 ? LNN_ST_I32 : es == 8 ? LNN_ST_I64 : -1;
    case 'u': return es == 1 ? LNN_ST_U8 : es == 2 ? LNN_ST_U16 : es == 4 ? LNN_ST_U32 : es == 8 ? LNN_ST_U64 : -1;
    default: return -1;
    }
}

/* st_write(path, names: list[str], arrays: list[ndarray], metadata: dict[str, str] | None,
 *          fail_after=-1): write path (not atomically: lyricnn.checkpoint wraps this). */
static PyObject *py_st_write(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"path", "names", "arrays", "metadata", "fail_after", NULL};
    PyObject *pathb = NULL, *names, *arrays, *metadata = Py_None;
    long long fail_after = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&O!O!|OL:st_write", kwlist, PyUnicode_FSConverter,
                                     &pathb, &PyList_Type, &names, &PyList_Type, &arrays, &metadata,
                                     &fail_after))
        return NULL;
    PyObject *res = NULL, *held = NULL;
    lnn_st_wtensor *ts = NULL;
    int64_t *shapes = NULL;
    const char **mk = NULL, **mv = NULL;
    Py_ssize_t n = PyList_GET_SIZE(names), nm = 0;
    if (PyList_GET_SIZE(arrays) != n) {
        PyErr_SetString(PyExc_ValueError, "st_write: names and arrays must have the same length");
        goto out;
    }
    if (metadata != Py_None && !PyDict_Check(metadata)) {
        PyErr_SetString(PyExc_TypeError, "metadata must be a dict of str to str or None");
        goto out;
    }
    held = PyList_New(0); /* keeps every name, array and metadata string alive without the GIL */
    ts = calloc(n ? (size_t)n : 1, sizeof *ts);
    shapes = calloc((n ? (size_t)n : 1) * LNN_ST_MAX_DIMS, sizeof *shapes);
    if (!held || !ts || !shapes) { if (!PyErr_Occurred()) PyErr_NoMemory(); goto out; }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyList_GET_ITEM(names, i), *arr = PyList_GET_ITEM(arrays, i);
        if (!PyUnicode_Check(name)) {
            PyErr_Format(PyExc_TypeError, "tensor names must be str, got %s", Py_TYPE(name)->tp_name);
            goto out;
        }
        if (PyList_Append(held, name) < 0 || PyList_Append(held, arr) < 0) goto out;
        Py_ssize_t len;
        const char *cname = PyUnicode_AsUTF8AndSize(name, &len);
        if (!cname) goto out;
        if ((Py_ssize_t)strlen(cname) != len) {
            PyErr_Format(PyExc_ValueError, "tensor name %R contains a NUL character", name);
            goto out;
        }
        if (!PyArray_Check(arr)) {
            PyErr_Format(PyExc_TypeError, "tensor %R must be a numpy array, got %s", name,
                         Py_TYPE(arr)->tp_name);
            goto out;
        }
        PyArrayObject *a = (PyArrayObject *)arr;
        int dt = np_st_dtype(a);
        if (dt < 0) {
            PyErr_Format(PyExc_TypeError, "tensor %R has dtype %S, which safetensors cannot hold "
                         "here (use float32/float16/float64, int8-64, uint8-64 or bool)", name,
                         (PyObject *)PyArray_DESCR(a));
            goto out;
        }
        if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISNOTSWAPPED(a)) {
            PyErr_Format(PyExc_ValueError, "tensor %R must be C-contiguous in native byte order; "
                         "pass np.ascontiguousarray(x)", name);
            goto out;
        }
        if (PyArray_NDIM(a) > LNN_ST_MAX_DIMS) {
            PyErr_Format(PyExc_ValueError, "tensor %R has %d dimensions (at most %d)", name,
                         PyArray_NDIM(a), LNN_ST_MAX_DIMS);
            goto out;
        }
        int64_t *sh = shapes + (size_t)i * LNN_ST_MAX_DIMS;
        for (int j = 0; j < PyArray_NDIM(a); j++) sh[j] = (int64_t)PyArray_DIM(a, j);
        ts[i] = (lnn_st_wtensor){cname, dt, PyArray_NDIM(a), sh, PyArray_DATA(a)};
    }
    if (metadata != Py_None) {
        nm = PyDict_Size(metadata);
        mk = calloc(nm ? (size_t)nm : 1, sizeof *mk);
        mv = calloc(nm ? (size_t)nm : 1, sizeof *mv);
        if (!mk || !mv) { PyErr_NoMemory(); goto out; }
        Py_ssize_t pos = 0, k = 0;
        PyObject *key, *val;
        while (PyDict_Next(metadata, &pos, &key, &val)) {
            if (!PyUnicode_Check(key) || !PyUnicode_Check(val)) {
                PyErr_SetString(PyExc_TypeError, "metadata must map str to str");
                goto out;
            }
            if (PyList_Append(held, key) < 0 || PyList_Append(held, val) < 0) goto out;
            Py_ssize_t l1, l2;
            mk[k] = PyUnicode_AsUTF8AndSize(key, &l1);
            mv[k] = mk[k] ? PyUnicode_AsUTF8AndSize(val, &l2) : NULL;
            if (!mk[k] || !mv[k]) goto out;
            if ((Py_ssize_t)strlen(mk[k]) != l1 || (Py_ssize_t)strlen(mv[k]) != l2) {
                PyErr_SetString(PyExc_ValueError, "metadata strings must not contain NUL characters");
                goto out;
            }
            k++;
        }
    }
    lnn_status st;
    const char *cpath = PyBytes_AS_STRING(pathb);
    LNN_RELEASE_GIL
    st = lnn_st_write_file(cpath, ts, (size_t)n, mk, mv, (size_t)nm, (int64_t)fail_after);
    LNN_ACQUIRE_GIL
    if (st) {
        if (st == LNN_ERR_MEMORY) PyErr_NoMemory();
        else if (st == LNN_ERR_IO) PyErr_SetString(PyExc_OSError, lnn_get_error());
        else PyErr_SetString(PyExc_ValueError, lnn_get_error());
        goto out;
    }
    res = Py_None;
    Py_INCREF(res);
out:
    free(ts);
    free(shapes);
    free(mk);
    free(mv);
    Py_XDECREF(held);
    Py_XDECREF(pathb);
    return res;
}

/* st_validate_bytes(data: bytes) -> (n_tensors, n_meta): parse a whole in-memory file (tests). */
static PyObject *py_st_validate_bytes(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    lnn_st_header h;
    lnn_status st;
    LNN_RELEASE_GIL
    st = lnn_st_parse_memory(view.buf, (size_t)view.len, &h);
    LNN_ACQUIRE_GIL
    PyBuffer_Release(&view);
    if (st) {
        if (st == LNN_ERR_MEMORY) return PyErr_NoMemory();
        PyErr_SetString(lnn_CheckpointError, lnn_get_error());
        return NULL;
    }
    PyObject *r = Py_BuildValue("(nn)", (Py_ssize_t)h.n_tensors, (Py_ssize_t)h.n_meta);
    lnn_st_header_free(&h);
    return r;
}

static PyMethodDef checkpoint_methods[] = {
    {"st_header", py_st_header, METH_VARARGS,
     "st_header(path) -> (list of {name, dtype, shape, data_offsets}, metadata): validated header."},
    {"st_read", (PyCFunction)(void (*)(void))py_st_read, METH_VARARGS | METH_KEYWORDS,
     "st_read(path, to_float32=True, skip_non_float=False) -> (dict of arrays, metadata)."},
    {"st_write", (PyCFunction)(void (*)(void))py_st_write, METH_VARARGS | METH_KEYWORDS,
     "st_write(path, names, arrays, metadata=None, fail_after=-1): write a safetensors file."},
    {"st_validate_bytes", py_st_validate_bytes, METH_O,
     "st_validate_bytes(data) -> (n_tensors, n_meta): validate a safetensors file held in memory."},
    {NULL, NULL, 0, NULL},
};

int lnn_register_checkpoint(PyObject *m) { return PyModule_AddFunctions(m, checkpoint_methods); }
