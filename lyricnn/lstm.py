"""The LSTM baseline on the C engine: a word vocabulary, nn.Embedding + nn.LSTM (packed sequences) + nn.Linear.

    vocab = lyricnn.WordVocab.build(train_texts, min_freq=2)          # <pad> = 0, <unk> = 1, then by frequency
    ids, lengths = vocab.encode_batch(texts, max_length=400)           # padded to the longest, and the lengths
    net = lyricnn.LSTMNet(len(vocab), embedding_dim=500, hidden_size=128, num_layers=2, num_labels=3)
    net.configure_optimizer("adam", lr=1e-3, max_grad_norm=5.0)
    loss = net.train_step(ids, lengths, labels)                        # forward, loss, BPTT, clip, Adam: in C
    net(ids, lengths).logits; net.params["lstm.weight_ih_l0"]; net.grads["fc.bias"]
    net.save_pretrained("out/")                                        # config.json + model.safetensors

    clf = lyricnn.LSTMClassifier(epochs=10).fit(df["lyrics"], df["artist"], eval_set=(val_x, val_y))

The network is torch's `nn.Embedding(V, E, padding_idx=0)` -> `nn.LSTM(E, H, num_layers, bidirectional,
dropout, batch_first=True)` run on `pack_padded_sequence(..., enforce_sorted=False)` -> the final hidden state
h_n of the last layer ([forward | reverse] when bidirectional) -> optional dropout -> `nn.Linear` to the
logits. Padding never enters the recurrence. The tensors carry torch's state-dict names (`embedding.weight`,
`lstm.weight_ih_l0`, ..., `lstm.bias_hh_l1_reverse`, `fc.weight`, `fc.bias`), so a torch module with
attributes `embedding`, `lstm` and `fc` loads `net.state_dict()` as it is, and `net.load_state_dict()` takes
its state_dict. The forward, the loss, the backward through time, the clipping and the optimizer run in C
(csrc/models/lstm.c, over the same backend op table as the encoder; the head and optimizer are the encoder's
classifier).

A text with no word (empty, or only punctuation) has length 0: its LSTM state is the zero state, so its
logits are fc's bias (a defined result, as for a zero-length row in `net(ids, lengths)`).
"""
import collections
import hashlib
import json
import math
import os
import re

import numpy as np

from ._C import CheckpointError
from ._device import TensorStore, resolve_device
from ._loader import _C
from ._validate import as_array, check_bool, check_float, check_int, check_seed
from .classifier import PROBLEM_TYPES, SequenceClassifier, SequenceClassifierOutput
from .encoder import _as_ids
from . import long_text as _long
from .estimators import TextClassifier, TextRegressor, _as_texts

__all__ = ["WordVocab", "LSTMNet", "LSTMClassifier", "LSTMRegressor", "WORD_PATTERN"]

#: The word split: runs of Unicode letters and digits, with apostrophes inside a word kept ("don't", "i'm",
#: "rock'n'roll"); everything else (spaces, punctuation, a leading or trailing apostrophe) separates words.
#: The pattern is code, not data: a saved vocabulary records its version (pattern_version), and a vocab.json
#: whose pattern is not one of WORD_PATTERNS is refused (a pattern from a file never runs).
WORD_PATTERN = r"[^\W_]+(?:['\u2019][^\W_]+)*"
WORD_PATTERN_VERSION = 1
WORD_PATTERNS = {1: WORD_PATTERN}  # version -> pattern; a new split gets a new version, the old ones stay
VOCAB_FILE = "vocab.json"
_CONFIG_TYPE = "lyricnn-lstm"


class WordVocab:
    """A word-level vocabulary: `<pad>` = 0, `<unk>` = 1, then the words.

    Texts are lower-cased (`lowercase=True`) and split with the regular expression WORD_PATTERN; a word not in
    the vocabulary is `<unk>`. Build one from training texts with `WordVocab.build(texts, min_freq, max_size)`:
    the words occurring at least min_freq times, the most frequent first (ties in alphabetical order), at most
    max_size of them (not counting `<pad>` and `<unk>`)."""

    PAD, UNK = "<pad>", "<unk>"
    pad_token_id, unk_token_id = 0, 1

    def __init__(self, words=(), lowercase=True, pattern=WORD_PATTERN, min_freq=1, max_size=None):
        words = list(words)
        for i, w in enumerate(words):
            if not isinstance(w, str) or not w:
                raise TypeError("words[%d] is %r; the vocabulary's words must be non-empty str" % (i, w))
        if len(set(words)) != len(words) or self.PAD in words or self.UNK in words:
            raise ValueError("the vocabulary's words must be distinct and must not include %s or %s (they come first "
                             "by themselves)" % (self.PAD, self.UNK))
        self.lowercase = check_bool(lowercase, "lowercase")
        self.pattern_version = _pattern_version(pattern)
        self.pattern = WORD_PATTERNS[self.pattern_version]
        self._re = re.compile(self.pattern)
        self.min_freq, self.max_size = min_freq, max_size
        self.itos = [self.PAD, self.UNK] + words
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, texts, min_freq=1, max_size=None, lowercase=True, pattern=WORD_PATTERN):
        """The vocabulary of texts (a list, numpy array or pandas Series of str)."""
        min_freq = check_int(min_freq, "min_freq", min=1)
        max_size = check_int(max_size, "max_size (None: no limit)", min=0, allow_none=True)
        v = cls((), lowercase=lowercase, pattern=pattern, min_freq=min_freq, max_size=max_size)
        counts = collections.Counter()
        for t in _as_texts(texts, "texts"):
            counts.update(v.tokenize(t))
        words = sorted((w for w, n in counts.items() if n >= min_freq), key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[:max_size]
        return cls(words, lowercase=lowercase, pattern=pattern, min_freq=min_freq, max_size=max_size)

    def __len__(self):
        return len(self.itos)

    @property
    def vocab_size(self):
        return len(self.itos)

    @property
    def num_words(self):
        """Words besides `<pad>` and `<unk>`."""
        return len(self.itos) - 2

    def tokenize(self, text):
        """The words of a text (after lowercasing)."""
        if not isinstance(text, str):
            raise TypeError("text must be a str, got %r (%s)" % (text, type(text).__name__))
        return self._re.findall(text.lower() if self.lowercase else text)

    def encode(self, text, max_length=None):
        """The ids of a text's words (int64), the first max_length of them when max_length is set."""
        ml = check_int(max_length, "max_length (None: no truncation)", min=1, allow_none=True)
        words = self.tokenize(text)
        if ml is not None:
            words = words[:ml]
        get = self.stoi.get
        return np.fromiter((get(w, 1) for w in words), dtype=np.int64, count=len(words))

    def __call__(self, texts, max_length=None):
        """One id array per text (unpadded)."""
        return [self.encode(t, max_length) for t in _as_texts(texts, "texts")]

    def encode_batch(self, texts, max_length=None):
        """(ids (B, T) int64 padded with <pad> to the longest text, lengths (B,) int64)."""
        rows = self(texts, max_length)
        lengths = np.array([len(r) for r in rows], np.int64)
        ids = np.zeros((len(rows), max(int(lengths.max()) if len(rows) else 0, 1)), np.int64)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = r
        return ids, lengths

    def decode(self, ids):
        return " ".join(self.itos[int(i)] for i in ids if 0 <= int(i) < len(self.itos) and int(i) != 0)

    def to_dict(self):
        return {"format": "lyricnn-word-vocab-v1", "lowercase": self.lowercase, "pattern": self.pattern,
                "pattern_version": self.pattern_version, "min_freq": self.min_freq, "max_size": self.max_size,
                "words": self.itos[2:]}

    def digest(self):
        """sha256 (hex) of what maps a text to ids: the words in order, lowercase and the pattern version. The
        LSTM estimators record it in the model's config.json (vocab_sha256) and compare it on load."""
        canon = json.dumps({"words": self.itos, "lowercase": self.lowercase, "pattern_version": self.pattern_version},
                           ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()

    def save_pretrained(self, directory):
        """Write vocab.json into directory."""
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, VOCAB_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False)
        os.replace(tmp, path)
        return path

    @classmethod
    def from_pretrained(cls, path):
        """Read vocab.json (or a directory holding it)."""
        p = os.path.join(path, VOCAB_FILE) if os.path.isdir(path) else os.fspath(path)
        try:
            with open(p, "rb") as f:
                d = json.loads(f.read().decode("utf-8"))
        except OSError as e:
            raise CheckpointError("cannot read the vocabulary %s: %s" % (p, e)) from None
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise CheckpointError("%s is not a vocabulary written by WordVocab.save_pretrained (%s)" % (p, e)) from None
        if not isinstance(d, dict) or d.get("format") != "lyricnn-word-vocab-v1" or not isinstance(d.get("words"), list):
            raise CheckpointError("%s is not a vocabulary written by WordVocab.save_pretrained" % p)
        version = _file_pattern_version(d, p)
        try:
            return cls(d["words"], lowercase=d.get("lowercase", True), pattern=version,
                       min_freq=d.get("min_freq", 1), max_size=d.get("max_size"))
        except (TypeError, ValueError) as e:
            raise CheckpointError("%s: %s" % (p, e)) from None

    def __repr__(self):
        return "WordVocab(%d words + <pad>, <unk>; min_freq=%s, max_size=%s, lowercase=%s)" % (
            self.num_words, self.min_freq, self.max_size, self.lowercase)


def _pattern_version(pattern):
    """The version of a word pattern given in code: a version number or the text of one of WORD_PATTERNS."""
    for v, text in WORD_PATTERNS.items():
        if (pattern == v and not isinstance(pattern, bool)) or pattern == text:
            return v
    raise ValueError("pattern=%r is not a word pattern lyricnn knows; the word split is part of lyricnn's code "
                     "(lyricnn.lstm.WORD_PATTERN, version %d), not a setting: to split words differently, subclass "
                     "WordVocab and override tokenize()" % (pattern, WORD_PATTERN_VERSION))


def _file_pattern_version(d, path):
    """The pattern version a vocab.json records (field pattern_version, or the pattern text of files written
    before it); CheckpointError naming the file and the field for anything else: a pattern from a file never
    runs (a backtracking pattern such as (a+)+$ would hang predict)."""
    known = ", ".join("%d: %r" % kv for kv in WORD_PATTERNS.items())
    why = ("the word split is part of lyricnn's code (lyricnn.lstm.WORD_PATTERN), not data; lyricnn knows %s. "
           "Use the vocab.json saved with the model, or build the vocabulary again" % known)
    version = d.get("pattern_version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version not in WORD_PATTERNS):
        raise CheckpointError("%s: field 'pattern_version' is %r, not a word-pattern version lyricnn knows; %s"
                              % (path, version, why))
    if "pattern" in d:
        text = d["pattern"]
        if not isinstance(text, str) or not text:
            raise CheckpointError("%s: field 'pattern' is %s; %s" % (path, "empty" if text == "" else "%r, not a "
                                                                      "string" % (text,), why))
        match = [v for v, t in WORD_PATTERNS.items() if t == text]
        if not match or (version is not None and version not in match):
            raise CheckpointError("%s: field 'pattern' (%r) is not the word pattern %s; %s"
                                  % (path, text[:80], "of version %d" % version if version is not None else
                                     "of any version lyricnn knows", why))
        version = match[0] if version is None else version
    return WORD_PATTERN_VERSION if version is None else version


class _Body:
    """The LSTM engine's tensors in the role SequenceClassifier's methods give `encoder` (flags, layout)."""

    def __init__(self, engine):
        self._engine = engine
        self._info = engine.tensors()

    def tensor_flags(self):
        return {name: flags for name, _, _, flags in self._info}

    def zero_grad(self):
        self._engine.zero_grad()


class LSTMNet(SequenceClassifier):
    """Embedding + stacked LSTM + Linear, trained in C (see the module docstring for the torch equivalent).

    vocab_size: rows of the embedding (id 0 is <pad>: its row stays zero and gets no gradient);
    embedding_dim, hidden_size, num_layers, bidirectional: nn.Embedding / nn.LSTM's; dropout: between LSTM
    layers (nn.LSTM's dropout, training only); fc_dropout: on the final state before fc; num_labels: logits;
    problem_type: as SequenceClassifier (default: single-label classification, regression for one label);
    seed: the init (torch's schemes: embedding N(0, 1), LSTM and fc U(+-1/sqrt(fan))) and the dropout masks.

    net(ids, lengths).logits; train_step(ids, lengths, labels) -> loss; `lengths` is (B,) ints in [0, T] or a
    (B, T) right-padded 0/1 attention mask. `params` / `grads` map torch names to numpy views (copies on a
    device backend). configure_optimizer, set_lr, state_dict, load_state_dict, optimizer_state and
    load_optimizer_state are SequenceClassifier's."""

    def __init__(self, vocab_size, embedding_dim=500, hidden_size=128, num_layers=2, num_labels=3,
                 bidirectional=False, dropout=0.0, seed=0, fc_dropout=0.0, problem_type=None, padding_idx=0,
                 device="cpu", precision=None):
        backend, dtype, index, tf32 = resolve_device(device, precision)
        vocab_size = check_int(vocab_size, "vocab_size (the vocabulary holds at least <pad>)", min=1, max=2**31 - 1)
        embedding_dim = check_int(embedding_dim, "embedding_dim", min=1, max=2**16)
        hidden_size = check_int(hidden_size, "hidden_size", min=1, max=2**16)
        num_layers = check_int(num_layers, "num_layers", min=1, max=64)
        num_labels = check_int(num_labels, "num_labels", min=1)
        bidirectional = check_bool(bidirectional, "bidirectional")
        dropout = check_float(dropout, "dropout", min=0, max=1, max_inclusive=False)
        fc_dropout = check_float(fc_dropout, "fc_dropout", min=0, max=1, max_inclusive=False)
        padding_idx = check_int(padding_idx, "padding_idx (None: no padding row)", min=0, max=vocab_size - 1,
                                allow_none=True)
        if vocab_size * embedding_dim > 2**36:
            raise ValueError("vocab_size x embedding_dim = %d is more than the engine's 2^36 elements per tensor; "
                             "limit the vocabulary (max_size)" % (vocab_size * embedding_dim))
        if problem_type is None:
            problem_type = "regression" if num_labels == 1 else "single_label_classification"
        if problem_type not in PROBLEM_TYPES:
            raise ValueError("problem_type must be one of %s, got %r" % (", ".join(PROBLEM_TYPES), problem_type))
        if problem_type == "single_label_classification" and num_labels < 2:
            raise ValueError("single_label_classification needs num_labels >= 2 (use problem_type="
                             "'multi_label_classification' for one binary logit, or 'regression')")
        self.config = dict(model_type=_CONFIG_TYPE, vocab_size=vocab_size, embedding_dim=embedding_dim,
                           hidden_size=hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                           dropout=dropout, fc_dropout=fc_dropout, padding_idx=padding_idx)
        self.model_type = _CONFIG_TYPE
        self.vocab_sha256 = None  # WordVocab.digest() of the vocabulary it was trained with (the estimators)
        self.num_labels, self.num_features, self.problem_type = num_labels, 0, problem_type
        self.head, self.seed, self.step = None, check_seed(seed), 0
        self.device, self.precision = device, precision
        width = (2 if bidirectional else 1) * hidden_size
        tensors = [("fc.weight", (num_labels, width), 0), ("fc.bias", (num_labels,), _C.TENSOR_NO_DECAY)]
        engine = _C.LSTM(vocab_size, embedding_dim, hidden_size, num_layers, bidirectional, dropout,
                         -1 if padding_idx is None else padding_idx, extra_tensors=tensors, backend=backend,
                         dtype=dtype, device=index, tf32=tf32)
        ops = ([dict(kind="dropout", p=fc_dropout, **{"in": width, "out": width})] if fc_dropout > 0 else []) + \
            [dict(kind="linear", weight="fc.weight", bias="fc.bias", **{"in": width, "out": num_labels})]
        self.encoder = _Body(engine)  # the role SequenceClassifier's methods read (flags, layout, zero_grad)
        self._clf = _C.Classifier(engine, "pooler", 0, ops, num_labels, 0, problem_type)
        self._head_names = [t[0] for t in tensors]
        self._names = [name for name, _, _, _ in self.encoder._info]
        layout = {name: (off, tuple(shape)) for name, shape, off, _ in self.encoder._info}
        self._pstore = TensorStore(engine, "params", layout)
        self.params = self._pstore.view()
        self.grads = TensorStore(engine, "grads", layout).view()
        self._enc_names = [n for n in self.encoder._info if n[0] not in self._head_names]
        self._bn, self._bn_layout, self._bn_views, self._num_batches, self._bn_cumulative = [], {}, None, {}, []
        self.id2label = {i: "LABEL_%d" % i for i in range(num_labels)}
        self._opt = None
        self.freeze_encoder = False
        self.init_weights(self.seed)

    # ------------------------------------------------------------------ construction
    @property
    def vocab_size(self):
        return self.config["vocab_size"]

    def init_weights(self, seed=0):
        """torch's default init, seeded: embedding N(0, 1) with the padding row 0; LSTM weights and biases
        U(-1/sqrt(H), 1/sqrt(H)); fc U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        rng = np.random.default_rng([check_seed(seed), 7])
        store, c = self._pstore, self.config
        for name, (off, shape) in store.layout.items():
            if name == "embedding.weight":
                value = rng.standard_normal(shape, dtype=np.float32)
                if c["padding_idx"] is not None:
                    value[c["padding_idx"]] = 0.0
            else:
                fan = c["hidden_size"] if name.startswith("lstm.") else store.layout["fc.weight"][1][1]
                bound = 1.0 / math.sqrt(fan)
                value = rng.uniform(-bound, bound, size=shape).astype(np.float32)
            store.write(name, value)
        store.done()

    @classmethod
    def from_pretrained(cls, path, device="cpu", precision=None, **overrides):
        """An LSTMNet saved with save_pretrained (config.json + model.safetensors)."""
        from . import checkpoint
        config = checkpoint.read_config(path)
        if config.get("model_type") != _CONFIG_TYPE:
            raise CheckpointError("%s: model_type is %r, not %r (a model saved by LSTMNet.save_pretrained)"
                                  % (path, config.get("model_type"), _CONFIG_TYPE))
        keys = ("vocab_size", "embedding_dim", "hidden_size", "num_layers", "bidirectional", "dropout", "fc_dropout",
                "padding_idx", "num_labels", "problem_type")
        try:
            kw = {k: config[k] for k in keys}
        except KeyError as e:
            raise CheckpointError("%s: config.json lacks %s" % (path, e)) from None
        kw.update(overrides)
        try:
            net = cls(device=device, precision=precision, **kw)
        except (TypeError, ValueError) as e:
            raise CheckpointError("%s: config.json: %s" % (path, e)) from None
        net.load_state_dict(checkpoint.load_state_dict(path))
        digest = config.get("vocab_sha256")
        if digest is not None and not isinstance(digest, str):
            raise CheckpointError("%s: config.json: vocab_sha256 must be a hex string, got %r" % (path, digest))
        net.vocab_sha256 = digest
        i2l = config.get("id2label")
        if isinstance(i2l, dict) and len(i2l) == net.num_labels:
            try:
                net.id2label = {int(k): v for k, v in i2l.items()}
            except (TypeError, ValueError):
                pass
        return net

    # ------------------------------------------------------------------ inputs
    def _inputs(self, input_ids, lengths, token_type_ids=None, features=None):
        """(ids int32 (B, T), right-padded mask int32 (B, T), None, None) from ids and lengths / a mask."""
        if token_type_ids is not None or features is not None:
            raise ValueError("an LSTMNet takes ids and lengths only (no token_type_ids, no features)")
        ids = _as_ids(input_ids, "ids")
        B, T = ids.shape
        if B < 1:
            raise ValueError("ids must have at least one row, got shape %s" % (ids.shape,))
        if lengths is None:
            mask = np.ones((B, T), np.int32)
        else:
            a = as_array(lengths, "lengths")
            if a.ndim == 2:
                if a.shape != (B, T):
                    raise ValueError("lengths given as an attention mask must have the shape of ids %s, got %s"
                                     % ((B, T), a.shape))
                mask = np.ascontiguousarray(a != 0, dtype=np.int32)
                n = mask.sum(1)
                if (mask != (np.arange(T)[None, :] < n[:, None])).any():
                    r = int(np.flatnonzero((mask != (np.arange(T)[None, :] < n[:, None])).any(1))[0])
                    raise ValueError("attention mask row %d is not right-padded (its 1s first, then its 0s); the LSTM "
                                     "reads packed sequences: pass lengths, or put the padding at the end" % r)
            else:
                if a.ndim != 1 or len(a) != B:
                    raise ValueError("lengths must be (batch,) = (%d,) ints or a (batch, seq) mask, got shape %s"
                                     % (B, a.shape))
                if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
                    if not (np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a))):
                        raise TypeError("lengths must hold integers, got dtype %s" % a.dtype)
                a = a.astype(np.int64)
                bad = np.flatnonzero((a < 0) | (a > T))
                if bad.size:
                    raise ValueError("lengths[%d] = %d is outside [0, %d] (the padded length of ids)"
                                     % (bad[0], a[bad[0]], T))
                mask = (np.arange(T)[None, :] < a[:, None]).astype(np.int32)
        if T == 0:  # every row empty: one padding column, so the engine sees a (B, 1) batch of length-0 rows
            ids, mask = np.zeros((B, 1), np.int32), np.zeros((B, 1), np.int32)
        return ids, mask, None, None

    # ------------------------------------------------------------------ compute
    def __call__(self, ids, lengths=None):
        """Eval-mode forward (no dropout) -> output with .logits (B, num_labels) float32."""
        ids, mask, _, _ = self._inputs(ids, lengths)
        return SequenceClassifierOutput(self._clf.forward(ids, mask, None, None, False, 0, 0))

    forward = __call__

    def configure_optimizer(self, name="adam", lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                            max_grad_norm=None, no_decay=None, loss_scaling="auto"):
        """Adam ("adam", torch.optim.Adam) or AdamW ("adamw") over every tensor, torch semantics; the state is
        reset. max_grad_norm: clip the global gradient norm (clip_grad_norm_; None: no clipping). no_decay:
        as SequenceClassifier (default: biases get no weight decay); loss_scaling: as SequenceClassifier (on with
        precision="fp16")."""
        super().configure_optimizer(name=name, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                    max_grad_norm=max_grad_norm, no_decay=no_decay, loss_scaling=loss_scaling)

    def train_step(self, ids, lengths, labels, class_weight=None, pos_weight=None):
        """One training step in C (GIL released): forward with dropout, loss, backward through time, clipping,
        optimizer step. Returns the loss (float); `grads` then holds the step's gradients as the optimizer
        used them (after clipping)."""
        return super().train_step(ids, lengths, labels, class_weight=class_weight, pos_weight=pos_weight)

    # ------------------------------------------------------------------ state
    def hf_config(self):
        cfg = dict(self.config)
        cfg.update(architectures=["LSTMNet"], num_labels=self.num_labels, problem_type=self.problem_type)
        cfg["id2label"] = {str(i): str(self.id2label.get(i, "LABEL_%d" % i)) for i in range(self.num_labels)}
        cfg["label2id"] = {v: int(k) for k, v in cfg["id2label"].items()}
        if self.vocab_sha256 is not None:
            cfg["vocab_sha256"] = self.vocab_sha256
        return cfg

    def __repr__(self):
        c = self.config
        return "LSTMNet(vocab_size=%d, embedding_dim=%d, hidden_size=%d, num_layers=%d, bidirectional=%s, " \
               "dropout=%g, num_labels=%d, params=%d)" % (c["vocab_size"], c["embedding_dim"], c["hidden_size"],
                                                          c["num_layers"], c["bidirectional"], c["dropout"],
                                                          self.num_labels, self.num_parameters())


# ------------------------------------------------------------------------------------ estimators

class _LSTMSpec:
    """What fit() logs about the model (the estimators' ModelSpec role)."""

    def __init__(self, est):
        self.name = "lstm"
        self.description = ("LSTM baseline: word embedding %d, %d x %sLSTM %d, Linear (random init, seeded)"
                            % (est.embedding_dim, est.num_layers, "bidirectional " if est.bidirectional else "",
                               est.hidden_size))

    def __repr__(self):
        return "_LSTMSpec(%r)" % self.description


class _LSTMModel:
    """What an LSTM estimator changes in TextClassifier / TextRegressor: the word vocabulary, built from the
    training texts in fit, in the tokenizer's place, and an LSTMNet in the model's. The training loop, the
    history, early stopping, checkpoints, metrics, save/load and the scikit-learn protocol are theirs."""

    feature_columns = None  # no numeric features
    _OWN = ("embedding_dim", "hidden_size", "num_layers", "bidirectional", "fc_dropout", "min_freq", "max_size",
            "lowercase")

    @staticmethod
    def _init(est, base, args):
        """The constructor: base's arguments to base.__init__, the LSTM's as attributes (get_params reads the
        constructor's signature), and the transformer-only attributes of the base class removed."""
        args = {k: v for k, v in args.items() if k not in ("self", "__class__")}
        base.__init__(est, **{k: v for k, v in args.items() if k not in _LSTMModel._OWN})
        for k in ("model", "tokenizer", "head", "pooling", "freeze_encoder", "feature_scaling", "feature_columns",
                  "long_text", "head_tokens", "window_stride", "max_windows", "window_pooling", "max_tokens"):
            est.__dict__.pop(k, None)
        for k in _LSTMModel._OWN:
            setattr(est, k, args[k])

    def _check_model_params(self):
        self._max_length()
        check_int(self.embedding_dim, "embedding_dim", min=1, max=2**16)
        check_int(self.hidden_size, "hidden_size", min=1, max=2**16)
        check_int(self.num_layers, "num_layers", min=1, max=64)
        check_bool(self.bidirectional, "bidirectional")
        check_float(self.dropout, "dropout (between LSTM layers)", min=0, max=1, max_inclusive=False)
        check_float(self.fc_dropout, "fc_dropout", min=0, max=1, max_inclusive=False)
        check_int(self.min_freq, "min_freq", min=1)
        check_int(self.max_size, "max_size (None: no limit)", min=0, allow_none=True)
        check_bool(self.lowercase, "lowercase")

    def _max_length(self, spec=None):
        return check_int(self.max_length, "max_length (words per text; None: whole texts)", min=1, allow_none=True)

    def _long_text(self):
        """Words, not WordPiece windows: a text is cut at max_length words, or read whole with max_length=None."""
        return dict(_long.DEFAULTS, window_pooling=None)

    def _resolve_spec(self):
        return _LSTMSpec(self)

    def _fit_tokenizer(self, spec, texts):
        vocab = WordVocab.build(texts, min_freq=self.min_freq, max_size=self.max_size, lowercase=self.lowercase)
        if vocab.num_words == 0:
            raise ValueError("the training texts give an empty vocabulary: no word occurs at least min_freq=%d times "
                             "(max_size=%r); lower min_freq, raise max_size, or check that the texts hold words"
                             % (self.min_freq, self.max_size))
        return vocab

    def _tokenize(self, texts):
        return self.tokenizer_(texts, self._max_length())

    def _pad_to(self):
        return None

    def _resolved_head(self):
        return None  # no configurable head: the LSTM's fc layer is its head

    def _scale_features(self, F, fitting=False):
        if F is not None:
            raise ValueError("%s takes no numeric features; pass the texts only" % type(self).__name__)
        if fitting:
            self.n_features_ = 0
        return None

    def _build_model(self, spec, seed):
        net = LSTMNet(len(self.tokenizer_), embedding_dim=self.embedding_dim, hidden_size=self.hidden_size,
                      num_layers=self.num_layers, num_labels=self.num_labels_, bidirectional=bool(self.bidirectional),
                      dropout=self.dropout, fc_dropout=self.fc_dropout, seed=seed, problem_type=self.problem_type_,
                      device=self.device, precision=self.precision)
        net.vocab_sha256 = self.tokenizer_.digest()
        return net

    def _load_model(self, directory, seed):
        vocab = WordVocab.from_pretrained(directory)
        model = LSTMNet.from_pretrained(directory, device=self.device, precision=self.precision, seed=seed)
        if model.vocab_size != len(vocab):
            raise CheckpointError("%s: the vocabulary has %d entries but the model's embedding %d rows"
                                  % (directory, len(vocab), model.vocab_size))
        if model.vocab_sha256 is not None and model.vocab_sha256 != vocab.digest():
            raise CheckpointError(
                "%s: vocab.json does not belong to this model: its digest (sha256 %s...) differs from the one "
                "config.json recorded when the model was saved (vocab_sha256 %s...): its words were reordered, added "
                "or removed, or it comes from another model, and every prediction would change. Use the vocab.json "
                "saved with this model" % (directory, vocab.digest()[:12], model.vocab_sha256[:12]))
        return _LSTMSpec(self), vocab, model


_LSTM_DOC = """
    The LSTM: embedding_dim, hidden_size, num_layers, bidirectional, dropout (between LSTM layers, as nn.LSTM's),
      fc_dropout (on the final state before the Linear layer). The vocabulary: built from the training texts in
      fit (lyricnn.WordVocab: lowercase when `lowercase`, words split by lyricnn.lstm.WORD_PATTERN; the words
      occurring at least min_freq times, at most max_size of them, plus <pad> = 0 and <unk>), kept as
      `tokenizer_` and saved with the model (vocab.json). max_length: words per text (longer texts are cut;
      None: whole texts); batches are padded to their longest member, and the padding never enters the LSTM
      (packed sequences). A text without words has the LSTM's zero state (its logits are the Linear bias).
    Training: the parameters of TextClassifier / TextRegressor (batch_size, epochs, lr, optimizer, schedule,
      early stopping, checkpoints and resume, seed, device, ...), with an LSTM's defaults (Adam, lr 1e-3, no
      weight decay, a constant schedule, gradient clipping at 5). No numeric features.
"""


class LSTMClassifier(_LSTMModel, TextClassifier):
    """A word-level LSTM text classifier (binary or multi-class) with TextClassifier's protocol: fit (returns
    self), predict, predict_proba, score, evaluate, history_, plot_history, show_predictions, save / load,
    class_weight, early stopping, checkpoints with bit-identical resume, get_params / set_params.
    """ + _LSTM_DOC

    def __init__(self, embedding_dim=500, hidden_size=128, num_layers=2, bidirectional=False, dropout=0.0,
                 fc_dropout=0.0, min_freq=1, max_size=None, lowercase=True, max_length=400, batch_size=64,
                 eval_batch_size=None, epochs=10, lr=1e-3, optimizer="adam", weight_decay=0.0, betas=(0.9, 0.999),
                 eps=1e-8, max_grad_norm=5.0, schedule="constant", warmup_steps=0, warmup_ratio=0.0,
                 plateau_factor=0.1, plateau_patience=2, class_weight=None, classes=None, loss="cross_entropy",
                 bucket_by_length=False, text_column=None, validation_fraction=None, eval_steps=None, monitor="loss",
                 early_stopping=False, patience=3, restore_best_weights=True, checkpoint_dir=None,
                 checkpoint_steps=None, seed=0, device="cpu", precision=None, verbose=1, report_to=None):
        _LSTMModel._init(self, TextClassifier, locals())


class LSTMRegressor(_LSTMModel, TextRegressor):
    """A word-level LSTM text regressor (MSE; y (N,) or (N, k)) with TextRegressor's protocol (score: R^2;
    evaluate: MSE, RMSE, MAE, Pearson r).
    """ + _LSTM_DOC

    def __init__(self, embedding_dim=500, hidden_size=128, num_layers=2, bidirectional=False, dropout=0.0,
                 fc_dropout=0.0, min_freq=1, max_size=None, lowercase=True, max_length=400, batch_size=64,
                 eval_batch_size=None, epochs=10, lr=1e-3, optimizer="adam", weight_decay=0.0, betas=(0.9, 0.999),
                 eps=1e-8, max_grad_norm=5.0, schedule="constant", warmup_steps=0, warmup_ratio=0.0,
                 plateau_factor=0.1, plateau_patience=2, bucket_by_length=False, text_column=None,
                 validation_fraction=None, eval_steps=None, monitor="loss", early_stopping=False, patience=3,
                 restore_best_weights=True, checkpoint_dir=None, checkpoint_steps=None, seed=0, device="cpu",
                 precision=None, verbose=1, report_to=None):
        _LSTMModel._init(self, TextRegressor, locals())
