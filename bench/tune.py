"""Benchmark: lyricnn.tune against the hand-written sweep loop it replaces, and what pruning saves.

    python bench/tune.py [--poems 320] [--trials 12] [--model tiny-distilbert] [--epochs 2] [--metric f1_macro]
                         [--threads N] [--quick]

The task: the bundled public-domain poems (lyricnn.datasets.load_poets: 4 poets), a stratified sample, a
TextClassifier fine-tuned for --epochs epochs, the validation metric every 4 steps, seeded. Setups, one run:
  1. loop: the peer, a plain Python loop of fit() over the 12 configurations setup 2 drew (the same
     parameters, split and seeds), each scored on the validation split;
  2. tune, no pruning: lyricnn.tune(pruner=None), seeded TPE (the per-trial cost of the search: the
     sampler, the storage, the fresh estimator, the reporting callback);
  3. tune, median pruning: lyricnn.tune(pruner="median"), the default.
Prints a markdown table: seconds, trials, training steps, the best validation score, and the time over the
loop's (the loop's best score equals tune's without pruning: the same configurations, the same bits).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import lyricnn  # noqa: E402
from lyricnn.data import stratified_split  # noqa: E402
from lyricnn.datasets import load_poets  # noqa: E402
from lyricnn.estimators import TextClassifier  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--poems", type=int, default=320)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--model", default="tiny-distilbert")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--metric", default="f1_macro", choices=TextClassifier.VALIDATION_METRICS)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--quick", action="store_true", help="160 poems, 6 trials")
    a = ap.parse_args()
    if a.quick:
        a.poems, a.trials = 160, 6
    lyricnn.set_num_threads(a.threads)
    poems = load_poets()
    texts, labels = np.array(poems["text"], dtype=object), np.array(poems["label"])
    _, pick = stratified_split(labels, test_size=a.poems, seed=0)
    texts, labels = texts[pick], labels[pick]
    tr, va = stratified_split(labels, test_size=0.2, seed=0)
    base = TextClassifier(model=a.model, max_length=a.max_length, epochs=a.epochs, batch_size=16, eval_steps=4,
                          head=dict(pooling="mean", hidden=[64]), seed=0, verbose=0)
    space = {"lr": ("log", 1e-5, 1e-2), "weight_decay": ("uniform", 0.0, 0.1), "schedule": ["linear", "cosine"],
             "head": {"hidden": [[64], [128, 64]], "dropout": ("uniform", 0.0, 0.3)}}
    kw = dict(n_trials=a.trials, metric=a.metric, cv=[(tr, va)], seed=0, verbose=0)
    rows = []

    def steps(study):
        return sum(t.user_attrs.get("n_steps", 0) for t in study.trials)

    w = tr[::max(1, len(tr) // 32)]
    TextClassifier(**{**base.get_params(), "epochs": 1}).fit(list(texts[w]), labels[w])  # warm-up, untimed
    t0 = time.perf_counter()
    res = lyricnn.tune(base, list(texts), labels, space, pruner=None, **kw)
    t_tune = time.perf_counter() - t0
    configs = [res.study.trials[i].params for i in range(len(res.study.trials))]

    t0 = time.perf_counter()
    scores, n_steps = [], 0
    for flat in configs:  # the peer: what a hand-written sweep does with the same configurations
        head = dict(base.head, hidden=[int(w) for w in flat["head.hidden"].strip("[]").split(",")],
                    dropout=flat["head.dropout"])
        est = TextClassifier(**{**base.get_params(), "lr": flat["lr"], "weight_decay": flat["weight_decay"],
                                "schedule": flat["schedule"], "head": head})
        est.fit(list(texts[tr]), labels[tr], eval_set=(list(texts[va]), labels[va]))
        scores.append(float(est.history_["val_" + a.metric].dropna().iloc[-1]))
        n_steps += est.n_steps_
    t_loop = time.perf_counter() - t0
    best = min(scores) if res.direction == "minimize" else max(scores)
    rows.append(("loop of fit() (the peer)", t_loop, len(configs), n_steps, best))
    rows.append(("lyricnn.tune, no pruning", t_tune, len(res.study.trials), steps(res.study), res.best_score_))

    t0 = time.perf_counter()
    pr = lyricnn.tune(base, list(texts), labels, space, pruner="median", **kw)
    t_pr = time.perf_counter() - t0
    n_pruned = sum(t.state.name == "PRUNED" for t in pr.study.trials)
    rows.append(("lyricnn.tune, median pruning (%d pruned)" % n_pruned, t_pr, len(pr.study.trials),
                 steps(pr.study), pr.best_score_))

    print("\n%d poems (%d train, %d validation), %s, max_length %d, %d epochs, batch 16, %d threads\n"
          % (len(texts), len(tr), len(va), a.model, a.max_length, a.epochs, a.threads))
    print("| setup | seconds | trials | steps trained | best val %s | time / loop time |" % a.metric)
    print("|---|---:|---:|---:|---:|---:|")
    for name, sec, n, st, f1 in rows:
        print("| %s | %.1f | %d | %d | %.4f | %.2fx |" % (name, sec, n, st, f1, sec / t_loop))


if __name__ == "__main__":
    main()
