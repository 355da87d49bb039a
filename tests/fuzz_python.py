"""The Python-level fuzz harness: mutated arguments for every op of the per-op bench (lyricnn._C.Backend.call)
and for the models' forward and train_step (DistilBERT with its HF head, BERT with token types and a
configurable head with features, the LSTM), for a bounded time.

Each call starts from a valid one and mutates one to three of its arguments: dtypes (float64, int64, float16,
bool, complex, object, str), shapes (a dimension more or less, one element more or less, empty, 0-d), strides
(a strided view), Fortran order, read-only arrays, None, NaN and inf, out-of-range ids and indices, huge ints
(2**31, 2**63, 2**64), floats and strings for sizes, and bad row layouts, dropout keys and optimizer settings.
Every call must either work or raise one of the expected Python exceptions (TypeError, ValueError, IndexError,
KeyError, OverflowError, MemoryError and lyricnn's errors); a SystemError (a C-API bug), any other exception or a
crash fails. Every 100 calls a valid call checks that the backend or model still gives the first result, bit
for bit.

    python tests/fuzz_python.py --seconds 30 --seed 1        # prints calls per second per target; exit 1 on a find

tests/test_fuzz_python.py runs it for a few seconds in a subprocess (a crash is a failure there too) and
`make fuzz` (tools/fuzz.sh) for FUZZ_SECONDS.
"""
import argparse
import copy
import os
import random
import sys
import time
import traceback
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]  # this checkout's lyricnn, and the per-op bench beside this file

import lyricnn  # noqa: E402
from lyricnn import _C  # noqa: E402

ALLOWED = (TypeError, ValueError, IndexError, KeyError, OverflowError, MemoryError, _C.LyricnnError)
warnings.filterwarnings("ignore", category=RuntimeWarning, module=__name__)  # the mutations' own casts
HUGE_INTS = [2 ** 31, 2 ** 31 - 1, -2 ** 31 - 1, 2 ** 63, 2 ** 63 - 1, 2 ** 64, -1, 0, 10 ** 30]
BAD_FLOATS = [float("nan"), float("inf"), -float("inf"), -1.0, 1e30, 0.0, 1.5]


class Found(Exception):
    """A call that broke the contract: its repro is in the message."""


# ------------------------------------------------------------------------------------ valid calls of the ops

class _Recorder:
    """A Backend stand-in that records every call the per-op bench makes (and makes it)."""

    def __init__(self, be):
        self._be, self.calls = be, []

    def __getattr__(self, name):
        return getattr(self._be, name)

    def call(self, op, **kw):
        self.calls.append((op, copy.deepcopy({k: v for k, v in kw.items() if not _is_buffer(v)}),
                           {k: v for k, v in kw.items() if _is_buffer(v)}))
        return self._be.call(op, **kw)


def _is_buffer(v):
    return type(v).__name__ == "Buffer"


def op_calls(be):
    """[(op, kwargs)]: one valid call of every op of the table, recorded from the per-op bench's pairs (their
    forward and backward on the first case) plus the cast and optimizer ops."""
    import test_backend_ops as T

    rec = _Recorder(be)
    seen = set()
    for name, p in T.PAIRS.items():
        for case in p.cases[:2]:
            rng = T.rng_for(name, case)
            x, meta = p.make(rng, case)
            xq = T.prep(be, p.fwd, **x)
            out = p.ref_out(T.f64(xq), meta)
            g = T.quant(be, p.make_g(rng, out, meta))
            p.be_out(rec, xq, meta)
            shapes = p.ref_grads(T.f64(xq), T.f64(g), meta)
            p.be_grads(rec, xq, g, {k: np.zeros(v.shape) for k, v in shapes.items()}, meta)
    calls = []
    for op, kw, bufs in rec.calls:
        key = (op, tuple(sorted(kw)))
        if key not in seen or len(calls) < 200:
            seen.add(key)
            kw.update(bufs)
            calls.append((op, kw))
    f32 = np.float32
    calls.append(("cast", dict(dst=np.zeros(3, f32), dt="bf16", src=np.linspace(-1, 1, 5).astype(f32), st="f32",
                               n=5)))
    calls.append(("cast", dict(dst=np.zeros(5, f32), dt="f32", src=np.zeros(3, f32), st="bf16", n=5)))
    segs = np.array([[0, 10, 1, 0], [10, 7, 0, 10], [17, 5, 2, 0]], np.int64)
    calls.append(("grad_norm_clip", dict(norm=np.zeros(1), grads=np.ones(22, f32), n=22, segs=segs, nseg=3, clip=1,
                                         max_norm=1.0)))
    calls.append(("adam_step", dict(params=np.ones(22, f32), grads=np.ones(22, f32), m=np.zeros(17, f32),
                                    v=np.zeros(17, f32), n=22, nstate=17, segs=segs, nseg=3, steps=np.zeros(3, np.int64),
                                    lr_scale=None, cfg=dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                                                            weight_decay=0.01, decoupled=1))))
    missing = set(be.ops()) - {op for op, _ in calls}
    assert not missing, "no valid call recorded for %s" % sorted(missing)
    return calls


# ------------------------------------------------------------------------------------ mutations

def _mutate_array(rng, a):
    kind = rng.randrange(17)
    if kind == 0:
        return None
    if kind == 1:
        return a.astype(rng.choice([np.float64, np.int64, np.float16, np.bool_, np.complex64, np.uint8, np.int32,
                                    np.float32]))
    if kind == 2:
        return a.astype(object)
    if kind == 3:
        return np.array(["x"] * max(a.size, 1)).reshape(a.shape if a.size else (1,))
    if kind == 4 and a.ndim:
        shape = list(a.shape)
        i = rng.randrange(len(shape))
        shape[i] = max(0, shape[i] + rng.choice([-1, 1, -shape[i]]))
        return np.resize(a, shape)
    if kind == 5:
        return a.reshape(-1) if a.ndim > 1 else a.reshape(1, -1) if a.size else a.reshape(0, 0)
    if kind == 6:
        return np.asarray(a.flat[0] if a.size else 0, a.dtype)  # 0-d
    if kind == 7 and a.ndim:
        return np.repeat(a, 2, axis=-1)[..., ::2]  # a strided view, same values
    if kind == 8 and a.ndim == 2:
        return np.asfortranarray(a)
    if kind == 9:
        b = a.copy()
        b.flags.writeable = False
        return b
    if kind == 10 and a.dtype.kind == "f" and a.size:
        b = a.copy()
        b.flat[rng.randrange(a.size)] = rng.choice([np.nan, np.inf, -np.inf, 3e38])
        return b
    if kind == 11 and a.dtype.kind in "iu" and a.size:
        b = a.copy()
        b.flat[rng.randrange(a.size)] = rng.choice([-1, -2 ** 31, 2 ** 31 - 1, int(a.max()) + 1, 10 ** 6]) \
            if a.dtype.itemsize >= 4 else rng.choice([0, 255])
        return b
    if kind == 12:
        return a.tolist()
    if kind == 13:
        return np.zeros((0,) + a.shape[1:], a.dtype)
    if kind == 14 and a.dtype.kind in "iu" and a.size:
        return (a.astype(np.int64) + 2 ** 40).astype(np.int64)
    if kind == 15:
        return rng.choice([1, 1.5, "abc", b"xy", (1, 2), {"a": 1}])
    return a.T.copy() if a.ndim == 2 else a[::-1].copy()


def _mutate_int(rng, v):
    return rng.choice(HUGE_INTS + [v + 1, v - 1, v * 2, 1.0 * v, str(v), None, True, v + 2 ** 32, np.int64(v),
                                   np.float32(v)])


def _mutate_dict(rng, d):
    d = dict(d)
    if not d or rng.random() < 0.2:
        return rng.choice([None, 5, [1, 2], {}, {"N": 1}])
    k = rng.choice(sorted(d))
    v = d[k]
    r = rng.random()
    if r < 0.15:
        del d[k]
    elif isinstance(v, np.ndarray):
        d[k] = _mutate_array(rng, v)
    elif isinstance(v, float):
        d[k] = rng.choice(BAD_FLOATS + ["0.5", None, 2 ** 70])
    elif isinstance(v, (int, np.integer)):
        d[k] = _mutate_int(rng, int(v))
    else:
        d[k] = rng.choice([None, 1, "x", np.zeros(2, np.int32)])
    if rng.random() < 0.1:
        d["bogus"] = 1
    return d


def mutate(rng, kw):
    m = {k: (v.copy() if isinstance(v, np.ndarray) else copy.deepcopy(v) if isinstance(v, dict) else v)
         for k, v in kw.items()}
    keys = sorted(m)
    for k in rng.sample(keys, min(len(keys), rng.choice([1, 1, 2, 3]))):
        v = m[k]
        if isinstance(v, np.ndarray):
            m[k] = _mutate_array(rng, v)
        elif isinstance(v, dict):
            m[k] = _mutate_dict(rng, v)
        elif isinstance(v, bool):
            m[k] = rng.choice([None, 2, "yes"])
        elif isinstance(v, (int, np.integer)):
            m[k] = _mutate_int(rng, int(v))
        elif isinstance(v, float):
            m[k] = rng.choice(BAD_FLOATS + [None, "1", 2 ** 64])
        elif isinstance(v, str):
            m[k] = rng.choice(["bf16", "f32", "i32", "", "F32 ", None, 1])
        elif v is None:
            m[k] = rng.choice([np.zeros(3, np.float32), np.zeros((2, 2), np.int32), 0, "x"])
        elif _is_buffer(v):
            m[k] = rng.choice([None, np.zeros(4, np.float32), v])
    if rng.random() < 0.05:
        m["bogus"] = 1
    if rng.random() < 0.05 and keys:
        del m[rng.choice(keys)]
    return m


def _fmt(kw):
    out = {}
    for k, v in kw.items():
        if isinstance(v, np.ndarray):
            out[k] = "ndarray(%s %s%s%s)" % (v.dtype, v.shape, "" if v.flags.c_contiguous else " non-C",
                                             "" if v.flags.writeable else " ro")
        else:
            out[k] = repr(v)[:80]
    return out


# ------------------------------------------------------------------------------------ the models

def model_calls():
    """[(name, model, fn(model, args) -> result, valid args, restore state)] of the tiny models."""
    from lyricnn import LSTMNet, SequenceClassifier

    distil = SequenceClassifier.from_config(dict(model_type="distilbert", vocab_size=50, dim=16, n_layers=1, n_heads=2,
                                                 hidden_dim=24, max_position_embeddings=12), num_labels=3, seed=1)
    bert = SequenceClassifier.from_config(dict(model_type="bert", vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                               num_attention_heads=2, intermediate_size=24, max_position_embeddings=12,
                                               type_vocab_size=2), num_labels=1, num_features=2, seed=2,
                                          head=dict(pooling="mean", hidden=[8], dropout=0.1))
    lstm = LSTMNet(30, embedding_dim=6, hidden_size=5, num_layers=1, num_labels=2, seed=3)
    for m in (distil, bert, lstm):
        m.configure_optimizer(lr=1e-3, max_grad_norm=1.0)
    ids = np.array([[1, 5, 7, 9, 2], [1, 8, 2, 0, 0]], np.int64)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], np.int64)
    tt = np.array([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]], np.int64)
    feats = np.array([[0.5, -1.0], [2.0, 0.0]], np.float32)
    lengths = np.array([5, 3], np.int64)
    out = []
    for name, m, fn, args in [
        ("distilbert forward", distil, lambda m, a: m(a["ids"], a["mask"]).logits, dict(ids=ids, mask=mask)),
        ("distilbert train_step", distil, lambda m, a: m.train_step(a["ids"], a["mask"], a["labels"]),
         dict(ids=ids, mask=mask, labels=np.array([0, 2], np.int64))),
        ("bert forward", bert, lambda m, a: m(a["ids"], a["mask"], token_type_ids=a["tt"], features=a["f"]).logits,
         dict(ids=ids, mask=mask, tt=tt, f=feats)),
        ("bert train_step", bert, lambda m, a: m.train_step(a["ids"], a["mask"], a["y"], token_type_ids=a["tt"],
                                                            features=a["f"]),
         dict(ids=ids, mask=mask, tt=tt, f=feats, y=np.array([0.5, -1.0], np.float32))),
        ("lstm forward", lstm, lambda m, a: m(a["ids"], a["lengths"]).logits, dict(ids=ids, lengths=lengths)),
        ("lstm train_step", lstm, lambda m, a: m.train_step(a["ids"], a["lengths"], a["labels"]),
         dict(ids=ids, lengths=lengths, labels=np.array([1, 0], np.int64))),
    ]:
        out.append((name, m, fn, args))
    states = {id(m): (m.state_dict(), m.optimizer_state()) for m in (distil, bert, lstm)}
    return out, states


def _restore(m, states):
    sd, opt = states[id(m)]
    m.load_state_dict(sd)
    m.load_optimizer_state(opt)


# ------------------------------------------------------------------------------------ the loop

def _check(kind, what, kw, fn, seed, i):
    """Run one call: True if it worked, False for an expected exception; Found for anything else, a warning
    from lyricnn included (e.g. numpy's ComplexWarning: a value accepted unchecked)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fn()
    except ALLOWED:
        return False
    except Exception:
        raise Found("%s %s (seed %d, call %d) raised an unexpected exception with %s:\n%s"
                    % (kind, what, seed, i, _fmt(kw), traceback.format_exc()))
    return True


def fuzz_ops(seconds, seed, be_name="cpu"):
    rng = random.Random(seed)
    be = _C.Backend(be_name)
    calls = op_calls(be)
    ref = {}
    for j, (op, kw) in enumerate(calls):  # the first result of each valid call, for the health checks
        if any(_is_buffer(v) for v in kw.values()):
            continue  # attention's saved / scratch buffers are shared with the fuzzed calls
        args = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
        be.call(op, **args)
        ref[j] = {k: v.copy() for k, v in args.items() if isinstance(v, np.ndarray)}
    n = ok = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        j = rng.randrange(len(calls))
        op, kw = calls[j]
        m = mutate(rng, kw)
        ok += _check("op", op, m, lambda: be.call(op, **m), seed, n)
        n += 1
        if n % 100 == 0:  # the backend still gives the first result of a valid call, bit for bit
            k = rng.choice(sorted(ref))
            op2, kw2 = calls[k]
            args = {kk: (v.copy() if isinstance(v, np.ndarray) else v) for kk, v in kw2.items()}
            be.call(op2, **args)
            for name, v in ref[k].items():
                if not np.array_equal(args[name], v, equal_nan=True):
                    raise Found("op %s gives another %s after %d fuzzed calls (seed %d)" % (op2, name, n, seed))
    return n, ok, time.perf_counter() - t0


def fuzz_models(seconds, seed):
    rng = random.Random(seed + 1)
    targets, states = model_calls()
    first = {}
    for name, m, fn, args in targets:
        if "forward" in name:
            first[name] = np.array(fn(m, args))
    n = ok = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        name, m, fn, args = targets[rng.randrange(len(targets))]
        a = mutate(rng, args)
        for k, v in list(a.items()):
            if k not in args:
                del a[k]  # the models take positional arguments: a bogus key means nothing here
        ok += _check("model", name, a, lambda: fn(m, {k: a.get(k) for k in args}), seed, n)
        n += 1
        if n % 100 == 0:
            for nm, mm, f, ar in targets:
                _restore(mm, states)
            for nm, mm, f, ar in targets:
                if nm in first and not np.array_equal(np.array(f(mm, ar)), first[nm], equal_nan=True):
                    raise Found("%s gives other logits after %d fuzzed calls and a restore (seed %d)" % (nm, n, seed))
    return n, ok, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="time per target (default 10)")
    ap.add_argument("--seed", type=int, default=None, help="seed (default: from the clock, printed)")
    ap.add_argument("--target", choices=("ops", "models", "all"), default="all")
    a = ap.parse_args(argv)
    seed = a.seed if a.seed is not None else int(time.time()) % 100000
    lyricnn.set_num_threads(1)
    print("fuzz_python: seed %d, %.0f s per target" % (seed, a.seconds), flush=True)
    try:
        if a.target in ("ops", "all"):
            for be_name in _C.backends():
                if be_name == "cuda":
                    continue  # a GPU run: tools/gpu_check.sh
                n, ok, dt = fuzz_ops(a.seconds, seed, be_name)
                print("fuzz_python: ops on %s: %d calls (%d accepted), %.0f calls/s" % (be_name, n, ok, n / dt),
                      flush=True)
        if a.target in ("models", "all"):
            n, ok, dt = fuzz_models(a.seconds, seed)
            print("fuzz_python: models: %d calls (%d accepted), %.0f calls/s" % (n, ok, n / dt), flush=True)
    except Found as e:
        print("fuzz_python: FOUND %s" % e, flush=True)
        return 1
    print("fuzz_python: ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
