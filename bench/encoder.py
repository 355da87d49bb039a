"""Benchmark: lyricnn's C encoder vs transformers+torch on distilbert-base (random init), CPU fp32.

    python bench/encoder.py [--threads N] [--quick] [--reps R] [--openblas-core SkylakeX]

Same thread count for both engines (torch.set_num_threads / lyricnn.set_num_threads), same padded
batch (random lengths, attention mask). Forward = inference (no grad, dropout off); forward+backward =
training mode (dropout 0.1 as in the config), loss sum(out * g). Prints a markdown table: best-of-R times
(the engines alternate, so both see the same machine load),
achieved GFLOP/s (matmul FLOPs of the model), fraction of the measured SGEMM rate, and the ratio.
"""
import argparse
import ctypes
import os
import sys
import time

if "--openblas-core" in sys.argv:  # must be set before the BLAS library loads
    os.environ["OPENBLAS_CORETYPE"] = sys.argv[sys.argv.index("--openblas-core") + 1]

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
import transformers  # noqa: E402

import lyricnn  # noqa: E402
from lyricnn.encoder import Encoder  # noqa: E402


def flops_forward(cfg, B, T):
    C, F, L = cfg["dim"], cfg["hidden_dim"], cfg["n_layers"]
    N = B * T
    return L * (2 * N * (4 * C * C + 2 * C * F) + 4 * B * T * T * C)


def timeit(fn, reps, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def timeit_pair(fa, fb, reps, warmup=1):
    """Best-of-reps times of fa and fb, alternating them so that both see the same machine load
    (the minimum is the estimate least disturbed by other processes)."""
    for _ in range(warmup):
        fa()
        fb()
    ta, tb = [], []
    for _ in range(reps):
        t = time.perf_counter()
        fa()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        fb()
        tb.append(time.perf_counter() - t)
    return min(ta), min(tb)


def _openblas():
    import scipy_openblas32 as sob
    return ctypes.CDLL(os.path.join(sob.get_lib_dir(), sob.get_library(fullname=True)))


def blas_core():
    return lyricnn.build_info().get("blas_core") or "?"


def _library_sgemm(n, A, Bm, Cm):
    """A callable running one n^3 SGEMM (row-major, one thread per the library's own threading) with the
    library lyricnn was built with: oneDNN's dnnl_sgemm or the scipy-openblas32 wheel."""
    P, f, i64 = ctypes.c_void_p, ctypes.c_float, ctypes.c_int64
    if "onednn" in lyricnn.build_info().get("blas", "").lower():
        lib = ctypes.CDLL("libdnnl.so.2")
        lib.dnnl_sgemm.argtypes = [ctypes.c_char, ctypes.c_char, i64, i64, i64, f, P, i64, P, i64, f, P, i64]
        return "oneDNN", lambda: lib.dnnl_sgemm(b"N", b"N", n, n, n, 1.0, A.ctypes.data, n, Bm.ctypes.data, n,
                                               0.0, Cm.ctypes.data, n)
    lib = _openblas()
    lib.scipy_openblas_set_num_threads(torch.get_num_threads())
    return "openblas", lambda: lib.scipy_cblas_sgemm(101, 111, 111, n, n, n, f(1.0), A.ctypes.data_as(P), n,
                                                     Bm.ctypes.data_as(P), n, f(0.0), Cm.ctypes.data_as(P), n)


def sgemm_rates(n=2048, reps=3):
    """GFLOP/s of one large SGEMM: torch.mm and the GEMM library lyricnn links (all threads)."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    t_torch = timeit(lambda: torch.mm(a, b), reps)
    rates = {"torch.mm": 2 * n ** 3 / t_torch / 1e9}
    try:
        A = np.random.rand(n, n).astype(np.float32)
        Bm = np.random.rand(n, n).astype(np.float32)
        Cm = np.zeros((n, n), np.float32)
        name, run = _library_sgemm(n, A, Bm, Cm)
        rates[name] = 2 * n ** 3 / timeit(run, reps) / 1e9
    except Exception as e:  # pragma: no cover
        print("(the library's sgemm not measured: %s)" % e, file=sys.stderr)
    return rates


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions (median); default 5, quick 2")
    ap.add_argument("--quick", action="store_true", help="only (8,128), 2 repetitions")
    ap.add_argument("--attn", default="sdpa", help="torch attention implementation (sdpa or eager)")
    ap.add_argument("--openblas-core", default=None,
                    help="force OpenBLAS's kernel set (OPENBLAS_CORETYPE) for builds with the OpenBLAS fallback, "
                         "e.g. SkylakeX on AVX-512 CPUs")
    args = ap.parse_args()
    reps = args.reps or (2 if args.quick else 5)
    shapes = [(8, 128)] if args.quick else [(8, 128), (32, 128), (8, 512)]

    torch.set_num_threads(args.threads)
    lyricnn.set_num_threads(args.threads)
    torch.manual_seed(0)
    conf = transformers.DistilBertConfig()  # distilbert-base-uncased sizes
    model = transformers.DistilBertModel(conf)
    model.set_attn_implementation(args.attn)
    cfg = conf.to_dict()
    enc = Encoder.from_state_dict(cfg, {k: v.detach().numpy() for k, v in model.state_dict().items()})

    rates = sgemm_rates()
    peak = max(rates.values())
    print("threads=%d  torch %s (attn=%s)  transformers %s  lyricnn %s  BLAS %s (core %s)" % (
        args.threads, torch.__version__, args.attn, transformers.__version__, lyricnn.__version__,
        lyricnn.build_info().get("blas"), blas_core()))
    print("measured SGEMM 2048^3: " + ", ".join("%s %.1f GFLOP/s" % kv for kv in rates.items()))
    print()
    rows = []
    rng = np.random.default_rng(0)
    for B, T in shapes:
        ids = rng.integers(1000, conf.vocab_size, size=(B, T)).astype(np.int64)
        lengths = rng.integers(T // 2, T + 1, size=B)
        lengths[0] = T
        mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
        ids[mask == 0] = 0
        tid, tmask = torch.tensor(ids), torch.tensor(mask)
        g = rng.standard_normal((B, T, conf.dim)).astype(np.float32)
        tg = torch.tensor(g)
        fl = flops_forward(cfg, B, T)

        def torch_fwd():
            with torch.no_grad():
                model(input_ids=tid, attention_mask=tmask)

        def torch_fb():
            model.zero_grad(set_to_none=True)
            out = model(input_ids=tid, attention_mask=tmask).last_hidden_state
            (out * tg).sum().backward()

        def lnn_fwd():
            enc(ids, mask)

        def lnn_fb():
            enc.zero_grad()
            enc(ids, mask, train=True)
            enc.backward(g)

        model.eval()
        t_tf, t_lf = timeit_pair(torch_fwd, lnn_fwd, reps)
        model.train()
        t_tb, t_lb = timeit_pair(torch_fb, lnn_fb, reps)
        for name, tt, tl, f in (("forward", t_tf, t_lf, fl), ("fwd+bwd", t_tb, t_lb, 3 * fl)):
            rows.append((B, T, name, tt, tl, f))
    print("| B | T | pass | torch ms | lyricnn ms | lyricnn/torch | torch GFLOP/s | lyricnn GFLOP/s "
          "| torch % SGEMM | lyricnn % SGEMM |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for B, T, name, tt, tl, f in rows:
        gt, gl = f / tt / 1e9, f / tl / 1e9
        print("| %d | %d | %s | %.1f | %.1f | %.2fx | %.1f | %.1f | %.0f%% | %.0f%% |" % (
            B, T, name, tt * 1e3, tl * 1e3, tl / tt, gt, gl, 100 * gt / peak, 100 * gl / peak))


if __name__ == "__main__":
    main()
