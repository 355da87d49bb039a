/* py/engine_py.c: Python binding of the encoder engine (lyricnn._C.Engine).
 * The Python side (lyricnn/encoder.py) parses config.json and builds dict views by HF name.
 * An Engine holds a body (models/body.h): the encoder here; other bodies' bindings (lstm_py.c: _C.LSTM)
 * are subtypes that hand it theirs (lnn_engine_adopt), and share its methods over the parameter table,
 * the buffers and the context. forward/backward are the encoder's. */
#include "py/ext.h"

#include <string.h>

#include "core/backend.h"
#include "models/encoder.h"

typedef struct {
    PyObject_HEAD
    lnn_body *body;                /* the model's body */
    lnn_model *m;                  /* the encoder when the body is one, else NULL */
    void (*free_body)(lnn_body *); /* frees another kind of body */
    int busy;                      /* set while a forward/backward runs without the GIL */
} EngineObject;

/* Shared with the other bodies' bindings (lstm_py.c), which declare them. */
int lnn_engine_prepare(PyObject *obj, const char *bname, const char *dname, const lnn_backend **be, lnn_dtype *act);
int lnn_engine_add_extra(lnn_param_table *tab, PyObject *extra);
PyTypeObject *lnn_engine_type(void);
void lnn_engine_adopt(PyObject *obj, lnn_body *body, void (*free_body)(lnn_body *));

static int engine_busy(EngineObject *self) {
    if (!self->body) {
        PyErr_SetString(lnn_Error, "the engine is not initialised");
        return 1;
    }
    if (self->busy) {
        PyErr_SetString(lnn_Error, "this encoder is running in another thread; use one encoder per thread");
        return 1;
    }
    return 0;
}

int lnn_engine_prepare(PyObject *obj, const char *bname, const char *dname, const lnn_backend **be, lnn_dtype *act) {
    *be = lnn_backend_find(bname);
    if (!*be) {
        PyErr_Format(PyExc_ValueError, "backend %s: %s", bname, lnn_backend_missing(bname));
        return -1;
    }
    if (strcmp(dname, "f32") == 0) *act = LNN_F32;
    else if (strcmp(dname, "bf16") == 0) *act = LNN_BF16;
    else if (strcmp(dname, "f16") == 0) *act = LNN_F16;
    else {
        PyErr_Format(PyExc_ValueError, "dtype must be 'f32', 'bf16' or 'f16', got %s", dname);
        return -1;
    }
    if (((EngineObject *)obj)->body) { /* numpy views point into the buffers: never free them under their feet */
        PyErr_SetString(lnn_Error, "Engine is already initialised; create a new one");
        return -1;
    }
    return 0;
}

int lnn_engine_add_extra(lnn_param_table *tab, PyObject *extra) {
    if (!extra || extra == Py_None) return 0;
    PyObject *seq = PySequence_Fast(extra, "extra_tensors must be a sequence of (name, shape, flags)");
    if (!seq) return -1;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        const char *name;
        PyObject *shape;
        unsigned int flags = 0;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "sO|I", &name, &shape, &flags)) goto fail;
        int64_t dims[LNN_MAX_NDIM];
        Py_ssize_t nd = PySequence_Size(shape);
        if (nd < 1 || nd > LNN_MAX_NDIM) {
            PyErr_Format(PyExc_ValueError, "extra tensor %s: shape must have 1..%d dims", name, LNN_MAX_NDIM);
            goto fail;
        }
        for (Py_ssize_t j = 0; j < nd; j++) {
            PyObject *o = PySequence_GetItem(shape, j);
            dims[j] = o ? PyLong_AsLongLong(o) : -1;
            Py_XDECREF(o);
            if (PyErr_Occurred()) goto fail;
        }
        if (lnn_params_add(tab, name, (int)nd, dims, flags) < 0) {
            PyErr_SetString(PyExc_ValueError, lnn_get_error());
            goto fail;
        }
    }
    Py_DECREF(seq);
    return 0;
fail:
    Py_DECREF(seq);
    return -1;
}

/* lora = (r, scale, dropout, [mask per layer], pooler): register the adapters (models/encoder.h) */
static int add_lora(lnn_model *m, PyObject *lora) {
    lnn_lora_config lc = {0};
    PyObject *layers;
    int pooler = 0;
    if (!PyArg_ParseTuple(lora, "iffOp;lora must be (r, scale, dropout, layer masks, pooler)", &lc.r, &lc.scale,
                          &lc.dropout, &layers, &pooler))
        return -1;
    PyObject *seq = PySequence_Fast(layers, "lora layer masks must be a sequence of ints");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n != m->cfg.n_layers) {
        PyErr_Format(PyExc_ValueError, "lora needs one site mask per layer (%d), got %zd", m->cfg.n_layers, n);
        Py_DECREF(seq);
        return -1;
    }
    unsigned *masks = PyMem_Calloc((size_t)(n ? n : 1), sizeof *masks);
    if (!masks) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (v == -1 && PyErr_Occurred()) break;
        if (v < 0 || v >= (1L << LNN_LORA_NK)) {
            PyErr_Format(PyExc_ValueError, "lora site mask of layer %zd must be in 0..%d, got %ld", i,
                         (1 << LNN_LORA_NK) - 1, v);
            break;
        }
        masks[i] = (unsigned)v;
    }
    Py_DECREF(seq);
    if (PyErr_Occurred()) {
        PyMem_Free(masks);
        return -1;
    }
    lc.layers = masks;
    lc.pooler = pooler;
    lnn_status st = lnn_model_add_lora(m, &lc);
    PyMem_Free(masks);
    if (st) {
        lnn_raise_status(st);
        return -1;
    }
    return 0;
}

static int Engine_init(EngineObject *self, PyObject *args, PyObject *kw) {
    static char *kws[] = {"model_type", "vocab_size", "max_position_embeddings", "type_vocab_size", "hidden_size",
                          "num_layers", "num_heads", "intermediate_size", "activation", "pad_token_id",
                          "layer_norm_eps", "hidden_dropout", "attention_dropout", "pooler", "extra_tensors",
                          "backend", "dtype", "device", "tf32", "lora", NULL};
    lnn_config c;
    memset(&c, 0, sizeof c);
    PyObject *extra = NULL, *lora = NULL;
    const char *bname = "cpu", *dname = "f32";
    int device = 0, tf32 = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iiiiiiiiiifff|pOssipO", kws, &c.model_type, &c.vocab_size, &c.max_pos,
                                     &c.type_vocab_size, &c.C, &c.n_layers, &c.NH, &c.F, &c.act, &c.pad_id,
                                     &c.ln_eps, &c.hidden_dropout, &c.attn_dropout, &c.pooler, &extra, &bname, &dname,
                                     &device, &tf32, &lora))
        return -1;
    const lnn_backend *be;
    lnn_dtype act;
    if (lnn_engine_prepare((PyObject *)self, bname, dname, &be, &act) < 0) return -1;
    lnn_model *m = NULL;
    lnn_status st = lnn_model_create(&m, &c, be, device, act, tf32);
    if (st) {
        lnn_raise_status(st);
        return -1;
    }
    if (lora && lora != Py_None && add_lora(m, lora) < 0) goto fail;
    if (lnn_engine_add_extra(&m->body.tab, extra) < 0) goto fail;
    LNN_RELEASE_GIL
    st = lnn_model_allocate(m);
    LNN_ACQUIRE_GIL
    if (st) {
        lnn_raise_status(st);
        goto fail;
    }
    self->m = m;
    self->body = &m->body;
    return 0;
fail:
    lnn_model_free(m);
    return -1;
}

static void Engine_dealloc(EngineObject *self) {
    if (self->m) lnn_model_free(self->m);
    else if (self->body && self->free_body) self->free_body(self->body);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Engine_tensors(EngineObject *self, PyObject *unused) {
    if (engine_busy(self)) return NULL;
    const lnn_param_table *tab = &self->body->tab;
    PyObject *out = PyList_New(tab->n);
    if (!out) return NULL;
    for (int i = 0; i < tab->n; i++) {
        const lnn_tensor_info *t = &tab->t[i];
        PyObject *shape = PyTuple_New(t->ndim);
        if (!shape) goto fail;
        for (int j = 0; j < t->ndim; j++) PyTuple_SET_ITEM(shape, j, PyLong_FromLongLong(t->shape[j]));
        PyObject *item = Py_BuildValue("(sNnI)", t->name, shape, (Py_ssize_t)t->offset, t->flags);
        if (!item) goto fail;
        PyList_SET_ITEM(out, i, item);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* A zero-copy view of the params or grads buffer: host-memory backends only. */
static PyObject *buffer_view(EngineObject *self, float *base) {
    if (!self->body->ctx.be->caps.host_memory) {
        PyErr_Format(lnn_Error, "the %s backend's memory cannot be viewed from numpy; read copies with "
                     "Engine.read('params' / 'grads') and write with Engine.write()", self->body->ctx.be->name);
        return NULL;
    }
    npy_intp n = (npy_intp)self->body->tab.numel;
    PyObject *arr = PyArray_SimpleNewFromData(1, &n, NPY_FLOAT32, base);
    if (!arr) return NULL;
    Py_INCREF(self);
    if (PyArray_SetBaseObject((PyArrayObject *)arr, (PyObject *)self) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

static PyObject *Engine_params_buffer(EngineObject *self, PyObject *unused) {
    if (engine_busy(self)) return NULL;
    return buffer_view(self, self->body->params);
}

static PyObject *Engine_grads_buffer(EngineObject *self, PyObject *unused) {
    if (engine_busy(self)) return NULL;
    return buffer_view(self, self->body->grads);
}

/* the buffer named which ("params" or "grads"), or NULL with ValueError */
static float *named_buffer(EngineObject *self, const char *which) {
    if (strcmp(which, "params") == 0) return self->body->params;
    if (strcmp(which, "grads") == 0) return self->body->grads;
    PyErr_Format(PyExc_ValueError, "which must be 'params' or 'grads', got %s", which);
    return NULL;
}

/* read(which, offset=0, count=-1) -> float32 numpy copy of elements [offset, offset + count) */
static PyObject *Engine_read(EngineObject *self, PyObject *args) {
    const char *which;
    long long off = 0, count = -1;
    if (!PyArg_ParseTuple(args, "s|LL", &which, &off, &count)) return NULL;
    if (engine_busy(self)) return NULL;
    float *base = named_buffer(self, which);
    if (!base) return NULL;
    long long n = (long long)self->body->tab.numel;
    if (count < 0) count = n - off;
    if (off < 0 || count < 0 || off > n || count > n - off) {
        PyErr_Format(PyExc_IndexError, "read(%s, %lld, %lld) is outside the buffer of %lld elements", which, off,
                     count, n);
        return NULL;
    }
    npy_intp dims[1] = {(npy_intp)count};
    PyObject *out = PyArray_SimpleNew(1, dims, NPY_FLOAT32);
    if (!out) return NULL;
    lnn_ctx *ctx = &self->body->ctx;
    float *dst = PyArray_DATA((PyArrayObject *)out);
    lnn_status st;
    LNN_RELEASE_GIL
    ctx->be->to_host(ctx, dst, base + off, (size_t)count * sizeof(float));
    st = lnn_sync(ctx);
    LNN_ACQUIRE_GIL
    if (st) {
        Py_DECREF(out);
        return lnn_raise_status(st);
    }
    return out;
}

/* write(which, offset, array): copy a float32 array into elements [offset, offset + len) (params: the
 * forward's weight copy follows) */
static PyObject *Engine_write(EngineObject *self, PyObject *args) {
    const char *which;
    long long off;
    PyObject *arr_o;
    if (!PyArg_ParseTuple(args, "sLO", &which, &off, &arr_o)) return NULL;
    if (engine_busy(self)) return NULL;
    float *base = named_buffer(self, which);
    if (!base) return NULL;
    PyArrayObject *arr = lnn_check_array(arr_o, "array", NPY_FLOAT32, 1, NULL, 0);
    if (!arr) return NULL;
    long long n = (long long)self->body->tab.numel, count = (long long)PyArray_SIZE(arr);
    if (off < 0 || off > n || count > n - off) {
        PyErr_Format(PyExc_IndexError, "write(%s, %lld, %lld elements) is outside the buffer of %lld elements", which,
                     off, count, n);
        return NULL;
    }
    lnn_ctx *ctx = &self->body->ctx;
    const float *src = PyArray_DATA(arr);
    int params = base == self->body->params;
    lnn_status st;
    LNN_RELEASE_GIL
    ctx->be->to_device(ctx, base + off, src, (size_t)count * sizeof(float));
    if (params) lnn_body_sync_weights(self->body);
    st = lnn_sync(ctx);
    LNN_ACQUIRE_GIL
    if (st) return lnn_raise_status(st);
    Py_RETURN_NONE;
}

/* sync_weights(): after writing parameters through a zero-copy view, refresh the forward's weight copy */
static PyObject *Engine_sync_weights(EngineObject *self, PyObject *unused) {
    if (engine_busy(self)) return NULL;
    lnn_body_sync_weights(self->body);
    lnn_status st = lnn_sync(&self->body->ctx);
    if (st) return lnn_raise_status(st);
    Py_RETURN_NONE;
}

static PyObject *Engine_set_flags(EngineObject *self, PyObject *args) {
    const char *name;
    unsigned int flags;
    if (!PyArg_ParseTuple(args, "sI", &name, &flags)) return NULL;
    if (engine_busy(self)) return NULL;
    int i = lnn_params_find(&self->body->tab, name);
    if (i < 0) {
        PyErr_Format(PyExc_KeyError, "no tensor named %s", name);
        return NULL;
    }
    if (flags & ~(unsigned)(LNN_TENSOR_NO_DECAY | LNN_TENSOR_FROZEN)) {
        PyErr_Format(PyExc_ValueError, "flags must combine TENSOR_NO_DECAY (1) and TENSOR_FROZEN (2), got %u", flags);
        return NULL;
    }
    self->body->tab.t[i].flags = flags;
    if (self->m) lnn_model_update_views(self->m);
    Py_RETURN_NONE;
}

static lnn_model *encoder_of(EngineObject *self);

/* lora_enabled(on): run the LoRA branches (1) or skip them (0: merged into the base weights) */
static PyObject *Engine_set_lora_enabled(EngineObject *self, PyObject *arg) {
    lnn_model *m = encoder_of(self);
    if (!m) return NULL;
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    m->lora_off = !on;
    m->body.has_train_forward = 0; /* a backward must follow a forward of the same graph */
    Py_RETURN_NONE;
}

static PyObject *Engine_zero_grad(EngineObject *self, PyObject *unused) {
    if (engine_busy(self)) return NULL;
    lnn_body *b = self->body;
    self->busy = 1;
    LNN_RELEASE_GIL
    b->ctx.be->zero(&b->ctx, b->grads, b->tab.numel * sizeof(float));
    LNN_ACQUIRE_GIL
    self->busy = 0;
    Py_RETURN_NONE;
}

/* the encoder of an initialised, idle Engine; NULL with the error set otherwise */
static lnn_model *encoder_of(EngineObject *self) {
    if (engine_busy(self)) return NULL;
    if (!self->m) {
        PyErr_Format(lnn_Error, "this engine's body is a %s, not an encoder: it runs through its Classifier",
                     self->body->ops->name);
        return NULL;
    }
    return self->m;
}

static PyArrayObject *opt_int_array(PyObject *o, const char *name, const npy_intp *shape) {
    if (o == Py_None) return NULL;
    return lnn_check_array(o, name, NPY_INT32, 2, shape, 0);
}

/* forward(input_ids, attention_mask, token_type_ids, train, seed, step, hidden_states)
 *   -> (last_hidden_state, pooler_output or None, hidden_states or None) */
static PyObject *Engine_forward(EngineObject *self, PyObject *args, PyObject *kw) {
    static char *kws[] = {"input_ids", "attention_mask", "token_type_ids", "train", "seed", "step",
                          "hidden_states", NULL};
    PyObject *ids_o, *mask_o = Py_None, *types_o = Py_None;
    int train = 0, want_hidden = 0;
    unsigned long long seed = 0, step = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OOpKKp", kws, &ids_o, &mask_o, &types_o, &train, &seed, &step,
                                     &want_hidden))
        return NULL;
    lnn_model *m = encoder_of(self);
    if (!m) return NULL;
    PyArrayObject *ids = lnn_check_array(ids_o, "input_ids", NPY_INT32, 2, NULL, 0);
    if (!ids) return NULL;
    npy_intp shape[2] = {PyArray_DIM(ids, 0), PyArray_DIM(ids, 1)};
    if (shape[0] < 1 || shape[1] < 1 || shape[0] > (1 << 24) || shape[1] > (1 << 24)) {
        PyErr_Format(PyExc_ValueError, "input_ids must have shape (batch, seq) with both >= 1, got (%ld, %ld)",
                     (long)shape[0], (long)shape[1]);
        return NULL;
    }
    PyArrayObject *mask = opt_int_array(mask_o, "attention_mask", shape);
    if (!mask && mask_o != Py_None) return NULL;
    PyArrayObject *types = opt_int_array(types_o, "token_type_ids", shape);
    if (!types && types_o != Py_None) return NULL;
    if (types && m->cfg.model_type != LNN_BERT) {
        PyErr_SetString(PyExc_ValueError, "token_type_ids are only used by BERT; DistilBERT has no token types");
        return NULL;
    }
    if (step > 0xFFFFFFFFull) {
        PyErr_SetString(PyExc_ValueError, "step must be < 2**32");
        return NULL;
    }
    int B = (int)shape[0], T = (int)shape[1], C = m->cfg.C, L = m->cfg.n_layers;
    npy_intp oshape[4] = {B, T, C, 0};
    PyObject *last = PyArray_SimpleNew(3, oshape, NPY_FLOAT32);
    PyObject *pooled = NULL, *hidden = NULL;
    if (!last) return NULL;
    if (m->cfg.model_type == LNN_BERT && m->cfg.pooler) {
        npy_intp ps[2] = {B, C};
        pooled = PyArray_SimpleNew(2, ps, NPY_FLOAT32);
        if (!pooled) goto fail;
    }
    if (want_hidden) {
        npy_intp hsh[4] = {L + 1, B, T, C};
        hidden = PyArray_SimpleNew(4, hsh, NPY_FLOAT32);
        if (!hidden) goto fail;
    }
    const int32_t *ip = PyArray_DATA(ids), *mp = mask ? PyArray_DATA(mask) : NULL;
    const int32_t *tp = types ? PyArray_DATA(types) : NULL;
    float *lp = PyArray_DATA((PyArrayObject *)last);
    float *pp = pooled ? PyArray_DATA((PyArrayObject *)pooled) : NULL;
    float *hp = hidden ? PyArray_DATA((PyArrayObject *)hidden) : NULL;
    lnn_batch in = {ip, tp, mp, B, T};
    lnn_status st;
    self->busy = 1;
    LNN_RELEASE_GIL
    st = lnn_model_forward(m, &in, train, (uint64_t)seed, (uint32_t)step, 0, LNN_READ_ROWS | LNN_READ_POOLED, hp);
    if (!st) st = lnn_model_read_last(m, lp);
    if (!st && pp) st = lnn_model_read_pooled(m, pp);
    LNN_ACQUIRE_GIL
    self->busy = 0;
    if (st) {
        lnn_raise_status(st);
        goto fail;
    }
    return Py_BuildValue("(NNN)", last, pooled ? pooled : Py_NewRef(Py_None), hidden ? hidden : Py_NewRef(Py_None));
fail:
    Py_XDECREF(last);
    Py_XDECREF(pooled);
    Py_XDECREF(hidden);
    return NULL;
}

/* backward(d_last_hidden_state or None, d_pooler_output or None) */
static PyObject *Engine_backward(EngineObject *self, PyObject *args) {
    PyObject *dl_o, *dp_o;
    if (!PyArg_ParseTuple(args, "OO", &dl_o, &dp_o)) return NULL;
    lnn_model *m = encoder_of(self);
    if (!m) return NULL;
    if (!m->body.has_train_forward) {
        PyErr_SetString(lnn_Error, "backward() needs a training forward first: call the encoder with train=True, "
                                   "then backward()");
        return NULL;
    }
    npy_intp ls[3] = {m->fwd_B, m->fwd_T, m->cfg.C}, ps[2] = {m->fwd_B, m->cfg.C};
    PyArrayObject *dl = NULL, *dp = NULL;
    if (dl_o != Py_None && !(dl = lnn_check_array(dl_o, "d_last_hidden_state", NPY_FLOAT32, 3, ls, 0))) return NULL;
    if (dp_o != Py_None) {
        if (m->cfg.model_type != LNN_BERT || !m->cfg.pooler) {
            PyErr_SetString(PyExc_ValueError, "d_pooler_output was given but this encoder has no pooler "
                                              "(DistilBERT, or BERT without pooler weights)");
            return NULL;
        }
        if (!(dp = lnn_check_array(dp_o, "d_pooler_output", NPY_FLOAT32, 2, ps, 0))) return NULL;
    }
    const float *dlp = dl ? PyArray_DATA(dl) : NULL, *dpp = dp ? PyArray_DATA(dp) : NULL;
    lnn_status st;
    self->busy = 1;
    LNN_RELEASE_GIL
    st = lnn_model_backward_host(m, dlp, dpp);
    LNN_ACQUIRE_GIL
    self->busy = 0;
    if (st) return lnn_raise_status(st);
    Py_RETURN_NONE;
}

static PyObject *Engine_arena_nbytes(EngineObject *self, PyObject *unused) {
    lnn_model *m = encoder_of(self);
    return m ? PyLong_FromSize_t(m->arena_bytes) : NULL;
}

static PyMethodDef Engine_methods[] = {
    {"tensors", (PyCFunction)Engine_tensors, METH_NOARGS, "tensors() -> [(name, shape, offset, flags)] in layout order"},
    {"params_buffer", (PyCFunction)Engine_params_buffer, METH_NOARGS, "The contiguous parameter buffer (zero-copy)."},
    {"grads_buffer", (PyCFunction)Engine_grads_buffer, METH_NOARGS, "The contiguous gradient buffer (zero-copy)."},
    {"set_flags", (PyCFunction)Engine_set_flags, METH_VARARGS, "set_flags(name, flags): no_decay=1, frozen=2."},
    {"zero_grad", (PyCFunction)Engine_zero_grad, METH_NOARGS, "Zero the gradient buffer."},
    {"set_lora_enabled", (PyCFunction)Engine_set_lora_enabled, METH_O,
     "set_lora_enabled(on): run the LoRA branches, or skip them (merged into the base weights)."},
    {"read", (PyCFunction)Engine_read, METH_VARARGS, "read(which, offset=0, count=-1) -> float32 copy ('params'/'grads')"},
    {"write", (PyCFunction)Engine_write, METH_VARARGS, "write(which, offset, array): copy float32 values in"},
    {"sync_weights", (PyCFunction)Engine_sync_weights, METH_NOARGS,
     "Refresh the forward's weight copy after writing parameters through a view."},
    {"forward", (PyCFunction)(void (*)(void))Engine_forward, METH_VARARGS | METH_KEYWORDS,
     "forward(input_ids, attention_mask=None, token_type_ids=None, train=False, seed=0, step=0, hidden_states=False)"},
    {"backward", (PyCFunction)Engine_backward, METH_VARARGS, "backward(d_last_hidden_state, d_pooler_output)"},
    {"arena_nbytes", (PyCFunction)Engine_arena_nbytes, METH_NOARGS, "Bytes of the activation arena."},
    {NULL, NULL, 0, NULL},
};

static PyObject *Engine_get_host_memory(EngineObject *self, void *closure) {
    if (!self->body) return PyBool_FromLong(0);
    return PyBool_FromLong(self->body->ctx.be->caps.host_memory);
}

static PyObject *Engine_get_backend(EngineObject *self, void *closure) {
    if (!self->body) Py_RETURN_NONE;
    return PyUnicode_FromString(self->body->ctx.be->name);
}

static PyObject *Engine_get_dtype(EngineObject *self, void *closure) {
    if (!self->body) Py_RETURN_NONE;
    return PyUnicode_FromString(lnn_dtype_name(self->body->ctx.act));
}

static PyGetSetDef Engine_getset[] = {
    {"host_memory", (getter)Engine_get_host_memory, NULL,
     "Whether params/grads can be viewed zero-copy (host-memory backend); else read()/write() copy.", NULL},
    {"backend", (getter)Engine_get_backend, NULL, "The compute backend's name.", NULL},
    {"dtype", (getter)Engine_get_dtype, NULL, "The activation dtype.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lyricnn._C.Engine",
    .tp_basicsize = sizeof(EngineObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The C encoder engine (DistilBERT/BERT): parameters, gradients, activations, forward/backward.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
    .tp_getset = Engine_getset,
};

int lnn_register_engine(PyObject *m) {
    if (lnn_add_type(m, "Engine", &EngineType) < 0) return -1;
    if (PyModule_AddIntConstant(m, "TENSOR_NO_DECAY", LNN_TENSOR_NO_DECAY) < 0) return -1;
    if (PyModule_AddIntConstant(m, "TENSOR_FROZEN", LNN_TENSOR_FROZEN) < 0) return -1;
    return 0;
}

/* For the classifier binding (classifier_py.c): the body of an initialised Engine (or subtype) and a
 * pointer to its busy flag. NULL with TypeError / LyricnnError set otherwise. */
lnn_body *lnn_engine_body(PyObject *obj, int **busy) {
    if (!PyObject_TypeCheck(obj, &EngineType)) {
        PyErr_Format(PyExc_TypeError, "engine must be a lyricnn._C.Engine, got %s", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    EngineObject *e = (EngineObject *)obj;
    if (engine_busy(e)) return NULL;
    if (busy) *busy = &e->busy;
    return e->body;
}

PyTypeObject *lnn_engine_type(void) { return &EngineType; }

void lnn_engine_adopt(PyObject *obj, lnn_body *body, void (*free_body)(lnn_body *)) {
    EngineObject *e = (EngineObject *)obj;
    e->body = body;
    e->free_body = free_body;
}
