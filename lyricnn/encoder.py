"""DistilBERT / BERT encoders on the C engine (forward and backward, matching transformers).

    enc = lyricnn.Encoder.from_pretrained("path/to/distilbert-base-uncased")
    out = enc(input_ids, attention_mask)                  # out.last_hidden_state (B, T, H)
    out = enc(input_ids, attention_mask, train=True)      # dropout on, activations kept
    enc.backward(d_last_hidden_state)                     # gradients accumulate in enc.grads
"""
import math

import numpy as np

from ._device import TensorStore, resolve_device
from ._loader import _C

__all__ = ["Encoder", "EncoderOutput"]

# HF activation names -> the engine's (csrc/core/backend.h)
_ACTIVATIONS = {"gelu": _C.ACT_GELU, "relu": _C.ACT_RELU, "gelu_new": _C.ACT_GELU_TANH,
                "gelu_pytorch_tanh": _C.ACT_GELU_TANH, "gelu_fast": _C.ACT_GELU_TANH}
_PREFIXES = {"distilbert": "distilbert.", "bert": "bert."}
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")  # HF buffers, not parameters
NO_DECAY = _C.TENSOR_NO_DECAY
FROZEN = _C.TENSOR_FROZEN


class EncoderOutput:
    """Result of an encoder call: last_hidden_state (B, T, H) float32, pooler_output (B, H) for
    BERT with a pooler (else None), hidden_states (tuple of L+1 arrays (B, T, H)) when requested (else None)."""

    __slots__ = ("last_hidden_state", "pooler_output", "hidden_states")

    def __init__(self, last_hidden_state, pooler_output=None, hidden_states=None):
        self.last_hidden_state = last_hidden_state
        self.pooler_output = pooler_output
        self.hidden_states = hidden_states

    def __repr__(self):
        return "EncoderOutput(last_hidden_state=%s, pooler_output=%s, hidden_states=%s)" % (
            self.last_hidden_state.shape, None if self.pooler_output is None else self.pooler_output.shape,
            None if self.hidden_states is None else len(self.hidden_states))


def parse_config(config):
    """Normalise an HF config.json dict (distilbert or bert) into the engine's settings.

    Every size is checked for type (an int; not a bool or float) and range, and pad_token_id must be None
    or in [0, vocab_size); errors name the config.json key (TypeError / ValueError)."""
    from ._validate import check_float, check_int

    # the ranges the engine accepts (csrc/model.c check_config; lnn_params_add: dims <= 2^31, <= 2^36 elements)
    int_ranges = {"vocab_size": (1, 2**31 - 1), "max_position_embeddings": (1, 2**20),
                  "type_vocab_size": (1, 2**31 - 1), "hidden_size": (1, 2**16), "num_layers": (0, 1024),
                  "num_heads": (1, 2**16), "intermediate_size": (1, 2**18)}
    max_tensor = 2**36
    if not isinstance(config, dict):
        raise TypeError("config must be a dict (the contents of config.json), got %s" % type(config).__name__)
    mt = config.get("model_type")
    g = config.get
    if mt == "distilbert":
        act = g("activation", "gelu")
        keys = dict(vocab_size="vocab_size", max_position_embeddings="max_position_embeddings", hidden_size="dim",
                    num_layers="n_layers", num_heads="n_heads", intermediate_size="hidden_dim",
                    pad_token_id="pad_token_id", hidden_dropout="dropout", attention_dropout="attention_dropout")
        s = dict(model_type=0, vocab_size=g("vocab_size", 30522), max_position_embeddings=g("max_position_embeddings", 512),
                 type_vocab_size=0, hidden_size=g("dim", 768), num_layers=g("n_layers", 6), num_heads=g("n_heads", 12),
                 intermediate_size=g("hidden_dim", 3072), pad_token_id=g("pad_token_id", 0), layer_norm_eps=1e-12,
                 hidden_dropout=g("dropout", 0.1), attention_dropout=g("attention_dropout", 0.1))
    elif mt == "bert":
        act = g("hidden_act", "gelu")
        pet = g("position_embedding_type", "absolute")
        if pet not in (None, "absolute"):
            raise ValueError("position_embedding_type=%r is not supported; only 'absolute' (BERT's default)" % pet)
        keys = dict(vocab_size="vocab_size", max_position_embeddings="max_position_embeddings",
                    type_vocab_size="type_vocab_size", hidden_size="hidden_size", num_layers="num_hidden_layers",
                    num_heads="num_attention_heads", intermediate_size="intermediate_size",
                    pad_token_id="pad_token_id", layer_norm_eps="layer_norm_eps",
                    hidden_dropout="hidden_dropout_prob", attention_dropout="attention_probs_dropout_prob")
        s = dict(model_type=1, vocab_size=g("vocab_size", 30522), max_position_embeddings=g("max_position_embeddings", 512),
                 type_vocab_size=g("type_vocab_size", 2), hidden_size=g("hidden_size", 768),
                 num_layers=g("num_hidden_layers", 12), num_heads=g("num_attention_heads", 12),
                 intermediate_size=g("intermediate_size", 3072), pad_token_id=g("pad_token_id", 0),
                 layer_norm_eps=g("layer_norm_eps", 1e-12), hidden_dropout=g("hidden_dropout_prob", 0.1),
                 attention_dropout=g("attention_probs_dropout_prob", 0.1))
    else:
        raise ValueError("model_type must be 'distilbert' or 'bert', got %r" % (mt,))
    if not isinstance(act, str) or act not in _ACTIVATIONS:
        raise ValueError("activation %r is not supported; use one of %s" % (act, sorted(_ACTIVATIONS)))
    s["activation"] = _ACTIVATIONS[act]
    for k, (lo, hi) in int_ranges.items():
        if k in keys:  # (DistilBERT has no token types)
            what = "config.json key %r" % keys[k] + ("" if keys[k] == k else " (%s)" % k.replace("_", " "))
            try:
                s[k] = check_int(s[k], what, min=lo, max=hi)
            except (TypeError, ValueError) as e:
                raise type(e)("%s; fix that value in config.json" % e) from None
    for k in ("vocab_size", "max_position_embeddings", "type_vocab_size"):
        if s[k] * s["hidden_size"] > max_tensor:
            raise ValueError("config.json: %s=%d x hidden size %d is more than the engine's %d elements per tensor; "
                             "use a smaller %s" % (keys[k], s[k], s["hidden_size"], max_tensor, keys[k]))
    pad = s["pad_token_id"]
    if pad is None:
        s["pad_token_id"] = -1
    else:
        if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)):
            raise TypeError("config.json key 'pad_token_id' must be an int in [0, vocab_size) or null, got %r (%s); "
                            "fix that value in config.json" % (pad, type(pad).__name__))
        pad = int(pad)
        if pad < 0:
            raise ValueError("config.json key 'pad_token_id' is %d; it must be in [0, vocab_size) or null (no padding "
                             "row), negative ids are not supported: fix that value in config.json" % pad)
        if pad >= s["vocab_size"]:
            raise ValueError("config.json key 'pad_token_id' is %d but vocab_size is %d; pad_token_id must be in "
                             "[0, vocab_size) (or null): fix the config so the padding token is in the vocabulary"
                             % (pad, s["vocab_size"]))
        s["pad_token_id"] = pad
    try:
        for k in ("hidden_dropout", "attention_dropout"):
            v = 0.0 if s[k] is None else s[k]
            s[k] = check_float(v, "config.json key %r (dropout probability)" % keys[k], min=0, max=1)
        eps = s["layer_norm_eps"]
        s["layer_norm_eps"] = check_float(1e-12 if eps is None else eps, "config.json key 'layer_norm_eps'", min=0,
                                          min_inclusive=False)
    except (TypeError, ValueError) as e:
        raise type(e)("%s; fix that value in config.json" % e) from None
    return s


def _sinusoidal(n_pos, dim):
    pos = np.arange(n_pos, dtype=np.float64)[:, None]
    j = np.arange(dim)
    enc = pos / np.power(10000, 2 * (j // 2) / dim)
    out = np.empty((n_pos, dim), np.float32)
    out[:, 0::2] = np.sin(enc[:, 0::2])
    out[:, 1::2] = np.cos(enc[:, 1::2])
    return out


def _as_ids(x, name, shape=None):
    from ._validate import as_array

    a = as_array(x, name)
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise TypeError("%s must hold integers (int32 or int64), got dtype %s" % (name, a.dtype))
    if a.ndim != 2:
        raise ValueError("%s must be 2-D (batch, seq), got shape %s; for one sequence pass %s[None]"
                         % (name, a.shape, name))
    if shape is not None and a.shape != shape:
        raise ValueError("%s has shape %s but input_ids has shape %s" % (name, a.shape, shape))
    if a.dtype != np.int32:
        if a.size and (a.min() < -2**31 or a.max() >= 2**31):
            bad = np.argwhere((a < -2**31) | (a >= 2**31))[0]
            raise IndexError("%s[%d, %d] = %d is out of range" % (name, bad[0], bad[1], a[tuple(bad)]))
        a = a.astype(np.int32)
    return np.ascontiguousarray(a)


def _check_inputs(input_ids, attention_mask, token_type_ids, model_type):
    """(ids, mask, types) as the engine takes them: int32 C arrays (mask 0/1, None where not given)."""
    ids = _as_ids(input_ids, "input_ids")
    mask = None
    if attention_mask is not None:
        from ._validate import as_array

        m = as_array(attention_mask, "attention_mask")
        if m.shape != ids.shape:
            raise ValueError("attention_mask has shape %s but input_ids has shape %s" % (m.shape, ids.shape))
        if m.dtype.kind not in "fiub":
            raise TypeError("attention_mask must hold real numbers or bools, got dtype %s" % m.dtype)
        mask = np.ascontiguousarray(m != 0, dtype=np.int32)
    types = None
    if token_type_ids is not None:
        if model_type != "bert":
            raise ValueError("token_type_ids are only used by BERT; this is a %s model" % model_type)
        types = _as_ids(token_type_ids, "token_type_ids", ids.shape)
    return ids, mask, types


class Encoder:
    """A DistilBERT or BERT encoder (the HF DistilBertModel / BertModel) on the C engine.

    Parameters and gradients live in one contiguous buffer each; `params` / `grads` map HF names
    (without the `distilbert.` / `bert.` prefix) to zero-copy numpy views on the CPU, and to copies
    on device backends (write parameters there with load_tensors). device: see lyricnn._device."""

    def __init__(self, config, add_pooling_layer=True, extra_tensors=(), device="cpu", precision=None, lora=None):
        """lora: (r, scale, dropout, site masks per layer, pooler) registers LoRA adapters after the encoder's
        tensors (lyricnn.lora; SequenceClassifier(lora=...) builds it)."""
        backend, dtype, index, tf32 = resolve_device(device, precision)
        self.config = dict(config)
        self.device = device
        self.precision = precision
        self._settings = parse_config(self.config)
        self._settings["pooler"] = bool(add_pooling_layer) and self._settings["model_type"] == 1
        self._engine = _C.Engine(extra_tensors=list(extra_tensors), backend=backend, dtype=dtype, device=index, tf32=tf32,
                                 lora=lora, **self._settings)
        self._info = self._engine.tensors()
        layout = {name: (off, tuple(shape)) for name, shape, off, _ in self._info}
        self._pstore = TensorStore(self._engine, "params", layout)
        self._gstore = TensorStore(self._engine, "grads", layout)
        self.params = self._pstore.view()
        self.grads = self._gstore.view()
        self.heads = {}          # head tensors found in a checkpoint (pre_classifier, classifier, ...)
        self.dropout_seed = 0    # dropout masks are keyed by (dropout_seed, step)
        self.step = 0            # training forwards so far (the dropout step counter)
        self._trained_forward = False

    # ------------------------------------------------------------------ construction
    @property
    def model_type(self):
        return self.config["model_type"]

    def expected_tensors(self):
        """{HF name (prefix-free): shape} of the encoder's parameters."""
        return {name: tuple(shape) for name, shape, _, _ in self._info}

    def num_parameters(self):
        return int(sum(int(np.prod(s)) for _, s, _, _ in self._info))

    @classmethod
    def from_config(cls, config, seed=0, add_pooling_layer=True, device="cpu", precision=None):
        """A randomly initialised encoder, as HF initialises one: normal(0, initializer_range) weights
        and embeddings (the padding row zero), zero biases, LayerNorm weight 1 / bias 0."""
        enc = cls(config, add_pooling_layer=add_pooling_layer, device=device, precision=precision)
        enc.init_weights(seed)
        return enc

    def init_weights(self, seed=0, names=None):
        """HF's init for the named tensors (default: all): normal(0, initializer_range) weights and
        embeddings (the padding row zero), zero biases, LayerNorm weight 1 / bias 0."""
        rng = np.random.default_rng(seed)
        std = float(self.config.get("initializer_range", 0.02))
        pad = self._settings["pad_token_id"]
        store = self._pstore
        for name in (store.layout if names is None else names):
            shape = store.layout[name][1]
            leaf = name.rsplit(".", 1)[-1]
            if "LayerNorm" in name or "layer_norm" in name:
                value = np.full(shape, 1.0 if leaf == "weight" else 0.0, np.float32)
            elif leaf == "bias":
                value = np.zeros(shape, np.float32)
            else:
                value = rng.normal(0.0, std, size=shape).astype(np.float32)
            if name == "embeddings.word_embeddings.weight" and 0 <= pad < shape[0]:
                value[pad] = 0.0
            if (name == "embeddings.position_embeddings.weight" and self.config.get("model_type") == "distilbert"
                    and self.config.get("sinusoidal_pos_embds")):
                value = _sinusoidal(*shape)
            store.write(name, value)
        store.done()

    def load_tensors(self, tensors):
        """Copy {name: array} into the parameters; every encoder tensor must be present with its shape."""
        from ._C import CheckpointError
        expected = self.expected_tensors()
        missing = [n for n in expected if n not in tensors]
        unknown = [n for n in tensors if n not in expected]
        bad = ["%s: expected %s, found %s" % (n, expected[n], tuple(np.shape(tensors[n])))
               for n in expected if n in tensors and tuple(np.shape(tensors[n])) != expected[n]]
        if missing or unknown or bad:
            parts = []
            if missing:
                parts.append("missing: " + ", ".join(missing))
            if unknown:
                parts.append("unknown: " + ", ".join(unknown))
            if bad:
                parts.append("misshapen: " + "; ".join(bad))
            raise CheckpointError("the tensors do not match this %s encoder (%s)" % (self.model_type, " | ".join(parts)))
        for n in expected:
            self._pstore.write(n, tensors[n])
        self._pstore.done()
        return self

    @classmethod
    def from_state_dict(cls, config, state, device="cpu", precision=None):
        """An encoder from a state dict {name: array} (names with or without the model prefix; HF buffers
        and head tensors are ignored here and kept in `enc.heads`). A BERT state without pooler
        weights gives an encoder without the pooler (as BertModel(add_pooling_layer=False))."""
        prefix = _PREFIXES.get(config.get("model_type"), "")
        has_pooler = any(k in state for k in ("pooler.dense.weight", prefix + "pooler.dense.weight"))
        enc = cls(config, add_pooling_layer=has_pooler, device=device, precision=precision)
        tensors, heads = {}, {}
        for k, v in state.items():
            name = k[len(prefix):] if k.startswith(prefix) else k
            if name in _BUFFERS:
                continue
            if name.startswith(("pre_classifier.", "classifier.", "cls.", "vocab_")):
                heads[name] = np.asarray(v, dtype=np.float32)
                continue
            tensors[name] = v
        enc.load_tensors(tensors)
        enc.heads = heads
        return enc

    @classmethod
    def from_pretrained(cls, path, device="cpu", precision=None):
        """Load an HF model directory (config.json + model.safetensors / pytorch_model.bin)."""
        resolve_device(device, precision)
        from . import checkpoint
        config = checkpoint.read_config(path)
        state = checkpoint.load_state_dict(path)
        has_pooler = any(k.endswith("pooler.dense.weight") for k in state)
        enc = cls(config, add_pooling_layer=has_pooler, device=device, precision=precision)
        matched, heads = checkpoint.match_state_dict(enc.expected_tensors(), state, config.get("model_type"))
        enc.load_tensors(matched)
        enc.heads = dict(heads)
        return enc

    # ------------------------------------------------------------------ compute
    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, train=False, seed=None, step=None,
                 output_hidden_states=False):
        """Forward pass. train=True applies dropout (masks keyed by (seed, step); defaults: the
        encoder's dropout_seed and step counter, which then advances) and keeps what backward needs."""
        from ._validate import check_int, check_seed
        ids, mask, types = _check_inputs(input_ids, attention_mask, token_type_ids, self.model_type)
        seed = check_seed(self.dropout_seed if seed is None else seed, "seed")
        step = check_int(self.step if step is None else step, "step", min=0, max=2**32 - 1)
        self._trained_forward = False
        last, pooled, hidden = self._engine.forward(ids, mask, types, bool(train), seed, step, bool(output_hidden_states))
        if train:
            self._trained_forward = True
            self.step = int(step) + 1
        return EncoderOutput(last, pooled, tuple(hidden) if hidden is not None else None)

    forward = __call__

    def backward(self, d_last_hidden_state, d_pooler_output=None):
        """Backpropagate upstream gradients of the last training forward; gradients accumulate (+=)."""
        if not self._trained_forward:
            from ._C import LyricnnError
            raise LyricnnError("backward() needs a training forward first: call the encoder with train=True")
        dl = None if d_last_hidden_state is None else np.ascontiguousarray(d_last_hidden_state, dtype=np.float32)
        dp = None if d_pooler_output is None else np.ascontiguousarray(d_pooler_output, dtype=np.float32)
        self._engine.backward(dl, dp)

    def zero_grad(self):
        self._engine.zero_grad()

    def freeze(self, frozen=True, names=None):
        """Freeze (no gradient work) all tensors, or those in `names`; freeze(False) unfreezes."""
        if names is not None:
            names = set(names)
            unknown = names - set(self.params)
            if unknown:
                raise KeyError("no tensor named %s" % ", ".join(sorted(unknown)))
        for name, _, _, flags in self._info:
            if names is None or name in names:
                new = (flags | FROZEN) if frozen else (flags & ~FROZEN)
                self._engine.set_flags(name, new)
        self._info = self._engine.tensors()

    def tensor_flags(self):
        """{name: flags} (NO_DECAY = 1, FROZEN = 2)."""
        return {name: flags for name, _, _, flags in self._info}

    def __repr__(self):
        s = self._settings
        return "Encoder(%s, layers=%d, hidden=%d, heads=%d, params=%d%s)" % (
            self.model_type, s["num_layers"], s["hidden_size"], s["num_heads"], self.num_parameters(),
            "" if self.device == "cpu" else ", device=%r" % self.device)
