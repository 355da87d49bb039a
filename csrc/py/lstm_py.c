/* py/lstm_py.c: Python binding of the LSTM body (lyricnn._C.LSTM), a subtype of _C.Engine: it has the
 * Engine's parameter table, buffers and views (tensors, params_buffer, read, write, set_flags, ...), and a
 * _C.Classifier over it (source "pooler") runs the forward, loss, backward and optimizer step. The C core
 * is models/lstm.c; the Python side is lyricnn/lstm.py. */
#include "py/ext.h"

#include "models/lstm.h"

/* engine_py.c */
int lnn_engine_prepare(PyObject *obj, const char *bname, const char *dname, const lnn_backend **be, lnn_dtype *act);
int lnn_engine_add_extra(lnn_param_table *tab, PyObject *extra);
PyTypeObject *lnn_engine_type(void);
void lnn_engine_adopt(PyObject *obj, lnn_body *body, void (*free_body)(lnn_body *));

static void free_lstm(lnn_body *b) { lnn_lstm_free(lnn_body_lstm(b)); }

/* LSTM(vocab_size, embedding_dim, hidden_size, num_layers, bidirectional, dropout, pad_id, extra_tensors=None,
 *      backend="cpu", dtype="f32", device=0, tf32=False) */
static int LSTM_init(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kws[] = {"vocab_size", "embedding_dim", "hidden_size", "num_layers", "bidirectional", "dropout",
                          "pad_id", "extra_tensors", "backend", "dtype", "device", "tf32", NULL};
    lnn_lstm_config c;
    memset(&c, 0, sizeof c);
    PyObject *extra = NULL;
    const char *bname = "cpu", *dname = "f32";
    int device = 0, tf32 = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iiiipfi|Ossip", kws, &c.vocab_size, &c.E, &c.H, &c.n_layers,
                                     &c.bidirectional, &c.dropout, &c.pad_id, &extra, &bname, &dname, &device, &tf32))
        return -1;
    const lnn_backend *be;
    lnn_dtype act;
    if (lnn_engine_prepare(self, bname, dname, &be, &act) < 0) return -1;
    lnn_lstm *m = NULL;
    lnn_status st = lnn_lstm_create(&m, &c, be, device, act, tf32);
    if (st) {
        lnn_raise_status(st);
        return -1;
    }
    if (lnn_engine_add_extra(&m->body.tab, extra) < 0) goto fail;
    LNN_RELEASE_GIL
    st = lnn_lstm_allocate(m);
    LNN_ACQUIRE_GIL
    if (st) {
        lnn_raise_status(st);
        goto fail;
    }
    lnn_engine_adopt(self, &m->body, free_lstm);
    return 0;
fail:
    lnn_lstm_free(m);
    return -1;
}

static PyTypeObject LSTMType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lyricnn._C.LSTM",
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The C LSTM body (nn.Embedding + nn.LSTM over packed sequences, torch's tensor names): an Engine "
              "whose Classifier (source 'pooler') trains it.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)LSTM_init,
};

int lnn_register_lstm(PyObject *m) {
    LSTMType.tp_base = lnn_engine_type();
    return lnn_add_type(m, "LSTM", &LSTMType);
}
