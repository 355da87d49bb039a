"""The CPU GEMM's shape-only grid (csrc/cpu/gemm_grid.h, csrc/cpu/gemm.c): its tasks cover C and K exactly
once, the results are the same bits on any thread count, and a distilbert-base step has enough tasks to
keep many cores busy (bench/gemm_grid.py prints the same computation)."""
import heapq

import numpy as np
import pytest

import lyricnn
from lyricnn import _C

SHAPES = [  # (ta, M, N, K): distilbert-base at 8 x 128 and 16 x 512 tokens, LSTM steps, LoRA, odd and tiny sizes
    (0, 1024, 2304, 768), (0, 8192, 768, 3072), (0, 6037, 3072, 768), (1, 768, 768, 8192), (1, 3072, 768, 6037),
    (1, 768, 3072, 1024), (0, 64, 512, 128), (0, 12, 512, 128), (0, 8192, 8, 768), (1, 8, 768, 8192),
    (1, 768, 8, 8192), (0, 1, 1, 1), (0, 33, 65, 7), (1, 517, 640, 648), (0, 100000, 2, 3), (0, 5, 0, 3),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "ta%d-%dx%dx%d" % s)
def test_gemm_tasks_cover_c_and_k_once(shape):
    ta, M, N, K = shape
    tasks = _C.gemm_tasks(ta, M, N, K)
    n = len(tasks)
    assert n >= 1 and n & (n - 1) == 0, "%d tasks: a power of two shares out evenly on 2, 4, 8 ... threads" % n
    cover = {}
    for m0, m1, n0, n1, k0, k1 in tasks:
        assert 0 <= m0 <= m1 <= M and 0 <= n0 <= n1 <= N and 0 <= k0 < k1 <= K or (M * N * K == 0)
        cover.setdefault((m0, m1, n0, n1), []).append((k0, k1))
    rows = np.zeros((M, N), np.int64) if M * N <= 10 ** 7 else None
    for (m0, m1, n0, n1), ks in cover.items():
        ks.sort()
        if M * N * K:
            assert ks[0][0] == 0 and ks[-1][1] == K and all(a[1] == b[0] for a, b in zip(ks, ks[1:])), \
                "K chunks of a tile must partition K in order: %s" % ks
        if rows is not None:
            rows[m0:m1, n0:n1] += 1
    if rows is not None and M * N:
        assert (rows == 1).all(), "every element of C in exactly one tile"


def _gemms(be, rng, N, C, OC):
    inp = rng.standard_normal((N, C)).astype(np.float32)
    w = (rng.standard_normal((OC, C)) / 30).astype(np.float32)
    b = rng.standard_normal(OC).astype(np.float32)
    dout = rng.standard_normal((N, OC)).astype(np.float32)
    out = np.zeros((N, OC), np.float32)
    be.call("matmul_forward", out=out, inp=inp, w=w, b=b, N=N, C=C, OC=OC)
    dinp = rng.standard_normal((N, C)).astype(np.float32)  # accumulates: a prefilled gradient
    dw = rng.standard_normal((OC, C)).astype(np.float32)
    db = np.zeros(OC, np.float32)
    d0, w0 = dinp.copy(), dw.copy()
    be.call("matmul_backward", dinp=dinp, dw=dw, db=db, dout=dout, inp=inp, w=w, N=N, C=C, OC=OC)
    return dict(out=out, dinp=dinp, dw=dw), dict(inp=inp, w=w, b=b, dout=dout, d0=d0, w0=w0)


def test_large_gemm_same_bits_on_1_2_4_8_16_threads():
    """A GEMM of many tiles (forward: 4 x 2, input gradient: 4 x 1) and of K chunks (the weight gradient:
    2 tiles x 2 chunks of 1024 token rows): the same bits on 1, 2, 4, 8 and 16 threads."""
    N, C, OC = 2048, 768, 1536
    assert len(_C.gemm_tasks(0, N, OC, C)) >= 8 and len({t[4:] for t in _C.gemm_tasks(1, OC, C, N)}) >= 2
    be = _C.Backend("cpu")
    n0, runs = lyricnn.get_num_threads(), {}
    try:
        for nt in (1, 2, 4, 8, 16):
            lyricnn.set_num_threads(nt)
            runs[nt], inputs = _gemms(be, np.random.default_rng(7), N, C, OC)
    finally:
        lyricnn.set_num_threads(n0)
    for nt in (2, 4, 8, 16):
        for k in runs[1]:
            assert runs[nt][k].tobytes() == runs[1][k].tobytes(), "%s differs between 1 and %d threads" % (k, nt)
    x = {k: v.astype(np.float64) for k, v in inputs.items()}
    ref = dict(out=x["inp"] @ x["w"].T + x["b"], dinp=x["d0"] + x["dout"] @ x["w"],
               dw=x["w0"] + x["dout"].T @ x["inp"])
    for k, r in ref.items():
        err = np.abs(runs[1][k] - r).max() / np.abs(r).max()
        assert err < 1e-5, "%s: relative error %.2g against float64" % (k, err)


def _speedup(N, P):
    """FLOP-weighted speed-up of one distilbert-base layer's GEMMs (training step, N token rows) on P threads
    under the dynamic schedule, if every task ran at the same speed (bench/gemm_grid.py)."""
    C, F = 768, 3072
    fwd = [(N, 3 * C, C), (N, C, C), (N, F, C), (N, C, F)]
    gemms = [(0, m, o, k) for m, o, k in fwd] + [(0, m, k, o) for m, o, k in fwd] + [(1, o, k, m) for m, o, k in fwd]
    total = busiest = 0.0
    for ta, M, Nn, K in gemms:
        fl = [2.0 * (m1 - m0) * (n1 - n0) * (k1 - k0) for m0, m1, n0, n1, k0, k1 in _C.gemm_tasks(ta, M, Nn, K)]
        heap = [0.0] * P
        for f in fl:
            heapq.heappush(heap, heapq.heappop(heap) + f)
        total += sum(fl)
        busiest += max(heap)
    return total / busiest


def test_distilbert_step_shares_out_over_many_threads():
    # 16 x 512 tokens: the step of bench/finetune.py; the previous grid (at most 8 tiles) stopped at x8
    assert _speedup(8192, 2) > 1.99
    assert _speedup(8192, 16) > 15.0
    assert _speedup(8192, 32) > 20.0
