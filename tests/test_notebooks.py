"""Execute every notebook in notebooks/ (LYRICNN_NB_SMALL=1: small subsets, tiny models) with nbclient.

The kernel is this interpreter (a kernelspec installed into a temporary folder), so the notebooks see the
same lyricnn build and packages as the tests. Needs nbclient, nbformat and ipykernel (requirements/test.txt)
and the real datasets in ../shared/data/datasets; skips with the reason otherwise.
"""
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, shared_path

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NB_DIR = ROOT / "notebooks"
KERNEL = "lyricnn-nb-test"
CELL_TIMEOUT = 240  # seconds per cell; each notebook takes ~10-20 s in total on 2 cores

# notebook -> (datasets it reads, keys of its printed "metrics:" dict, number of figures it draws)
NOTEBOOKS = {
    "01_artist_classification.ipynb": (
        ["song_lyrics_21_artists"], ["accuracy", "precision_macro", "recall_macro", "f1_macro", "loss"], 2),
    "02_popularity.ipynb": (
        ["musicoset"], ["accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc", "loss"], 1),
    "03_valence_regression.ipynb": (["musicoset"], ["mse", "rmse", "mae", "pearson_r"], 2),
    "04_disaster_tweets.ipynb": (
        ["disaster_tweets"], ["precision_macro", "recall_macro", "f1_macro", "accuracy"], 2),
    "05_lstm_baseline.ipynb": (
        ["song_lyrics_21_artists"], ["accuracy", "precision_macro", "recall_macro", "f1_macro", "loss"], 2),
    "06_valence_sweep.ipynb": (["musicoset"], ["mse", "rmse", "mae", "pearson_r"], 2),
}


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernelspec for sys.executable in a temp dir, and the environment the kernel starts with."""
    prefix = tmp_path_factory.mktemp("jupyter")
    r = subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", KERNEL],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail("could not install a kernelspec for %s: %s" % (sys.executable, r.stderr[-2000:]))
    env = {
        "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
        "LYRICNN_NB_SMALL": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    return env


def _execute(path, env, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("LYRICNN_NB_MODEL", raising=False)
    nb = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name=KERNEL,
                                     resources={"metadata": {"path": str(NB_DIR)}})
    return nb, client


def _outputs(nb):
    texts, images, errors = [], 0, []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for o in cell.get("outputs", []):
            if o.output_type == "stream" and o.name == "stdout":
                texts.append(o.text)
            elif o.output_type in ("display_data", "execute_result"):
                images += "image/png" in o.data
                texts.append(o.data.get("text/plain", ""))
            elif o.output_type == "error":
                errors.append("%s: %s" % (o.ename, o.evalue))
    return "\n".join(texts), images, errors


def test_committed_notebooks_are_clean():
    """The committed notebooks are the expected ones, valid nbformat, and their outputs (committed from full
    runs by `make notebooks-run`) render on GitHub and hold nothing of the machine but what they print on
    purpose: no widget state, no carriage-return progress redraws, no absolute paths, images as PNG, short
    text lines (lyric snippets, never whole songs), and the closing wall-clock / machine line."""
    assert sorted(p.name for p in NB_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)
    for name in NOTEBOOKS:
        nb = nbformat.read(str(NB_DIR / name), as_version=4)
        nbformat.validate(nb)
        assert "widgets" not in nb.metadata, name
        texts = []
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            for o in cell.outputs:
                assert o.output_type in ("stream", "display_data", "execute_result"), (name, o.output_type)
                if o.output_type == "stream":
                    texts.append(o.text)
                else:
                    assert "application/vnd.jupyter.widget-view+json" not in o.data, name
                    assert set(o.data) <= {"text/plain", "text/html", "image/png"}, (name, set(o.data))
                    texts.append(o.data.get("text/plain", "") + o.data.get("text/html", ""))
        text = "\n".join(texts)
        for bad in ("\r", str(ROOT), "/home/", "/root/", "/work/", "/tmp/"):
            assert bad not in text, (name, bad)
        assert max((len(ln) for ln in text.splitlines()), default=0) <= 400, name
        if texts:  # run and committed with outputs: it ends with its time and machine
            assert "run finished in" in texts[-1] and "CPUs" in texts[-1], name


def _check_notebooks():
    """tools/check_notebooks.py as a module; skips when jupytext is not installed."""
    try:
        import jupytext  # noqa: F401
    except ImportError:
        pytest.skip("jupytext is not installed (pip install -r requirements/test.txt): "
                    "cannot compare the notebooks with their .py pairs")
    spec = importlib.util.spec_from_file_location("check_notebooks", ROOT / "tools" / "check_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_notebook_pairs_in_sync(tmp_path):
    """Each notebooks/*.ipynb has the same cells (types, sources) as its jupytext py:percent pair; the
    check catches an edit on either side and ignores outputs."""
    check = _check_notebooks()
    assert sorted(p.name for p in NB_DIR.glob("*.py")) == sorted(n.replace(".ipynb", ".py") for n in NOTEBOOKS)
    problems = check.check(NB_DIR)
    assert not problems, "\n".join(problems) + "\n(fix with: jupytext --sync notebooks/NAME.ipynb)"
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "check_notebooks.py")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

    # a copy with outputs in every code cell still passes; an edit to the .py, or to the .ipynb, fails
    name = "01_artist_classification"
    for suffix in (".ipynb", ".py"):
        shutil.copy(NB_DIR / (name + suffix), tmp_path / (name + suffix))
    nb = nbformat.read(str(tmp_path / (name + ".ipynb")), as_version=4)
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = i + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="out %d\n" % i)]
    nbformat.write(nb, str(tmp_path / (name + ".ipynb")))
    assert check.check(tmp_path) == []
    py = (tmp_path / (name + ".py")).read_text(encoding="utf-8")
    assert "n=10, seed=SEED" in py
    (tmp_path / (name + ".py")).write_text(py.replace("n=10, seed=SEED", "n=11, seed=SEED", 1), encoding="utf-8")
    problems = check.check(tmp_path)
    assert len(problems) == 1 and "n=11, seed=SEED" in problems[0], problems
    (tmp_path / (name + ".py")).write_text(py, encoding="utf-8")
    nb.cells[0].source += "\nedited in Jupyter"
    nbformat.write(nb, str(tmp_path / (name + ".ipynb")))
    problems = check.check(tmp_path)
    assert len(problems) == 1 and "edited in Jupyter" in problems[0], problems
    (tmp_path / (name + ".py")).unlink()
    assert any("no paired" in p for p in check.check(tmp_path))


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_runs_small(name, kernel_env, monkeypatch):
    datasets, keys, n_figures = NOTEBOOKS[name]
    for d in datasets:
        shared_path("datasets", d)
    nb, client = _execute(NB_DIR / name, kernel_env, monkeypatch)
    client.execute()  # raises CellExecutionError (with the traceback) if a cell fails
    text, images, errors = _outputs(nb)
    assert not errors, errors
    assert "small run:" in text, "the first cell did not pick the small settings"
    lines = [ln for ln in text.splitlines() if ln.startswith("metrics: ")]
    assert len(lines) == 1, "expected one 'metrics: {...}' line, got %r" % lines
    metrics = json.loads(lines[0][len("metrics: "):])
    assert sorted(metrics) == sorted(keys)
    for k, v in metrics.items():
        assert isinstance(v, float) and v == v and abs(v) != float("inf"), (k, v)
        if k in ("accuracy", "precision_macro", "recall_macro", "f1_macro"):
            assert 0.0 <= v <= 1.0, (k, v)
        if k == "pearson_r":
            assert -1.0 <= v <= 1.0
    if "rmse" in metrics:
        assert abs(metrics["rmse"] ** 2 - metrics["mse"]) < 1e-3
    # the training curves (lyricnn.plotting) and the notebook's own figures were drawn
    assert images >= n_figures, "%d figures drawn, expected %d" % (images, n_figures)
    # sample predictions: show_predictions prints 'true X  pred Y | text' lines
    assert sum(" pred " in ln and " | " in ln for ln in text.splitlines()) >= 8
    if name == "04_disaster_tweets.ipynb":
        assert "fold 3:" in text and "frozen encoder:" in text
        assert "HF bert head" in text
    if name == "05_lstm_baseline.ipynb":
        assert "LSTMNet(" in text and "lstm.weight_hh_l1" in text and "(notebook 1)" in text
    if name == "06_valence_sweep.ipynb":  # 12 trials, one line each, then the refit
        assert sum(ln.startswith("trial ") for ln in text.splitlines()) == 12
        assert "best trial" in text and "refit:" in text


def test_notebook_without_data_says_so(kernel_env, monkeypatch, tmp_path):
    """With no datasets the first code cell stops with a clear message (the test suite skips instead)."""
    monkeypatch.setenv("LYRICNN_SHARED", str(tmp_path / "no-such-data"))
    nb, client = _execute(NB_DIR / "01_artist_classification.ipynb", kernel_env, monkeypatch)
    with pytest.raises(nbclient.exceptions.CellExecutionError) as ei:
        client.execute()
    msg = str(ei.value)
    assert "DATA MISSING" in msg and "shared/data/datasets" in msg
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    assert any(o.output_type == "error" for o in nb.cells[first_code].outputs)
