"""Thin allocating wrappers over the C training ops in lyricnn._C, and the flat-buffer optimizer.

The C functions take caller-allocated float32 arrays; these helpers allocate outputs and
gradients, so tests and the Python side of the training loop can call them in one line.
Backward helpers ACCUMULATE into gradient arrays you pass in (allocate zeros when you don't).
"""
import numpy as np

from ._loader import _C

SEG_DECAY = 1
SEG_FROZEN = 2

_POOLINGS = ("cls", "mean", "flatten")


def _f32(a, name):
    if not isinstance(a, np.ndarray):
        raise TypeError("%s must be a numpy array, got %s" % (name, type(a).__name__))
    return np.ascontiguousarray(a, dtype=np.float32)


# ------------------------------------------------------------------ losses

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
    loss = _C.cross_entropy_forward_backward(logits, labels, w, d, ignore_index=int(ignore_index),
                                             grad_scale=float(grad_scale))
    return loss, d


def bce_with_logits(logits, targets, pos_weight=None, grad=True, grad_scale=1.0):
    """Mean BCE-with-logits like torch's F.binary_cross_entropy_with_logits -> (loss, dlogits)."""
    logits = _f32(logits, "logits")
    targets = _f32(np.asarray(targets), "targets")
    pw = None if pos_weight is None else _f32(np.asarray(pos_weight), "pos_weight")
    d = np.empty_like(logits) if grad else None
    return _C.bce_with_logits_forward_backward(logits, targets, pw, d, grad_scale=float(grad_scale)), d


def mse(preds, targets, grad=True, grad_scale=1.0):
    """Mean squared error like torch's F.mse_loss -> (loss, dpreds or None)."""
    preds = _f32(preds, "preds")
    targets = _f32(np.asarray(targets), "targets")
    d = np.empty_like(preds) if grad else None
    return _C.mse_forward_backward(preds, targets, d, grad_scale=float(grad_scale)), d


# ------------------------------------------------------------------ layers

def linear_forward(x, weight, bias=None):
    """x (N, K) @ weight (M, K)^T + bias (M) -> (N, M), like torch.nn.Linear."""
    x = _f32(x, "x")
    out = np.empty((x.shape[0], weight.shape[0]), np.float32)
    _C.head_linear_forward(x, weight, bias, out)
    return out


def linear_backward(dout, x, weight, dx=None, dweight=None, dbias=None):
    """Accumulate the Linear gradients into dx / dweight / dbias (any may be None)."""
    _C.head_linear_backward(dout, x, weight, dx, dweight, dbias)


def relu_forward(x):
    out = np.empty_like(x)
    _C.head_relu_forward(x, out)
    return out


def batchnorm1d_forward(x, gamma=None, beta=None, running_mean=None, running_var=None, training=True,
                        momentum=0.1, eps=1e-5):
    """BatchNorm1d (N, C) like torch -> (out, save_mean, save_rstd); updates the running stats in place."""
    x = _f32(x, "x")
    c = x.shape[1]
    out = np.empty_like(x)
    sm = np.empty(c, np.float32)
    sr = np.empty(c, np.float32)
    _C.head_batchnorm1d_forward(x, gamma, beta, running_mean, running_var, out, sm, sr, bool(training),
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
    _C.head_pool_forward(h, m, out, mode)
    return out


def concat_forward(h, f):
    """Join features f (B, F) after hidden h (B, H) -> (B, H+F)."""
    h = _f32(h, "h")
    f = _f32(f, "f")
    out = np.empty((h.shape[0], h.shape[1] + f.shape[1]), np.float32)
    _C.head_concat_forward(h, f, out)
    return out


# ------------------------------------------------------------------ optimizer

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
        return _C.clip_grad_norm(self.grads, float(self.max_grad_norm), self.segments)

    def step(self, lr=None):
        """One update with the current grads (lr overrides self.lr, e.g. from a schedule)."""
        _C.adam_step(self.params, self.grads, self.m, self.v, self.segments, self.steps,
                     self.lr if lr is None else float(lr), beta1=self.betas[0], beta2=self.betas[1],
                     eps=self.eps, weight_decay=self.weight_decay, decoupled=self.decoupled,
                     lr_scale=self.lr_scale)

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
