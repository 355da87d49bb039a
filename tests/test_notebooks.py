"""Execute every notebook in notebooks/ (LYRICNN_NB_SMALL=1: small subsets, tiny models) with nbclient.

The kernel is this interpreter (a kernelspec installed into a temporary folder), so the notebooks see the
same lyricnn build and packages as the tests. Needs nbclient, nbformat and ipykernel (requirements/test.txt)
and the real datasets in ../shared/data/datasets; skips with the reason otherwise.
"""
import json
import os
import pathlib
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
        ["musicoset"], ["accuracy", "precision_macro", "recall_macro", "f1_macro", "loss"], 1),
    "03_valence_regression.ipynb": (["musicoset"], ["mse", "rmse", "mae", "pearson_r"], 2),
    "04_disaster_tweets.ipynb": (
        ["disaster_tweets"], ["precision_macro", "recall_macro", "f1_macro", "accuracy"], 2),
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


def test_notebook_sources_match_generator():
    """The committed notebooks are what tools/make_notebooks.py generates, and carry no outputs."""
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "make_notebooks.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in NB_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)
    for name in NOTEBOOKS:
        nb = nbformat.read(str(NB_DIR / name), as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name


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
