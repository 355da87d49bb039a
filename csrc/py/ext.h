/* py/ext.h: the one header of conventions for the CPython extension lyricnn._C.
 *
 * 1. Include this first in every binding file (it sets up the NumPy C API once).
 * 2. Check every argument at the boundary with lnn_check_array(): dtype, ndim, shape,
 *    C-contiguity, writability; the message names the argument and the fix.
 * 3. Run heavy C work between LNN_RELEASE_GIL / LNN_ACQUIRE_GIL; no Python API in between.
 * 4. C core functions return an lnn_status; turn it into a typed Python exception with
 *    lnn_raise_status(). Never exit() or abort(); never trust user input.
 */
#ifndef LNN_PY_EXT_H
#define LNN_PY_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL lnn_ARRAY_API
#ifndef LNN_MODULE_MAIN
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include "core/common.h"

/* lyricnn.LyricnnError (a RuntimeError) and lyricnn.CheckpointError (a ValueError). */
extern PyObject *lnn_Error;
extern PyObject *lnn_CheckpointError;

#define LNN_RELEASE_GIL Py_BEGIN_ALLOW_THREADS
#define LNN_ACQUIRE_GIL Py_END_ALLOW_THREADS

/* Raise the Python exception matching a failed lnn_status, with the C core's message.
 * Returns NULL so callers can `return lnn_raise_status(st);`. */
PyObject *lnn_raise_status(lnn_status st);

/* Check that obj is a numpy array of dtype typenum (NPY_FLOAT32, NPY_INT64, ...), with
 * ndim dims (shape[i] == -1 means any size), C-contiguous, aligned and, if writable,
 * writeable. Returns obj cast to PyArrayObject* (borrowed) or NULL with TypeError /
 * ValueError set. argname is the user-facing argument name used in the message. */
PyArrayObject *lnn_check_array(PyObject *obj, const char *argname, int typenum, int ndim,
                               const npy_intp *shape, int writable);

/* Shape as "(2, 3, 4)" into buf, for messages. */
const char *lnn_shape_str(int ndim, const npy_intp *shape, char *buf, size_t n);

/* Ready a static type and add it to the module as `name`; 0, or -1 with the error set. */
int lnn_add_type(PyObject *m, const char *name, PyTypeObject *type);

/* Each component registers its functions and types on the module here. */
int lnn_register_tokenizer(PyObject *m);
int lnn_register_engine(PyObject *m);
int lnn_register_checkpoint(PyObject *m);
int lnn_register_ops(PyObject *m);
int lnn_register_classifier(PyObject *m);
int lnn_register_lstm(PyObject *m);

#endif /* LNN_PY_EXT_H */
