/* py/module.c: lyricnn._C module init, typed exceptions, argument checks, build info, threads. */
#define LNN_MODULE_MAIN
#include "py/ext.h"
#include "core/backend.h"
#include "core/cpu_level.h"
#include "cpu/blas.h"

#include <stdio.h>
#include <string.h>

#ifndef LNN_VERSION
#define LNN_VERSION "0.0.0"
#endif
#ifndef LNN_COMPILER
#define LNN_COMPILER "unknown"
#endif
#ifndef LNN_BLAS_NAME
#define LNN_BLAS_NAME "unknown"
#endif
#ifndef LNN_CUDA_INFO
#define LNN_CUDA_INFO "not built"
#endif
#ifndef LNN_CFLAGS
#define LNN_CFLAGS ""
#endif
#ifndef LNN_CPU_LEVEL_INFO
#define LNN_CPU_LEVEL_INFO "one level"
#endif

PyObject *lnn_Error = NULL;
PyObject *lnn_CheckpointError = NULL;

PyObject *lnn_raise_status(lnn_status st) {
    const char *msg = lnn_get_error();
    switch (st) {
    case LNN_ERR_VALUE: PyErr_SetString(PyExc_ValueError, msg); break;
    case LNN_ERR_MEMORY: PyErr_Format(PyExc_MemoryError, "%s", msg); break;
    case LNN_ERR_IO: PyErr_SetString(PyExc_OSError, msg); break;
    case LNN_ERR_INDEX: PyErr_SetString(PyExc_IndexError, msg); break;
    default: PyErr_SetString(lnn_Error, msg); break;
    }
    return NULL;
}

int lnn_add_type(PyObject *m, const char *name, PyTypeObject *type) {
    if (PyType_Ready(type) < 0) return -1;
    Py_INCREF(type);
    if (PyModule_AddObject(m, name, (PyObject *)type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}

const char *lnn_shape_str(int ndim, const npy_intp *shape, char *buf, size_t n) {
    size_t off = 0;
    off += (size_t)snprintf(buf + off, n - off, "(");
    for (int i = 0; i < ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, i ? ", %ld" : "%ld", (long)shape[i]);
    if (off < n) snprintf(buf + off, n - off, ndim == 1 ? ",)" : ")");
    return buf;
}

PyArrayObject *lnn_check_array(PyObject *obj, const char *argname, int typenum, int ndim,
                               const npy_intp *shape, int writable) {
    PyArray_Descr *want = PyArray_DescrFromType(typenum);
    const char *tname = want ? want->typeobj->tp_name : "?";
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy array of dtype %s, got %s; "
                     "pass np.asarray(%s, dtype=np.%s)", argname, tname, Py_TYPE(obj)->tp_name,
                     argname, tname);
        Py_XDECREF(want);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != typenum) {
        PyErr_Format(PyExc_TypeError, "%s must have dtype %s, got %s; convert with "
                     "%s.astype(np.%s)", argname, tname, PyArray_DESCR(a)->typeobj->tp_name,
                     argname, tname);
        Py_XDECREF(want);
        return NULL;
    }
    Py_XDECREF(want);
    if (PyArray_NDIM(a) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must have %d dimension(s), got %d", argname, ndim,
                     PyArray_NDIM(a));
        return NULL;
    }
    if (shape) {
        for (int i = 0; i < ndim; i++) {
            if (shape[i] >= 0 && PyArray_DIM(a, i) != shape[i]) {
                char got[128], exp[128];
                npy_intp e[NPY_MAXDIMS];
                for (int j = 0; j < ndim; j++) e[j] = shape[j] >= 0 ? shape[j] : PyArray_DIM(a, j);
                PyErr_Format(PyExc_ValueError, "%s has shape %s but %s was expected", argname,
                             lnn_shape_str(ndim, PyArray_DIMS(a), got, sizeof got),
                             lnn_shape_str(ndim, e, exp, sizeof exp));
                return NULL;
            }
        }
    }
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be C-contiguous and aligned; pass "
                     "np.ascontiguousarray(%s)", argname, argname);
        return NULL;
    }
    if (writable && !PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be writeable; pass a copy (%s.copy())", argname,
                     argname);
        return NULL;
    }
    return a;
}

static int lnn_default_threads(void) {
#ifdef _OPENMP
    int n = omp_get_max_threads();
#else
    int n = 1;
#endif
    return n > 0 ? n : 1;
}

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg) {
    (void)self;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "set_num_threads(n): n must be an int, got %s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    if (n < 1 || n > 4096) {
        PyErr_Format(PyExc_ValueError, "set_num_threads(n): n must be between 1 and 4096, got %ld", n);
        return NULL;
    }
    lnn_num_threads = (int)n;
    lnn_blas_set_num_threads((int)n);
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *unused) {
    (void)self; (void)unused;
    return PyLong_FromLong(lnn_num_threads);
}

static PyObject *py_build_info(PyObject *self, PyObject *unused) {
    (void)self; (void)unused;
    const char *blas_config = "", *blas_core = "";
#if LNN_BLAS_HAS_CONFIG
    blas_config = lnn_blas_get_config();
    blas_core = lnn_blas_get_corename();
#endif
#ifdef _OPENMP
    PyObject *omp = Py_True;
    int omp_version = _OPENMP;
    int omp_max = omp_get_max_threads();
#else
    PyObject *omp = Py_False;
    int omp_version = 0;
    int omp_max = 1;
#endif
    const char *cap = lnn_cpu_level_cap();
    return Py_BuildValue("{s:s, s:s, s:s, s:O, s:i, s:i, s:i, s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:s}",
                         "version", LNN_VERSION, "compiler", LNN_COMPILER, "cflags", LNN_CFLAGS,
                         "openmp", omp, "openmp_version", omp_version,
                         "openmp_max_threads", omp_max, "num_threads", lnn_num_threads,
                         "blas", LNN_BLAS_NAME, "blas_config", blas_config ? blas_config : "",
                         "blas_core", blas_core ? blas_core : "",
                         "blas_num_threads", (int)lnn_blas_get_num_threads(),
                         "cuda", LNN_CUDA_INFO, "cpu_level", lnn_cpu_level_name(),
                         "cpu_levels", lnn_cpu_levels_built(), "cpu_level_supported", lnn_cpu_level_supported(),
                         "cpu_level_cap", cap ? cap : "", "cpu_dispatch", LNN_CPU_LEVEL_INFO);
}

/* cuda_info() -> {runtime, driver, devices: [{name, compute_capability, memory, ...}]}; LyricnnError with
 * the reason when the CUDA backend is not available */
static PyObject *py_cuda_info(PyObject *self, PyObject *unused) {
    (void)self; (void)unused;
    const lnn_backend *be = lnn_backend_find("cuda");
    if (!be) {
        PyErr_Format(lnn_Error, "%s", lnn_backend_missing("cuda"));
        return NULL;
    }
    lnn_device_info d0;
    lnn_status st = be->device_info(0, &d0);
    if (st) return lnn_raise_status(st);
    PyObject *devs = PyList_New(0);
    if (!devs) return NULL;
    for (int i = 0; i < d0.count; i++) {
        lnn_device_info d;
        if (be->device_info(i, &d)) {
            Py_DECREF(devs);
            return lnn_raise_status(LNN_ERR_RUNTIME);
        }
        PyObject *o = Py_BuildValue("{s:i, s:s, s:(ii), s:K, s:K, s:O, s:O}", "index", i, "name", d.name,
                                    "compute_capability", d.cc_major, d.cc_minor, "total_memory",
                                    (unsigned long long)d.total_memory, "free_memory",
                                    (unsigned long long)d.free_memory, "bf16",
                                    (d.act_dtypes & (1u << LNN_BF16)) ? Py_True : Py_False, "fp16",
                                    (d.act_dtypes & (1u << LNN_F16)) ? Py_True : Py_False);
        if (!o || PyList_Append(devs, o) < 0) {
            Py_XDECREF(o);
            Py_DECREF(devs);
            return NULL;
        }
        Py_DECREF(o);
    }
    return Py_BuildValue("{s:i, s:i, s:N}", "runtime_version", d0.runtime_version, "driver_version",
                         d0.driver_version, "devices", devs);
}

static PyMethodDef module_methods[] = {
    {"cuda_info", py_cuda_info, METH_NOARGS, "cuda_info() -> the CUDA runtime, driver and devices (LyricnnError "
     "with the reason when the CUDA backend is not available)."},
    {"set_num_threads", py_set_num_threads, METH_O, "set_num_threads(n): threads for OpenMP loops and BLAS."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "get_num_threads() -> int"},
    {"build_info", py_build_info, METH_NOARGS, "build_info() -> dict of how the engine was built."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "lyricnn._C", "lyricnn C/CUDA engine.", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__C(void) {
    import_array();
    if (lnn_cpu_level_init()) { /* LYRICNN_CPU_LEVEL names no level, or no copy of the CPU code runs here */
        PyErr_SetString(PyExc_ValueError, lnn_get_error());
        return NULL;
    }
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
    lnn_Error = PyErr_NewExceptionWithDoc("lyricnn.LyricnnError",
                                          "An error raised by the lyricnn engine.", PyExc_RuntimeError, NULL);
    lnn_CheckpointError = PyErr_NewExceptionWithDoc(
        "lyricnn.CheckpointError", "A checkpoint or vocabulary file is missing, corrupt or does not match.",
        PyExc_ValueError, NULL);
    if (!lnn_Error || !lnn_CheckpointError) goto fail;
    Py_INCREF(lnn_Error);
    Py_INCREF(lnn_CheckpointError);
    if (PyModule_AddObject(m, "LyricnnError", lnn_Error) < 0) goto fail;
    if (PyModule_AddObject(m, "CheckpointError", lnn_CheckpointError) < 0) goto fail;
    lnn_num_threads = lnn_default_threads();
    lnn_blas_set_num_threads(lnn_num_threads);
    if (lnn_register_tokenizer(m) < 0) goto fail;
    if (lnn_register_engine(m) < 0) goto fail;
    if (lnn_register_checkpoint(m) < 0) goto fail;
    if (lnn_register_ops(m) < 0) goto fail;
    if (lnn_register_classifier(m) < 0) goto fail;
    if (lnn_register_lstm(m) < 0) goto fail;
    /* constants shared with the Python side (lyricnn reads them from here, never copies them) */
    if (PyModule_AddIntConstant(m, "ACT_GELU", LNN_ACT_GELU) < 0 || PyModule_AddIntConstant(m, "ACT_RELU", LNN_ACT_RELU) < 0 ||
        PyModule_AddIntConstant(m, "ACT_GELU_TANH", LNN_ACT_GELU_TANH) < 0 ||
        PyModule_AddIntConstant(m, "SEG_DECAY", LNN_SEG_DECAY) < 0 || PyModule_AddIntConstant(m, "SEG_FROZEN", LNN_SEG_FROZEN) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
