"""Fitted estimators on Dask: they pickle as their saved files, load once per worker process, predict from
several threads, and `ddf["pred"] = ddf["lyrics"].map_partitions(est.predict, meta=...)` on a LocalCluster
with 2 worker processes gives est.predict's answers."""
import copy
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import ROOT
from lyricnn import _parallel
from lyricnn.estimators import TextClassifier

TINY = {"model_type": "distilbert", "vocab_size": 30522, "dim": 32, "n_layers": 1, "n_heads": 2,
        "hidden_dim": 64, "max_position_embeddings": 64, "dropout": 0.1, "attention_dropout": 0.1,
        "seq_classif_dropout": 0.1, "initializer_range": 0.02}
WORDS = "the a song night day heart road river light rain love hate fire gold".split()


def _texts(n, seed):
    r = np.random.default_rng(seed)
    return [" ".join(r.choice(WORDS, int(r.integers(2, 12)))) for _ in range(n)]


@pytest.fixture(scope="module")
def fitted():
    X = _texts(48, 0)
    y = ["love" in t or "gold" in t for t in X]
    return TextClassifier(model=TINY, max_length=16, epochs=1, batch_size=8, verbose=0).fit(X, y)


def test_pickles_as_saved_files_and_loads_once(fitted, tmp_path):
    blob = pickle.dumps(fitted)
    saved = sum(p.stat().st_size for p in (tmp_path / "m").iterdir()) if fitted.save(tmp_path / "m") else 0
    assert len(blob) < saved + 64 * 1024   # the files, not engine objects
    assert b"lyricnn._C" not in blob
    n0 = _parallel.load_count
    a, b = pickle.loads(blob), pickle.loads(blob)
    assert a.model_ is b.model_ and _parallel.load_count == n0 + 1   # one load per process
    c = copy.deepcopy(a)
    assert c.model_ is not a.model_
    X = _texts(20, 1)
    np.testing.assert_array_equal(a.predict(X), fitted.predict(X))
    np.testing.assert_array_equal(c.predict_proba(X), fitted.predict_proba(X))
    # a fresh interpreter unpickles it (no state of this process needed)
    r = subprocess.run([sys.executable, "-c", "import pickle, sys; est = pickle.load(sys.stdin.buffer); "
                        "print(est.predict(['love gold', 'the road']).tolist())"], input=blob, capture_output=True,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().strip() == str(fitted.predict(["love gold", "the road"]).tolist())


def test_predict_from_threads(fitted):
    """One model, many threads (a Dask worker's): the calls are serialised, the answers unchanged."""
    X = _texts(64, 2)
    want = fitted.predict_proba(X)
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda i: fitted.predict_proba(X), range(8)))
    for g in got:
        np.testing.assert_array_equal(g, want)


def test_map_partitions_on_a_local_cluster(fitted):
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"lyrics": _texts(120, 3)}, index=np.arange(1000, 1120))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None,
                                  worker_dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        ddf = dd.from_pandas(df, npartitions=6)
        ddf["pred"] = ddf["lyrics"].map_partitions(fitted.predict, meta=("pred", "bool"))
        out = ddf.compute()
        info = client.run(lambda: (_parallel.load_count, __import__("lyricnn").get_num_threads()))
    assert out.index.equals(df.index)
    np.testing.assert_array_equal(out["pred"].to_numpy(), fitted.predict(df["lyrics"]))
    assert len(info) == 2
    for loads, threads in info.values():
        assert loads <= 1 and threads == 2   # loaded at most once per worker; the worker's 2 threads
