"""python -m lyricnn train|evaluate|predict on small CSV files."""
import json
import subprocess
import sys

import numpy as np
import pytest

import lyricnn

from lyricnn import cli
from conftest import save_random_base

pd = pytest.importorskip("pandas")

TINY = {"model_type": "distilbert", "vocab_size": 30522, "dim": 32, "n_layers": 1, "n_heads": 2,
        "hidden_dim": 64, "max_position_embeddings": 64}


@pytest.fixture(autouse=True)
def engine():
    # one engine thread: these models are tiny, and on a busy 2-core machine two spinning threads
    # cost far more than they give
    n = lyricnn.get_num_threads()
    lyricnn.set_num_threads(1)
    yield
    lyricnn.set_num_threads(n)



@pytest.fixture
def tiny_model_dir(tmp_path):
    """An HF-style model directory holding the tiny config and seeded random weights, with the bundled vocab."""
    return str(save_random_base(tmp_path / "tiny", TINY))


def write_csv(path, n, seed, with_label=True):
    r = np.random.default_rng(seed)
    words = "the a song night day heart road river light rain".split()
    rows = []
    for _ in range(n):
        lab = int(r.integers(2))
        w = list(r.choice(words, 5)) + ["love" if lab else "hate"]
        r.shuffle(w)
        row = {"lyrics": " ".join(w), "energy": float(r.normal()), "mood": "happy" if lab else "sad",
               "valence": 0.8 * lab + 0.1}
        rows.append(row)
    df = pd.DataFrame(rows)
    if not with_label:
        df = df.drop(columns=["mood", "valence"])
    df.to_csv(path, index=False)
    return df


def test_train_evaluate_predict(tmp_path, tiny_model_dir, capsys):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    write_csv(train, 64, 0)
    write_csv(test, 24, 1)
    out = tmp_path / "model"
    rc = cli.main(["train", str(train), "--text-col", "lyrics", "--label-col", "mood", "--model", tiny_model_dir,
                   "--output-dir", str(out), "--epochs", "2", "--batch-size", "8", "--lr", "3e-3",
                   "--max-length", "16", "--val-fraction", "0.25", "--quiet"])
    assert rc == 0
    o = capsys.readouterr().out
    assert "last validation: loss" in o and "saved the model" in o
    assert (out / "lyricnn_estimator.json").exists() and (out / "history.csv").exists()
    assert cli.main(["evaluate", str(out), str(test), "--json", str(tmp_path / "m.json")]) == 0
    o = capsys.readouterr().out
    assert "24 rows" in o and "accuracy" in o and "happy" in o and "confusion matrix" in o
    m = json.loads((tmp_path / "m.json").read_text())
    assert 0 <= m["accuracy"] <= 1 and np.array(m["confusion_matrix"]).sum() == 24
    nolab = tmp_path / "new.csv"
    write_csv(nolab, 10, 2, with_label=False)
    pred = tmp_path / "pred.csv"
    assert cli.main(["predict", str(out), str(nolab), "--output", str(pred), "--proba"]) == 0
    p = pd.read_csv(pred)
    assert len(p) == 10 and set(p["prediction"]) <= {"happy", "sad"}
    np.testing.assert_allclose(p["proba_happy"] + p["proba_sad"], 1.0, rtol=1e-6)
    assert list(p.columns[:2]) == ["lyrics", "energy"]


def test_train_regressor_with_features(tmp_path, tiny_model_dir, capsys):
    train = tmp_path / "train.csv"
    write_csv(train, 48, 0)
    out = tmp_path / "reg"
    rc = cli.main(["train", str(train), "--text-col", "lyrics", "--label-col", "valence", "--task", "regress",
                   "--feature-cols", "energy", "--pooling", "mean", "--model", tiny_model_dir, "--output-dir",
                   str(out), "--epochs", "1", "--batch-size", "8", "--max-length", "16", "--quiet"])
    assert rc == 0
    assert cli.main(["evaluate", str(out), str(train)]) == 0
    assert "rmse" in capsys.readouterr().out
    pred = tmp_path / "p.csv"
    assert cli.main(["predict", str(out), str(train), "--output", str(pred)]) == 0
    assert pd.read_csv(pred)["prediction"].dtype.kind == "f"


def test_cli_errors(tmp_path, tiny_model_dir, capsys):
    train = tmp_path / "train.csv"
    write_csv(train, 16, 0)
    with pytest.raises(SystemExit, match="no column.*'words'"):
        cli.main(["train", str(train), "--text-col", "words", "--output-dir", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="does not exist"):
        cli.main(["train", str(tmp_path / "nope.csv"), "--output-dir", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="not a model saved"):
        cli.main(["evaluate", str(tmp_path), str(train)])
    rc = cli.main(["train", str(train), "--text-col", "lyrics", "--label-col", "mood", "--model", "no-such-model",
                   "--output-dir", str(tmp_path / "o"), "--quiet"])
    assert rc == 2 and "unknown model" in capsys.readouterr().err


def test_help_texts():
    r = subprocess.run([sys.executable, "-m", "lyricnn", "train", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for flag in ("--text-col", "--label-col", "--feature-cols", "--model", "--output-dir", "--epochs",
                 "--batch-size", "--lr", "--max-length", "--task"):
        assert flag in r.stdout
    r = subprocess.run([sys.executable, "-m", "lyricnn", "--help"], capture_output=True, text=True)
    assert all(c in r.stdout for c in ("train", "evaluate", "predict", "demo"))


def test_demo_fast(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("LYRICNN_DEMO_FAST", "1")
    monkeypatch.setenv("LYRICNN_DEMO_MODEL", "tiny-distilbert")
    assert cli.main(["demo", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "RANDOMLY INITIALISED" in out and "validation (32 poems): accuracy" in out
    assert "sample predictions" in out and "confusion matrix" in out
    assert (tmp_path / "demo_history.png").read_bytes()[:4] == b"\x89PNG"
