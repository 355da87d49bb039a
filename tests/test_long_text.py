"""Long texts in the estimators (lyricnn.long_text): long_text="truncate" | "head_tail" | "windows", batches
by a token budget, and everything above them (predict, evaluate, score, save/load, checkpoints and resume,
LoRA, save_pretrained, the CLI, tune, the LSTM on whole texts), on tiny random models."""
import json

import numpy as np
import pytest

import lyricnn
from lyricnn import long_text as lt
from lyricnn.estimators import TextClassifier, TextRegressor
from test_estimators import TINY, engine, weights  # noqa: F401 (engine: the one-thread fixture)

WORDS = "the a song night day heart road river light rain my your old new sky".split()


def songs(n, seed):
    """Texts of 3 to 60 words with 'love' (label 'pos') or 'hate' ('neg') once, somewhere in them: a short max_length
    often cuts it away, the windows read it."""
    r = np.random.default_rng(seed)
    X, y = [], []
    for _ in range(n):
        lab = int(r.integers(2))
        w = list(r.choice(WORDS, int(r.integers(3, 60))))
        w.insert(int(r.integers(len(w) + 1)), "love" if lab else "hate")
        X.append(" ".join(w))
        y.append("pos" if lab else "neg")
    return X, y


X, Y = songs(24, 0)
XV, YV = songs(8, 1)


def make(**kw):
    base = dict(model=TINY, epochs=1, batch_size=4, lr=2e-3, max_length=12, verbose=0, seed=0)
    base.update(kw)
    return TextClassifier(**base)


# ------------------------------------------------------------------ the pieces

def test_keep_windows_spreads_evenly_with_the_first_and_last():
    assert lt.keep_windows(5, None).tolist() == [0, 1, 2, 3, 4]
    assert lt.keep_windows(3, 8).tolist() == [0, 1, 2]
    assert lt.keep_windows(10, 4).tolist() == [0, 3, 6, 9]
    assert lt.keep_windows(10, 1).tolist() == [0]
    assert lt.keep_windows(7, 2).tolist() == [0, 6]


def test_token_batches_respect_the_budget_and_are_seeded():
    lengths = np.random.default_rng(0).integers(1, 40, 200)
    for bucket in (False, True):
        b = lt.token_batches(lengths, 100, seed=[3, 1], bucket=bucket)
        assert sorted(np.concatenate(b).tolist()) == list(range(200))
        assert all(lengths[i].sum() <= 100 for i in b)
        # greedy: a batch closes only when the next row would not fit
        assert all(lengths[b[k]].sum() + lengths[b[k + 1][0]] > 100 for k in range(len(b) - 1)) or bucket
        again = lt.token_batches(lengths, 100, seed=[3, 1], bucket=bucket)
        assert all(np.array_equal(p, q) for p, q in zip(b, again))
        assert not all(np.array_equal(p, q) for p, q in zip(b, lt.token_batches(lengths, 100, seed=[3, 2],
                                                                                bucket=bucket)))
    big = np.array([5, 300, 7])
    assert [x.tolist() for x in lt.token_batches(big, 100, shuffle=False)] == [[0], [1], [2]]  # alone, handled
    with pytest.raises(ValueError, match=r"song 1 \(row 1 of X\) has 300 tokens, more than max_tokens=100"):
        lt.token_batches(big, 100, strict=True, what="song")


def test_tokenize_modes_match_the_tokenizer():
    est = make(long_text="windows", window_stride=3, max_windows=None)
    est.tokenizer_ = tok = lyricnn.Tokenizer.from_pretrained("bert-base-uncased")
    rows = est._tokenize(X[:5])
    enc = tok(X[:5], truncation=True, max_length=12, stride=3, return_overflowing_tokens=True)
    flat = [w for r in rows for w in r]
    assert len(flat) == len(enc["input_ids"])
    for a, b in zip(flat, enc["input_ids"]):
        np.testing.assert_array_equal(a, b)
    assert [len(r) for r in rows] == np.bincount(enc["overflow_to_sample_mapping"]).tolist()
    capped = make(long_text="windows", window_stride=3, max_windows=2)
    capped.tokenizer_ = tok
    for r, c in zip(rows, capped._tokenize(X[:5])):
        assert len(c) == min(2, len(r))
        np.testing.assert_array_equal(c[0], r[0])
        np.testing.assert_array_equal(c[-1], r[-1])
    ht = make(long_text="head_tail", head_tokens=4)
    ht.tokenizer_ = tok
    full = tok(X[:5])["input_ids"]
    for r, f in zip(ht._tokenize(X[:5]), full):
        body = f[1:-1]
        want = body if len(body) <= 10 else np.concatenate([body[:4], body[-6:]])
        np.testing.assert_array_equal(r, np.concatenate([[f[0]], want, [f[-1]]]))
    assert lt.head_tokens_default(512) == 128 and lt.head_tokens_default(128) == 32
    assert lt.window_stride_default(512) == 0


# ------------------------------------------------------------------ the estimators in every mode

@pytest.mark.parametrize("mode", ["truncate", "head_tail", "windows-mean", "windows-max", "windows-attention"])
def test_every_mode_fits_predicts_evaluates_saves_and_loads(mode, tmp_path):
    kind, _, pooling = mode.partition("-")
    clf = make(long_text=kind, window_pooling=pooling or "mean", max_windows=4)
    clf.fit(X, Y, eval_set=(XV, YV))
    p = clf.predict_proba(XV)
    assert p.shape == (8, 2) and np.allclose(p.sum(1), 1)
    assert set(clf.predict(XV)) <= {"neg", "pos"}
    rep = clf.evaluate(XV, YV)
    assert 0 <= rep["accuracy"] <= 1 and rep["accuracy"] == clf.score(XV, YV)
    assert len(clf.history_) > 0
    clf.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    if kind == "truncate":
        assert cfg.get("lyricnn_long_text", {}).get("long_text", "truncate") == "truncate"
    else:
        assert cfg["lyricnn_long_text"]["long_text"] == kind and cfg["lyricnn_long_text"]["max_length"] == 12
    if kind == "windows":
        assert cfg["lyricnn_long_text"]["window_pooling"] == pooling
        assert cfg["lyricnn_long_text"]["window_stride"] == 0 and cfg["lyricnn_long_text"]["max_windows"] == 4
    back = TextClassifier.load(tmp_path / "m")
    assert back.long_text == kind and back.model_.long_text == kind
    np.testing.assert_array_equal(back.predict_proba(XV), p)
    # the HF-format weights load in a SequenceClassifier with the long-text settings
    m = lyricnn.SequenceClassifier.from_pretrained(tmp_path / "m")
    assert m.long_text == kind and m.window_pooling == (pooling or None if kind == "windows" else None)


def test_windows_reads_what_truncation_cuts():
    """The label word always stands past the first max_length - 2 = 10 tokens: truncation cannot see it (chance),
    windows with max pooling learn it."""
    def late(n, seed):
        r = np.random.default_rng(seed)
        Xs, ys = [], []
        for _ in range(n):
            lab = int(r.integers(2))
            w = list(r.choice(WORDS, int(r.integers(20, 40))))
            w.insert(int(r.integers(12, len(w) + 1)), "love" if lab else "hate")
            Xs.append(" ".join(w))
            ys.append("pos" if lab else "neg")
        return Xs, ys

    Xl, yl = late(96, 5)
    Xt, yt = late(48, 6)
    kw = dict(epochs=4, lr=3e-3, batch_size=8)
    assert make(long_text="windows", window_pooling="max", **kw).fit(Xl, yl).score(Xt, yt) >= 0.9
    assert make(**kw).fit(Xl, yl).score(Xt, yt) <= 0.7


def test_windows_batches_by_tokens_and_the_song_count_varies():
    clf = make(long_text="windows", max_tokens=40, max_windows=3, epochs=2)
    seen = []
    real = clf.__class__._build_model

    def spy(est, spec, seed):
        m = real(est, spec, seed)
        step = m.train_step

        def wrapped(ids, mask, labels, **kw):
            seen.append((int(mask.sum()), len(labels), len(ids), kw["windows_of"].copy()))
            return step(ids, mask, labels, **kw)
        m.train_step = wrapped
        return m

    clf._build_model = spy.__get__(clf)
    clf.fit(X, Y)
    assert all(tokens <= 40 for tokens, _, _, _ in seen)
    assert len({s for _, s, _, _ in seen}) > 1  # songs per step follow the budget
    assert all(n_win == len(w) and w[-1] + 1 == s for _, s, n_win, w in seen)
    assert clf.n_steps_ == len(seen)


def test_explicit_budget_refuses_a_song_too_long_default_handles_it():
    long_song = " ".join(["night"] * 200)
    Xb, Yb = X + [long_song], Y + ["pos"]
    with pytest.raises(ValueError, match=r"song 24 \(row 24 of X\) has \d+ tokens, more than max_tokens=60; "
                                         r"raise max_tokens to at least \d+, or keep fewer windows per song"):
        make(long_text="windows", max_tokens=60).fit(Xb, Yb)
    make(long_text="windows", max_windows=4, max_tokens=60).fit(Xb, Yb)  # the cap makes it fit
    clf = make(long_text="windows").fit(Xb, Yb)  # default budget 4 x 12 tokens: the song goes alone
    assert clf.predict([long_song]).shape == (1,)


def test_resume_after_interrupt_is_bit_identical_in_windows_mode(tmp_path):
    kw = dict(long_text="windows", window_pooling="attention", max_tokens=48, max_windows=4, epochs=2)
    full = make(**kw).fit(X, Y, eval_set=(XV, YV))
    part = make(checkpoint_dir=str(tmp_path), **kw)
    part.fit(X, Y, eval_set=(XV, YV), callbacks=[lambda est, info: info["step"] < 5])
    assert part.interrupted_ and part.n_steps_ == 5
    resumed = make(checkpoint_dir=str(tmp_path), **kw).fit(X, Y, eval_set=(XV, YV), resume=True)
    assert resumed.n_steps_ == full.n_steps_
    a, b = weights(full), weights(resumed)
    assert a.keys() == b.keys() and "window_scorer.weight" in a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    np.testing.assert_array_equal(full.history_["loss"].to_numpy(), resumed.history_["loss"].to_numpy())
    with pytest.raises(ValueError, match="window_pooling"):  # another pooling cannot resume this run
        make(checkpoint_dir=str(tmp_path), **dict(kw, window_pooling="max")).fit(X, Y, resume=True)


def test_lora_and_regressor_in_windows_mode(tmp_path):
    clf = make(long_text="windows", window_pooling="attention", lora=dict(r=2, alpha=4))
    clf.fit(X, Y)
    assert clf.model_.lora_config and clf.model_.window_pooling == "attention"
    clf.save(tmp_path / "lora")
    np.testing.assert_allclose(TextClassifier.load(tmp_path / "lora").predict_proba(XV), clf.predict_proba(XV),
                               atol=1e-5)
    reg = TextRegressor(model=TINY, epochs=1, batch_size=4, max_length=12, verbose=0, long_text="windows",
                        window_pooling="max")
    t = np.array([len(x.split()) / 60 for x in X])
    reg.fit(X, t)
    assert reg.predict(XV).shape == (8,) and np.isfinite(reg.score(X, t))


@pytest.mark.parametrize("kw,exc,match", [
    (dict(long_text="sliding"), ValueError, "long_text must be one of"),
    (dict(long_text="windows", window_pooling="sum"), ValueError, "window_pooling must be one of"),
    (dict(long_text="windows", window_stride=10), ValueError, "window_stride=10 is too large for max_length=12"),
    (dict(long_text="windows", max_windows=0), ValueError, "max_windows must be >= 1"),
    (dict(long_text="windows", max_windows=-2), ValueError, "max_windows must be >= 1"),
    (dict(long_text="windows", pooling="flatten"), ValueError, "cannot use pooling='flatten'"),
    (dict(long_text="windows", max_tokens=8), ValueError, "less than one window"),
    (dict(long_text="head_tail", head_tokens=11), ValueError, "head_tokens"),
    (dict(long_text="windows", max_windows=2.5), TypeError, "max_windows"),
])
def test_bad_long_text_parameters_fail_before_any_work(kw, exc, match):
    with pytest.raises(exc, match=match):
        make(**kw).fit(X, Y)


def test_lstm_reads_whole_texts_with_max_length_none():
    from lyricnn.lstm import LSTMClassifier

    long_text = " ".join(["night"] * 900 + ["love"])
    est = LSTMClassifier(embedding_dim=8, hidden_size=8, num_layers=1, epochs=1, max_length=None, verbose=0)
    est.fit([long_text, "hate day"], ["pos", "neg"])
    assert len(est._tokenize([long_text])[0]) == 901
    cut = LSTMClassifier(embedding_dim=8, hidden_size=8, num_layers=1, epochs=1, max_length=400, verbose=0)
    cut.fit([long_text, "hate day"], ["pos", "neg"])
    assert len(cut._tokenize([long_text])[0]) == 400
    assert "long_text" not in est.get_params()


def test_cli_train_evaluate_predict_with_windows(tmp_path, capsys):
    import pandas as pd

    from lyricnn.cli import main

    pd.DataFrame({"text": X, "label": Y}).to_csv(tmp_path / "train.csv", index=False)
    cfg = tmp_path / "tiny"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps(TINY))
    out = tmp_path / "out"
    rc = main(["train", str(tmp_path / "train.csv"), "--model", "tiny-distilbert", "--output-dir", str(out),
               "--epochs", "1", "--max-length", "12", "--long-text", "windows", "--window-pooling", "max",
               "--max-windows", "3", "--window-stride", "2", "--quiet"])
    assert rc in (0, None)
    est = json.loads((out / "lyricnn_estimator.json").read_text())["params"]
    assert (est["long_text"], est["window_pooling"], est["max_windows"], est["window_stride"]) == ("windows", "max",
                                                                                                   3, 2)
    assert main(["evaluate", str(out), str(tmp_path / "train.csv")]) in (0, None)
    assert main(["predict", str(out), str(tmp_path / "train.csv"), "--output", str(tmp_path / "p.csv")]) in (0, None)
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(X)
    with pytest.raises(SystemExit, match="long-text options are for transformer"):
        main(["train", str(tmp_path / "train.csv"), "--model", "lstm", "--output-dir", str(tmp_path / "l"),
              "--long-text", "windows"])


def test_tune_searches_the_window_pooling():
    pytest.importorskip("optuna")
    res = lyricnn.tune(make(long_text="windows"), X, Y, {"window_pooling": ["mean", "max", "attention"]}, n_trials=2,
                       metric="accuracy", verbose=0, seed=0)
    assert len(res.trials_) == 2 and set(res.trials_["params_window_pooling"]) <= {"mean", "max", "attention"}
