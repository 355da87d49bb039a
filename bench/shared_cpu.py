"""Benchmark: a training step at 1 and 2 threads, with the cores free and beside a busy process.

    python bench/shared_cpu.py [--reps 5] [--shape 8x128] [--builds this=. other=/path/to/checkout ...]

Steps: the LSTM baseline's (bench/lstm.py's model: batch 64, 50-400 words, embedding 500, 2 x LSTM 128, Adam)
and a distilbert-base encoder forward+backward (random init, B x T padded batch, dropout on). Each runs in a
child process (so the OpenMP runtime starts with the environment it would have) at 1 and 2 threads:
  - alone;
  - beside a busy process (`python -c 'while 1: pass'`), which the scheduler places;
  - beside a busy process pinned to the last CPU.
Prints a markdown table of the median (and best) step time of each; the goal is that 2 threads are never
slower than 1 beside a busy process, and as fast as before when the cores are free. --builds compares
checkouts (each a directory holding a built lyricnn/), alternating them. On a machine with more than 2 CPUs,
run it under `taskset -c 0,1` to see the 2-core case.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
import lyricnn
kind, nt, reps, shape = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
lyricnn.set_num_threads(nt)
rng = np.random.default_rng(0)
if kind == "lstm":
    net = lyricnn.LSTMNet(14771, embedding_dim=500, hidden_size=128, num_layers=2, num_labels=3)
    net.configure_optimizer("adam", lr=1e-3, max_grad_norm=5.0)
    lengths = np.sort(rng.integers(50, 401, size=64))[::-1].copy()
    T = int(lengths.max())
    ids = rng.integers(2, 14771, size=(64, T)).astype(np.int64)
    ids[np.arange(T)[None, :] >= lengths[:, None]] = 0
    labels = rng.integers(0, 3, size=64).astype(np.int64)
    step = lambda: net.train_step(ids, lengths, labels)
else:
    from lyricnn.encoder import Encoder
    enc = Encoder.from_config(dict(model_type="distilbert"), seed=0)
    B, T = map(int, shape.split("x"))
    ids = rng.integers(1000, 30000, size=(B, T)).astype(np.int64)
    lengths = rng.integers(T // 2, T + 1, size=B)
    lengths[0] = T
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
    g = rng.standard_normal((B, T, 768)).astype(np.float32)
    def step():
        enc.zero_grad()
        enc(ids, mask, train=True, seed=0)
        enc.backward(g)
step()
ts = []
for _ in range(reps):
    t = time.perf_counter()
    step()
    ts.append(time.perf_counter() - t)
ts.sort()
print("%.6f %.6f" % (ts[len(ts) // 2], ts[0]))
"""

BUSY = "while 1: pass"


def run(build, kind, nt, reps, shape, busy):
    hog = None
    if busy:
        pre = None
        if busy == "pinned":
            cpu = max(os.sched_getaffinity(0))
            pre = lambda: os.sched_setaffinity(0, {cpu})  # noqa: E731
        hog = subprocess.Popen([sys.executable, "-c", BUSY], preexec_fn=pre)
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, build, kind, str(nt), str(reps), shape],
                             capture_output=True, text=True, timeout=3600)
    finally:
        if hog:
            hog.kill()
            hog.wait()
    if out.returncode:
        sys.exit(out.stderr)
    med, best = map(float, out.stdout.split()[-2:])
    return med, best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--shape", default="8x128", help="the encoder's batch, B x T")
    ap.add_argument("--builds", nargs="+", default=["this=" + os.path.dirname(HERE)],
                    help="label=directory of a checkout with a built lyricnn/")
    args = ap.parse_args()
    builds = [b.split("=", 1) for b in args.builds]
    rows = []
    for kind, label in (("lstm", "LSTM step (64 songs)"), ("encoder", "distilbert-base fwd+bwd %s" % args.shape)):
        for busy in (None, "busy", "pinned"):
            cells = []
            for name, path in builds:
                t = {nt: run(path, kind, nt, args.reps, args.shape, busy) for nt in (1, 2)}
                cells.append("%.0f / %.0f ms (%.2fx)" % (1e3 * t[1][0], 1e3 * t[2][0], t[2][0] / t[1][0]))
            where = {None: "cores free", "busy": "beside a busy process",
                     "pinned": "beside a busy process pinned to CPU %d" % max(os.sched_getaffinity(0))}[busy]
            rows.append("| %s | %s | %s |" % (label, where, " | ".join(cells)))
    print("CPUs %s, reps %d, median step; 1 thread / 2 threads (2 threads over 1)" % (
        sorted(os.sched_getaffinity(0)), args.reps))
    print()
    print("| step | load | " + " | ".join(n for n, _ in builds) + " |")
    print("|---|---|" + "---:|" * len(builds))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
