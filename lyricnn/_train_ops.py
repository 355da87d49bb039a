"""numpy faces of the backend's head, loss and optimizer ops, and the flat-buffer optimizer.

Every function here runs one op of a backend's table (csrc/core/backend.h) through lyricnn._C.Backend,
the same code the classifier's training step runs; nothing is computed in Python. Two layers:

- checked functions with caller-allocated outputs (`head_linear_forward(x, weight, bias, out)`, ...):
  arguments must already be C-contiguous arrays of the right dtype and shape (the messages name the
  argument and the fix), backward functions ACCUMULATE into the gradient arrays they are given, and
  losses WRITE their dlogits;
- allocating helpers (`linear_forward(x, w, b)`, `cross_entropy(logits, labels)`, ...) that convert
  their inputs and return new arrays, for tests and scripts.

backend= picks the backend ("cpu" by default; any of lyricnn._C.backends()).
"""
import math

import numpy as np

from ._loader import _C

SEG_DECAY = _C.SEG_DECAY
SEG_FROZEN = _C.SEG_FROZEN

_POOLINGS = ("cls", "mean", "flatten")
_BACKENDS = {}


def backend(name="cpu"):
    """A shared float32 context on the named backend."""
    if name not in _BACKENDS:
        _BACKENDS[name] = _C.Backend(name)
    return _BACKENDS[name]


def _call(op, backend_name="cpu", **args):
    backend(backend_name).call(op, **args)


# ------------------------------------------------------------------ argument checks (the C boundary's rules)

def _arr(a, name, dtype, shape=None, ndim=None, writable=False):
    """a as it is, or TypeError / ValueError with the message of lyricnn's C boundary."""
    dt = np.dtype(dtype)
    if not isinstance(a, np.ndarray):
        raise TypeError("%s must be a numpy array of dtype %s, got %s; pass np.asarray(%s, dtype=np.%s)"
                        % (name, dt.name, type(a).__name__, name, dt.name))
    if a.dtype != dt:
        raise TypeError("%s must have dtype %s, got %s; convert with %s.astype(np.%s)"
                        % (name, dt.name, a.dtype.name, name, dt.name))
    nd = len(shape) if shape is not None else ndim
    if nd is not None and a.ndim != nd:
        raise ValueError("%s must have %d dimension(s), got %d" % (name, nd, a.ndim))
    if shape is not None and any(s >= 0 and s != g for s, g in zip(shape, a.shape)):
        want = tuple(g if s < 0 else s for s, g in zip(shape, a.shape))
        raise ValueError("%s has shape %s but %s was expected" % (name, a.shape, want))
    if not (a.flags.c_contiguous and a.flags.aligned):
        raise ValueError("%s must be C-contiguous and aligned; pass np.ascontiguousarray(%s)" % (name, name))
    if writable and not a.flags.writeable:
        raise ValueError("%s must be writeable; pass a copy (%s.copy())" % (name, name))
    return a


def _opt(a, name, dtype, shape, writable=False):
    return None if a is None else _arr(a, name, dtype, shape, writable=writable)


def _f32(a, name):
    if not isinstance(a, np.ndarray):
        raise TypeError("%s must be a numpy array, got %s" % (name, type(a).__name__))
    return np.ascontiguousarray(a, dtype=np.float32)


def _accumulate(dst, src):
    """dst += src for the ops whose activation gradient is written, not accumulated."""
    dst += src


# ------------------------------------------------------------------ losses (checked; dlogits written)

def _loss_out():
    return np.zeros(1, np.float64)


def cross_entropy_forward_backward(logits, labels, weight=None, dlogits=None, ignore_index=-100, grad_scale=1.0,
                                   backend="cpu"):
    """Mean softmax cross-entropy (torch's F.cross_entropy) -> loss; dlogits (N, C) written when given."""
    x = _arr(logits, "logits", np.float32, ndim=2)
    n, c = x.shape
    y = _arr(labels, "labels", np.int64, (n,))
    w = _opt(weight, "weight", np.float32, (c,))
    d = _opt(dlogits, "dlogits", np.float32, (n, c), writable=True)
    loss = _loss_out()
    _call("cross_entropy", backend, loss=loss, dlogits=d, logits=x, labels=y, class_weight=w, N=n, K=c,
          ignore_index=int(ignore_index), grad_scale=float(grad_scale))
    return float(loss[0])


def bce_with_logits_forward_backward(logits, targets, pos_weight=None, dlogits=None, grad_scale=1.0, backend="cpu"):
    """Mean BCE-with-logits (torch semantics) -> loss; logits, targets (N, K); dlogits written when given."""
    x = _arr(logits, "logits", np.float32, ndim=2)
    n, k = x.shape
    y = _arr(targets, "targets", np.float32, (n, k))
    pw = _opt(pos_weight, "pos_weight", np.float32, (k,))
    d = _opt(dlogits, "dlogits", np.float32, (n, k), writable=True)
    loss = _loss_out()
    _call("bce_with_logits", backend, loss=loss, dlogits=d, logits=x, targets=y, pos_weight=pw, N=n, K=k,
          grad_scale=float(grad_scale))
    return float(loss[0])


def mse_forward_backward(preds, targets, dpreds=None, grad_scale=1.0, backend="cpu"):
    """Mean squared error -> loss; preds and targets of one shape; dpreds written when given."""
    p = _arr(preds, "preds", np.float32, ndim=np.ndim(preds))
    y = _arr(targets, "targets", np.float32, p.shape)
    d = _opt(dpreds, "dpreds", np.float32, p.shape, writable=True)
    loss = _loss_out()
    _call("mse", backend, loss=loss, dpreds=d, preds=p, targets=y, n=p.size, grad_scale=float(grad_scale))
    return float(loss[0])


# ------------------------------------------------------------------ head layers (checked; backward accumulates)

def head_linear_forward(x, weight, bias, out, backend="cpu"):
    """out (N, M) = x (N, K) @ weight (M, K)^T + bias (M), as torch.nn.Linear."""
    x = _arr(x, "x", np.float32, ndim=2)
    n, k = x.shape
    w = _arr(weight, "weight", np.float32, (-1, k))
    m = w.shape[0]
    b = _opt(bias, "bias", np.float32, (m,))
    o = _arr(out, "out", np.float32, (n, m), writable=True)
    _call("matmul_forward", backend, out=o, inp=x, w=w, b=b, N=n, C=k, OC=m)


def head_linear_backward(dout, x, weight, dx=None, dweight=None, dbias=None, backend="cpu"):
    """dx (N, K) += dout @ weight; dweight (M, K) += dout^T @ x; dbias (M) += sum(dout); None skips."""
    x = _arr(x, "x", np.float32, ndim=2)
    n, k = x.shape
    w = _arr(weight, "weight", np.float32, (-1, k))
    m = w.shape[0]
    g = _arr(dout, "dout", np.float32, (n, m))
    dx = _opt(dx, "dx", np.float32, (n, k), True)
    dw = _opt(dweight, "dweight", np.float32, (m, k), True)
    db = _opt(dbias, "dbias", np.float32, (m,), True)
    _call("matmul_backward", backend, dinp=dx, dw=dw, db=db, dout=g, inp=x, w=w, N=n, C=k, OC=m)


def _rows2d(a):
    return (a.shape[0], int(np.prod(a.shape[1:]))) if a.ndim > 1 else (1, a.shape[0] if a.ndim else 1)


def head_relu_forward(x, out, backend="cpu"):
    """out = max(x, 0) (out may be x)."""
    x = _arr(x, "x", np.float32, ndim=np.ndim(x))
    o = _arr(out, "out", np.float32, x.shape, writable=True)
    n, c = _rows2d(x)
    tmp = x.copy()  # the op keeps its input (the pre-activation) as it is, with no bias
    _call("bias_act_forward", backend, out=o, x=tmp, b=None, N=n, OC=c, act=_C.ACT_RELU)


def head_relu_backward(dout, out, dx, backend="cpu"):
    """dx += dout * (out > 0)."""
    out = _arr(out, "out", np.float32, ndim=np.ndim(out))
    g = _arr(dout, "dout", np.float32, out.shape)
    dx = _arr(dx, "dx", np.float32, out.shape, writable=True)
    n, c = _rows2d(out)
    d = np.empty_like(g)
    _call("bias_act_backward", backend, dx=d, db=None, dout=g, x=out, N=n, OC=c, act=_C.ACT_RELU)
    _accumulate(dx, d)


def head_tanh_forward(x, out, backend="cpu"):
    """out = tanh(x)."""
    x = _arr(x, "x", np.float32, ndim=np.ndim(x))
    o = _arr(out, "out", np.float32, x.shape, writable=True)
    _call("tanh_forward", backend, out=o, inp=x, n=x.size)


def head_tanh_backward(dout, out, dx, backend="cpu"):
    """dx += dout * (1 - out^2)."""
    out = _arr(out, "out", np.float32, ndim=np.ndim(out))
    g = _arr(dout, "dout", np.float32, out.shape)
    dx = _arr(dx, "dx", np.float32, out.shape, writable=True)
    d = np.empty_like(g)
    _call("tanh_backward", backend, dinp=d, dout=g, out=out, n=out.size)
    _accumulate(dx, d)


def _drop(p, seed, step, stream):
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError("dropout p must be in [0, 1), got %g" % p)
    return dict(p=p, seed=int(seed), step=int(step), stream=int(stream))


def head_dropout_forward(x, out, mask, p, seed, step=0, stream=0, backend="cpu"):
    """Inverted dropout with the engine's Philox masks, keyed by (seed, step, stream, element index):
    out = x * keep / (1 - p); mask (uint8) receives keep. p in [0, 1)."""
    x = _arr(x, "x", np.float32, ndim=np.ndim(x))
    o = _arr(out, "out", np.float32, x.shape, writable=True)
    mk = _arr(mask, "mask", np.uint8, x.shape, writable=True)
    d = _drop(p, seed, step, stream)
    rows = dict(N=x.size, B=x.size, T=1)
    _call("dropout_forward", backend, out=o, inp=x, rows=rows, C=1, drop=d)
    ones = np.ones(x.shape, np.float32)
    _call("dropout_forward", backend, out=ones, inp=ones, rows=rows, C=1, drop=d)
    np.copyto(mk, ones != 0)


def head_dropout_backward(dout, dx, p, seed, step=0, stream=0, backend="cpu"):
    """dx += dout * keep / (1 - p), with the forward's (seed, step, stream)."""
    g = _arr(dout, "dout", np.float32, ndim=np.ndim(dout))
    dx = _arr(dx, "dx", np.float32, g.shape, writable=True)
    d = np.empty_like(g)
    _call("dropout_backward", backend, dinp=d, dout=g, rows=dict(N=g.size, B=g.size, T=1), C=1,
          drop=_drop(p, seed, step, stream))
    _accumulate(dx, d)


def head_batchnorm1d_forward(x, gamma, beta, running_mean, running_var, out, save_mean, save_rstd, training,
                             momentum=0.1, eps=1e-5, backend="cpu"):
    """BatchNorm1d over x (N, C), torch's train/eval semantics; updates the running stats in training."""
    x = _arr(x, "x", np.float32, ndim=2)
    n, c = x.shape
    g = _opt(gamma, "gamma", np.float32, (c,))
    b = _opt(beta, "beta", np.float32, (c,))
    rm = _opt(running_mean, "running_mean", np.float32, (c,), True)
    rv = _opt(running_var, "running_var", np.float32, (c,), True)
    if (rm is None) != (rv is None):
        raise ValueError("running_mean and running_var must be given together (or both None)")
    o = _arr(out, "out", np.float32, (n, c), writable=True)
    sm = _arr(save_mean, "save_mean", np.float32, (c,), writable=True)
    sr = _arr(save_rstd, "save_rstd", np.float32, (c,), writable=True)
    if (training or rm is None) and n < 2:
        raise ValueError("batchnorm1d: expected more than 1 value per channel when training, got a batch of %d; use a "
                         "batch size >= 2 (or drop_last) or eval mode" % n)
    _call("batchnorm_forward", backend, out=o, save_mean=sm, save_rstd=sr, x=x, gamma=g, beta=b, running_mean=rm,
          running_var=rv, N=n, C=c, training=bool(training), momentum=float(momentum), eps=float(eps))


def head_batchnorm1d_backward(dout, x, gamma, save_mean, save_rstd, dx, dgamma, dbeta, batch_stats, backend="cpu"):
    """dx (N, C) += ..., dgamma / dbeta (C) += ... (None skips)."""
    x = _arr(x, "x", np.float32, ndim=2)
    n, c = x.shape
    _call("batchnorm_backward", backend, dx=_opt(dx, "dx", np.float32, (n, c), True),
          dgamma=_opt(dgamma, "dgamma", np.float32, (c,), True), dbeta=_opt(dbeta, "dbeta", np.float32, (c,), True),
          dout=_arr(dout, "dout", np.float32, (n, c)), x=x, gamma=_opt(gamma, "gamma", np.float32, (c,)),
          save_mean=_arr(save_mean, "save_mean", np.float32, (c,)),
          save_rstd=_arr(save_rstd, "save_rstd", np.float32, (c,)), N=n, C=c, batch_stats=bool(batch_stats))


def _pool_args(h, mask, mode):
    if mode not in _POOLINGS:
        raise ValueError("pooling mode must be one of 'cls', 'mean', 'flatten', got %r" % (mode,))
    h = _arr(h, "h", np.float32, ndim=3)
    b, t, c = h.shape
    m = _opt(mask, "mask", np.int64, (b, t))
    if mode == "mean" and m is None:
        raise ValueError("pool: mean pooling needs the attention mask")
    m32 = None if m is None else np.ascontiguousarray(m != 0, dtype=np.int32)
    return h, (b, t, c), m32


def head_pool_forward(h, mask, out, mode, backend="cpu"):
    """Pool h (B, T, C) with mask (B, T) int64 (tokens where != 0): 'cls' token 0 -> (B, C); 'mean' masked
    mean -> (B, C) (sentence-transformers'); 'flatten' all T vectors -> (B, T*C)."""
    h, (b, t, c), m = _pool_args(h, mask, mode)
    o = _arr(out, "out", np.float32, (b, t * c) if mode == "flatten" else (b, c), writable=True)
    rows = dict(N=b * t, B=b, T=t)
    if mode == "cls":
        _call("token0_forward", backend, out=o, inp=h, rows=rows, C=c)
    elif mode == "mean":
        _call("mean_pool_forward", backend, out=o, h=h, mask=m, rows=rows, C=c)
    else:
        np.copyto(o, h.reshape(b, t * c))


def head_pool_backward(dout, mask, dh, mode, backend="cpu"):
    """dh (B, T, C) += the pooling's gradient from dout."""
    dh, (b, t, c), m = _pool_args(dh, mask, mode)
    _arr(dh, "dh", np.float32, (b, t, c), writable=True)
    g = _arr(dout, "dout", np.float32, (b, t * c) if mode == "flatten" else (b, c))
    rows = dict(N=b * t, B=b, T=t)
    if mode == "cls":
        _call("token0_backward", backend, dinp=dh, dout=g, rows=rows, C=c)
    elif mode == "mean":
        _call("mean_pool_backward", backend, dh=dh, dout=g, mask=m, rows=rows, C=c)
    else:
        dh += g.reshape(b, t, c)


def head_concat_forward(h, f, out, backend="cpu"):
    """out (B, H+F) = [h (B, H) | f (B, F)]."""
    h = _arr(h, "h", np.float32, ndim=2)
    b, hh = h.shape
    f = _arr(f, "f", np.float32, (b, -1))
    o = _arr(out, "out", np.float32, (b, hh + f.shape[1]), writable=True)
    _call("concat_forward", backend, out=o, h=h, f=f, B=b, H=hh, F=f.shape[1])


def head_concat_backward(dout, dh, df, backend="cpu"):
    """dh (B, H) += dout[:, :H]; df (B, F) += dout[:, H:] (df may be None: features need no gradient)."""
    g = _arr(dout, "dout", np.float32, ndim=2)
    b = g.shape[0]
    dh = _arr(dh, "dh", np.float32, (b, -1), writable=True)
    nf = g.shape[1] - dh.shape[1]
    df = _opt(df, "df", np.float32, (b, -1), True)
    if df is not None and df.shape[1] != nf or nf < 0:
        raise ValueError("dh (%d columns) and df (%s columns) must add up to dout's %d columns"
                         % (dh.shape[1], "-" if df is None else df.shape[1], g.shape[1]))
    _call("concat_backward", backend, dh=dh, df=df, dout=g, B=b, H=dh.shape[1], F=nf)


# ------------------------------------------------------------------ optimizer (checked)

def _segments(segments, n, name="segments"):
    s = _arr(segments, name, np.int64, (-1, 4))
    return s


def adam_step(params, grads, m, v, segments, steps, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
              decoupled=True, lr_scale=None, backend="cpu"):
    """One Adam / AdamW step over the segments of a flat float32 buffer (torch semantics); m, v: the
    compact state; steps (S,) int64 per-segment counters (incremented); lr_scale (S,) or None."""
    p = _arr(params, "params", np.float32, ndim=1, writable=True)
    n = p.shape[0]
    g = _arr(grads, "grads", np.float32, (n,))
    m = _arr(m, "m", np.float32, ndim=1, writable=True)
    v = _arr(v, "v", np.float32, m.shape, writable=True)
    s = _segments(segments, n)
    st = _arr(steps, "steps", np.int64, (s.shape[0],), writable=True)
    ls = _opt(lr_scale, "lr_scale", np.float32, (s.shape[0],))
    cfg = dict(lr=float(lr), beta1=float(beta1), beta2=float(beta2), eps=float(eps), weight_decay=float(weight_decay),
               decoupled=bool(decoupled))
    g = g if g.flags.writeable else g.copy()  # the binding writes grads back (the op may scale them in place)
    _call("adam_step", backend, params=p, grads=g, m=m, v=v, n=n, nstate=m.shape[0], segs=s, nseg=s.shape[0],
          steps=st, lr_scale=ls, cfg=cfg)


def _norm(grads, segments, clip, max_norm, backend):
    g = _arr(grads, "grads", np.float32, ndim=1, writable=clip)
    s = None if segments is None else _segments(segments, g.shape[0])
    out = np.zeros(1, np.float64)
    _call("grad_norm_clip", backend, norm=out, grads=g, n=g.shape[0], segs=s, nseg=0 if s is None else s.shape[0],
          clip=clip, max_norm=float(max_norm))
    return float(out[0])


def grad_norm(grads, segments=None, backend="cpu"):
    """The global L2 norm of grads over the trainable segments (all when None); thread-count independent."""
    return _norm(grads, segments, False, 0.0, backend)


def clip_grad_norm(grads, max_norm, segments=None, backend="cpu"):
    """torch.nn.utils.clip_grad_norm_ over the trainable segments -> the norm before clipping."""
    if not (isinstance(max_norm, (int, float, np.floating)) and math.isfinite(max_norm) and max_norm >= 0):
        raise ValueError("max_norm must be a finite number >= 0, got %r" % (max_norm,))
    return _norm(grads, segments, True, max_norm, backend)


# ------------------------------------------------------------------ allocating helpers

def cross_entropy(logits, labels, weight=None, ignore_index=-100, grad=True, grad_scale=1.0):
    """Mean softmax cross-entropy like torch's F.cross_entropy -> (loss, dlogits or None)."""
    logits = _f32(logits, "logits")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError("labels must be integer class indices, got dtype %s; map them to 0..C-1 first"
                        % labels.dtype)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    w = None if weight is None else _f32(np.asarray(weight), "weight")
    d = np.empty_like(logits) if grad else None
    loss = cross_entropy_forward_backward(logits, labels, w, d, ignore_index=int(ignore_index),
                                          grad_scale=float(grad_scale))
    return loss, d


def bce_with_logits(logits, targets, pos_weight=None, grad=True, grad_scale=1.0):
    """Mean BCE-with-logits like torch's F.binary_cross_entropy_with_logits -> (loss, dlogits)."""
    logits = _f32(logits, "logits")
    targets = _f32(np.asarray(targets), "targets")
    pw = None if pos_weight is None else _f32(np.asarray(pos_weight), "pos_weight")
    d = np.empty_like(logits) if grad else None
    return bce_with_logits_forward_backward(logits, targets, pw, d, grad_scale=float(grad_scale)), d


def mse(preds, targets, grad=True, grad_scale=1.0):
    """Mean squared error like torch's F.mse_loss -> (loss, dpreds or None)."""
    preds = _f32(preds, "preds")
    targets = _f32(np.asarray(targets), "targets")
    d = np.empty_like(preds) if grad else None
    return mse_forward_backward(preds, targets, d, grad_scale=float(grad_scale)), d


def linear_forward(x, weight, bias=None):
    """x (N, K) @ weight (M, K)^T + bias (M) -> (N, M), like torch.nn.Linear."""
    x = _f32(x, "x")
    out = np.empty((x.shape[0], weight.shape[0]), np.float32)
    head_linear_forward(x, weight, bias, out)
    return out


def linear_backward(dout, x, weight, dx=None, dweight=None, dbias=None):
    """Accumulate the Linear gradients into dx / dweight / dbias (any may be None)."""
    head_linear_backward(dout, x, weight, dx, dweight, dbias)


def relu_forward(x):
    out = np.empty_like(x)
    head_relu_forward(x, out)
    return out


def batchnorm1d_forward(x, gamma=None, beta=None, running_mean=None, running_var=None, training=True,
                        momentum=0.1, eps=1e-5):
    """BatchNorm1d (N, C) like torch -> (out, save_mean, save_rstd); updates the running stats in place."""
    x = _f32(x, "x")
    c = x.shape[1]
    out = np.empty_like(x)
    sm = np.empty(c, np.float32)
    sr = np.empty(c, np.float32)
    head_batchnorm1d_forward(x, gamma, beta, running_mean, running_var, out, sm, sr, bool(training),
                             momentum=float(momentum), eps=float(eps))
    return out, sm, sr


def pool_forward(h, mask, mode):
    """Pool encoder states h (B, T, C) with mask (B, T): 'cls', 'mean' or 'flatten'."""
    if mode not in _POOLINGS:
        raise ValueError("pooling must be one of %s, got %r" % (_POOLINGS, mode))
    h = _f32(h, "h")
    b, t, c = h.shape
    out = np.empty((b, t * c if mode == "flatten" else c), np.float32)
    m = None if mask is None else np.ascontiguousarray(mask, dtype=np.int64)
    head_pool_forward(h, m, out, mode)
    return out


def concat_forward(h, f):
    """Join features f (B, F) after hidden h (B, H) -> (B, H+F)."""
    h = _f32(h, "h")
    f = _f32(f, "f")
    out = np.empty((h.shape[0], h.shape[1] + f.shape[1]), np.float32)
    head_concat_forward(h, f, out)
    return out


# ------------------------------------------------------------------ the flat-buffer optimizer

def default_no_decay(name):
    """True for tensors that get no weight decay by default: biases and LayerNorm weights
    (the rule of HF Trainer)."""
    low = name.lower()
    return low.endswith("bias") or "layernorm" in low or "layer_norm" in low


def make_segments(sizes, names=None, frozen=(), no_decay=default_no_decay):
    """Segments for a flat buffer holding tensors of the given sizes, back to back.

    sizes: element counts in buffer order; names: their names (for the no-decay rule and
    `frozen`); frozen: a set of names or a predicate name -> bool. Returns (segments (S, 4) int64
    [offset, size, flags, state_offset], nstate): the state buffers m and v need nstate elements
    (frozen tensors take none).
    """
    names = list(names) if names is not None else [str(i) for i in range(len(sizes))]
    if len(names) != len(sizes):
        raise ValueError("names has %d entries but sizes has %d" % (len(names), len(sizes)))
    is_frozen = frozen if callable(frozen) else (lambda n, s=set(frozen): n in s)
    segs = np.zeros((len(sizes), 4), np.int64)
    off = st = 0
    for i, (name, size) in enumerate(zip(names, sizes)):
        size = int(size)
        flags = 0 if no_decay is not None and no_decay(name) else SEG_DECAY
        if is_frozen(name):
            flags |= SEG_FROZEN
        segs[i] = (off, size, flags, st)
        off += size
        if not flags & SEG_FROZEN:
            st += size
    return segs, st


class FlatAdam:
    """Adam / AdamW over one contiguous float32 parameter buffer, torch semantics.

    params, grads: 1-D float32 buffers (updated / read in place); segments from make_segments.
    State (m, v, steps) lives in compact numpy buffers: `state_dict()` / `load_state_dict()`
    save and restore it exactly (bit-identical resume).
    """

    def __init__(self, params, grads, segments, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled=True, lr_scale=None, max_grad_norm=None):
        self.params, self.grads = params, grads
        self.segments = np.ascontiguousarray(segments, dtype=np.int64)
        trainable = (self.segments[:, 2] & SEG_FROZEN) == 0
        nstate = int((self.segments[trainable, 3] + self.segments[trainable, 1]).max()) if trainable.any() else 0
        self.m = np.zeros(nstate, np.float32)
        self.v = np.zeros(nstate, np.float32)
        self.steps = np.zeros(len(self.segments), np.int64)
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.decoupled = bool(decoupled)
        self.lr_scale = None if lr_scale is None else np.ascontiguousarray(lr_scale, dtype=np.float32)
        self.max_grad_norm = max_grad_norm

    def clip(self):
        """Clip grads to max_grad_norm (if set) -> the pre-clip global norm (None if not set)."""
        if self.max_grad_norm is None:
            return None
        return clip_grad_norm(self.grads, float(self.max_grad_norm), self.segments)

    def step(self, lr=None):
        """One update with the current grads (lr overrides self.lr, e.g. from a schedule)."""
        adam_step(self.params, self.grads, self.m, self.v, self.segments, self.steps,
                  self.lr if lr is None else float(lr), beta1=self.betas[0], beta2=self.betas[1],
                  eps=self.eps, weight_decay=self.weight_decay, decoupled=self.decoupled, lr_scale=self.lr_scale)

    def state_dict(self):
        return {"m": self.m.copy(), "v": self.v.copy(), "steps": self.steps.copy(),
                "segments": self.segments.copy(), "lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, "decoupled": self.decoupled}

    def load_state_dict(self, state):
        for key in ("m", "v", "steps", "segments"):
            have, got = getattr(self, key), np.asarray(state[key])
            if got.shape != have.shape:
                raise ValueError("optimizer state %r has shape %s but this optimizer needs %s; the "
                                 "checkpoint was made for another model or freezing" % (key, got.shape, have.shape))
        if not np.array_equal(np.asarray(state["segments"]), self.segments):
            raise ValueError("optimizer state was saved for another parameter layout (segments differ)")
        np.copyto(self.m, np.asarray(state["m"], dtype=np.float32))
        np.copyto(self.v, np.asarray(state["v"], dtype=np.float32))
        np.copyto(self.steps, np.asarray(state["steps"], dtype=np.int64))
        self.lr = float(state.get("lr", self.lr))
        self.betas = tuple(float(b) for b in state.get("betas", self.betas))
        self.eps = float(state.get("eps", self.eps))
        self.weight_decay = float(state.get("weight_decay", self.weight_decay))
        self.decoupled = bool(state.get("decoupled", self.decoupled))
