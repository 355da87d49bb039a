"""Benchmark: builds of lyricnn against each other, in one process, step by step.

    python bench/builds.py base=/path/to/checkout-a new=/path/to/checkout-b [--threads 2] [--rounds 15]
                           [--steps 8x128 4x512 lstm]

Each checkout's built lyricnn/ is imported as a package of its own (lyr_<label>), so one process holds them
all, and their steps alternate (the order reversed every other round): both see the same machine load,
which on a shared or virtual machine drifts by more than the differences measured. Steps: a distilbert-base
encoder forward+backward on a B x T padded batch (dropout on), or "lstm", the LSTM baseline's training
step (batch 64, 50-400 words). Prints each build's best and median step and, for every build after the
first, the median of the per-round ratios to the first (with the quartiles): the figure to read.
"""
import argparse
import importlib
import os
import sys
import tempfile
import time

import numpy as np


def load(label, path):
    d = os.path.join(tempfile.gettempdir(), "lyricnn-builds", label)
    os.makedirs(d, exist_ok=True)
    link = os.path.join(d, "lyr_" + label)
    if os.path.islink(link):
        os.unlink(link)
    os.symlink(os.path.join(os.path.abspath(path), "lyricnn"), link)
    sys.path.insert(0, d)
    return importlib.import_module("lyr_" + label)


def steps_for(mods, spec, rng):
    if spec == "lstm":
        lengths = np.sort(rng.integers(50, 401, size=64))[::-1].copy()
        T = int(lengths.max())
        ids = rng.integers(2, 14771, size=(64, T)).astype(np.int64)
        ids[np.arange(T)[None, :] >= lengths[:, None]] = 0
        labels = rng.integers(0, 3, size=64).astype(np.int64)
        out = []
        for m in mods:
            if not hasattr(m, "LSTMNet"):  # a build from before the LSTM baseline
                out.append(None)
                continue
            net = m.LSTMNet(14771, embedding_dim=500, hidden_size=128, num_layers=2, num_labels=3)
            net.configure_optimizer("adam", lr=1e-3, max_grad_norm=5.0)
            out.append(lambda net=net: net.train_step(ids, lengths, labels))
        return out
    B, T = map(int, spec.split("x"))
    ids = rng.integers(1000, 30000, size=(B, T)).astype(np.int64)
    lengths = rng.integers(T // 2, T + 1, size=B)
    lengths[0] = T
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
    g = rng.standard_normal((B, T, 768)).astype(np.float32)
    out = []
    for m in mods:
        enc = m.Encoder.from_config(dict(model_type="distilbert"), seed=0)

        def fb(enc=enc):
            enc.zero_grad()
            enc(ids, mask, train=True, seed=0)
            enc.backward(g)
        out.append(fb)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("builds", nargs="+", help="label=checkout directory (with a built lyricnn/)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", nargs="+", default=["8x128"], help="B x T encoder steps, or lstm")
    args = ap.parse_args()
    labels, mods = [], []
    for spec in args.builds:
        label, path = spec.split("=", 1)
        m = load(label, path)
        m.set_num_threads(args.threads)
        labels.append(label)
        mods.append(m)
    print("threads=%d rounds=%d; " % (args.threads, args.rounds) + "; ".join(
        "%s: %s, %s, cpu %s" % (lb, m.build_info()["blas"], m.build_info().get("blas_core"),
                                m.build_info().get("cpu_level", "-")) for lb, m in zip(labels, mods)))
    print("\n| step | " + " | ".join("%s best / median s" % lb for lb in labels) + " | " +
          " | ".join("%s / %s (q25, q75)" % (lb, labels[0]) for lb in labels[1:]) + " |")
    print("|---|" + "---:|" * (2 * len(labels) - 1))
    rng = np.random.default_rng(0)
    for spec in args.steps:
        fns = steps_for(mods, spec, rng)
        for f in fns:
            if f:
                f()
        T = [[] for _ in fns]
        for r in range(args.rounds):
            for i in (range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))):
                if fns[i]:
                    t = time.perf_counter()
                    fns[i]()
                    T[i].append(time.perf_counter() - t)
        cells = ["%.3f / %.3f" % (min(ts), sorted(ts)[len(ts) // 2]) if ts else "-" for ts in T]
        for i in range(1, len(fns)):
            if not T[i] or not T[0]:
                cells.append("-")
                continue
            q = sorted(a / b for a, b in zip(T[i], T[0]))
            n = len(q)
            cells.append("%+.1f%% (%+.1f%%, %+.1f%%)" % (100 * (q[n // 2] - 1), 100 * (q[n // 4] - 1),
                                                       100 * (q[(3 * n) // 4] - 1)))
        print("| %s | %s |" % (spec, " | ".join(cells)), flush=True)


if __name__ == "__main__":
    main()
