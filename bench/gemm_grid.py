"""How the CPU GEMM's shape-only grid shares out a distilbert-base training step over many threads.

    python bench/gemm_grid.py [--tokens 8192 1024] [--threads 2 4 8 16 32 64] [--layers 6]

A computation, not a timing (the development machines have 2 cores): for each GEMM of one layer's step
(forward, the input gradients and the weight gradients of the four linears, at N token rows), the tasks
that lyricnn._C.gemm_tasks gives (cpu/gemm_grid.h: tiles of C, and K chunks for the weight gradients), the
largest task's share of the GEMM's FLOPs, and how evenly OpenMP's dynamic schedule (tasks handed out in
order to whichever thread is free) shares them out at each thread count: the busiest thread's FLOPs over
an even share (1.00 = perfectly even). The step line weights each GEMM by its FLOPs: the step's speed-up
on P threads is sum(FLOPs) / sum(busiest thread's FLOPs), if every task ran at the same speed. The grid
of main before this change (at most 8 tiles of at least 4 MFLOP) is shown beside it for comparison.
"""
import argparse
import heapq
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import lyricnn  # noqa: E402,F401
from lyricnn import _C  # noqa: E402


def layer_gemms(N, C=768, F=3072):
    """(name, ta, M, N, K) of one distilbert-base layer's training step at N token rows."""
    fwd = [("qkv", N, 3 * C, C), ("out", N, C, C), ("ffn1", N, F, C), ("ffn2", N, C, F)]
    out = [("fwd " + n, 0, m, o, k) for n, m, o, k in fwd]
    out += [("dinp " + n, 0, m, k, o) for n, m, o, k in fwd]          # dinp(N, C_in) = dout(N, OC) @ W(OC, C_in)
    out += [("dW " + n, 1, o, k, m) for n, m, o, k in fwd]             # dW(OC, C_in) = dout^T @ inp, K = tokens
    return out


def old_grid_tasks(ta, M, N, K):
    """main's grid before this change (43c7cbd): a power-of-two count of ~4 MFLOP tiles, at most 8."""
    flops = 2.0 * M * N * K
    target, gm, gn = 1, 1, 1
    while target < 8 and flops / (2 * target) >= 4e6:
        target *= 2
    if target == 1 and flops >= 1e6:
        target = 2
    while target > 1:
        best = -1
        d = 1
        while d <= target:
            e = target // d
            if not ((d > 1 and M // d < 32) or (e > 1 and N // e < 64)):
                tm, tn = M / d, N / e
                score = min(tm, tn) / max(tm, tn)
                if score > best:
                    best, gm, gn = score, d, e
            d *= 2
        if best >= 0:
            break
        target //= 2
    tasks = []
    for t in range(gm * gn):
        im, i_n = divmod(t, gn)
        m0, m1 = (M * im // gm) & ~7, (M if im == gm - 1 else (M * (im + 1) // gm) & ~7)
        n0, n1 = (N * i_n // gn) & ~15, (N if i_n == gn - 1 else (N * (i_n + 1) // gn) & ~15)
        tasks.append((m0, m1, n0, n1, 0, K))
    return tasks


def flops_of(tasks):
    return [2.0 * (m1 - m0) * (n1 - n0) * (k1 - k0) for m0, m1, n0, n1, k0, k1 in tasks]


def busiest(fl, P):
    """FLOPs of the busiest of P threads under schedule(dynamic, 1): tasks in order to the first free thread."""
    heap = [(0.0, p) for p in range(P)]
    for f in fl:
        t, p = heapq.heappop(heap)
        heapq.heappush(heap, (t + f, p))
    return max(t for t, _ in heap)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, nargs="+", default=[8192, 1024],
                    help="token rows of the step (16 x 512 = 8192, 8 x 128 = 1024)")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64])
    args = ap.parse_args()
    P = args.threads
    for N in args.tokens:
        print("### %d token rows (one layer; all layers are alike)\n" % N)
        print("| GEMM | M x N x K | tasks | largest task | " + " | ".join("%d thr" % p for p in P) + " |")
        print("|---|---|---:|---:|" + "---:|" * len(P))
        tot = {"new": [0.0] * len(P), "old": [0.0] * len(P)}
        total_fl = 0.0
        for name, ta, M, Nn, K in layer_gemms(N):
            tasks = _C.gemm_tasks(ta, M, Nn, K)
            fl = flops_of(tasks)
            s = sum(fl)
            total_fl += s
            row = []
            for i, p in enumerate(P):
                b = busiest(fl, p)
                tot["new"][i] += b
                tot["old"][i] += busiest(flops_of(old_grid_tasks(ta, M, Nn, K)), p)
                row.append("%.2f" % (b / (s / p)))
            gk = len({(k0, k1) for *_, k0, k1 in tasks})
            print("| %s | %d x %d x %d | %d%s | %.1f%% | %s |" % (
                name, M, Nn, K, len(tasks), " (%d K chunks)" % gk if gk > 1 else "", 100 * max(fl) / s,
                " | ".join(row)))
        for key, label in (("new", "step, this grid"), ("old", "step, main's old grid (<= 8 tiles)")):
            print("| **%s** | | | | %s |" % (label, " | ".join(
                "%.2f (x%.1f)" % (tot[key][i] / (total_fl / p), total_fl / tot[key][i]) for i, p in enumerate(P))))
        print("\nbusiest thread / even share (1.00 = even); step: the same, FLOP-weighted, and (x speed-up)\n")


if __name__ == "__main__":
    main()
