"""Quality of the long-text modes on the 21-artist lyrics: which way of reading a song past 512 tokens classifies
its artist best, and at what training cost.

    python bench/long_text_quality.py [--artists Eminem,Drake,...] [--songs-per-artist 120] [--epochs 2]
                                      [--seeds 0,1,2] [--configs trunc128,...] [--threads 2] [--out DIR]

Data: lyricnn.datasets.load_lyrics_21 with the artists' names, aliases and bracketed credits masked (many songs
name their artist in headers and credits, which leaks the label), a seeded subset of --songs-per-artist songs of
each artist (seed 0, the same in every run), one fixed stratified split (lyricnn.data.stratified_split, seed 0,
--test-size). Every configuration trains the pretrained all-MiniLM-L6-v2 (a BERT, its HF head) with the same
epochs, learning rate, schedule and seed, on the same songs; only the way a song is read changes:
  trunc128 / trunc256 / trunc512   long_text="truncate" at max_length 128 / 256 / 512;
  head_tail512                     the first 128 and the last 382 tokens (Sun et al. 2019);
  win_mean / win_max / win_att     long_text="windows": every window of --window-length tokens (stride
                                   --window-stride), pooled per song by mean / max / attention; batches of
                                   --batch-size x 512 tokens (trunc512's), a longer song in a batch of its own;
  lstm                             the word-level LSTM on whole songs (max_length=None), its own defaults
                                   (Adam 1e-3, --lstm-epochs epochs: from random init it needs more than MiniLM).
Reported per run (CSV) and per configuration over the seeds (markdown, mean +- std): accuracy and macro F1 on the
test songs, the same on the test songs longer than 512 tokens (full WordPiece length), the training time
(wall clock of fit) and the tokens the encoder read in training. No lyrics are written. Runs already in the
CSV are skipped, so an interrupted sweep continues where it stopped.
"""
import argparse
import csv
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import lyricnn  # noqa: E402
from lyricnn import metrics  # noqa: E402
from lyricnn.data import stratified_split  # noqa: E402
from lyricnn.datasets import load_lyrics_21  # noqa: E402
from lyricnn.models import minilm_dir  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ARTISTS = "Eminem,Drake,Nicki Minaj,Cardi B,Katy Perry,Taylor Swift"  # the six
CONFIGS = ("trunc128", "trunc256", "trunc512", "head_tail512", "win_mean", "win_max", "win_att", "lstm")
FIELDS = ("config", "seed", "accuracy", "f1_macro", "accuracy_long", "f1_macro_long", "n_test", "n_test_long",
          "train_s", "predict_s", "steps", "train_tokens", "max_length", "epochs", "threads")


def settings(name, a):
    """The estimator of a configuration."""
    common = dict(model="all-MiniLM-L6-v2", epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, verbose=0,
                  max_length=512)
    if name.startswith("trunc"):
        return lyricnn.TextClassifier(**dict(common, max_length=int(name[5:])))
    if name == "head_tail512":
        return lyricnn.TextClassifier(long_text="head_tail", **common)
    if name.startswith("win_"):  # batches of batch_size * 512 tokens, as trunc512's (a longer song alone)
        pool = {"mean": "mean", "max": "max", "att": "attention"}[name[4:]]
        return lyricnn.TextClassifier(long_text="windows", window_pooling=pool, window_stride=a.window_stride,
                                      max_windows=a.max_windows, **dict(common, max_length=a.window_length,
                                                                         batch_size=a.batch_size * 512 // a.window_length))
    if name == "lstm":
        from lyricnn.lstm import LSTMClassifier
        return LSTMClassifier(max_length=None, epochs=a.lstm_epochs, batch_size=32, verbose=0)
    raise SystemExit("unknown configuration %r; choose from %s" % (name, ", ".join(CONFIGS)))


def data(a):
    df = load_lyrics_21(artists=[s.strip() for s in a.artists.split(",")], mask_artists=True)
    rng = np.random.default_rng(0)
    keep = []
    for _, g in df.groupby("artist", sort=True):
        idx = g.index.to_numpy()
        keep += sorted(idx[rng.permutation(len(idx))[:a.songs_per_artist]].tolist())
    df = df.loc[keep].reset_index(drop=True)
    tr, te = stratified_split(df["artist"].to_numpy(), test_size=a.test_size, seed=0)
    tok = lyricnn.Tokenizer.from_pretrained(minilm_dir())
    n_tok = np.array([len(x) for x in tok(df["lyrics"].tolist())["input_ids"]])
    return df, tr, te, n_tok


def train_tokens(est, texts):
    """Real tokens the encoder reads per epoch in training (the estimator's own tokenization)."""
    if not hasattr(est, "tokenizer_"):
        return 0
    rows = est._tokenize(texts)
    return int(sum(sum(len(w) for w in r) if isinstance(r, list) else len(r) for r in rows))


def run(name, seed, a, df, tr, te, n_tok):
    est = settings(name, a).set_params(seed=seed)
    X, y = df["lyrics"].to_numpy(), df["artist"].to_numpy()
    t0 = time.perf_counter()
    est.fit(X[tr], y[tr])
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = est.predict(X[te])
    t_pred = time.perf_counter() - t0
    labels = sorted(set(y))
    rep = metrics.classification_report(y[te], pred, labels=labels)
    long = n_tok[te] > 512
    rep_l = metrics.classification_report(y[te][long], pred[long], labels=labels)
    return dict(config=name, seed=seed, accuracy=rep["accuracy"], f1_macro=rep["f1_macro"],
                accuracy_long=rep_l["accuracy"], f1_macro_long=rep_l["f1_macro"], n_test=len(te),
                n_test_long=int(long.sum()), train_s=round(t_fit, 1), predict_s=round(t_pred, 1), steps=est.n_steps_,
                train_tokens=train_tokens(est, X[tr].tolist()) * (a.lstm_epochs if name == "lstm" else a.epochs),
                max_length=getattr(est, "max_length", None), epochs=a.lstm_epochs if name == "lstm" else a.epochs,
                threads=lyricnn.get_num_threads())


def summary(rows, a, df, tr, te, n_tok):
    out = ["# Long texts: quality of the modes (bench/long_text_quality.py)", "",
           "%d songs of %d artists (%s), names and credits masked; %d train / %d test (%d test songs longer than "
           "512 tokens); all-MiniLM-L6-v2, %d epochs, lr %g, batch %d, seeds %s; windows of %d tokens, stride %d%s; "
           "LSTM on whole songs, %d epochs. Mean +- std over seeds; train s is the wall clock of fit on %d threads "
           "(under nice on a shared machine: compare within this table only)." % (
               len(df), df["artist"].nunique(), ", ".join(sorted(df["artist"].unique())), len(tr), len(te),
               int((n_tok[te] > 512).sum()), a.epochs, a.lr, a.batch_size, a.seeds, a.window_length, a.window_stride,
               "" if a.max_windows is None else ", at most %d per song" % a.max_windows, a.lstm_epochs, a.threads), "",
           "| mode | accuracy | macro F1 | accuracy > 512 | macro F1 > 512 | train s | train tokens / epoch | runs |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in CONFIGS:
        rs = [r for r in rows if r["config"] == name]
        if not rs:
            continue

        def ms(k, fmt="%.3f"):
            v = np.array([float(r[k]) for r in rs])
            v = v[~np.isnan(v)]  # a run whose fit time was not taken (paused) still counts for its scores
            if not len(v):
                return "n/a"
            return (fmt + " +- " + fmt) % (v.mean(), v.std(ddof=1) if len(v) > 1 else 0.0) + (
                "" if len(v) == len(rs) else " (%d runs)" % len(v))
        tok = np.mean([float(r["train_tokens"]) / float(r["epochs"]) for r in rs])
        out.append("| %s | %s | %s | %s | %s | %s | %.0f | %d |" % (
            name, ms("accuracy"), ms("f1_macro"), ms("accuracy_long"), ms("f1_macro_long"), ms("train_s", "%.0f"),
            tok, len(rs)))
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artists", default=ARTISTS)
    ap.add_argument("--songs-per-artist", type=int, default=30)
    ap.add_argument("--test-size", type=float, default=0.3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lstm-epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--window-length", type=int, default=128)
    ap.add_argument("--window-stride", type=int, default=0)
    ap.add_argument("--max-windows", type=int, default=None)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args()
    lyricnn.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "long_text_quality.csv")
    rows = list(csv.DictReader(open(path))) if os.path.exists(path) else []
    done = {(r["config"], int(r["seed"])) for r in rows}
    df, tr, te, n_tok = data(a)
    print("%d songs, %d train / %d test, %d test songs > 512 tokens" % (len(df), len(tr), len(te),
                                                                        int((n_tok[te] > 512).sum())), flush=True)
    for seed in [int(s) for s in a.seeds.split(",")]:
        for name in a.configs.split(","):
            if (name, seed) in done:
                continue
            r = run(name, seed, a, df, tr, te, n_tok)
            rows.append(r)
            new = not os.path.exists(path)
            with open(path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=FIELDS)
                if new:
                    w.writeheader()
                w.writerow(r)
            print("%s seed %d: acc %.3f f1 %.3f | >512: acc %.3f f1 %.3f | fit %.0f s" % (
                name, seed, r["accuracy"], r["f1_macro"], r["accuracy_long"], r["f1_macro_long"], r["train_s"]),
                flush=True)
            with open(os.path.join(a.out, "long_text_quality.md"), "w") as f:
                f.write(summary(rows, a, df, tr, te, n_tok))
    text = summary(rows, a, df, tr, te, n_tok)
    with open(os.path.join(a.out, "long_text_quality.md"), "w") as f:   # also when every run was in the CSV
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
