/* py/classifier_py.c: Python binding of the sequence classifier (lyricnn._C.Classifier); the C core is
 * classifier.c. The Python side (lyricnn/classifier.py) builds the head spec and the segments. */
#include "py/ext.h"

#include <math.h>
#include <string.h>

#include "models/classifier.h"
#include "models/encoder.h"

_Static_assert(sizeof(lnn_segment) == 4 * sizeof(int64_t), "lnn_segment must be 4 int64s");

/* engine_py.c */
lnn_body *lnn_engine_body(PyObject *obj, int **busy);

typedef struct {
    PyObject_HEAD
    PyObject *engine; /* the Engine owning the model (kept alive) */
    lnn_classifier *c;
    int *engine_busy;
    int busy;
} ClassifierObject;

/* 1 with the error set when __init__ did not run (or failed) */
static int clf_missing(ClassifierObject *self) {
    if (self->c) return 0;
    PyErr_SetString(lnn_Error, "the classifier is not initialised");
    return 1;
}

static int clf_busy(ClassifierObject *self) {
    if (clf_missing(self)) return 1;
    if (self->busy || *self->engine_busy) {
        PyErr_SetString(lnn_Error, "this model is running in another thread; use one model per thread");
        return 1;
    }
    return 0;
}

#define ENTER(self)                    \
    do {                               \
        (self)->busy = 1;              \
        *(self)->engine_busy = 1;      \
    } while (0)
#define LEAVE(self)                    \
    do {                               \
        (self)->busy = 0;              \
        *(self)->engine_busy = 0;      \
    } while (0)

/* A head op from its dict: kind (HEAD_OPS name), in, out, and as the kind needs weight / bias (tensor
 * names), p, momentum, eps. */
static int parse_op(PyObject *d, Py_ssize_t i, const lnn_param_table *tab, lnn_head_op *o) {
    if (!PyDict_Check(d)) {
        PyErr_Format(PyExc_TypeError, "head op %zd must be a dict (kind, in, out, weight, bias, p, momentum, eps)", i);
        return -1;
    }
    PyObject *kind = PyDict_GetItemString(d, "kind");
    const char *ks = kind && PyUnicode_Check(kind) ? PyUnicode_AsUTF8(kind) : NULL;
    o->kind = lnn_name_index(lnn_head_op_names, LNN_NHOP, ks);
    if (o->kind < 0) {
        PyErr_Format(PyExc_ValueError, "head op %zd: kind must be one of lyricnn._C.HEAD_OPS, got %R", i,
                     kind ? kind : Py_None);
        return -1;
    }
    const char *ints[2] = {"in", "out"};
    int *idst[2] = {&o->in, &o->out};
    for (int k = 0; k < 2; k++) {
        PyObject *v = PyDict_GetItemString(d, ints[k]);
        long x = v ? PyLong_AsLong(v) : -1;
        if ((x == -1 && PyErr_Occurred()) || !v || x < 1 || x > (1L << 30)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "head op %zd: %s must be an int in 1..2^30", i, ints[k]);
            return -1;
        }
        *idst[k] = (int)x;
    }
    const char *fl[3] = {"p", "momentum", "eps"};
    float *fdst[3] = {&o->p, &o->momentum, &o->eps};
    for (int k = 0; k < 3; k++) {
        PyObject *v = PyDict_GetItemString(d, fl[k]);
        double x = v ? PyFloat_AsDouble(v) : 0.0;
        if (x == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "head op %zd: %s must be a number", i, fl[k]);
            return -1;
        }
        *fdst[k] = (float)x;
    }
    const char *tn[2] = {"weight", "bias"};
    int *tdst[2] = {&o->w, &o->b};
    for (int k = 0; k < 2; k++) {
        PyObject *v = PyDict_GetItemString(d, tn[k]);
        *tdst[k] = -1;
        if (!v || v == Py_None) continue;
        const char *s = PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : NULL;
        *tdst[k] = s ? lnn_params_find(tab, s) : -1;
        if (*tdst[k] < 0) {
            PyErr_Format(PyExc_KeyError, "head op %zd: no tensor named %R in the engine", i, v);
            return -1;
        }
    }
    return 0;
}

/* Classifier(engine, source, flatten_T, ops, num_labels, num_features, loss, window_pooling=None, scorer=None)
 * source: a SOURCES name; ops: [dict per op] (parse_op); loss: a PROBLEM_TYPES name; window_pooling: None (rows
 * are songs) or a WINDOW_POOLINGS name (rows are windows of songs, forward/train_step take windows_of);
 * scorer: the attention scorer's weight (1, width), a tensor name of the engine */
static int Classifier_init(ClassifierObject *self, PyObject *args, PyObject *kw) {
    static char *kws[] = {"engine", "source", "flatten_T", "ops", "num_labels", "num_features", "loss",
                          "window_pooling", "scorer", NULL};
    PyObject *engine, *ops_o;
    const char *source, *loss, *wpool = NULL, *scorer = NULL;
    lnn_head_spec spec;
    memset(&spec, 0, sizeof spec);
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OsiOiis|zz", kws, &engine, &source, &spec.flatten_T, &ops_o,
                                     &spec.num_labels, &spec.num_features, &loss, &wpool, &scorer))
        return -1;
    spec.source = lnn_name_index(lnn_source_names, LNN_NSRC, source);
    spec.loss = lnn_name_index(lnn_loss_names, LNN_NLOSS, loss);
    if (spec.source < 0 || spec.loss < 0) {
        PyErr_Format(PyExc_ValueError, "source must be one of lyricnn._C.SOURCES and loss one of "
                     "lyricnn._C.PROBLEM_TYPES, got %s and %s", source, loss);
        return -1;
    }
    spec.window_pool = wpool ? lnn_name_index(lnn_window_pool_names, LNN_NSEGPOOL, wpool) : -1;
    if (wpool && spec.window_pool < 0) {
        PyErr_Format(PyExc_ValueError, "window_pooling must be None or one of lyricnn._C.WINDOW_POOLINGS "
                     "('mean', 'max', 'attention'), got '%s'", wpool);
        return -1;
    }
    if (self->c) {
        PyErr_SetString(lnn_Error, "Classifier is already initialised; create a new one");
        return -1;
    }
    int *ebusy = NULL;
    lnn_body *body = lnn_engine_body(engine, &ebusy);
    if (!body) return -1;
    spec.scorer = scorer ? lnn_params_find(&body->tab, scorer) : -1;
    if (scorer && spec.scorer < 0) {
        PyErr_Format(PyExc_KeyError, "scorer: no tensor named '%s' in the engine", scorer);
        return -1;
    }
    if (spec.window_pool == LNN_SEGPOOL_ATTN && !scorer) {
        PyErr_SetString(PyExc_ValueError, "window_pooling='attention' needs scorer, the name of its (1, width) weight");
        return -1;
    }
    PyObject *seq = PySequence_Fast(ops_o, "ops must be a sequence of tuples");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    lnn_head_op *ops = calloc((size_t)(n ? n : 1), sizeof *ops);
    if (!ops) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (parse_op(PySequence_Fast_GET_ITEM(seq, i), i, &body->tab, &ops[i]) < 0) goto fail;
    Py_DECREF(seq);
    seq = NULL;
    spec.n_ops = (int)n;
    spec.ops = ops;
    lnn_classifier *c = NULL;
    lnn_status st = lnn_classifier_create(&c, body, &spec);
    free(ops);
    if (st) {
        lnn_raise_status(st);
        return -1;
    }
    self->c = c;
    Py_INCREF(engine);
    self->engine = engine;
    self->engine_busy = ebusy;
    return 0;
fail:
    Py_XDECREF(seq);
    free(ops);
    return -1;
}

static void Classifier_dealloc(ClassifierObject *self) {
    lnn_classifier_free(self->c);
    Py_XDECREF(self->engine);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* n elements of backend memory as numpy: a zero-copy view on host-memory backends, else a copy */
static PyObject *view(ClassifierObject *self, void *base, npy_intp n, int typenum) {
    lnn_ctx *ctx = &self->c->body->ctx;
    if (!n) return PyArray_ZEROS(1, &n, typenum, 0);
    if (!ctx->be->caps.host_memory) {
        PyObject *arr = PyArray_SimpleNew(1, &n, typenum);
        if (!arr) return NULL;
        ctx->be->to_host(ctx, PyArray_DATA((PyArrayObject *)arr), base, (size_t)PyArray_NBYTES((PyArrayObject *)arr));
        lnn_status st = lnn_sync(ctx);
        if (st) {
            Py_DECREF(arr);
            return lnn_raise_status(st);
        }
        return arr;
    }
    PyObject *arr = PyArray_SimpleNewFromData(1, &n, typenum, base);
    if (!arr) return NULL;
    Py_INCREF(self);
    if (PyArray_SetBaseObject((PyArrayObject *)arr, (PyObject *)self) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

/* copy a host array (typenum, exactly n elements) into backend memory */
static int write_in(ClassifierObject *self, void *base, npy_intp n, int typenum, PyObject *o, const char *name) {
    npy_intp shape[1] = {n};
    PyArrayObject *a = lnn_check_array(o, name, typenum, 1, shape, 0);
    if (!a) return -1;
    lnn_ctx *ctx = &self->c->body->ctx;
    if (n) ctx->be->to_device(ctx, base, PyArray_DATA(a), (size_t)PyArray_NBYTES(a));
    lnn_status st = lnn_sync(ctx);
    if (st) {
        lnn_raise_status(st);
        return -1;
    }
    return 0;
}

static PyObject *Classifier_buffers(ClassifierObject *self, PyObject *unused) {
    if (clf_busy(self)) return NULL;
    return view(self, self->c->buffers, (npy_intp)self->c->n_buffers, NPY_FLOAT32);
}

/* write_buffers(array): the BatchNorm running stats (float32, all of them) */
static PyObject *Classifier_write_buffers(ClassifierObject *self, PyObject *arr) {
    if (clf_busy(self)) return NULL;
    if (write_in(self, self->c->buffers, (npy_intp)self->c->n_buffers, NPY_FLOAT32, arr, "buffers") < 0) return NULL;
    Py_RETURN_NONE;
}

/* (m, v, steps) of the optimizer state (views on host-memory backends, else copies), or None before
 * configure_optimizer */
static PyObject *Classifier_opt_state(ClassifierObject *self, PyObject *unused) {
    if (clf_busy(self)) return NULL;
    lnn_classifier *c = self->c;
    if (!c->has_opt) Py_RETURN_NONE;
    PyObject *m = view(self, c->m, (npy_intp)c->nstate, NPY_FLOAT32);
    PyObject *v = m ? view(self, c->v, (npy_intp)c->nstate, NPY_FLOAT32) : NULL;
    PyObject *s = v ? view(self, c->steps, (npy_intp)c->nseg, NPY_INT64) : NULL;
    if (!m || !v || !s) {
        Py_XDECREF(m);
        Py_XDECREF(v);
        Py_XDECREF(s);
        return NULL;
    }
    return Py_BuildValue("(NNN)", m, v, s);
}

/* load_opt_state(m, v, steps): restore the optimizer state (after configure_optimizer) */
static PyObject *Classifier_load_opt_state(ClassifierObject *self, PyObject *args) {
    PyObject *m, *v, *s;
    if (!PyArg_ParseTuple(args, "OOO", &m, &v, &s)) return NULL;
    if (clf_busy(self)) return NULL;
    lnn_classifier *c = self->c;
    if (!c->has_opt) {
        PyErr_SetString(lnn_Error, "configure_optimizer() must be called before load_opt_state()");
        return NULL;
    }
    if (write_in(self, c->m, (npy_intp)c->nstate, NPY_FLOAT32, m, "m") < 0 ||
        write_in(self, c->v, (npy_intp)c->nstate, NPY_FLOAT32, v, "v") < 0 ||
        write_in(self, c->steps, (npy_intp)c->nseg, NPY_INT64, s, "steps") < 0)
        return NULL;
    Py_RETURN_NONE;
}

typedef struct {
    PyArrayObject *ids, *mask, *types, *feat, *win;
    int B, T, S; /* S: songs (the head's rows) */
} inputs_t;

/* windows_of (None, or int32 (B,) sorted song numbers) -> in->win, in->S */
static int parse_windows(ClassifierObject *self, PyObject *win_o, inputs_t *in) {
    in->S = in->B;
    if (win_o == Py_None) return 0;
    npy_intp ws[1] = {in->B};
    if (!(in->win = lnn_check_array(win_o, "windows_of", NPY_INT32, 1, ws, 0))) return -1;
    lnn_status st = lnn_classifier_songs(self->c, PyArray_DATA(in->win), in->B, &in->S);
    if (st) {
        lnn_raise_status(st);
        return -1;
    }
    return 0;
}

static int parse_inputs(ClassifierObject *self, PyObject *ids_o, PyObject *mask_o, PyObject *types_o,
                        PyObject *feat_o, PyObject *win_o, inputs_t *in) {
    memset(in, 0, sizeof *in);
    in->ids = lnn_check_array(ids_o, "input_ids", NPY_INT32, 2, NULL, 0);
    if (!in->ids) return -1;
    npy_intp shape[2] = {PyArray_DIM(in->ids, 0), PyArray_DIM(in->ids, 1)};
    if (shape[0] < 1 || shape[1] < 1 || shape[0] > (1 << 24) || shape[1] > (1 << 24)) {
        PyErr_Format(PyExc_ValueError, "input_ids must have shape (batch, seq) with both >= 1, got (%ld, %ld)",
                     (long)shape[0], (long)shape[1]);
        return -1;
    }
    if (mask_o != Py_None && !(in->mask = lnn_check_array(mask_o, "attention_mask", NPY_INT32, 2, shape, 0)))
        return -1;
    if (types_o != Py_None && !(in->types = lnn_check_array(types_o, "token_type_ids", NPY_INT32, 2, shape, 0)))
        return -1;
    const lnn_model *enc = lnn_body_encoder(self->c->body);
    if (in->types && (!enc || enc->cfg.model_type != LNN_BERT)) {
        PyErr_SetString(PyExc_ValueError, "token_type_ids are only used by BERT; DistilBERT has no token types");
        return -1;
    }
    in->B = (int)shape[0];
    in->T = (int)shape[1];
    if (parse_windows(self, win_o, in)) return -1;
    int F = self->c->spec.num_features;
    if (feat_o != Py_None) {
        if (F == 0) {
            PyErr_SetString(PyExc_ValueError,
                            "features were given but this model has no feature input; create it with "
                            "num_features=F and a head with features_at");
            return -1;
        }
        npy_intp fs[2] = {in->S, F};
        if (!(in->feat = lnn_check_array(feat_o, in->win ? "features (one row per song)" : "features", NPY_FLOAT32, 2,
                                         fs, 0)))
            return -1;
    } else if (F > 0) {
        PyErr_Format(PyExc_ValueError, "features is required: this model's head takes %d features per row", F);
        return -1;
    }
    return 0;
}

#define DATA(a, type) ((a) ? (const type *)PyArray_DATA(a) : NULL)

/* forward(input_ids, attention_mask, token_type_ids, features, train, seed, step, windows_of) -> logits (S, K) */
static PyObject *Classifier_forward(ClassifierObject *self, PyObject *args, PyObject *kw) {
    static char *kws[] = {"input_ids", "attention_mask", "token_type_ids", "features", "train", "seed", "step",
                          "windows_of", NULL};
    PyObject *ids_o, *mask_o = Py_None, *types_o = Py_None, *feat_o = Py_None, *win_o = Py_None;
    int train = 0;
    unsigned long long seed = 0, step = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OOOpKKO", kws, &ids_o, &mask_o, &types_o, &feat_o, &train, &seed,
                                     &step, &win_o))
        return NULL;
    if (clf_busy(self)) return NULL;
    if (step > 0xFFFFFFFFull) {
        PyErr_SetString(PyExc_ValueError, "step must be < 2**32");
        return NULL;
    }
    inputs_t in;
    if (parse_inputs(self, ids_o, mask_o, types_o, feat_o, win_o, &in)) return NULL;
    npy_intp os[2] = {in.S, self->c->spec.num_labels};
    PyObject *logits = PyArray_SimpleNew(2, os, NPY_FLOAT32);
    if (!logits) return NULL;
    float *lp = PyArray_DATA((PyArrayObject *)logits);
    lnn_batch b = {DATA(in.ids, int32_t), DATA(in.types, int32_t), DATA(in.mask, int32_t), in.B, in.T};
    lnn_status st;
    ENTER(self);
    LNN_RELEASE_GIL
    st = lnn_classifier_forward(self->c, &b, DATA(in.win, int32_t), DATA(in.feat, float), train, (uint64_t)seed,
                                (uint32_t)step, lp);
    LNN_ACQUIRE_GIL
    LEAVE(self);
    if (st) {
        Py_DECREF(logits);
        return lnn_raise_status(st);
    }
    return logits;
}

/* configure_optimizer(segments (S,4) int64, nstate, lr, beta1, beta2, eps, weight_decay, max_grad_norm, decoupled) */
static PyObject *Classifier_configure_optimizer(ClassifierObject *self, PyObject *args, PyObject *kw) {
    static char *kws[] = {"segments", "nstate", "lr", "beta1", "beta2", "eps", "weight_decay", "max_grad_norm",
                          "decoupled", NULL};
    PyObject *segs_o;
    long long nstate;
    lnn_optim_config oc;
    memset(&oc, 0, sizeof oc);
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OLddddddp", kws, &segs_o, &nstate, &oc.lr, &oc.beta1, &oc.beta2,
                                     &oc.eps, &oc.weight_decay, &oc.max_grad_norm, &oc.decoupled))
        return NULL;
    if (clf_busy(self)) return NULL;
    npy_intp ss[2] = {-1, 4};
    PyArrayObject *segs = lnn_check_array(segs_o, "segments", NPY_INT64, 2, ss, 0);
    if (!segs) return NULL;
    if (PyArray_DIM(segs, 0) > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "segments: at most 2^24 segments");
        return NULL;
    }
    lnn_status st = lnn_classifier_configure_optimizer(self->c, PyArray_DATA(segs), (int)PyArray_DIM(segs, 0), nstate,
                                                       &oc);
    if (st) return lnn_raise_status(st);
    Py_RETURN_NONE;
}

static PyObject *Classifier_set_lr(ClassifierObject *self, PyObject *args) {
    double lr;
    if (!PyArg_ParseTuple(args, "d", &lr)) return NULL;
    if (clf_busy(self)) return NULL;
    if (!(lr >= 0)) {
        PyErr_Format(PyExc_ValueError, "lr must be a finite number >= 0, got %g", lr);
        return NULL;
    }
    self->c->opt.lr = lr;
    Py_RETURN_NONE;
}

/* set_loss_scaler(enabled, scale, growth, backoff, interval, tracker): dynamic loss scaling (GradScaler) */
static PyObject *Classifier_set_loss_scaler(ClassifierObject *self, PyObject *args) {
    int enabled, interval, tracker;
    double scale, growth, backoff;
    if (!PyArg_ParseTuple(args, "pdddii", &enabled, &scale, &growth, &backoff, &interval, &tracker)) return NULL;
    if (clf_busy(self)) return NULL;
    if (!(scale > 0 && isfinite((float)scale)) || !(growth > 1 && isfinite(growth)) || !(backoff > 0 && backoff < 1) ||
        interval < 1 || tracker < 0 || tracker >= interval) {
        PyErr_Format(PyExc_ValueError, "loss scaling needs a finite float32 scale > 0, growth > 1, backoff in (0, 1), "
                     "interval >= 1 and 0 <= tracker < interval; got scale=%g growth=%g backoff=%g interval=%d "
                     "tracker=%d", scale, growth, backoff, interval, tracker);
        return NULL;
    }
    lnn_loss_scaler *ls = &self->c->scaler;
    ls->enabled = enabled;
    ls->scale = (float)scale;
    ls->growth = (float)growth;
    ls->backoff = (float)backoff;
    ls->interval = interval;
    ls->tracker = tracker;
    ls->skipped = 0;
    Py_RETURN_NONE;
}

/* loss_scaler() -> dict(enabled, scale, growth, backoff, interval, tracker, skipped) */
static PyObject *Classifier_loss_scaler(ClassifierObject *self, PyObject *unused) {
    if (clf_busy(self)) return NULL;
    const lnn_loss_scaler *ls = &self->c->scaler;
    return Py_BuildValue("{s:O, s:d, s:d, s:d, s:i, s:i, s:O}", "enabled", ls->enabled ? Py_True : Py_False, "scale",
                         (double)ls->scale, "growth", (double)ls->growth, "backoff", (double)ls->backoff, "interval",
                         ls->interval, "tracker", ls->tracker, "skipped", ls->skipped ? Py_True : Py_False);
}

/* set_batchnorm_momentum(op, momentum): the running-stats factor of BatchNorm op `op` for the next
 * training forwards (torch's momentum=None: 1 / num_batches_tracked, set by Python before each step) */
static PyObject *Classifier_set_batchnorm_momentum(ClassifierObject *self, PyObject *args) {
    int i;
    double mo;
    if (!PyArg_ParseTuple(args, "id", &i, &mo)) return NULL;
    if (clf_busy(self)) return NULL;
    if (i < 0 || i >= self->c->spec.n_ops || self->c->ops[i].kind != LNN_HOP_BATCHNORM) {
        PyErr_Format(PyExc_IndexError, "op %d is not a BatchNorm op of this head", i);
        return NULL;
    }
    if (!(mo >= 0 && mo <= 1)) {
        PyErr_Format(PyExc_ValueError, "momentum must be in [0, 1], got %g", mo);
        return NULL;
    }
    self->c->ops[i].momentum = (float)mo;
    Py_RETURN_NONE;
}

/* train_step(input_ids, attention_mask, token_type_ids, features, labels, targets, weight, seed, step, windows_of)
 *   -> (loss, grad_norm); labels / targets / features one row per song */
static PyObject *Classifier_train_step(ClassifierObject *self, PyObject *args, PyObject *kw) {
    static char *kws[] = {"input_ids", "attention_mask", "token_type_ids", "features", "labels", "targets",
                          "weight", "seed", "step", "windows_of", NULL};
    PyObject *ids_o, *mask_o, *types_o, *feat_o, *lab_o, *tgt_o, *w_o, *win_o = Py_None;
    unsigned long long seed = 0, step = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOO|KKO", kws, &ids_o, &mask_o, &types_o, &feat_o, &lab_o,
                                     &tgt_o, &w_o, &seed, &step, &win_o))
        return NULL;
    if (clf_busy(self)) return NULL;
    if (step > 0xFFFFFFFFull) {
        PyErr_SetString(PyExc_ValueError, "step must be < 2**32");
        return NULL;
    }
    inputs_t in;
    if (parse_inputs(self, ids_o, mask_o, types_o, feat_o, win_o, &in)) return NULL;
    int K = self->c->spec.num_labels;
    PyArrayObject *lab = NULL, *tgt = NULL, *w = NULL;
    npy_intp ls[1] = {in.S}, ts[2] = {in.S, K}, ws[1] = {K};
    PyObject *lt = lab_o != Py_None ? lab_o : tgt_o;
    if (in.win && in.S != in.B && PyArray_Check(lt) && PyArray_NDIM((PyArrayObject *)lt) >= 1 &&
        PyArray_DIM((PyArrayObject *)lt, 0) == in.B) {
        PyErr_Format(PyExc_ValueError, "labels has %d rows, one per window; give one label per song (%d songs in "
                     "windows_of)", in.B, in.S);
        return NULL;
    }
    if (lab_o != Py_None && !(lab = lnn_check_array(lab_o, "labels", NPY_INT64, 1, ls, 0))) return NULL;
    if (tgt_o != Py_None && !(tgt = lnn_check_array(tgt_o, "labels", NPY_FLOAT32, 2, ts, 0))) return NULL;
    if (w_o != Py_None && !(w = lnn_check_array(w_o, "class_weight/pos_weight", NPY_FLOAT32, 1, ws, 0))) return NULL;
    if (w && self->c->spec.loss == LNN_LOSS_MSE) {
        PyErr_SetString(PyExc_ValueError, "regression (MSE) takes no class_weight / pos_weight");
        return NULL;
    }
    double loss = 0, gnorm = 0;
    lnn_batch b = {DATA(in.ids, int32_t), DATA(in.types, int32_t), DATA(in.mask, int32_t), in.B, in.T};
    lnn_status st;
    ENTER(self);
    LNN_RELEASE_GIL
    st = lnn_classifier_train_step(self->c, &b, DATA(in.win, int32_t), DATA(in.feat, float), DATA(lab, int64_t),
                                   DATA(tgt, float),
                                   DATA(w, float), (uint64_t)seed, (uint32_t)step, &loss, &gnorm);
    LNN_ACQUIRE_GIL
    LEAVE(self);
    if (st) return lnn_raise_status(st);
    return Py_BuildValue("(dd)", loss, gnorm);
}

static PyMethodDef Classifier_methods[] = {
    {"buffers", (PyCFunction)Classifier_buffers, METH_NOARGS,
     "BatchNorm running stats (float32; a zero-copy view on host-memory backends, else a copy)."},
    {"write_buffers", (PyCFunction)Classifier_write_buffers, METH_O, "write_buffers(array): set the running stats."},
    {"opt_state", (PyCFunction)Classifier_opt_state, METH_NOARGS,
     "(m, v, steps): views on host-memory backends, else copies; None before configure_optimizer."},
    {"load_opt_state", (PyCFunction)Classifier_load_opt_state, METH_VARARGS, "load_opt_state(m, v, steps)"},
    {"forward", (PyCFunction)(void (*)(void))Classifier_forward, METH_VARARGS | METH_KEYWORDS,
     "forward(input_ids, attention_mask=None, token_type_ids=None, features=None, train=False, seed=0, step=0, "
     "windows_of=None)"},
    {"configure_optimizer", (PyCFunction)(void (*)(void))Classifier_configure_optimizer, METH_VARARGS | METH_KEYWORDS,
     "configure_optimizer(segments, nstate, lr, beta1, beta2, eps, weight_decay, max_grad_norm, decoupled)"},
    {"set_lr", (PyCFunction)Classifier_set_lr, METH_VARARGS, "set_lr(lr)"},
    {"set_loss_scaler", (PyCFunction)Classifier_set_loss_scaler, METH_VARARGS,
     "set_loss_scaler(enabled, scale, growth, backoff, interval, tracker): dynamic loss scaling (GradScaler's rule)"},
    {"loss_scaler", (PyCFunction)Classifier_loss_scaler, METH_NOARGS,
     "loss_scaler() -> dict(enabled, scale, growth, backoff, interval, tracker, skipped)"},
    {"set_batchnorm_momentum", (PyCFunction)Classifier_set_batchnorm_momentum, METH_VARARGS,
     "set_batchnorm_momentum(op, momentum)"},
    {"train_step", (PyCFunction)(void (*)(void))Classifier_train_step, METH_VARARGS | METH_KEYWORDS,
     "train_step(input_ids, attention_mask, token_type_ids, features, labels, targets, weight, seed, step, "
     "windows_of=None)"},
    {NULL, NULL, 0, NULL},
};

static PyObject *Classifier_get_unpad(ClassifierObject *self, void *closure) {
    (void)closure;
    if (clf_missing(self)) return NULL;
    return PyBool_FromLong(self->c->unpad);
}

static int Classifier_set_unpad(ClassifierObject *self, PyObject *v, void *closure) {
    (void)closure;
    if (clf_busy(self)) return -1;
    int on = v ? PyObject_IsTrue(v) : -1;
    if (on < 0) {
        if (!v) PyErr_SetString(PyExc_TypeError, "unpad cannot be deleted; set it to True or False");
        return -1;
    }
    self->c->unpad = on;
    return 0;
}

static PyObject *Classifier_get_rows(ClassifierObject *self, void *closure) {
    (void)closure;
    if (clf_missing(self)) return NULL;
    const lnn_model *m = lnn_body_encoder(self->c->body);
    if (!m) Py_RETURN_NONE;
    return PyLong_FromSize_t(m->fwd_N);
}

static PyObject *Classifier_get_last_rows(ClassifierObject *self, void *closure) {
    (void)closure;
    if (clf_missing(self)) return NULL;
    const lnn_model *m = lnn_body_encoder(self->c->body);
    if (!m) Py_RETURN_NONE;
    return PyLong_FromSize_t(m->fwd_cls ? (size_t)m->fwd_B : m->fwd_N);
}

static PyGetSetDef Classifier_getset[] = {
    {"last_layer_rows", (getter)Classifier_get_last_rows, NULL,
     "Rows the encoder's last layer ran on after its attention in the last forward (the batch size when a "
     "token-0 head let it skip the other positions; None when the body is not an encoder).", NULL},
    {"encoder_rows", (getter)Classifier_get_rows, NULL,
     "Token rows the encoder ran on in the last forward (B*T padded, the real tokens unpadded; None when the "
     "body is not an encoder).", NULL},
    {"unpad", (getter)Classifier_get_unpad, (setter)Classifier_set_unpad,
     "Run the encoder on the real tokens of right-padded batches only (same values, less work; "
     "ignored for flatten pooling).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ClassifierType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lyricnn._C.Classifier",
    .tp_basicsize = sizeof(ClassifierObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Encoder + head + loss + optimizer: forward and one C training step.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Classifier_init,
    .tp_dealloc = (destructor)Classifier_dealloc,
    .tp_methods = Classifier_methods,
    .tp_getset = Classifier_getset,
};

/* a tuple of the names of an enum, in enum order */
static int add_names(PyObject *m, const char *attr, const char *const *names, int n) {
    PyObject *t = PyTuple_New(n);
    if (!t) return -1;
    for (int i = 0; i < n; i++) {
        PyObject *s = PyUnicode_FromString(names[i]);
        if (!s) {
            Py_DECREF(t);
            return -1;
        }
        PyTuple_SET_ITEM(t, i, s);
    }
    if (PyModule_AddObject(m, attr, t) < 0) {
        Py_DECREF(t);
        return -1;
    }
    return 0;
}

int lnn_register_classifier(PyObject *m) {
    if (lnn_add_type(m, "Classifier", &ClassifierType) < 0) return -1;
    if (add_names(m, "SOURCES", lnn_source_names, LNN_NSRC) < 0) return -1;
    if (add_names(m, "HEAD_OPS", lnn_head_op_names, LNN_NHOP) < 0) return -1;
    if (add_names(m, "PROBLEM_TYPES", lnn_loss_names, LNN_NLOSS) < 0) return -1;
    if (add_names(m, "WINDOW_POOLINGS", lnn_window_pool_names, LNN_NSEGPOOL) < 0) return -1;
    if (PyModule_AddIntConstant(m, "HEAD_STREAM0", (long)LNN_HEAD_STREAM0) < 0) return -1;
    return 0;
}
