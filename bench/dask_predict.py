"""Prediction throughput (songs/s) of a fitted estimator on Dask: in-process est.predict, then
`ddf["pred"] = ddf["lyrics"].map_partitions(est.predict, meta=...)` on a dask.distributed LocalCluster with
1 and 2 worker processes.

    python bench/dask_predict.py [--songs 1000] [--max-length 128] [--model auto] [--cores N]

The model is fitted for a few steps on a handful of songs (throughput does not depend on the weights).
Each worker gets cores // workers threads, and the engine takes them (lyricnn._parallel), so every
configuration uses the same cores; the in-process run uses them all. The lyrics are the shared
song_lyrics_21_artists set (../shared/data), or generated text when it is absent.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lyricnn  # noqa: E402
from lyricnn.estimators import TextClassifier  # noqa: E402
from lyricnn.notebook import machine  # noqa: E402


def songs(n):
    try:
        from lyricnn.datasets import load_lyrics_21

        df = load_lyrics_21()
        texts, labels = df["lyrics"].tolist(), df["artist"].tolist()
        src = "song_lyrics_21_artists"
    except (FileNotFoundError, ImportError):
        rng = np.random.default_rng(0)
        words = "love night heart road river light rain fire gold dance money girl baby time".split()
        texts = [" ".join(rng.choice(words, 200)) for _ in range(n)]
        labels = [str(i % 3) for i in range(n)]
        src = "generated text"
    order = np.random.default_rng(0).permutation(len(texts))   # the artists mixed
    texts, labels = [texts[i] for i in order], [labels[i] for i in order]
    reps = -(-n // len(texts))
    return (texts * reps)[:n], (labels * reps)[:n], src


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--songs", type=int, default=1000)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--model", default="auto")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    import dask.dataframe as dd
    import distributed
    import pandas as pd

    X, y, src = songs(a.songs)
    est = TextClassifier(model=a.model, max_length=a.max_length, epochs=1, batch_size=16, verbose=0)
    est.fit(X[:64], y[:64])
    df = pd.DataFrame({"lyrics": X})
    info = lyricnn.build_info()
    print("%d songs (%s), %s, max_length %d; %d cores of %s; lyricnn %s, BLAS %s" % (
        a.songs, src, est.model_spec_.name, a.max_length, a.cores, machine(), info["version"], info["blas"]))
    lyricnn.set_num_threads(a.cores)
    est.predict(X[:32])  # warm-up
    t0 = time.perf_counter()
    want = est.predict(df["lyrics"])
    base = a.songs / (time.perf_counter() - t0)
    print("%-34s %8.1f songs/s" % ("in process (%d threads)" % a.cores, base))
    for workers in (1, 2):
        threads = max(1, a.cores // workers)
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                                      dashboard_address=None) as cluster, distributed.Client(cluster):
            ddf = dd.from_pandas(df, npartitions=max(4, 4 * workers))
            ddf["pred"] = ddf["lyrics"].map_partitions(est.predict, meta=("pred", "object"))
            ddf.partitions[:workers].compute()  # start the workers and load the model (not timed)
            t0 = time.perf_counter()
            out = ddf.compute()
            rate = a.songs / (time.perf_counter() - t0)
        assert (out["pred"].to_numpy() == want).all(), "Dask's predictions differ from est.predict's"
        print("%-34s %8.1f songs/s  (%.2fx in process)" % ("Dask, %d worker%s x %d threads" % (
            workers, "s" if workers > 1 else "", threads), rate, rate / base))


if __name__ == "__main__":
    main()
