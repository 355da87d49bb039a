"""TextClassifier / TextRegressor: the scikit-learn protocol, training loop, history, early stopping,
checkpoints, resume, Ctrl-C, pandas inputs and bad-input errors, on tiny random models."""
import json
import os
import signal

import numpy as np
import pytest

import lyricnn

from lyricnn import checkpoint as ck
from lyricnn import training
from lyricnn.estimators import TextClassifier, TextRegressor


# a tiny DistilBERT: the 30522-token bundled vocab, 32 dims, one layer
TINY = {"model_type": "distilbert", "vocab_size": 30522, "dim": 32, "n_layers": 1, "n_heads": 2,
        "hidden_dim": 64, "max_position_embeddings": 64, "dropout": 0.1, "attention_dropout": 0.1,
        "seq_classif_dropout": 0.1, "initializer_range": 0.02}


@pytest.fixture(autouse=True)
def engine():
    # one engine thread: these models are tiny, and on a busy 2-core machine two spinning threads
    # cost far more than they give
    n = lyricnn.get_num_threads()
    lyricnn.set_num_threads(1)
    yield
    lyricnn.set_num_threads(n)



WORDS = "the a song night day heart road river light rain my your old new sky".split()


def love_hate(n, seed):
    """Texts with 'love' (label 'pos') or 'hate' (label 'neg') among random filler words."""
    r = np.random.default_rng(seed)
    X, y = [], []
    for _ in range(n):
        lab = int(r.integers(2))
        w = list(r.choice(WORDS, int(r.integers(3, 9)))) + ["love" if lab else "hate"]
        r.shuffle(w)
        X.append(" ".join(w))
        y.append("pos" if lab else "neg")
    return X, y


def make(**kw):
    base = dict(model=TINY, epochs=2, batch_size=8, lr=2e-3, max_length=16, verbose=0, seed=0)
    base.update(kw)
    return TextClassifier(**base)


def weights(est):
    return {k: np.array(v) for k, v in est.model_.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


X, Y = love_hate(96, 0)
XV, YV = love_hate(40, 1)


# ---------------------------------------------------------------- basics

def test_fit_predict_shapes_and_history():
    clf = make(epochs=2)
    assert clf.fit(X, Y, eval_set=(XV, YV)) is clf
    assert list(clf.classes_) == ["neg", "pos"]
    pred = clf.predict(XV)
    assert isinstance(pred, np.ndarray) and pred.shape == (40,) and set(pred) <= {"neg", "pos"}
    proba = clf.predict_proba(XV)
    assert proba.shape == (40, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], pred)
    acc = clf.score(XV, YV)
    assert acc == pytest.approx(np.mean(pred == np.array(YV)))
    rep = clf.evaluate(XV, YV)
    assert rep["accuracy"] == pytest.approx(acc)
    assert set(rep["per_class"]) == {"neg", "pos"}
    assert rep["confusion_matrix"].shape == (2, 2) and rep["confusion_matrix"].sum() == 40
    for k in ("precision_macro", "recall_macro", "f1_macro", "loss"):
        assert np.isfinite(rep[k])
    from lyricnn import metrics
    assert rep["roc_auc"] == pytest.approx(metrics.roc_auc(np.array(YV) == "pos", proba[:, 1]))
    assert "ROC AUC" in repr(rep)
    h = clf.history_
    assert list(h.columns[:4]) == ["step", "epoch", "loss", "lr"]
    assert {"val_loss", "val_accuracy", "val_f1_macro"} <= set(h.columns)
    steps = h[h["loss"].notna()]
    assert list(steps["step"]) == list(range(1, 2 * 12 + 1))        # 96 / 8 = 12 steps per epoch
    assert list(steps["epoch"].unique()) == [1.0, 2.0]
    evals = h[h["val_loss"].notna()]
    assert list(evals["step"]) == [12, 24] and list(evals["epoch"]) == [1, 2] and evals["loss"].isna().all()
    assert steps["val_loss"].isna().all()
    # linear decay without warmup: lr starts at lr and decreases
    lrs = steps["lr"].to_numpy()
    assert lrs[0] == pytest.approx(2e-3) and np.all(np.diff(lrs) < 0)
    assert clf.n_steps_ == 24 and not clf.interrupted_


def test_learns_love_vs_hate():
    Xl, yl = love_hate(256, 5)
    clf = make(epochs=4, lr=3e-3, batch_size=16, dropout=0.0)
    clf.fit(Xl, yl)
    assert clf.score(XV, YV) >= 0.9
    h = clf.history_
    assert h["loss"].iloc[-8:].mean() < h["loss"].iloc[:8].mean()


def test_regressor(capsys):
    Xr = ["love " * k + "rain " * (5 - k) for k in range(6)] * 12
    yr = np.array([k / 5 for k in range(6)] * 12)
    reg = TextRegressor(model=TINY, epochs=2, batch_size=8, lr=3e-3, max_length=16, verbose=0)
    assert reg.fit(Xr, yr, eval_set=(Xr[:12], yr[:12])) is reg
    p = reg.predict(Xr)
    assert p.shape == (72,) and p.dtype == np.float64
    rep = reg.evaluate(Xr, yr)
    assert set(rep) >= {"mse", "rmse", "mae", "pearson_r"}
    assert rep["rmse"] == pytest.approx(np.sqrt(np.mean((p - yr) ** 2)), rel=1e-5)
    r2 = reg.score(Xr, yr)
    assert r2 == pytest.approx(1 - np.sum((yr - p) ** 2) / np.sum((yr - yr.mean()) ** 2), rel=1e-6)
    assert "val_rmse" in reg.history_.columns
    capsys.readouterr()
    reg.show_predictions(Xr, yr, n=4)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(l.startswith("|err| ") and "XX" not in l for l in lines)


def test_same_seed_same_run_and_other_seed_differs():
    a = make(epochs=1).fit(X, Y)
    b = make(epochs=1).fit(X, Y)
    assert_same_weights(weights(a), weights(b))
    assert a.history_["loss"].tolist() == b.history_["loss"].tolist()
    c = make(epochs=1, seed=1).fit(X, Y)
    assert a.history_["loss"].tolist() != c.history_["loss"].tolist()


def test_bucket_by_length_trains():
    clf = make(epochs=1, bucket_by_length=True).fit(X, Y)
    assert clf.n_steps_ == 12 and np.isfinite(clf.history_["loss"]).all()


# ---------------------------------------------------------------- early stopping

class ScriptedScores(TextClassifier):
    """Validation scores come from a script, so the early-stopping logic is tested exactly."""

    script = []

    def _val_metrics(self, z, t):
        m = super()._val_metrics(z, t)
        m["accuracy"] = self.script[self._n_eval]
        self._n_eval += 1
        return m

    def fit(self, *a, **k):
        self._n_eval = 0
        return super().fit(*a, **k)


def test_early_stopping_triggers_and_restores_best():
    ScriptedScores.script = [0.5, 0.7, 0.6, 0.65, 0.69, 0.9, 0.9]
    clf = ScriptedScores(model=TINY, epochs=3, batch_size=8, lr=2e-3, max_length=16, verbose=0,
                         eval_steps=2, early_stopping=True, monitor="accuracy", patience=3)
    snaps = {}
    clf.fit(X, Y, eval_set=(XV, YV), callbacks=[lambda est, info: snaps.__setitem__(info["step"], weights(est))])
    # evaluations at steps 2, 4, 6, 8, 10: best 0.7 at step 4, then 3 evaluations without improvement
    assert clf.stopped_early_ and clf.n_steps_ == 10
    assert clf.best_step_ == 4 and clf.best_score_ == 0.7
    assert_same_weights(weights(clf), snaps[4])
    assert clf.history_["val_accuracy"].dropna().tolist() == [0.5, 0.7, 0.6, 0.65, 0.69]


def test_no_restore_without_flag():
    ScriptedScores.script = [0.5, 0.7, 0.6, 0.6, 0.6]
    clf = ScriptedScores(model=TINY, epochs=3, batch_size=8, lr=2e-3, max_length=16, verbose=0,
                         eval_steps=2, early_stopping=True, monitor="accuracy", patience=2,
                         restore_best_weights=False)
    snaps = {}
    clf.fit(X, Y, eval_set=(XV, YV), callbacks=[lambda est, info: snaps.__setitem__(info["step"], weights(est))])
    assert clf.stopped_early_ and clf.n_steps_ == 8
    assert_same_weights(weights(clf), snaps[8])


def test_monitor_must_be_a_metric():
    with pytest.raises(ValueError, match="monitor='nope'"):
        make(monitor="nope", epochs=1).fit(X, Y, eval_set=(XV, YV))


# ---------------------------------------------------------------- checkpoints and resume

def read_meta(path):
    return training.read_checkpoint(path)[1]


def test_checkpoint_every_epoch_and_best(tmp_path):
    seen = {}

    def cb(est, info):
        p = tmp_path / training.LAST
        seen[info["step"]] = read_meta(p)["step"] if p.exists() else None

    clf = make(epochs=3, checkpoint_dir=str(tmp_path))
    clf.fit(X, Y, eval_set=(XV, YV), callbacks=[cb])
    assert seen[1] is None and seen[12] is None
    assert seen[13] == 12 and seen[25] == 24          # written at the end of epochs 1 and 2
    meta = read_meta(tmp_path / training.LAST)
    assert meta["step"] == 36 and meta["epoch"] == 3 and meta["batch_in_epoch"] == 0
    assert len([r for r in meta["history"] if r.get("loss") == r.get("loss")]) == 36
    assert meta["params"]["batch_size"] == 8 and meta["estimator"]["classes_"] == ["neg", "pos"]
    best = read_meta(tmp_path / training.BEST)
    assert best["step"] == clf.best_step_
    assert sorted(x.name for x in tmp_path.iterdir()) == [training.BEST, training.LAST]


def test_resume_after_interrupt_is_bit_identical(tmp_path):
    full = make(epochs=2).fit(X, Y, eval_set=(XV, YV))
    # stop after 7 steps (mid-epoch) via a callback, then resume in a fresh estimator
    part = make(epochs=2, checkpoint_dir=str(tmp_path))
    part.fit(X, Y, eval_set=(XV, YV), callbacks=[lambda est, info: info["step"] < 7])
    assert part.interrupted_ and part.n_steps_ == 7
    assert read_meta(tmp_path / training.LAST)["step"] == 7
    resumed = make(epochs=2, checkpoint_dir=str(tmp_path))
    resumed.fit(X, Y, eval_set=(XV, YV), resume=True)
    assert resumed.n_steps_ == 24 and not resumed.interrupted_
    assert_same_weights(weights(full), weights(resumed))
    a, b = full.history_, resumed.history_
    assert a["step"].tolist() == b["step"].tolist()
    np.testing.assert_array_equal(a["loss"].to_numpy(), b["loss"].to_numpy())
    np.testing.assert_array_equal(a["val_loss"].to_numpy(), b["val_loss"].to_numpy())


def test_failed_checkpoint_write_keeps_previous_and_resume_works(tmp_path, monkeypatch):
    full = make(epochs=2).fit(X, Y)
    real = ck.save_safetensors
    calls = []

    def failing(path, tensors, metadata=None, _fail_after=-1):
        calls.append(path)
        if len(calls) == 2:          # the end-of-epoch-2 write dies half-way
            return real(path, tensors, metadata, _fail_after=1000)
        return real(path, tensors, metadata)

    monkeypatch.setattr(ck, "save_safetensors", failing)
    with pytest.raises(OSError, match="simulated"):
        make(epochs=2, checkpoint_dir=str(tmp_path)).fit(X, Y)
    monkeypatch.setattr(ck, "save_safetensors", real)
    assert [x.name for x in tmp_path.iterdir()] == [training.LAST]   # no temp file left
    assert read_meta(tmp_path / training.LAST)["step"] == 12          # the epoch-1 checkpoint is intact
    resumed = make(epochs=2, checkpoint_dir=str(tmp_path)).fit(X, Y, resume=True)
    assert_same_weights(weights(full), weights(resumed))


def test_resume_checks(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_dir"):
        make(epochs=1).fit(X, Y, resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        make(epochs=1, checkpoint_dir=str(tmp_path)).fit(X, Y, resume=True)
    make(epochs=1, checkpoint_dir=str(tmp_path)).fit(X, Y)
    with pytest.raises(ValueError, match="different training data"):
        make(epochs=1, checkpoint_dir=str(tmp_path)).fit(X[:-8], Y[:-8], resume=True)
    with pytest.raises(ValueError, match="lr"):
        make(epochs=1, lr=1e-3, checkpoint_dir=str(tmp_path)).fit(X, Y, resume=True)
    # more epochs may continue a finished run
    more = make(epochs=2, checkpoint_dir=str(tmp_path)).fit(X, Y, resume=True)
    assert more.n_steps_ == 24


# ---------------------------------------------------------------- interruption

def test_keyboard_interrupt_from_callback_leaves_usable_model(capsys):
    def cb(est, info):
        if info["step"] == 3:
            raise KeyboardInterrupt

    clf = make(epochs=2)
    assert clf.fit(X, Y, callbacks=[cb]) is clf
    assert clf.interrupted_ and clf.n_steps_ == 3
    assert len(clf.history_) == 3
    assert clf.predict(XV).shape == (40,)
    assert "interrupted after step 3" in capsys.readouterr().err


def test_sigint_stops_between_steps():
    def cb(est, info):
        if info["step"] == 2:
            os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C: the loop finishes this step and stops

    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN under a shell's background job
    clf = make(epochs=2)
    clf.fit(X, Y, callbacks=[cb])
    assert clf.interrupted_ and clf.n_steps_ in (2, 3)
    assert np.isfinite(clf.predict_proba(XV)).all()
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is back


# ---------------------------------------------------------------- scikit-learn protocol

def test_get_set_params_and_clone():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.base import clone, is_classifier, is_regressor

    clf = make(class_weight="balanced", head={"pooling": "mean", "hidden": [8]})
    p = clf.get_params()
    assert p["class_weight"] == "balanced" and p["batch_size"] == 8 and "verbose" in p
    c2 = clone(clf)
    assert c2 is not clf and c2.get_params() == p
    assert clf.set_params(lr=1e-3, epochs=5) is clf and clf.lr == 1e-3 and clf.epochs == 5
    with pytest.raises(ValueError, match="invalid parameter 'lrate'"):
        clf.set_params(lrate=1)
    assert is_classifier(clf) and is_regressor(TextRegressor()) and not is_classifier(TextRegressor())
    assert "class_weight='balanced'" in repr(clf)
    assert sklearn.__version__


def test_cross_val_score():
    pytest.importorskip("sklearn")
    from sklearn.model_selection import cross_val_score

    scores = cross_val_score(make(epochs=1), X, Y, cv=2)
    assert scores.shape == (2,) and np.all((0 <= scores) & (scores <= 1))


# ---------------------------------------------------------------- pandas, features, save/load

def test_pandas_inputs_and_features(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"lyrics": X, "artist": Y, "f1": rng.normal(size=96), "f2": rng.normal(size=96) * 10},
                      index=np.arange(100, 196))
    clf = make(epochs=1, text_column="lyrics", feature_columns=["f1", "f2"])
    clf.fit(df, df["artist"])
    assert clf.n_features_ == 2
    p = clf.predict(df)
    assert isinstance(p, np.ndarray) and p.shape == (96,)
    # the same data as a Series + an explicit features array gives the same predictions
    p2 = clf.predict(df["lyrics"], features=df[["f1", "f2"]].to_numpy())
    np.testing.assert_array_equal(p, p2)
    with pytest.raises(ValueError, match="features has 1 columns but the model was fitted with 2"):
        clf.predict(df["lyrics"], features=df[["f1"]])
    with pytest.raises(ValueError, match="fitted with 2 numeric features"):
        clf.predict(df["lyrics"])
    # save / load round trip
    clf.save(tmp_path / "m")
    loaded = TextClassifier.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict_proba(df), clf.predict_proba(df))
    assert loaded.get_params()["feature_columns"] == ["f1", "f2"]
    assert len(loaded.history_) == len(clf.history_)


def test_save_load_roundtrip_plain(tmp_path):
    clf = make(epochs=1).fit(X, Y)
    clf.save(tmp_path / "m")
    assert {"config.json", "model.safetensors", "lyricnn_estimator.json"} <= set(os.listdir(tmp_path / "m"))
    state = json.load(open(tmp_path / "m" / "lyricnn_estimator.json"))
    assert state["class"] == "TextClassifier" and state["fitted"]["classes_"] == ["neg", "pos"]
    loaded = TextClassifier.load(tmp_path / "m", verbose=0)
    np.testing.assert_array_equal(loaded.predict_proba(XV), clf.predict_proba(XV))
    with pytest.raises(TypeError, match="TextClassifier"):
        TextRegressor.load(tmp_path / "m")


def test_plot_history_and_show_predictions(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    clf = make(epochs=1).fit(X, Y, eval_set=(XV, YV))
    fig = clf.plot_history(tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes) == 2
    clf.show_predictions(XV, YV, n=5)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 5 and all(" pred " in line for line in out)


def test_int_labels_and_classes_option():
    yi = [1 if v == "pos" else 0 for v in Y]
    clf = make(epochs=1).fit(X, yi)
    assert clf.classes_.tolist() == [0, 1] and clf.predict(XV).dtype.kind == "i"
    clf = make(epochs=1, classes=[0, 1, 2]).fit(X, yi)
    assert clf.predict_proba(XV).shape == (40, 3)


# ---------------------------------------------------------------- bad input

def test_bad_inputs():
    clf = make(epochs=1)
    with pytest.raises(ValueError, match="X has 96 texts but y has 95"):
        clf.fit(X, Y[:-1])
    with pytest.raises(ValueError, match="training set is empty"):
        clf.fit([], [])
    with pytest.raises(TypeError, match=r"X\[2\] is None"):
        clf.fit(X[:2] + [None] + X[3:], Y)
    with pytest.raises(TypeError, match="not a single str"):
        clf.fit("one text", ["a"])
    with pytest.raises(ValueError, match="only one class"):
        clf.fit(X, ["pos"] * 96)
    with pytest.raises(RuntimeError, match="not fitted"):
        clf.predict(XV)
    with pytest.raises(ValueError, match=r"\['other'\] never occurs"):
        make(class_weight="balanced", classes=["neg", "other", "pos"]).fit(X, Y)
    with pytest.raises(ValueError, match="not in classes"):
        make(classes=["neg", "x"]).fit(X, Y)
    feats = np.ones((96, 3))
    feats[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf.*row 5, column 1"):
        clf.fit(X, Y, features=feats)
    with pytest.raises(ValueError, match="features has 95 rows"):
        clf.fit(X, Y, features=np.ones((95, 3)))
    with pytest.raises(ValueError, match="eval_set has 40 texts but 39"):
        clf.fit(X, Y, eval_set=(XV, YV[:-1]))
    clf.fit(X, Y)
    with pytest.raises(ValueError, match="'maybe'.*not seen in fit"):
        clf.evaluate(XV, YV[:-1] + ["maybe"])
    with pytest.raises(ValueError, match="not seen in fit"):
        clf.score(XV, ["x"] * 40)
    with pytest.raises(ValueError, match="fitted without numeric features"):
        clf.predict(XV, features=np.ones((40, 2)))
    with pytest.raises(ValueError, match="not seen in fit"):
        clf.fit(X, Y, eval_set=(XV, ["nope"] * 40))


def test_bad_regression_targets():
    reg = TextRegressor(model=TINY, epochs=1, batch_size=8, max_length=16, verbose=0)
    y = np.linspace(0, 1, 96)
    y[7] = np.inf
    with pytest.raises(ValueError, match="NaN or inf.*row 7"):
        reg.fit(X, y)
    y[7] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        reg.fit(X, y)
    with pytest.raises(TypeError, match="numeric"):
        reg.fit(X, Y)


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="batch_size"):
        make(batch_size=0).fit(X, Y)
    with pytest.raises(ValueError, match="max_length"):
        make(max_length=2).fit(X, Y)
    with pytest.raises(ValueError, match="unknown schedule"):
        make(schedule="warp").fit(X, Y)
    with pytest.raises(OSError, match="unknown model"):
        make(model="no-such-model").fit(X, Y)


def test_pickle_roundtrip():
    import pickle

    clf = make(epochs=1).fit(X, Y)
    clf2 = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clf2.predict_proba(XV), clf.predict_proba(XV))
    assert clf2.get_params() == clf.get_params()
    unfitted = pickle.loads(pickle.dumps(make()))
    assert not hasattr(unfitted, "model_")


def test_process_killed_mid_checkpoint_leaves_loadable_checkpoint(tmp_path):
    import subprocess
    import sys
    import textwrap

    here = os.path.dirname(os.path.abspath(__file__))
    code = textwrap.dedent("""
        import os, signal, sys
        sys.path.insert(0, %r)
        import test_estimators as t
        real_replace, n = os.replace, [0]
        def replace(a, b):
            n[0] += 1
            if n[0] == 2:                      # die between writing and renaming the 2nd checkpoint
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(a, b)
        os.replace = replace
        t.make(epochs=2, checkpoint_dir=%r).fit(t.X, t.Y)
    """) % (here, str(tmp_path))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert read_meta(tmp_path / training.LAST)["step"] == 12       # the epoch-1 checkpoint is intact
    assert any(x.name.endswith(".tmp") for x in tmp_path.iterdir())  # the killed write's temp file
    resumed = make(epochs=2, checkpoint_dir=str(tmp_path)).fit(X, Y, resume=True)
    assert [x.name for x in tmp_path.iterdir()] == [training.LAST]     # cleaned up
    full = make(epochs=2).fit(X, Y)
    assert_same_weights(weights(full), weights(resumed))


# ---------------------------------------------------------------- heads, losses, schedules

def test_flatten_batchnorm_head_with_features_save_load(tmp_path):
    rng = np.random.default_rng(0)
    F = rng.normal(size=(96, 2))
    clf = make(epochs=1, max_length=12, head={"pooling": "flatten", "hidden": [16, 8], "batchnorm": True,
                                              "dropout": 0.1, "features_at": 1})
    clf.fit(X, Y, features=F)
    FV = rng.normal(size=(40, 2))
    p = clf.predict_proba(XV, features=FV)
    assert p.shape == (40, 2) and np.isfinite(p).all()
    clf.save(tmp_path / "m")
    loaded = TextClassifier.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict_proba(XV, features=FV), p)
    for k, v in clf.model_.buffers.items():          # BatchNorm running statistics travel too
        np.testing.assert_array_equal(loaded.model_.buffers[k], v)


def test_binary_bce_with_balanced_weights():
    yb = ["pos"] * 20 + ["neg"] * 76
    clf = make(epochs=1, loss="bce", class_weight="balanced")
    clf.fit(X, yb)
    assert clf.num_labels_ == 1 and clf.problem_type_ == "multi_label_classification"
    p = clf.predict_proba(XV)
    assert p.shape == (40, 2)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert set(clf.predict(XV)) <= {"neg", "pos"}
    with pytest.raises(ValueError, match="binary"):
        make(loss="bce").fit(X, [str(i % 3) for i in range(96)])


def test_plateau_schedule_reduces_lr():
    ScriptedScores.script = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    clf = ScriptedScores(model=TINY, epochs=1, batch_size=8, lr=1e-3, max_length=16, verbose=0, eval_steps=2,
                         schedule="plateau", monitor="accuracy", plateau_patience=1, plateau_factor=0.5)
    clf.fit(X, Y, eval_set=(XV, YV))
    lrs = clf.history_.dropna(subset=["loss"])["lr"].tolist()
    # evaluations at steps 2, 4, 6, ...: no improvement after the first -> halve after 2 bad ones
    assert lrs[:6] == [1e-3] * 6 and lrs[6] == 5e-4 and lrs[-1] < 5e-4
