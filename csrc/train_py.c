/* train_py.c: Python binding of heads, losses and the optimizer (the C core is train_ops.c).
 *
 * Low-level building blocks on numpy arrays: outputs and gradients are caller-allocated
 * (float32, C-contiguous); backward functions ACCUMULATE into the gradients they are given;
 * losses WRITE their dlogits. See lyricnn/_train_ops.py for allocating wrappers.
 */
#include "lnn_ext.h"

#include <limits.h>
#include <string.h>

#include "train_ops.h"

_Static_assert(sizeof(lnn_segment) == 4 * sizeof(int64_t), "lnn_segment must be 4 int64s");

/* Optional array: Py_None -> *out = NULL. Returns 0 or -1 with an exception set. */
static int opt_array(PyObject *obj, const char *name, int typenum, int ndim, const npy_intp *shape,
                     int writable, PyArrayObject **out) {
    *out = NULL;
    if (!obj || obj == Py_None) return 0;
    *out = lnn_check_array(obj, name, typenum, ndim, shape, writable);
    return *out ? 0 : -1;
}

/* An array of any ndim whose shape equals ref's. */
static PyArrayObject *like_array(PyObject *obj, const char *name, int typenum, PyArrayObject *ref,
                                 int writable) {
    return lnn_check_array(obj, name, typenum, PyArray_NDIM(ref), PyArray_DIMS(ref), writable);
}

static PyArrayObject *any_array(PyObject *obj, const char *name, int typenum, int writable) {
    int nd = PyArray_Check(obj) ? PyArray_NDIM((PyArrayObject *)obj) : 1;
    return lnn_check_array(obj, name, typenum, nd, NULL, writable);
}

static int fits_int(const char *what, npy_intp v) {
    if (v > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "%s = %ld is too large for the BLAS (at most %d)", what, (long)v,
                     INT_MAX);
        return 0;
    }
    return 1;
}

#define F32(p) ((float *)PyArray_DATA(p))
#define OPTF32(p) ((p) ? (float *)PyArray_DATA(p) : NULL)

/* ---------------------------------------------------------------- losses */

static PyObject *py_cross_entropy(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"logits", "labels", "weight", "dlogits", "ignore_index", "grad_scale", NULL};
    PyObject *o_x, *o_y, *o_w = Py_None, *o_d = Py_None;
    long long ignore_index = -100;
    float grad_scale = 1.0f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|OOLf:cross_entropy_forward_backward", kwlist, &o_x,
                                     &o_y, &o_w, &o_d, &ignore_index, &grad_scale))
        return NULL;
    PyArrayObject *x = lnn_check_array(o_x, "logits", NPY_FLOAT32, 2, NULL, 0);
    if (!x) return NULL;
    npy_intp N = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1);
    npy_intp ys[1] = {N}, ws[1] = {C};
    PyArrayObject *y = lnn_check_array(o_y, "labels", NPY_INT64, 1, ys, 0), *w, *d;
    if (!y) return NULL;
    if (opt_array(o_w, "weight", NPY_FLOAT32, 1, ws, 0, &w) < 0) return NULL;
    if (opt_array(o_d, "dlogits", NPY_FLOAT32, 2, PyArray_DIMS(x), 1, &d) < 0) return NULL;
    double loss = 0.0;
    lnn_status st;
    LNN_RELEASE_GIL
    st = lnn_cross_entropy_forward_backward(F32(x), (const int64_t *)PyArray_DATA(y), OPTF32(w), N, C,
                                            ignore_index, grad_scale, OPTF32(d), &loss);
    LNN_ACQUIRE_GIL
    if (st) return lnn_raise_status(st);
    return PyFloat_FromDouble(loss);
}

static PyObject *py_bce(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"logits", "targets", "pos_weight", "dlogits", "grad_scale", NULL};
    PyObject *o_x, *o_y, *o_w = Py_None, *o_d = Py_None;
    float grad_scale = 1.0f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|OOf:bce_with_logits_forward_backward", kwlist, &o_x,
                                     &o_y, &o_w, &o_d, &grad_scale))
        return NULL;
    PyArrayObject *x = lnn_check_array(o_x, "logits", NPY_FLOAT32, 2, NULL, 0);
    if (!x) return NULL;
    npy_intp N = PyArray_DIM(x, 0), K = PyArray_DIM(x, 1), ws[1] = {K};
    PyArrayObject *y = lnn_check_array(o_y, "targets", NPY_FLOAT32, 2, PyArray_DIMS(x), 0), *w, *d;
    if (!y) return NULL;
    if (opt_array(o_w, "pos_weight", NPY_FLOAT32, 1, ws, 0, &w) < 0) return NULL;
    if (opt_array(o_d, "dlogits", NPY_FLOAT32, 2, PyArray_DIMS(x), 1, &d) < 0) return NULL;
    double loss = 0.0;
    lnn_status st;
    LNN_RELEASE_GIL
    st = lnn_bce_with_logits_forward_backward(F32(x), F32(y), OPTF32(w), N, K, grad_scale, OPTF32(d),
                                              &loss);
    LNN_ACQUIRE_GIL
    if (st) return lnn_raise_status(st);
    return PyFloat_FromDouble(loss);
}

static PyObject *py_mse(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"preds", "targets", "dpreds", "grad_scale", NULL};
    PyObject *o_x, *o_y, *o_d = Py_None;
    float grad_scale = 1.0f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|Of:mse_forward_backward", kwlist, &o_x, &o_y, &o_d,
                                     &grad_scale))
        return NULL;
    PyArrayObject *x = any_array(o_x, "preds", NPY_FLOAT32, 0), *y, *d = NULL;
    if (!x) return NULL;
    if (!(y = like_array(o_y, "targets", NPY_FLOAT32, x, 0))) return NULL;
    if (o_d != Py_None && !(d = like_array(o_d, "dpreds", NPY_FLOAT32, x, 1))) return NULL;
    double loss = 0.0;
    lnn_status st;
    LNN_RELEASE_GIL
    st = lnn_mse_forward_backward(F32(x), F32(y), PyArray_SIZE(x), grad_scale, OPTF32(d), &loss);
    LNN_ACQUIRE_GIL
    if (st) return lnn_raise_status(st);
    return PyFloat_FromDouble(loss);
}

/* ---------------------------------------------------------------- linear */

static PyObject *py_linear_forward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"x", "weight", "bias", "out", NULL};
    PyObject *o_x, *o_w, *o_b, *o_o;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOO:head_linear_forward", kwlist, &o_x, &o_w, &o_b,
                                     &o_o))
        return NULL;
    PyArrayObject *x = lnn_check_array(o_x, "x", NPY_FLOAT32, 2, NULL, 0), *w, *b, *o;
    if (!x) return NULL;
    npy_intp N = PyArray_DIM(x, 0), K = PyArray_DIM(x, 1), ws[2] = {-1, K};
    if (!(w = lnn_check_array(o_w, "weight", NPY_FLOAT32, 2, ws, 0))) return NULL;
    npy_intp M = PyArray_DIM(w, 0), bs[1] = {M}, os[2] = {N, M};
    if (opt_array(o_b, "bias", NPY_FLOAT32, 1, bs, 0, &b) < 0) return NULL;
    if (!(o = lnn_check_array(o_o, "out", NPY_FLOAT32, 2, os, 1))) return NULL;
    if (!fits_int("x.shape[0]", N) || !fits_int("x.shape[1]", K) || !fits_int("weight.shape[0]", M))
        return NULL;
    LNN_RELEASE_GIL
    lnn_head_linear_forward(F32(o), F32(x), F32(w), OPTF32(b), N, K, M);
    LNN_ACQUIRE_GIL
    Py_RETURN_NONE;
}

static PyObject *py_linear_backward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"dout", "x", "weight", "dx", "dweight", "dbias", NULL};
    PyObject *o_d, *o_x, *o_w, *o_dx, *o_dw, *o_db;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOO:head_linear_backward", kwlist, &o_d, &o_x, &o_w,
                                     &o_dx, &o_dw, &o_db))
        return NULL;
    PyArrayObject *x = lnn_check_array(o_x, "x", NPY_FLOAT32, 2, NULL, 0), *w, *d, *dx, *dw, *db;
    if (!x) return NULL;
    npy_intp N = PyArray_DIM(x, 0), K = PyArray_DIM(x, 1), ws[2] = {-1, K};
    if (!(w = lnn_check_array(o_w, "weight", NPY_FLOAT32, 2, ws, 0))) return NULL;
    npy_intp M = PyArray_DIM(w, 0), ds[2] = {N, M}, bs[1] = {M};
    if (!(d = lnn_check_array(o_d, "dout", NPY_FLOAT32, 2, ds, 0))) return NULL;
    if (opt_array(o_dx, "dx", NPY_FLOAT32, 2, PyArray_DIMS(x), 1, &dx) < 0) return NULL;
    if (opt_array(o_dw, "dweight", NPY_FLOAT32, 2, PyArray_DIMS(w), 1, &dw) < 0) return NULL;
    if (opt_array(o_db, "dbias", NPY_FLOAT32, 1, bs, 1, &db) < 0) return NULL;
    if (!fits_int("x.shape[0]", N) || !fits_int("x.shape[1]", K) || !fits_int("weight.shape[0]", M))
        return NULL;
    LNN_RELEASE_GIL
    lnn_head_linear_backward(OPTF32(dx), OPTF32(dw), OPTF32(db), F32(d), F32(x), F32(w), N, K, M);
    LNN_ACQUIRE_GIL
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- elementwise */

typedef void (*unary_fwd)(float *, const float *, int64_t);
typedef void (*unary_bwd)(float *, const float *, const float *, int64_t);

static PyObject *unary_forward(PyObject *args, PyObject *kw, const char *fmt, unary_fwd fn) {
    static char *kwlist[] = {"x", "out", NULL};
    PyObject *o_x, *o_o;
    if (!PyArg_ParseTupleAndKeywords(args, kw, fmt, kwlist, &o_x, &o_o)) return NULL;
    PyArrayObject *x = any_array(o_x, "x", NPY_FLOAT32, 0), *o;
    if (!x || !(o = like_array(o_o, "out", NPY_FLOAT32, x, 1))) return NULL;
    LNN_RELEASE_GIL
    fn(F32(o), F32(x), PyArray_SIZE(x));
    LNN_ACQUIRE_GIL
    Py_RETURN_NONE;
}

static PyObject *unary_backward(PyObject *args, PyObject *kw, const char *fmt, unary_bwd fn) {
    static char *kwlist[] = {"dout", "out", "dx", NULL};
    PyObject *o_d, *o_o, *o_dx;
    if (!PyArg_ParseTupleAndKeywords(args, kw, fmt, kwlist, &o_d, &o_o, &o_dx)) return NULL;
    PyArrayObject *d = any_array(o_d, "dout", NPY_FLOAT32, 0), *o, *dx;
    if (!d || !(o = like_array(o_o, "out", NPY_FLOAT32, d, 0)) ||
        !(dx = like_array(o_dx, "dx", NPY_FLOAT32, d, 1)))
        return NULL;
    LNN_RELEASE_GIL
    fn(F32(dx), F32(d), F32(o), PyArray_SIZE(d));
    LNN_ACQUIRE_GIL
    Py_RETURN_NONE;
}

static PyObject *py_relu_forward(PyObject *s, PyObject *a, PyObject *k) {
    return unary_forward(a, k, "OO:head_relu_forward", lnn_head_relu_forward);
}
static PyObject *py_relu_backward(PyObject *s, PyObject *a, PyObject *k) {
    return unary_backward(a, k, "OOO:head_relu_backward", lnn_head_relu_backward);
}
static PyObject *py_tanh_forward(PyObject *s, PyObject *a, PyObject *k) {
    return unary_forward(a, k, "OO:head_tanh_forward", lnn_head_tanh_forward);
}
static PyObject *py_tanh_backward(PyObject *s, PyObject *a, PyObject *k) {
    return unary_backward(a, k, "OOO:head_tanh_backward", lnn_head_tanh_backward);
}

static PyObject *py_dropout_forward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"x", "out", "mask", "p", "seed", NULL};
    PyObject *o_x, *o_o, *o_m;
    float p;
    unsigned long long seed;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOfK:head_dropout_forward", kwlist, &o_x, &o_o, &o_m,
                                     &p, &seed))
        return NULL;
    PyArrayObject *x = any_array(o_x, "x", NPY_FLOAT32, 0), *o, *m;
    if (!x || !(o = like_array(o_o, "out", NPY_FLOAT32, x, 1)) ||
        !(m = like_array(o_m, "mask", NPY_UINT8, x, 1)))
        return NULL;
    lnn_status st;
    LNN_RELEASE_GIL
    st = lnn_head_dropout_forward(F32(o), (uint8_t *)PyArray_DATA(m), F32(x), PyArray_SIZE(x), p,
                                  (uint64_t)seed);
    LNN_ACQUIRE_GIL
    if (st) return lnn_raise_status(st);
    Py_RETURN_NONE;
}

static PyObject *py_dropout_backward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"dout", "mask", "dx", "p", NULL};
    PyObject *o_d, *o_m, *o_dx;
    float p;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOf:head_dropout_backward", kwlist, &o_d, &o_m, &o_dx,
                                     &p))
        return NULL;
    if (!(p >= 0.0f && p < 1.0f)) {
        PyErr_Format(PyExc_ValueError, "p must be in [0, 1), got %g", (double)p);
        return NULL;
    }
    PyArrayObject *d = any_array(o_d, "dout", NPY_FLOAT32, 0), *m, *dx;
    if (!d || !(m = like_array(o_m, "mask", NPY_UINT8, d, 0)) ||
        !(dx = like_array(o_dx, "dx", NPY_FLOAT32, d, 1)))
        return NULL;
    LNN_RELEASE_GIL
    lnn_head_dropout_backward(F32(dx), F32(d), (const uint8_t *)PyArray_DATA(m), PyArray_SIZE(d), p);
    LNN_ACQUIRE_GIL
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- batchnorm */

static PyObject *py_bn_forward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"x", "gamma", "beta", "running_mean", "running_var", "out", "save_mean",
                             "save_rstd", "training", "momentum", "eps", NULL};
    PyObject *o_x, *o_g, *o_b, *o_rm, *o_rv, *o_o, *o_sm, *o_sr;
    int training;
    float momentum = 0.1f, eps = 1e-5f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOOp|ff:head_batchnorm1d_forward", kwlist, &o_x,
                                     &o_g, &o_b, &o_rm, &o_rv, &o_o, &o_sm, &o_sr, &training,
                                     &momentum, &eps))
        return NULL;
    PyArrayObject *x = lnn_check_array(o_x, "x", NPY_FLOAT32, 2, NULL, 0), *g, *b, *rm, *rv, *o, *sm, *sr;
    if (!x) return NULL;
    npy_intp N = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1), cs[1] = {C};
    if (opt_array(o_g, "gamma", NPY_FLOAT32, 1, cs, 0, &g) < 0 ||
        opt_array(o_b, "beta", NPY_FLOAT32, 1, cs, 0, &b) < 0 ||
        opt_array(o_rm, "running_mean", NPY_FLOAT32, 1, cs, 1, &rm) < 0 ||
        opt_array(o_rv, "running_var", NPY_FLOAT32, 1, cs, 1, &rv) < 0)
        return NULL;
    if (!rm != !rv) {
        PyErr_SetString(PyExc_ValueError, "running_mean and running_var must both be arrays or both be None");
        return NULL;
    }
    if (!(o = lnn_check_array(o_o, "out", NPY_FLOAT32, 2, PyArray_DIMS(x), 1)) ||
        !(sm = lnn_check_array(o_sm, "save_mean", NPY_FLOAT32, 1, cs, 1)) ||
        !(sr = lnn_check_array(o_sr, "save_rstd", NPY_FLOAT32, 1, cs, 1)))
        return NULL;
    if (!(eps > 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f)) {
        PyErr_Format(PyExc_ValueError, "batchnorm1d needs eps > 0 and momentum in [0, 1], got eps=%g, "
                     "momentum=%g", (double)eps, (double)momentum);
        return NULL;
    }
    lnn_status st;
    LNN_RELEASE_GIL
    st = lnn_head_batchnorm1d_forward(F32(o), F32(sm), F32(sr), F32(x), OPTF32(g), OPTF32(b),
                                      OPTF32(rm), OPTF32(rv), N, C, training, momentum, eps);
    LNN_ACQUIRE_GIL
    if (st) return lnn_raise_status(st);
    Py_RETURN_NONE;
}

static PyObject *py_bn_backward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"dout", "x", "gamma", "save_mean", "save_rstd", "dx", "dgamma", "dbeta",
                             "batch_stats", NULL};
    PyObject *o_d, *o_x, *o_g, *o_sm, *o_sr, *o_dx, *o_dg, *o_db;
    int batch_stats;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOOp:head_batchnorm1d_backward", kwlist, &o_d,
                                     &o_x, &o_g, &o_sm, &o_sr, &o_dx, &o_dg, &o_db, &batch_stats))
        return NULL;
    PyArrayObject *x = lnn_check_array(o_x, "x", NPY_FLOAT32, 2, NULL, 0), *d, *g, *sm, *sr, *dx, *dg, *db;
    if (!x) return NULL;
    npy_intp N = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1), cs[1] = {C};
    if (!(d = lnn_check_array(o_d, "dout", NPY_FLOAT32, 2, PyArray_DIMS(x), 0)) ||
        opt_array(o_g, "gamma", NPY_FLOAT32, 1, cs, 0, &g) < 0 ||
        !(sm = lnn_check_array(o_sm, "save_mean", NPY_FLOAT32, 1, cs, 0)) ||
        !(sr = lnn_check_array(o_sr, "save_rstd", NPY_FLOAT32, 1, cs, 0)) ||
        opt_array(o_dx, "dx", NPY_FLOAT32, 2, PyArray_DIMS(x), 1, &dx) < 0 ||
        opt_array(o_dg, "dgamma", NPY_FLOAT32, 1, cs, 1, &dg) < 0 ||
        opt_array(o_db, "dbeta", NPY_FLOAT32, 1, cs, 1, &db) < 0)
        return NULL;
    LNN_RELEASE_GIL
    lnn_head_batchnorm1d_backward(OPTF32(dx), OPTF32(dg), OPTF32(db), F32(d), F32(x), OPTF32(g),
                                  F32(sm), F32(sr), N, C, batch_stats);
    LNN_ACQUIRE_GIL
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- pooling, concat */

static int pool_mode(const char *s) {
    if (!strcmp(s, "cls")) return LNN_POOL_CLS;
    if (!strcmp(s, "mean")) return LNN_POOL_MEAN;
    if (!strcmp(s, "flatten")) return LNN_POOL_FLATTEN;
    PyErr_Format(PyExc_ValueError, "mode (pooling) must be 'cls', 'mean' or 'flatten', got '%s'", s);
    return -1;
}

static PyObject *py_pool(PyObject *args, PyObject *kw, int backward) {
    static char *kwlist_f[] = {"h", "mask", "out", "mode", NULL};
    static char *kwlist_b[] = {"dout", "mask", "dh", "mode", NULL};
    PyObject *o_a, *o_m, *o_b;
    const char *smode;
    if (!PyArg_ParseTupleAndKeywords(args, kw, backward ? "OOOs:head_pool_backward" : "OOOs:head_pool_forward",
                                     backward ? kwlist_b : kwlist_f, &o_a, &o_m, &o_b, &smode))
        return NULL;
    int mode = pool_mode(smode);
    if (mode < 0) return NULL;
    /* h / dh is (B, T, C): the forward's first argument, the backward's third */
    PyArrayObject *h = lnn_check_array(backward ? o_b : o_a, backward ? "dh" : "h", NPY_FLOAT32, 3, NULL,
                                       backward);
    if (!h) return NULL;
    npy_intp B = PyArray_DIM(h, 0), T = PyArray_DIM(h, 1), C = PyArray_DIM(h, 2);
    npy_intp ms[2] = {B, T}, ps[2] = {B, mode == LNN_POOL_FLATTEN ? T * C : C};
    PyArrayObject *m, *p;
    if (opt_array(o_m, "mask", NPY_INT64, 2, ms, 0, &m) < 0) return NULL;
    if (!(p = lnn_check_array(backward ? o_a : o_b, backward ? "dout" : "out", NPY_FLOAT32, 2, ps,
                              !backward)))
        return NULL;
    const int64_t *mk = m ? (const int64_t *)PyArray_DATA(m) : NULL;
    lnn_status st;
    LNN_RELEASE_GIL
    st = backward ? lnn_head_pool_backward(F32(h), F32(p), mk, B, T, C, mode)
                  : lnn_head_pool_forward(F32(p), F32(h), mk, B, T, C, mode);
    LNN_ACQUIRE_GIL
    if (st) return lnn_raise_status(st);
    Py_RETURN_NONE;
}

static PyObject *py_pool_forward(PyObject *s, PyObject *a, PyObject *k) { return py_pool(a, k, 0); }
static PyObject *py_pool_backward(PyObject *s, PyObject *a, PyObject *k) { return py_pool(a, k, 1); }

static PyObject *py_concat_forward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"h", "f", "out", NULL};
    PyObject *o_h, *o_f, *o_o;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO:head_concat_forward", kwlist, &o_h, &o_f, &o_o))
        return NULL;
    PyArrayObject *h = lnn_check_array(o_h, "h", NPY_FLOAT32, 2, NULL, 0), *f, *o;
    if (!h) return NULL;
    npy_intp B = PyArray_DIM(h, 0), H = PyArray_DIM(h, 1), fs[2] = {B, -1};
    if (!(f = lnn_check_array(o_f, "f", NPY_FLOAT32, 2, fs, 0))) return NULL;
    npy_intp F = PyArray_DIM(f, 1), os[2] = {B, H + F};
    if (!(o = lnn_check_array(o_o, "out", NPY_FLOAT32, 2, os, 1))) return NULL;
    LNN_RELEASE_GIL
    lnn_head_concat_forward(F32(o), F32(h), F32(f), B, H, F);
    LNN_ACQUIRE_GIL
    Py_RETURN_NONE;
}

static PyObject *py_concat_backward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"dout", "dh", "df", NULL};
    PyObject *o_d, *o_h, *o_f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO:head_concat_backward", kwlist, &o_d, &o_h, &o_f))
        return NULL;
    PyArrayObject *d = lnn_check_array(o_d, "dout", NPY_FLOAT32, 2, NULL, 0), *h, *f;
    if (!d) return NULL;
    npy_intp B = PyArray_DIM(d, 0), HF = PyArray_DIM(d, 1), bs[2] = {B, -1};
    if (opt_array(o_h, "dh", NPY_FLOAT32, 2, bs, 1, &h) < 0 ||
        opt_array(o_f, "df", NPY_FLOAT32, 2, bs, 1, &f) < 0)
        return NULL;
    if (!h && !f) Py_RETURN_NONE;
    npy_intp H = h ? PyArray_DIM(h, 1) : HF - PyArray_DIM(f, 1);
    npy_intp F = f ? PyArray_DIM(f, 1) : HF - H;
    if (H < 0 || F < 0 || H + F != HF) {
        PyErr_Format(PyExc_ValueError, "dout has %ld columns but dh and df have %ld + %ld; they must add up",
                     (long)HF, (long)H, (long)F);
        return NULL;
    }
    LNN_RELEASE_GIL
    lnn_head_concat_backward(OPTF32(h), OPTF32(f), F32(d), B, H, F);
    LNN_ACQUIRE_GIL
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- optimizer */

static int get_segments(PyObject *obj, npy_intp n, npy_intp nstate, PyArrayObject **out) {
    npy_intp ss[2] = {-1, 4};
    if (opt_array(obj, "segments", NPY_INT64, 2, ss, 0, out) < 0) return -1;
    if (!*out) return 0;
    if (lnn_segments_check((const lnn_segment *)PyArray_DATA(*out), PyArray_DIM(*out, 0), n, nstate)) {
        PyErr_Format(PyExc_ValueError, "%s", lnn_get_error());
        return -1;
    }
    return 0;
}

static PyObject *py_adam_step(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"params", "grads", "m", "v", "segments", "steps", "lr", "beta1", "beta2",
                             "eps", "weight_decay", "decoupled", "lr_scale", NULL};
    PyObject *o_p, *o_g, *o_m, *o_v, *o_s, *o_t, *o_ls = Py_None;
    double lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, wd = 0.0;
    int decoupled = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOd|ddddpO:adam_step", kwlist, &o_p, &o_g, &o_m, &o_v,
                                     &o_s, &o_t, &lr, &beta1, &beta2, &eps, &wd, &decoupled, &o_ls))
        return NULL;
    PyArrayObject *p = lnn_check_array(o_p, "params", NPY_FLOAT32, 1, NULL, 1), *g, *m, *v, *s, *t, *ls;
    if (!p) return NULL;
    npy_intp n = PyArray_DIM(p, 0);
    if (!(g = lnn_check_array(o_g, "grads", NPY_FLOAT32, 1, PyArray_DIMS(p), 0)) ||
        !(m = lnn_check_array(o_m, "m", NPY_FLOAT32, 1, NULL, 1)) ||
        !(v = lnn_check_array(o_v, "v", NPY_FLOAT32, 1, PyArray_DIMS(m), 1)))
        return NULL;
    npy_intp nstate = PyArray_DIM(m, 0);
    if (o_s == Py_None) {
        PyErr_SetString(PyExc_TypeError, "segments must be an int64 array of shape (S, 4) "
                        "(offset, size, flags, state_offset), not None");
        return NULL;
    }
    if (get_segments(o_s, n, nstate, &s) < 0) return NULL;
    npy_intp S = PyArray_DIM(s, 0), ts[1] = {S};
    if (!(t = lnn_check_array(o_t, "steps", NPY_INT64, 1, ts, 1))) return NULL;
    if (opt_array(o_ls, "lr_scale", NPY_FLOAT32, 1, ts, 0, &ls) < 0) return NULL;
    if (!(lr >= 0.0) || !(eps >= 0.0) || !(wd >= 0.0) || !(beta1 >= 0.0 && beta1 < 1.0) ||
        !(beta2 >= 0.0 && beta2 < 1.0)) {
        PyErr_Format(PyExc_ValueError, "adam_step needs lr >= 0, eps >= 0, weight_decay >= 0 and betas in "
                     "[0, 1); got lr=%g, eps=%g, weight_decay=%g, betas=(%g, %g)", lr, eps, wd, beta1, beta2);
        return NULL;
    }
    lnn_status st;
    LNN_RELEASE_GIL
    st = lnn_adam_step(F32(p), F32(g), F32(m), F32(v), n, nstate, (const lnn_segment *)PyArray_DATA(s), S,
                       (int64_t *)PyArray_DATA(t), OPTF32(ls), lr, beta1, beta2, eps, wd, decoupled);
    LNN_ACQUIRE_GIL
    if (st) return lnn_raise_status(st);
    Py_RETURN_NONE;
}

static PyObject *py_grad_norm(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"grads", "segments", NULL};
    PyObject *o_g, *o_s = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:grad_norm", kwlist, &o_g, &o_s)) return NULL;
    PyArrayObject *g = lnn_check_array(o_g, "grads", NPY_FLOAT32, 1, NULL, 0), *s;
    if (!g || get_segments(o_s, PyArray_DIM(g, 0), -1, &s) < 0) return NULL;
    double r;
    LNN_RELEASE_GIL
    r = lnn_grad_norm(F32(g), PyArray_DIM(g, 0), s ? (const lnn_segment *)PyArray_DATA(s) : NULL,
                      s ? PyArray_DIM(s, 0) : 0);
    LNN_ACQUIRE_GIL
    return PyFloat_FromDouble(r);
}

static PyObject *py_clip_grad_norm(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"grads", "max_norm", "segments", NULL};
    PyObject *o_g, *o_s = Py_None;
    double max_norm;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Od|O:clip_grad_norm", kwlist, &o_g, &max_norm, &o_s))
        return NULL;
    if (!(max_norm >= 0.0) || isinf(max_norm)) {
        PyErr_Format(PyExc_ValueError, "max_norm must be a finite number >= 0, got %g", max_norm);
        return NULL;
    }
    PyArrayObject *g = lnn_check_array(o_g, "grads", NPY_FLOAT32, 1, NULL, 1), *s;
    if (!g || get_segments(o_s, PyArray_DIM(g, 0), -1, &s) < 0) return NULL;
    double r;
    LNN_RELEASE_GIL
    r = lnn_clip_grad_norm(F32(g), PyArray_DIM(g, 0), s ? (const lnn_segment *)PyArray_DATA(s) : NULL,
                           s ? PyArray_DIM(s, 0) : 0, max_norm);
    LNN_ACQUIRE_GIL
    return PyFloat_FromDouble(r);
}

#define KW METH_VARARGS | METH_KEYWORDS
#define FN(f) (PyCFunction)(void (*)(void))(f)

static PyMethodDef train_methods[] = {
    {"cross_entropy_forward_backward", FN(py_cross_entropy), KW,
     "cross_entropy_forward_backward(logits (N,C), labels (N,) int64, weight=None (C,), dlogits=None "
     "(N,C), ignore_index=-100, grad_scale=1.0) -> mean loss; writes dlogits = grad_scale * dloss."},
    {"bce_with_logits_forward_backward", FN(py_bce), KW,
     "bce_with_logits_forward_backward(logits (N,K), targets (N,K), pos_weight=None (K,), dlogits=None, "
     "grad_scale=1.0) -> mean loss; writes dlogits."},
    {"mse_forward_backward", FN(py_mse), KW,
     "mse_forward_backward(preds, targets, dpreds=None, grad_scale=1.0) -> mean loss; writes dpreds."},
    {"head_linear_forward", FN(py_linear_forward), KW,
     "head_linear_forward(x (N,K), weight (M,K), bias (M,) or None, out (N,M))"},
    {"head_linear_backward", FN(py_linear_backward), KW,
     "head_linear_backward(dout (N,M), x, weight, dx, dweight, dbias): accumulates; any grad may be None."},
    {"head_relu_forward", FN(py_relu_forward), KW, "head_relu_forward(x, out)"},
    {"head_relu_backward", FN(py_relu_backward), KW, "head_relu_backward(dout, out, dx): dx += dout*(out>0)"},
    {"head_tanh_forward", FN(py_tanh_forward), KW, "head_tanh_forward(x, out)"},
    {"head_tanh_backward", FN(py_tanh_backward), KW, "head_tanh_backward(dout, out, dx): dx += dout*(1-out^2)"},
    {"head_dropout_forward", FN(py_dropout_forward), KW,
     "head_dropout_forward(x, out, mask uint8, p, seed): inverted dropout, reproducible per seed."},
    {"head_dropout_backward", FN(py_dropout_backward), KW, "head_dropout_backward(dout, mask, dx, p)"},
    {"head_batchnorm1d_forward", FN(py_bn_forward), KW,
     "head_batchnorm1d_forward(x (N,C), gamma, beta, running_mean, running_var, out, save_mean, "
     "save_rstd, training, momentum=0.1, eps=1e-5): torch BatchNorm1d; gamma/beta/running may be None."},
    {"head_batchnorm1d_backward", FN(py_bn_backward), KW,
     "head_batchnorm1d_backward(dout, x, gamma, save_mean, save_rstd, dx, dgamma, dbeta, batch_stats)"},
    {"head_pool_forward", FN(py_pool_forward), KW,
     "head_pool_forward(h (B,T,C), mask (B,T) int64 or None, out, mode 'cls'|'mean'|'flatten')"},
    {"head_pool_backward", FN(py_pool_backward), KW, "head_pool_backward(dout, mask, dh (B,T,C), mode)"},
    {"head_concat_forward", FN(py_concat_forward), KW, "head_concat_forward(h (B,H), f (B,F), out (B,H+F))"},
    {"head_concat_backward", FN(py_concat_backward), KW, "head_concat_backward(dout (B,H+F), dh, df)"},
    {"adam_step", FN(py_adam_step), KW,
     "adam_step(params, grads, m, v, segments (S,4) int64 [offset,size,flags,state_offset], steps (S,) int64, lr, "
     "beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=True, lr_scale=None): one "
     "AdamW (decoupled) or Adam (L2) step in place; flags: 1 = decay, 2 = frozen."},
    {"grad_norm", FN(py_grad_norm), KW, "grad_norm(grads, segments=None) -> global L2 norm"},
    {"clip_grad_norm", FN(py_clip_grad_norm), KW,
     "clip_grad_norm(grads, max_norm, segments=None) -> pre-clip norm; torch clip_grad_norm_ semantics."},
    {NULL, NULL, 0, NULL},
};

int lnn_register_train(PyObject *m) {
    if (PyModule_AddFunctions(m, train_methods) < 0) return -1;
    if (PyModule_AddIntConstant(m, "SEG_DECAY", LNN_SEG_DECAY) < 0) return -1;
    if (PyModule_AddIntConstant(m, "SEG_FROZEN", LNN_SEG_FROZEN) < 0) return -1;
    return 0;
}
