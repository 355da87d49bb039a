"""Sequence classification / regression models on the C engine (HF's *ForSequenceClassification).

    m = lyricnn.SequenceClassifier.from_pretrained("distilbert-dir", num_labels=3)
    m.configure_optimizer("adamw", lr=5e-5, weight_decay=0.01)
    loss = m.train_step(input_ids, attention_mask, labels)     # forward, loss, backward, clip, step (C)
    logits = m(input_ids, attention_mask).logits               # eval mode
    m.save_pretrained("out")                                   # transformers loads it

Heads:
- head=None: the HF head of the model type. DistilBERT: pre_classifier, ReLU, dropout
  (seq_classif_dropout), classifier on token 0. BERT: pooler, dropout (classifier_dropout or
  hidden_dropout_prob), classifier.
- head=dict(...): the configurable head (see `normalize_head`):
  pool -> [input dropout] -> for each hidden width: Linear -> [BatchNorm1d] -> act -> [dropout]
  -> Linear(num_labels), with the feature vector concatenated before Linear number `features_at`.

Long texts (long_text="windows"): the rows of a batch are the windows of songs (HF's
`tok(texts, truncation=True, max_length=L, stride=S, return_overflowing_tokens=True)`), packed as any
other sequences; the vector the head's first layer reads (the CLS hidden state, BERT's pooler output or
the mean of the tokens) is pooled across each song's windows (window_pooling "mean", "max", or
"attention": softmax over a learned scorer `window_scorer.weight` (1, hidden)), then the rest of the head
runs once per song:

    enc = tok(texts, truncation=True, max_length=512, stride=128, return_overflowing_tokens=True,
              padding=True, return_tensors="np")
    m = lyricnn.SequenceClassifier.from_pretrained(d, num_labels=3, long_text="windows", window_pooling="max")
    m(enc["input_ids"], enc["attention_mask"], windows_of=enc["overflow_to_sample_mapping"]).logits  # (songs, 3)
    m.train_step(enc["input_ids"], enc["attention_mask"], song_labels, windows_of=...)
"""
import json
import math
import os

import numpy as np

from ._device import TensorStore, resolve_device
from ._loader import _C
from ._C import CheckpointError, LyricnnError
from . import _train_ops
from ._validate import check_float, check_int, check_seed
from .encoder import Encoder, _check_inputs, parse_config
from .lora import MERGED_KEY, LoraMixin

__all__ = ["SequenceClassifier", "SequenceClassifierOutput", "normalize_head"]

PROBLEM_TYPES = tuple(_C.PROBLEM_TYPES)  # the C classifier's loss names (csrc/models/classifier.h)
_ACTS = ("relu", "tanh")
_PREFIX = {"distilbert": "distilbert.", "bert": "bert."}
_ARCH = {"distilbert": "DistilBertForSequenceClassification", "bert": "BertForSequenceClassification"}
_BASE_ARCH = {"distilbert": "DistilBertModel", "bert": "BertModel"}
LONG_TEXT_MODES = ("truncate", "head_tail", "windows")
WINDOW_POOLINGS = tuple(_C.WINDOW_POOLINGS)  # "mean", "max", "attention" (csrc/models/classifier.h)
SCORER = "window_scorer.weight"  # attention pooling's scorer, (1, hidden)
HEAD_KEYS = ("pooling", "hidden", "batchnorm", "dropout", "input_dropout", "activation", "features_at",
             "max_length", "momentum", "eps")


GRAD_SCALER_DEFAULTS = dict(init_scale=65536.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000)


def _loss_scaling(value, dtype):
    """configure_optimizer's loss_scaling -> the GradScaler settings (a dict) or None (off)."""
    if isinstance(value, str) and value == "auto":
        return dict(GRAD_SCALER_DEFAULTS) if dtype == "f16" else None
    if value is None or value is False:
        return None
    if value is True or (isinstance(value, str) and value == "dynamic"):
        return dict(GRAD_SCALER_DEFAULTS)
    if not isinstance(value, dict):
        raise TypeError("loss_scaling must be 'auto', True, False or a dict of %s, got %r"
                        % (", ".join(GRAD_SCALER_DEFAULTS), value))
    bad = [k for k in value if k not in GRAD_SCALER_DEFAULTS]
    if bad:
        raise ValueError("loss_scaling has unknown key(s) %s; the keys are %s" % (", ".join(map(repr, bad)),
                                                                                  ", ".join(GRAD_SCALER_DEFAULTS)))
    out = dict(GRAD_SCALER_DEFAULTS, **value)
    out["init_scale"] = check_float(out["init_scale"], "loss_scaling init_scale", min=0, min_inclusive=False)
    if out["init_scale"] > float(np.finfo(np.float32).max):
        raise ValueError("loss_scaling init_scale must fit a float32, got %r" % out["init_scale"])
    out["growth_factor"] = check_float(out["growth_factor"], "loss_scaling growth_factor", min=1, min_inclusive=False)
    out["backoff_factor"] = check_float(out["backoff_factor"], "loss_scaling backoff_factor", min=0, max=1,
                                        min_inclusive=False, max_inclusive=False)
    out["growth_interval"] = check_int(out["growth_interval"], "loss_scaling growth_interval", min=1, max=2**31 - 1)
    return out


def _scaler_args(ls, tracker=0):
    return (float(ls["init_scale"]), float(ls["growth_factor"]), float(ls["backoff_factor"]),
            int(ls["growth_interval"]), int(tracker))


class SequenceClassifierOutput:
    """Result of a model call: logits (B, num_labels) float32."""

    __slots__ = ("logits",)

    def __init__(self, logits):
        self.logits = logits

    def __getitem__(self, key):
        if key in (0, "logits"):
            return self.logits
        raise KeyError(key)

    def __repr__(self):
        return "SequenceClassifierOutput(logits=%s)" % (self.logits.shape,)


def _halving(width, num_labels):
    out, w = [], min(width // 2, 512)
    while w >= max(2 * num_labels, 2) and len(out) < 4:
        out.append(w)
        w //= 2
    return out


def normalize_head(head, hidden_size, num_labels, num_features=0):
    """Check a configurable head spec and fill in the defaults; returns a new dict.

    Keys: pooling "cls" | "mean" | "flatten" (default "cls"); hidden: list of widths, or "halving"
    (start at min(in/2, 512) and halve each layer while the width stays >= 2*num_labels, at most 4
    layers; `in` is the pooled width, hidden_size or max_length*hidden_size for flatten); batchnorm
    (False); dropout after each hidden activation (0.0); input_dropout on the pooled vector (0.0);
    activation "relu" | "tanh"; features_at: index of the Linear layer the feature vector is
    concatenated before (0 = the first, len(hidden) = the output layer; default len(hidden) when
    num_features > 0); max_length (required for flatten); momentum (0.1; None = the cumulative average
    of all training batches, as torch's momentum=None) and eps (1e-5) of BatchNorm1d.
    """
    if not isinstance(head, dict):
        raise TypeError("head must be None (the HF head) or a dict, got %s" % type(head).__name__)
    unknown = sorted(set(head) - set(HEAD_KEYS) - {"num_features", "num_labels"})
    if unknown:
        raise ValueError("head has unknown keys %s; known: %s" % (unknown, ", ".join(HEAD_KEYS)))
    h = dict(pooling="cls", hidden=[], batchnorm=False, dropout=0.0, input_dropout=0.0, activation="relu",
             features_at=None, max_length=None, momentum=0.1, eps=1e-5)
    h.update({k: v for k, v in head.items() if k in HEAD_KEYS})
    if h["pooling"] not in ("cls", "mean", "flatten"):
        raise ValueError("head pooling must be 'cls', 'mean' or 'flatten', got %r" % (h["pooling"],))
    if h["pooling"] == "flatten":
        if not isinstance(h["max_length"], (int, np.integer)) or h["max_length"] < 1:
            raise ValueError("head pooling='flatten' needs max_length (the padded length of every batch), "
                             "e.g. head=dict(pooling='flatten', max_length=128)")
        h["max_length"] = int(h["max_length"])
        width = h["max_length"] * hidden_size
    else:
        width = hidden_size
    if isinstance(h["hidden"], str):
        if h["hidden"] != "halving":
            raise ValueError("head hidden must be a list of widths or 'halving', got %r" % (h["hidden"],))
        h["hidden"] = _halving(width, num_labels)
    try:
        h["hidden"] = [int(w) for w in h["hidden"]]
    except (TypeError, ValueError):
        raise TypeError("head hidden must be a list of int widths or 'halving', got %r" % (h["hidden"],)) from None
    if any(w < 1 for w in h["hidden"]):
        raise ValueError("head hidden widths must be >= 1, got %s" % h["hidden"])
    for k in ("dropout", "input_dropout"):
        h[k] = float(h[k] or 0.0)
        if not 0.0 <= h[k] < 1.0:
            raise ValueError("head %s must be in [0, 1), got %g" % (k, h[k]))
    if h["activation"] not in _ACTS:
        raise ValueError("head activation must be one of %s, got %r" % (sorted(_ACTS), h["activation"]))
    h["batchnorm"] = bool(h["batchnorm"])
    h["momentum"] = None if h["momentum"] is None else float(h["momentum"])
    h["eps"] = float(h["eps"])
    if not ((h["momentum"] is None or 0.0 <= h["momentum"] <= 1.0) and h["eps"] > 0):
        raise ValueError("head momentum must be in [0, 1] (or None for a cumulative average) and eps > 0")
    nh = len(h["hidden"])
    if num_features:
        if h["features_at"] is None:
            h["features_at"] = nh
        if not isinstance(h["features_at"], (int, np.integer)) or not 0 <= h["features_at"] <= nh:
            raise ValueError("head features_at must be an int in 0..%d (the Linear layer the features join "
                             "before), got %r" % (nh, h["features_at"]))
        h["features_at"] = int(h["features_at"])
    elif h["features_at"] is not None:
        raise ValueError("head features_at=%r needs num_features > 0 (the length of the feature vector)"
                         % (h["features_at"],))
    return h


def _head_plan(model_type, config, head, C, K, F, hdrop):
    """(source, flatten_T, ops, tensors, bn) for the C classifier: source a _C.SOURCES name; ops a list
    of dicts (kind: a _C.HEAD_OPS name, in, out, weight / bias tensor names, p, momentum, eps); tensors
    [(name, shape, flags)]; bn [name prefix] per BatchNorm op in order."""
    ops, tensors, bn = [], [], []
    ND = _C.TENSOR_NO_DECAY

    def linear(name, i, o):
        tensors.append((name + ".weight", (o, i), 0))
        tensors.append((name + ".bias", (o,), ND))
        ops.append(dict(kind="linear", weight=name + ".weight", bias=name + ".bias", **{"in": i, "out": o}))

    def elem(kind, w, p=0.0):
        ops.append(dict(kind=kind, p=float(p), **{"in": w, "out": w}))

    if head is None:
        if model_type == "distilbert":
            linear("pre_classifier", C, C)
            elem("relu", C)
            if hdrop > 0:
                elem("dropout", C, hdrop)
            linear("classifier", C, K)
            return "cls", 0, ops, tensors, bn
        if hdrop > 0:
            elem("dropout", C, hdrop)
        linear("classifier", C, K)
        return "pooler", 0, ops, tensors, bn
    width = head["max_length"] * C if head["pooling"] == "flatten" else C
    if head["input_dropout"] > 0:
        elem("dropout", width, head["input_dropout"])
    widths = head["hidden"] + [K]
    for j, w in enumerate(widths):
        if F and head["features_at"] == j:
            ops.append(dict(kind="concat", **{"in": width, "out": width + F}))
            width += F
        last = j == len(widths) - 1
        linear("classifier" if last else "head.%d.dense" % j, width, w)
        width = w
        if last:
            break
        if head["batchnorm"]:
            nm = "head.%d.norm" % j
            tensors.append((nm + ".weight", (w,), ND))
            tensors.append((nm + ".bias", (w,), ND))
            # momentum None: the factor 1 / num_batches_tracked is set before each training step
            mo = 1.0 if head["momentum"] is None else head["momentum"]
            ops.append(dict(kind="batchnorm", weight=nm + ".weight", bias=nm + ".bias", momentum=mo, eps=head["eps"],
                            **{"in": w, "out": w}))
            bn.append(nm)
        elem(head["activation"], w)
        if head["dropout"] > 0:
            elem("dropout", w, head["dropout"])
    return head["pooling"], head["max_length"] or 0, ops, tensors, bn


def _with_dropout(config, p):
    c = dict(config)
    if c.get("model_type") == "distilbert":
        c.update(dropout=p, attention_dropout=p, seq_classif_dropout=p)
    else:
        c.update(hidden_dropout_prob=p, attention_probs_dropout_prob=p, classifier_dropout=p)
    return c


def check_long_text(long_text, window_pooling, pooling=None):
    """(long_text, window_pooling) checked: window_pooling None outside "windows" (where None means "mean")."""
    if long_text not in LONG_TEXT_MODES:
        raise ValueError("long_text must be one of %s, got %r" % (", ".join(map(repr, LONG_TEXT_MODES)), long_text))
    if window_pooling is not None and window_pooling not in WINDOW_POOLINGS:
        raise ValueError("window_pooling must be one of %s, got %r" % (", ".join(map(repr, WINDOW_POOLINGS)),
                                                                     window_pooling))
    if long_text != "windows":
        if window_pooling is not None:
            raise ValueError("window_pooling=%r pools the windows of a song; it needs long_text='windows' (got "
                             "long_text=%r)" % (window_pooling, long_text))
        return long_text, None
    if pooling == "flatten":
        raise ValueError("long_text='windows' cannot use pooling='flatten': its width depends on the window length; "
                         "use pooling 'cls' or 'mean'")
    return long_text, window_pooling or "mean"


def _windows_of(windows_of, B):
    """windows_of as int32 (B,) and the number of songs; the errors the engine gives, before any work."""
    try:
        a = np.asarray(windows_of)
    except Exception:
        raise TypeError("windows_of must be a sequence of ints (the song of each window), got %s"
                        % type(windows_of).__name__) from None
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
        raise TypeError("windows_of must hold integer song numbers (HF's overflow_to_sample_mapping), got dtype %s"
                        % a.dtype)
    if a.ndim != 1 or len(a) != B:
        raise ValueError("windows_of has shape %s but input_ids has %d rows; give the song of each window (shape (%d,))"
                         % (a.shape, B, B))
    a = a.astype(np.int64)
    if a[0] != 0:
        raise IndexError("windows_of[0] = %d: the first window must belong to song 0 (windows_of numbers the songs "
                         "0, 1, ... in order, as HF's overflow_to_sample_mapping)" % a[0])
    d = np.diff(a)
    if (d < 0).any():
        i = int(np.argmax(d < 0)) + 1
        raise ValueError("windows_of is not sorted: windows_of[%d] = %d follows windows_of[%d] = %d; pass each song's "
                         "windows together, songs in order (HF's overflow_to_sample_mapping)" % (i, a[i], i - 1, a[i - 1]))
    if (d > 1).any():
        i = int(np.argmax(d > 1)) + 1
        raise IndexError("windows_of[%d] = %d after %d: song %d has no window; number the songs 0, 1, ... without gaps "
                         "(every song has at least one window)" % (i, a[i], a[i - 1], a[i - 1] + 1))
    return np.ascontiguousarray(a, dtype=np.int32), int(a[-1]) + 1


def _f32_2d(x, name, B, F):
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise TypeError("%s must hold real numbers, got dtype %s" % (name, a.dtype))
    if a.ndim == 1 and F == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2 or a.shape != (B, F):
        raise ValueError("%s must have shape (%d, %d) (batch, %d), got %s" % (name, B, F, F, a.shape))
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        r, c = np.argwhere(~np.isfinite(a))[0]
        raise ValueError("%s[%d, %d] is %s; %s must be finite (fill or drop NaN/inf first)" % (name, r, c, a[r, c], name))
    return a


class SequenceClassifier(LoraMixin):
    """An encoder (DistilBERT / BERT) with a classification or regression head, trained in C.

    Parameters, gradients and the Adam moments are each one contiguous buffer; `params` / `grads`
    map HF names ("distilbert.embeddings.word_embeddings.weight", "pre_classifier.weight",
    "classifier.bias", ...) to zero-copy views on the CPU, and to copies on device backends (load
    tensors there with load_state_dict). device: see lyricnn._device."""

    def __init__(self, config, num_labels=2, problem_type=None, head=None, num_features=0, freeze_encoder=False,
                 seed=0, device="cpu", dropout=None, add_pooling_layer=None, precision=None, lora=None,
                 long_text="truncate", window_pooling=None, _adapter=None):
        resolve_device(device, precision)
        seed = check_seed(seed)
        if not isinstance(config, dict):
            raise TypeError("config must be a dict (config.json), got %s" % type(config).__name__)
        mt = config.get("model_type")
        if mt not in _PREFIX:
            raise ValueError("model_type must be 'distilbert' or 'bert', got %r" % (mt,))
        dropout = check_float(dropout, "dropout", min=0, max=1, max_inclusive=False, allow_none=True)
        if dropout is not None:
            config = _with_dropout(config, dropout)
        num_labels = check_int(num_labels, "num_labels", min=1)
        num_features = check_int(num_features, "num_features", min=0)
        if problem_type is None:
            problem_type = config.get("problem_type") or (
                "regression" if num_labels == 1 else "single_label_classification")
        if problem_type not in PROBLEM_TYPES:
            raise ValueError("problem_type must be one of %s, got %r" % (", ".join(PROBLEM_TYPES), problem_type))
        if problem_type == "single_label_classification" and num_labels < 2:
            raise ValueError("single_label_classification needs num_labels >= 2 (use problem_type="
                             "'multi_label_classification' for one binary logit, or 'regression')")
        s = parse_config(config)
        C = s["hidden_size"]
        if head is not None:
            head = normalize_head(head, C, num_labels, num_features)
            if head["pooling"] == "flatten" and head["max_length"] > s["max_position_embeddings"]:
                raise ValueError("head max_length=%d exceeds max_position_embeddings=%d"
                                 % (head["max_length"], s["max_position_embeddings"]))
        elif num_features:
            raise ValueError("num_features=%d needs a configurable head (head=dict(..., features_at=k)); "
                             "the HF head has no feature input" % num_features)
        if mt == "distilbert":
            hdrop = float(config.get("seq_classif_dropout", 0.2) or 0.0)
        else:
            cd = config.get("classifier_dropout")
            hdrop = float(cd if cd is not None else config.get("hidden_dropout_prob", 0.1) or 0.0)
        if add_pooling_layer is None:
            add_pooling_layer = mt == "bert" and head is None
        if mt == "bert" and head is None and not add_pooling_layer:
            raise ValueError("the BERT classification head needs the pooler")
        long_text, window_pooling = check_long_text(long_text, window_pooling, head and head["pooling"])
        source, flatten_T, ops, tensors, bn = _head_plan(mt, config, head, C, num_labels, num_features, hdrop)
        if window_pooling == "attention":
            tensors.append((SCORER, (1, C), 0))
        lora_engine = self._lora_prepare(lora, _adapter, freeze_encoder, mt, s["num_layers"], head, tensors)
        self.config = dict(config)
        self.model_type = mt
        self.num_labels = num_labels
        self.num_features = num_features
        self.problem_type = problem_type
        self.head = head
        self.long_text = long_text
        self.window_pooling = window_pooling
        #: tokenization settings of the long-text mode (max_length, window_stride, max_windows, head_tokens),
        #: set by the estimators and written beside the weights by save_pretrained
        self.long_text_settings = {}
        self.seed = seed
        self.step = 0
        self.device = device
        self.precision = precision
        self.encoder = Encoder(config, add_pooling_layer=add_pooling_layer, extra_tensors=tensors, device=device,
                               precision=precision, lora=lora_engine)
        self._head_names = [t[0] for t in tensors]
        self._clf = _C.Classifier(self.encoder._engine, source, flatten_T, ops, num_labels, num_features,
                                  problem_type, window_pooling=window_pooling,
                                  scorer=SCORER if window_pooling == "attention" else None)
        prefix = _PREFIX[mt]
        head_set = set(self._head_names)
        self._names = []  # HF names in buffer order
        layout = {}
        for name, shape, off, _ in self.encoder._info:
            full = name if name in head_set else self._lora_full_name(name) or prefix + name
            self._names.append(full)
            layout[full] = (off, tuple(shape))
        self._pstore = TensorStore(self.encoder._engine, "params", layout)
        self.params = self._pstore.view()
        self.grads = TensorStore(self.encoder._engine, "grads", layout).view()
        self._enc_names = [n for n in self.encoder._info if n[0] not in head_set and not self._lora_full_name(n[0])]
        # BatchNorm running statistics: the classifier's buffer, running_mean then running_var per op
        self._bn = bn
        self._bn_layout, off = {}, 0
        for nm in bn:
            w = int(layout[nm + ".weight"][1][0])
            self._bn_layout[nm + ".running_mean"] = (off, w)
            self._bn_layout[nm + ".running_var"] = (off + w, w)
            off += 2 * w
        self._bn_views = None
        if self.encoder._engine.host_memory:  # zero-copy views of the running stats
            buf = self._clf.buffers()
            self._bn_views = {k: buf[o:o + w] for k, (o, w) in self._bn_layout.items()}
        if bn:
            self.load_buffers({k: np.ones(w, np.float32) for k, (o, w) in self._bn_layout.items()
                               if k.endswith("running_var")})
        self._num_batches = {nm: 0 for nm in bn}
        # BatchNorm ops (same order as bn) whose running stats are a cumulative average (momentum None)
        cumulative = isinstance(head, dict) and "momentum" in head and head["momentum"] is None
        self._bn_cumulative = [i for i, o in enumerate(ops) if o["kind"] == "batchnorm"] if cumulative else []
        self.id2label = {i: "LABEL_%d" % i for i in range(num_labels)}
        self._opt = None
        self.freeze_encoder = False
        if head is not None and add_pooling_layer:
            # the configurable head does not use BERT's pooler: kept (and saved) but never trained, as
            # torch skips parameters without a gradient (no weight decay, no optimizer state)
            self.encoder.freeze(True, names=["pooler.dense.weight", "pooler.dense.bias"])
        if freeze_encoder:
            self._set_frozen(True)
        self._lora_finish()

    @property
    def buffers(self):
        """BatchNorm running statistics {name: (C,) float32}: views on the CPU, copies on device backends
        (change them with load_buffers)."""
        if self._bn_views is not None:
            return self._bn_views
        buf = self._clf.buffers()
        return {k: buf[o:o + w].copy() for k, (o, w) in self._bn_layout.items()}

    def load_buffers(self, values):
        """Set BatchNorm running statistics from {name: (C,) array} (a subset is fine)."""
        for k, v in values.items():
            a = np.asarray(v)
            if a.dtype.kind not in "fiub":
                raise TypeError("buffer %r has dtype %s; BatchNorm statistics are real numbers (float32)" % (k, a.dtype))
            a = a.astype(np.float32).reshape(-1)
            if a.shape != (self._bn_layout[k][1],):
                raise CheckpointError("%s: shape %s, the model needs (%d,)" % (k, np.shape(v), self._bn_layout[k][1]))
        if self._bn_views is not None:
            for k, v in values.items():
                np.copyto(self._bn_views[k], np.asarray(v, dtype=np.float32).reshape(-1))
            return
        buf = self._clf.buffers()
        for k, v in values.items():
            o, w = self._bn_layout[k]
            buf[o:o + w] = np.asarray(v, dtype=np.float32).reshape(-1)
        self._clf.write_buffers(buf)

    def _set_frozen(self, frozen):
        enc_names = {n for n, _, _, _ in self._enc_names}
        self.encoder.freeze(frozen, names=enc_names)
        self.freeze_encoder = bool(frozen)
        self._opt = None  # the optimizer layout changed

    # ------------------------------------------------------------------ construction
    def _init_head(self, names, rng):
        """Seeded init of head tensors: HF heads as HF (normal(0, initializer_range), zero bias);
        configurable-head layers as torch.nn defaults (U(+-1/sqrt(fan_in)); BatchNorm 1 / 0)."""
        std = float(self.config.get("initializer_range", 0.02))
        store = self._pstore
        for name in names:
            shape = store.layout[name][1]
            mod, leaf = name.rsplit(".", 1)
            if mod.endswith(".norm"):
                value = np.full(shape, 1.0 if leaf == "weight" else 0.0, np.float32)
            elif self.head is None or "pooler." in name:
                value = (rng.normal(0.0, std, size=shape).astype(np.float32) if leaf == "weight"
                         else np.zeros(shape, np.float32))
            else:
                fan_in = store.layout[mod + ".weight"][1][1]
                bound = 1.0 / math.sqrt(fan_in)
                value = rng.uniform(-bound, bound, size=shape).astype(np.float32)
            store.write(name, value)
        store.done()

    def _init_encoder(self, seed):
        """As Encoder.from_config: normal(0, initializer_range), zero biases, LayerNorm 1/0, pad row 0."""
        self.encoder.init_weights(seed, names=[n for n, _, _, _ in self._enc_names])

    @classmethod
    def from_config(cls, config, num_labels=2, problem_type=None, head=None, num_features=0, freeze_encoder=False,
                    seed=0, device="cpu", dropout=None, precision=None, lora=None, long_text="truncate",
                    window_pooling=None):
        """A randomly initialised model (encoder as Encoder.from_config(config, seed), seeded head; lora: new
        adapters, see from_pretrained)."""
        m = cls(config, num_labels=num_labels, problem_type=problem_type, head=head, num_features=num_features,
                freeze_encoder=freeze_encoder, seed=seed, device=device, dropout=dropout, precision=precision,
                lora=lora, long_text=long_text, window_pooling=window_pooling)
        m._init_encoder(seed)
        m._init_head(m._head_names, np.random.default_rng([seed, 1]))
        return m

    @classmethod
    def from_pretrained(cls, path, num_labels=None, problem_type=None, head=None, num_features=None,
                        freeze_encoder=False, seed=0, device="cpu", dropout=None, precision=None, lora=None,
                        adapter=None, long_text=None, window_pooling=None):
        """Load an HF model directory (a base encoder or a *ForSequenceClassification checkpoint, also
        one saved by save_pretrained). Head tensors in the checkpoint are loaded, new ones get a seeded
        init. num_labels=None: the checkpoint head's size (or config id2label), else 2. A num_labels
        that disagrees with the checkpoint's classifier raises CheckpointError.

        lora=dict(r=8, alpha=16, dropout=0.1, target_modules=..., rslora=False, init="kaiming", bias="none",
        modules_to_save=None): new LoRA adapters (lyricnn.lora.normalize_lora); the encoder's weights are
        frozen, the adapters and the head train. adapter=dir: load a LoRA adapter saved by save_adapter()
        or by peft (adapter_config.json + adapter_model.safetensors), its head included.

        long_text / window_pooling: None = the directory's (config.json "lyricnn_long_text", written by
        save_pretrained), else "truncate"; the window scorer of attention pooling loads with the head."""
        from . import checkpoint
        config = checkpoint.read_config(path)
        state = dict(checkpoint.load_state_dict(path))
        adapter_state = cls._lora_read_adapter(adapter, lora, config, path, freeze_encoder)
        mt = config.get("model_type")
        if mt not in _PREFIX:
            raise CheckpointError("%s: model_type must be 'distilbert' or 'bert', got %r" % (path, mt))
        prefix = _PREFIX[mt]
        saved_head = config.get("lyricnn_head")
        saved_lt = config.get("lyricnn_long_text") if isinstance(config.get("lyricnn_long_text"), dict) else {}
        if long_text is None:
            long_text = saved_lt.get("long_text", "truncate")
            if window_pooling is None and long_text == "windows":
                window_pooling = saved_lt.get("window_pooling")
        # split off head tensors and BatchNorm buffers
        head_state = {}
        for k in list(state):
            if k.startswith(("head.", "classifier.", "pre_classifier.", "window_scorer.")):
                head_state[k] = state.pop(k)
        use_saved = False
        if head is None and isinstance(saved_head, dict):
            head = {k: v for k, v in saved_head.items() if k in HEAD_KEYS}
            use_saved = True
            if num_features is None:
                num_features = int(saved_head.get("num_features", 0))
        elif head is not None and isinstance(saved_head, dict):
            try:  # the same head as the saved one (after defaults): load its weights
                C = parse_config(config)["hidden_size"]
                k0, f0 = int(saved_head.get("num_labels", 0)), int(saved_head.get("num_features", 0))
                same_shape = num_labels in (None, k0) and (num_features or 0) in (0, f0)
                use_saved = same_shape and normalize_head(head, C, k0, f0) == normalize_head(
                    {k: v for k, v in saved_head.items() if k in HEAD_KEYS}, C, k0, f0)
                if use_saved:
                    num_features = f0
            except (TypeError, ValueError):
                use_saved = False
        if adapter_state is not None:  # the adapter's head replaces the checkpoint's
            for k in adapter_state["head"]:
                head_state.pop(k, None)
            if num_labels is None and "classifier.weight" in adapter_state["head"]:
                num_labels = int(np.shape(adapter_state["head"]["classifier.weight"])[0])
        ckpt_k = None
        if "classifier.weight" in head_state:
            ckpt_k = int(np.shape(head_state["classifier.weight"])[0])
        if num_labels is None:
            if ckpt_k is not None and (head is None or use_saved):
                num_labels = ckpt_k
            elif isinstance(config.get("id2label"), dict) and any(
                    a.endswith("ForSequenceClassification") for a in config.get("architectures") or []):
                num_labels = len(config["id2label"])
            else:
                num_labels = 2
        num_features = num_features or 0
        loads_head = head is None or use_saved
        if loads_head and ckpt_k is not None and ckpt_k != num_labels:
            raise CheckpointError(
                "num_labels=%d disagrees with the checkpoint's classification head (classifier.weight has %d "
                "rows): pass num_labels=%d to keep the fine-tuned head, or head=dict(...) for a new head"
                % (num_labels, ckpt_k, ckpt_k))
        has_pooler = any(k in state for k in (prefix + "pooler.dense.weight", "pooler.dense.weight"))
        m = cls(config, num_labels=num_labels, problem_type=problem_type, head=head, num_features=num_features,
                freeze_encoder=False, seed=seed, device=device, dropout=dropout, precision=precision,
                add_pooling_layer=(mt == "bert" and (head is None or has_pooler)), lora=lora,
                long_text=long_text, window_pooling=window_pooling, _adapter=adapter_state)
        if long_text == saved_lt.get("long_text"):
            m.long_text_settings = {k: v for k, v in saved_lt.items() if k not in ("long_text", "window_pooling")}
        expected = {n: tuple(s) for n, s, _, _ in m._enc_names}
        matched, extra = checkpoint.match_state_dict(expected, state, mt, allow_missing=("pooler.",))
        for name, arr in matched.items():
            m.encoder._pstore.write(name, arr)
        rng = np.random.default_rng([m.seed, 1])
        missing_pool = [prefix + n for n in expected if n not in matched]
        if missing_pool:  # e.g. an MLM checkpoint without the pooler: seeded init, as HF does randomly
            m._init_head(missing_pool, rng)
        new = []
        for name in m._head_names:
            if loads_head and name in head_state:
                arr = np.asarray(head_state[name])
                need = m._pstore.layout[name][1]
                if arr.shape != need:
                    raise CheckpointError("%s: checkpoint tensor %s has shape %s, the model needs %s"
                                          % (path, name, arr.shape, need))
                m._pstore.write(name, arr)
            else:
                new.append(name)
        m._init_head(new, rng)
        if loads_head:
            m.load_buffers({k: head_state[k] for k in m._bn_layout if k in head_state})
            if isinstance(saved_head, dict):
                for nm, v in (saved_head.get("num_batches_tracked") or {}).items():
                    if nm in m._num_batches:
                        m._num_batches[nm] = int(v)
        i2l = config.get("id2label")
        if isinstance(i2l, dict) and len(i2l) == num_labels:
            try:
                m.id2label = {int(k): v for k, v in i2l.items()}
            except (TypeError, ValueError):
                pass
        if adapter_state is not None:
            m._lora_load_adapter(adapter_state)
        m._lora_source = os.fspath(path)
        if freeze_encoder:
            m._set_frozen(True)
        return m

    # ------------------------------------------------------------------ inputs
    def _inputs(self, input_ids, attention_mask, token_type_ids, features):
        """(ids, mask, types, features) as the engine takes them."""
        ids, mask, types = _check_inputs(input_ids, attention_mask, token_type_ids, self.model_type)
        feats = self._features(features, ids.shape[0], False)
        if self.head is not None and self.head["pooling"] == "flatten" and ids.shape[1] != self.head["max_length"]:
            raise ValueError("input_ids has %d positions but this model's flatten head needs exactly max_length=%d; "
                             "pad every batch to max_length" % (ids.shape[1], self.head["max_length"]))
        return ids, mask, types, feats

    def _features(self, features, S, songs):
        """The features (S, num_features) float32, or None; S: the head's rows (songs with windows)."""
        if features is not None:
            if not self.num_features:
                raise ValueError("features were given but this model has no feature input; create it with "
                                 "num_features=F and head=dict(..., features_at=k)")
            return _f32_2d(features, "features (one row per song)" if songs else "features", S, self.num_features)
        if self.num_features:
            raise ValueError("features is required: this model's head takes %d features per row (shape (batch, %d))"
                             % (self.num_features, self.num_features))
        return None

    def _song_inputs(self, input_ids, attention_mask, token_type_ids, features, windows_of=None):
        """(ids, mask, types, features, windows_of, S): S the head's rows (songs; the batch rows without windows)."""
        if windows_of is None:
            ids, mask, types, feats = self._inputs(input_ids, attention_mask, token_type_ids, features)
            return ids, mask, types, feats, None, ids.shape[0]
        if self.window_pooling is None:
            raise ValueError("windows_of was given but this model does not pool windows (long_text=%r); create it "
                             "with long_text='windows' (and a window_pooling)" % self.long_text)
        ids, mask, types = _check_inputs(input_ids, attention_mask, token_type_ids, self.model_type)
        win, S = _windows_of(windows_of, ids.shape[0])
        return ids, mask, types, self._features(features, S, True), win, S

    # ------------------------------------------------------------------ compute
    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, features=None, windows_of=None):
        """Eval-mode forward (no dropout, BatchNorm running stats) -> output with .logits (B, num_labels).

        windows_of (long_text="windows"): the song of each row, sorted (HF's overflow_to_sample_mapping); the
        logits are then (songs, num_labels) and features one row per song. None: each row is a song."""
        ids, mask, types, feats, win, _ = self._song_inputs(input_ids, attention_mask, token_type_ids, features, windows_of)
        return SequenceClassifierOutput(self._clf.forward(ids, mask, types, feats, False, 0, 0, win))

    forward = __call__

    def configure_optimizer(self, name="adamw", lr=5e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                            max_grad_norm=1.0, no_decay=None, loss_scaling="auto"):
        """Set up Adam ("adam": L2 weight decay, torch.optim.Adam) or AdamW ("adamw": decoupled) over
        the trainable parameters, torch semantics; resets the optimizer state. no_decay: None (biases
        and LayerNorm weights, the HF Trainer rule), a callable name -> bool, or a list of name
        substrings. max_grad_norm: clip the global gradient norm (None or 0: no clipping).
        loss_scaling: dynamic loss scaling with torch.amp.GradScaler's rule (the loss gradient times the scale;
        gradients unscaled before clipping; a step with inf/NaN gradients skipped and the scale halved; the
        scale doubled after growth_interval clean steps): "auto" (on with precision="fp16", else off), True
        (GradScaler's defaults: init_scale=65536, growth_factor=2, backoff_factor=0.5, growth_interval=2000),
        a dict of some of those keys, or False. `loss_scale` and `last_step_skipped` report it."""
        if name not in ("adam", "adamw"):
            raise ValueError("optimizer name must be 'adamw' or 'adam', got %r" % (name,))
        try:
            b1, b2 = (float(b) for b in betas)
        except (TypeError, ValueError):
            raise TypeError("betas must be a pair of floats, got %r" % (betas,)) from None
        lr = check_float(lr, "lr", min=0)  # 0 allowed: schedules decay to it
        eps = check_float(eps, "eps", min=0)
        weight_decay = check_float(weight_decay, "weight_decay", min=0)
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError("betas must be in [0, 1), got %r" % (betas,))
        mgn = check_float(max_grad_norm, "max_grad_norm", min=0, allow_none=True) or 0.0
        if no_decay is None:
            rule = _train_ops.default_no_decay
        elif callable(no_decay):
            rule = no_decay
        else:
            subs = [no_decay] if isinstance(no_decay, str) else list(no_decay)
            rule = lambda n, subs=subs: any(s in n for s in subs)
        flags = self.encoder.tensor_flags()
        info = self.encoder._info
        frozen = {full for full, (n, _, _, _) in zip(self._names, info) if flags[n] & _C.TENSOR_FROZEN}
        sizes = [int(np.prod(s)) for _, s, _, _ in info]
        segs, nstate = _train_ops.make_segments(sizes, self._names, frozen=frozen, no_decay=rule)
        offs = np.array([o for _, _, o, _ in info], np.int64)
        if not np.array_equal(segs[:, 0], offs):
            raise LyricnnError("internal: the parameter layout is not contiguous in table order")
        ls = _loss_scaling(loss_scaling, self.encoder._engine.dtype)
        self._clf.configure_optimizer(segs, int(nstate), lr, b1, b2, eps, weight_decay, mgn, name == "adamw")
        self._clf.set_loss_scaler(ls is not None, *(_scaler_args(ls) if ls else (1.0, 2.0, 0.5, 1, 0)))
        self._opt = dict(name=name, lr=lr, betas=(b1, b2), eps=eps, weight_decay=weight_decay,
                         max_grad_norm=max_grad_norm, segments=segs, nstate=int(nstate), loss_scaling=ls)
        self.last_grad_norm = None

    @property
    def loss_scale(self):
        """The current dynamic loss scale (GradScaler.get_scale()), or None without loss scaling."""
        if self._opt is None or not self._opt["loss_scaling"]:
            return None
        return self._clf.loss_scaler()["scale"]

    @property
    def last_step_skipped(self):
        """Whether the last train_step was skipped by loss scaling (inf/NaN gradients; the scale backed off)."""
        return self._opt is not None and bool(self._opt["loss_scaling"]) and self._clf.loss_scaler()["skipped"]

    def set_lr(self, lr):
        """Set the learning rate of the next steps (for schedules)."""
        if self._opt is None:
            raise LyricnnError("call configure_optimizer() first")
        lr = check_float(lr, "lr", min=0)
        self._clf.set_lr(lr)
        self._opt["lr"] = lr

    @property
    def lr(self):
        return None if self._opt is None else self._opt["lr"]

    @property
    def unpad(self):
        """Run the encoder on the real tokens only (default True; flatten pooling always pads).

        With a right-padded ``attention_mask`` the padded positions are dropped before the encoder and
        attention runs per sequence: logits, losses, gradients and dropout masks are those of the
        padded run (to float rounding), at the cost of the real tokens only. Set False to run every
        padded position as ``transformers`` does (e.g. to compare timings)."""
        return self._clf.unpad

    @unpad.setter
    def unpad(self, value):
        self._clf.unpad = bool(value)

    def _targets(self, labels, B, windows=None):
        K = self.num_labels
        a = np.asarray(labels)
        if windows is not None and windows != B and a.ndim >= 1 and a.shape[0] == windows:
            raise ValueError("labels has %d rows, one per window; give one label per song (%d songs in windows_of)"
                             % (windows, B))
        if self.problem_type == "single_label_classification":
            if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
                if np.issubdtype(a.dtype, np.floating) and a.size and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
                    a = a.astype(np.int64)
                else:
                    raise TypeError("labels must be integer class ids (batch,) for single_label_classification, "
                                    "got dtype %s" % a.dtype)
            if a.shape != (B,):
                raise ValueError("labels must have shape (%d,) (one class id per row), got %s" % (B, a.shape))
            a = np.ascontiguousarray(a, dtype=np.int64)
            bad = np.flatnonzero((a < 0) | (a >= K))
            if bad.size:
                raise IndexError("labels[%d] = %d is out of range for num_labels=%d; labels must be in 0..%d"
                                 % (bad[0], a[bad[0]], K, K - 1))
            return a, None
        return None, _f32_2d(a, "labels", B, K)

    def _weight(self, w, name, allowed):
        if w is None:
            return None
        if self.problem_type != allowed:
            raise ValueError("%s is only used with problem_type=%r; this model's is %r" % (name, allowed, self.problem_type))
        a = np.asarray(w)
        if a.dtype.kind not in "fiub":
            raise TypeError("%s must hold real numbers, got dtype %s" % (name, a.dtype))
        a = a.astype(np.float32).reshape(-1)
        if a.shape != (self.num_labels,):
            raise ValueError("%s must have %d entries (one per label), got shape %s" % (name, self.num_labels, np.shape(w)))
        if not (np.isfinite(a).all() and (a >= 0).all()):
            raise ValueError("%s must be finite and >= 0, got %s" % (name, a))
        return np.ascontiguousarray(a)

    def train_step(self, input_ids, attention_mask, labels, token_type_ids=None, features=None, class_weight=None,
                   pos_weight=None, windows_of=None):
        """One training step in C (GIL released): forward in train mode (dropout keyed by (seed, step),
        BatchNorm batch stats + running-stat update), loss, backward, global-norm clip, optimizer step.
        Returns the loss (float). labels: int (B,) for single_label_classification; float (B, num_labels)
        (or (B,) when num_labels == 1) for multi_label_classification / regression. windows_of (long_text=
        "windows"): the song of each row (see __call__); labels and features are then one row per song."""
        if self._opt is None:
            raise LyricnnError("call configure_optimizer() before train_step()")
        if self.merged:
            raise LyricnnError("the LoRA adapters are merged into the base weights: call unmerge() before training")
        ids, mask, types, feats, win, S = self._song_inputs(input_ids, attention_mask, token_type_ids, features, windows_of)
        lab, tgt = self._targets(labels, S, None if win is None else ids.shape[0])
        w = self._weight(class_weight, "class_weight", "single_label_classification")
        pw = self._weight(pos_weight, "pos_weight", "multi_label_classification")
        if w is None:
            w = pw
        if self._bn and S < 2:
            raise ValueError("BatchNorm in the head needs batches of at least 2 %s in training, got 1"
                             % ("rows" if win is None else "songs"))
        for op, nm in zip(self._bn_cumulative, self._bn):  # torch: num_batches_tracked += 1, factor 1/that
            self._clf.set_batchnorm_momentum(op, 1.0 / (self._num_batches[nm] + 1))
        loss, gnorm = self._clf.train_step(ids, mask, types, feats, lab, tgt, w, self.seed, self.step & 0xFFFFFFFF, win)
        self.step += 1
        for nm in self._bn:
            self._num_batches[nm] += 1
        self.last_grad_norm = None if gnorm < 0 else gnorm  # -1: no clipping; NaN / inf stay (skipped fp16 steps)
        return float(loss)

    def zero_grad(self):
        self.encoder.zero_grad()

    # ------------------------------------------------------------------ state
    def num_parameters(self, trainable_only=False):
        flags = self.encoder.tensor_flags()
        return int(sum(int(np.prod(s)) for n, s, _, _ in self.encoder._info
                       if not (trainable_only and flags[n] & _C.TENSOR_FROZEN)))

    def state_dict(self):
        """Parameters and buffers with HF names (copies)."""
        flat = self._pstore.read_all()
        out = {k: flat[o:o + int(np.prod(shape))].reshape(shape) for k, (o, shape) in self._pstore.layout.items()}
        for k, v in self.buffers.items():
            out[k] = v.copy()
        for nm, n in self._num_batches.items():
            out[nm + ".num_batches_tracked"] = np.array(n, np.int64)
        if self.lora_config:  # whether the adapters are merged into the base weights (see merge())
            out[MERGED_KEY] = np.array(int(self._merged), np.int8)
        return out

    def load_state_dict(self, state, strict=True):
        """Copy parameters / buffers from a dict {HF name: array}; strict: every key must match. A state of a
        model with merged LoRA adapters loads only into a model whose adapters are merged too (see merge())."""
        layout = self._pstore.layout
        known = set(layout) | set(self._bn_layout) | {nm + ".num_batches_tracked" for nm in self._bn}
        if self.lora_config:
            known.add(MERGED_KEY)
            self._lora_check_merged(state)
        unknown = [k for k in state if k not in known]
        missing = [k for k in layout if k not in state]
        if strict and (unknown or missing):
            raise CheckpointError("state dict does not match the model (missing: %s; unknown: %s)"
                                  % (", ".join(missing[:10]) or "-", ", ".join(unknown[:10]) or "-"))
        arrays = {}
        for k, v in state.items():  # every tensor checked before any is written
            if k in layout:
                a = np.asarray(v)
                if a.dtype.kind not in "fiub":
                    raise TypeError("state dict tensor %r has dtype %s; the model's tensors hold real numbers "
                                    "(float32): pass a float array" % (k, a.dtype))
                if a.shape != layout[k][1]:
                    raise CheckpointError("%s: shape %s, the model needs %s" % (k, a.shape, layout[k][1]))
                arrays[k] = a
        for k, v in state.items():
            if k in layout:
                self._pstore.write(k, arrays[k])
            elif k.endswith(".num_batches_tracked") and k[:-len(".num_batches_tracked")] in self._num_batches:
                self._num_batches[k[:-len(".num_batches_tracked")]] = int(np.asarray(v))
        self._pstore.done()
        self.load_buffers({k: v for k, v in state.items() if k in self._bn_layout})

    def optimizer_state(self):
        """The optimizer state (copies): m, v (compact, trainable tensors only), per-tensor step
        counters, the segments, hyper-parameters and the model step (the dropout counter)."""
        if self._opt is None:
            raise LyricnnError("no optimizer: call configure_optimizer() first")
        m, v, steps = self._clf.opt_state()
        o = self._opt
        out = {"m": m.copy(), "v": v.copy(), "steps": steps.copy(), "segments": o["segments"].copy(),
               "step": int(self.step), "name": o["name"], "lr": o["lr"], "betas": list(o["betas"]), "eps": o["eps"],
               "weight_decay": o["weight_decay"], "max_grad_norm": o["max_grad_norm"]}
        if o["loss_scaling"]:  # GradScaler.state_dict()'s: the scale and the growth tracker continue on resume
            st = self._clf.loss_scaler()
            out["loss_scaling"] = dict(o["loss_scaling"])
            out["loss_scale"] = float(st["scale"])
            out["loss_scale_growth_tracker"] = int(st["tracker"])
        return out

    def load_optimizer_state(self, state):
        """Restore optimizer_state() output (configures the optimizer with its hyper-parameters)."""
        try:
            self.configure_optimizer(state["name"], lr=state["lr"], betas=tuple(state["betas"]), eps=state["eps"],
                                     weight_decay=state["weight_decay"], max_grad_norm=state["max_grad_norm"],
                                     loss_scaling=state.get("loss_scaling", "auto"))
        except KeyError as e:
            raise ValueError("optimizer state lacks %s" % e) from None
        if not np.array_equal(np.asarray(state["segments"]), self._opt["segments"]):
            raise ValueError("the optimizer state was saved for another parameter layout (model, head or freezing differ)")
        m, v, steps = self._clf.opt_state()
        loaded = []
        for key, dst in (("m", m), ("v", v), ("steps", steps)):
            src = np.asarray(state[key])
            if src.shape != dst.shape:
                raise ValueError("optimizer state %r has shape %s but this model needs %s" % (key, src.shape, dst.shape))
            loaded.append(np.ascontiguousarray(src, dtype=dst.dtype))
        self._clf.load_opt_state(*loaded)
        self.step = int(state.get("step", self.step))
        ls = self._opt["loss_scaling"]
        if ls and "loss_scale" in state:
            scale = check_float(state["loss_scale"], "optimizer state loss_scale", min=0, min_inclusive=False)
            tracker = check_int(state.get("loss_scale_growth_tracker", 0), "optimizer state loss_scale_growth_tracker",
                                min=0, max=ls["growth_interval"] - 1)
            self._clf.set_loss_scaler(True, *_scaler_args(dict(ls, init_scale=scale), tracker))

    def hf_config(self):
        """config.json contents for save_pretrained."""
        cfg = dict(self.config)
        for k in ("lyricnn_head", "lyricnn_long_text"):
            cfg.pop(k, None)
        if self.long_text != "truncate" or self.long_text_settings:
            lt = dict(self.long_text_settings)
            lt.update(long_text=self.long_text, window_pooling=self.window_pooling)
            cfg["lyricnn_long_text"] = lt
        cfg["id2label"] = {str(i): str(self.id2label.get(i, "LABEL_%d" % i)) for i in range(self.num_labels)}
        cfg["label2id"] = {v: int(k) for k, v in cfg["id2label"].items()}
        cfg["problem_type"] = self.problem_type
        if self.head is None:
            cfg["architectures"] = [_ARCH[self.model_type]]
        else:
            cfg["architectures"] = [_BASE_ARCH[self.model_type]]
            h = dict(self.head)
            h["num_features"] = self.num_features
            h["num_labels"] = self.num_labels
            h["num_batches_tracked"] = dict(self._num_batches)
            cfg["lyricnn_head"] = h
        return cfg

    def save_pretrained(self, save_directory):
        """Write config.json and model.safetensors (HF names) into save_directory (atomic writes).
        transformers loads the directory (HF heads: AutoModelForSequenceClassification, same logits; a
        long_text="windows" model gives transformers its per-window logits: the pooling across windows, its
        settings and the attention scorer's weight are lyricnn's, under "lyricnn_long_text" in config.json).
        With LoRA adapters the weights written are the merged ones (as merge_and_unload().save_pretrained);
        save_adapter() writes the adapters."""
        from . import checkpoint
        d = os.fspath(save_directory)
        os.makedirs(d, exist_ok=True)
        tensors = {k: v for k, v in self._lora_merged_state().items() if not k.endswith(".num_batches_tracked")}
        checkpoint.save_safetensors(os.path.join(d, checkpoint.SAFE_WEIGHTS), tensors, metadata={"format": "pt"})
        tmp = os.path.join(d, ".config.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.hf_config(), f, indent=2, sort_keys=True)
        os.replace(tmp, os.path.join(d, "config.json"))

    def __repr__(self):
        lt = "" if self.long_text == "truncate" else ", long_text=%r%s" % (
            self.long_text, ", window_pooling=%r" % self.window_pooling if self.window_pooling else "")
        return "SequenceClassifier(%s, num_labels=%d, problem_type=%r, head=%s%s, params=%d%s%s)" % (
            self.model_type, self.num_labels, self.problem_type, "hf" if self.head is None else self.head["pooling"],
            lt, self.num_parameters(), ", frozen encoder" if self.freeze_encoder else "", self._lora_repr())
