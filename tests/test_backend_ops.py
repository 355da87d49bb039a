"""The per-op test bench over every backend of the build (in the spirit of ggml's test-backend-ops).

Every op of the backend table (csrc/core/backend.h) runs through lyricnn._C.Backend on every
(backend, activation dtype) of this build: _C.backends() x ("f32", "bf16", "f16"), the combinations a
backend does not support skipped with the reason. A backend added to the build (CUDA) is covered by
the same tests with no new code; the tolerances per dtype sit in TOL / FD below.

What is checked:
- forward ops against float64 numpy references (tests/_backend_refs.py), on odd shapes, ragged
  masks, packed rows (seq_off), token-0 rows, q_first attention, dropout on and off;
- backward ops (every op that writes a gradient, the losses included), three ways:
  (a) against the float64 reference backward, under THE GRADIENT RULE: gradients that accumulate
      are pre-filled with random values and must equal prefill + contribution, gradients that are
      written are pre-filled with NaN and must be fully overwritten; with every optional gradient
      pointer passed as None in turn (frozen tensors), the others must stay right;
  (b) against central differences of the BACKEND's own forward along random directions
      (<grad, x+ - x-> vs L(x+) - L(x-), L = sum(out * g) in float64): a forward/backward mismatch
      inside a backend fails here even if both drift from the reference the same way;
  (c) the reference backward against float64 central differences of the reference forward (tight),
      so the references are proven too;
- the dropout masks (the dropout op and the attention probabilities) against the Philox4x32-10
  spec, keyed by the padded element index, in every row layout;
- thread-count independence (bit-identical results on 1 and 2 threads) of the ops that split work;
- bad input to Backend.call: clear Python exceptions, no crash, the backend still usable after.
"""
import math
import zlib

import numpy as np
import pytest

import lyricnn
from lyricnn import _C

import _backend_refs as R  # noqa: E402

BACKENDS = tuple(_C.backends())
DTYPES = ("f32", "bf16", "f16")

# Forward / backward vs the float64 reference: |got - ref| <= rtol * |ref| + atol * scale, scale the
# largest |ref| of the compared array (the magnitude the op's rounding is relative to).
TOL = {"f32": dict(rtol=1e-5, atol=1e-5), "bf16": dict(rtol=2e-2, atol=2e-2), "f16": dict(rtol=5e-3, atol=5e-3)}
# Central differences of a backend's forward: step eps (times the input's rms) and
# |fd - <grad, dx>| <= rtol * max(|fd|, |<grad, dx>|) + noise * (sum|out+ * g| + sum|out- * g|), the
# second term the rounding noise of the two float32 (bf16) losses.
FD = {"f32": dict(eps=1e-2, rtol=1e-2, noise=64 * 2.0 ** -24),
      "bf16": dict(eps=5e-2, rtol=1e-1, noise=4 * 2.0 ** -8),
      "f16": dict(eps=2e-2, rtol=5e-2, noise=4 * 2.0 ** -11)}
# Central differences of the float64 references.
REF_FD = dict(eps=1e-5, rtol=1e-6, noise=64 * 2.0 ** -53)
FD_DIRECTIONS = 3

# THE GRADIENT RULE (backend.h): "+=" accumulates, "=" is written. Every output of every backward
# op and loss (the loss scalar aside) is listed; test_gradient_rule_is_the_bindings checks this
# table against the binding's argument directions.
RULE = {
    "embedding_backward": {"dwte": "+=", "dwpe": "+=", "dwtt": "+="},
    "matmul_backward": {"dinp": "+=", "dw": "+=", "db": "+="},
    "lora_backward": {"dx": "+=", "dA": "+=", "dB": "+="},
    "layernorm_backward": {"dres": "+=", "dw": "+=", "db": "+="},
    "bias_act_backward": {"dx": "=", "db": "+="},
    "attention_backward": {"dqkv": "+="},
    "dropout_backward": {"dinp": "="},
    "tanh_backward": {"dinp": "="},
    "token0_backward": {"dinp": "+="},
    "mean_pool_backward": {"dh": "+="},
    "concat_backward": {"dh": "+=", "df": "+="},
    "gather_rows_backward": {"dinp": "+="},
    "lstm_cell_backward": {"dgates": "=", "dc_prev": "="},
    "segment_pool_backward": {"dx": "+=", "dscores": "="},
    "batchnorm_backward": {"dx": "+=", "dgamma": "+=", "dbeta": "+="},
    "cross_entropy": {"dlogits": "="},
    "bce_with_logits": {"dlogits": "="},
    "mse": {"dpreds": "="},
}

COVERED = set()  # ops some test below runs and checks


def covers(*ops):
    def deco(f):
        COVERED.update(ops)
        return f
    return deco


# ------------------------------------------------------------------ backends and calls

_BE = {}


@pytest.fixture(params=[(n, d) for n in BACKENDS for d in DTYPES], ids=lambda p: "%s-%s" % p)
def be(request):
    name, dt = request.param
    if (name, dt) not in _BE:
        try:
            _BE[name, dt] = _C.Backend(name, dtype=dt)
        except ValueError as e:
            _BE[name, dt] = e
    b = _BE[name, dt]
    if isinstance(b, Exception):
        pytest.skip("backend %s does not run %s activations: %s" % (name, dt, b))
    return b


def need(be, *ops):
    for op in ops:
        if not be.supports(op):
            pytest.skip("backend %s does not run %s with %s activations" % (be.name, op, be.dtype))


_SIGS = {}


def sig(be, op):
    """{argument: (name, kind, dtype code, optional, io)} of op, from the binding."""
    if be.name not in _SIGS:
        _SIGS[be.name] = be.ops()
    return {a[0]: a for a in _SIGS[be.name][op]}


_NP = {"a": np.float32, "f": np.float32, "i": np.int32, "l": np.int64, "g": np.float64, "u": np.uint8}


def quant(be, x):
    """x as the backend's activations hold it (float32 numpy; bf16- / f16-rounded on a bf16 / f16 context)."""
    x = np.asarray(x, np.float32)
    return R.round_bf16(x) if be.dtype == "bf16" else R.round_f16(x) if be.dtype == "f16" else x.copy()


def prep(be, op, **kw):
    """Copies of the array arguments in the dtype the binding takes; activations rounded to the
    backend's activation dtype, so that what the backend sees is what the reference sees."""
    s = sig(be, op)
    out = {}
    for k, v in kw.items():
        if isinstance(v, np.ndarray) and k in s and s[k][1] == "t":
            code = s[k][2]
            v = np.array(v, dtype=_NP[code])
            if code == "a":
                v = quant(be, v)
        out[k] = v
    return out


def call(be, op, **kw):
    """op on copies of the (prepared) arguments -> the arguments after the call (outputs written)."""
    args = prep(be, op, **kw)
    be.call(op, **args)
    return args


def f64(x):
    """float arrays (also inside a dict) as float64; everything else as it is."""
    if isinstance(x, dict):
        return {k: f64(v) for k, v in x.items()}
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return x.astype(np.float64)
    return x


def nan(shape):
    return np.full(shape, np.nan)


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def close(got, ref, dtype, scale=None, what="output"):
    """got == ref within TOL[dtype] (NaN only where ref is NaN)."""
    ref = np.asarray(ref, np.float64)
    got = np.asarray(got, np.float64)
    assert got.size == ref.size, "%s: %d values, expected %d" % (what, got.size, ref.size)
    got = got.reshape(ref.shape)
    t = TOL[dtype]
    fin = ref[np.isfinite(ref)]
    s = (float(np.abs(fin).max()) if fin.size else 0.0) if scale is None else scale
    lim = t["rtol"] * np.abs(ref) + t["atol"] * s
    with np.errstate(invalid="ignore"):
        ok = (np.abs(got - ref) <= lim) | (got == ref) | (np.isnan(got) & np.isnan(ref))
    if not ok.all():
        i = np.unravel_index(int(np.argmax(~ok)), ok.shape)
        raise AssertionError("%s (%s): %d of %d values off; first at %s: got %r, expected %r (limit %.3g); "
                             "max |err| %.3g at scale %.3g" % (what, dtype, int((~ok).sum()), ok.size, i, got[i],
                                                                ref[i], lim[i], float(np.nanmax(np.abs(got - ref))), s))


def fd_check(lossfn, x, grads, rng, eps, rtol, noise, quantize=None, masks=None, what=""):
    """Central differences along FD_DIRECTIONS random directions v over the inputs in grads:
    L(x+) - L(x-) vs <grad, x+ - x->, x+- = x +- eps * rms(x) * v (as the op sees them: quantize)."""
    for d in range(FD_DIRECTIONS):
        xp, xm = dict(x), dict(x)
        pred = 0.0
        for k, gr in grads.items():
            a = np.asarray(x[k], np.float64)
            rms = float(np.sqrt(np.mean(a * a))) if a.size else 1.0
            v = rng.standard_normal(a.shape) * eps * (rms if rms > 0 else 1.0)
            if masks and k in masks:
                v = v * masks[k]
            p, m = a + v, a - v
            if quantize:
                p, m = quantize(k, p), quantize(k, m)
            xp[k], xm[k] = p, m
            pred += float(np.sum(np.asarray(gr, np.float64) * (np.asarray(p, np.float64) - np.asarray(m, np.float64))))
        (lp, sp), (lm, sm) = lossfn(xp), lossfn(xm)
        fd = lp - lm
        tol = rtol * max(abs(fd), abs(pred)) + noise * (sp + sm)
        assert abs(fd - pred) <= tol, ("%s direction %d: finite difference %.9g but <grad, dx> = %.9g (|diff| %.3g > "
                                       "tol %.3g)" % (what, d, fd, pred, abs(fd - pred), tol))


def loss_of(out, g):
    out = np.asarray(out, np.float64)
    return float(np.sum(out * g)), float(np.sum(np.abs(out * g)))


# ------------------------------------------------------------------ forward/backward pairs

class Pair:
    """A forward op and its backward (a loss is both): inputs, references and backend runs.
    x: the forward's keyword arguments but its outputs; grad_of: forward input -> gradient argument."""
    fwd = bwd = None
    cases = ("default",)
    grad_of = {}

    def make(self, rng, case):  # -> (x, meta)
        raise NotImplementedError

    def make_g(self, rng, out, meta):
        return rng.standard_normal(np.shape(out))

    def ref_out(self, x, meta):
        raise NotImplementedError

    def ref_grads(self, x, g, meta):  # -> {gradient argument: float64 array}
        raise NotImplementedError

    def be_out(self, be, x, meta):
        raise NotImplementedError

    def be_grads(self, be, x, g, pre, meta):  # pre: {gradient argument: array}, absent = None
        raise NotImplementedError

    def wrt(self, x):
        return [k for k in self.grad_of if x.get(k) is not None]

    def nan_ok(self, x, k):
        """Where input k may hold a NaN in test_nan_propagates_as_in_torch: the elements the op reads (a
        boolean array broadcasting to x[k]). Positions the op's contract leaves unread (masked tokens, ignored
        rows) are left out: a NaN there does not reach the output, so the padded and packed layouts agree."""
        return np.ones((1,) * np.ndim(x[k]), bool)


PAIRS = {}


def pair(cls):
    PAIRS[cls.bwd] = cls()
    COVERED.update((cls.fwd, cls.bwd))
    return cls


def _rows(layout, B, T, lens):
    if layout == "packed":
        off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
        return dict(N=int(off[-1]), B=B, T=T, seq_off=off)
    if layout == "first":
        return dict(N=B, B=B, T=T, first_only=1)
    return dict(N=B * T, B=B, T=T)


@pair
class EmbeddingPair(Pair):
    fwd, bwd = "embedding_forward", "embedding_backward"
    # nopos: nn.Embedding alone (an LSTM's); sorted: the backward by the id-sorted row indexes (core/embed_index.h)
    cases = ("tt", "tt-notypes", "nott", "pad", "nopos-pad", "tt-sorted", "tt-notypes-sorted", "pad-sorted",
             "nopos-pad-sorted")
    grad_of = {"wte": "dwte", "wpe": "dwpe", "wtt": "dwtt"}

    def make(self, rng, case):
        N, C, V, P, TV = 9, 13, 6, 8, 2
        ids = rng.integers(0, V, N).astype(np.int32)
        ids[:3] = ids[3]  # repeated ids: the backward must add, not overwrite
        pos = rng.integers(0, P, N).astype(np.int32)
        pos[5] = pos[6]
        sorted_ = case.endswith("-sorted")
        case = case[:-len("-sorted")] if sorted_ else case
        types = rng.integers(0, TV, N).astype(np.int32) if case in ("tt", "pad") else None
        wtt = rng.standard_normal((TV, C)) if case in ("tt", "tt-notypes", "pad") else None
        nopos = case.startswith("nopos")
        x = dict(ids=ids, types=types, pos=None if nopos else pos, wte=rng.standard_normal((V, C)),
                 wpe=None if nopos else rng.standard_normal((P, C)), wtt=wtt, N=N, C=C)
        pad = int(ids[0]) if case.endswith("pad") else -1
        meta = dict(pad_id=pad, sorted=int(sorted_))
        if pad >= 0:  # the pad row gets no gradient by contract: leave it out of the differences
            meta["fd_mask"] = {"wte": (np.arange(V) != pad)[:, None].astype(np.float64)}
        return x, meta

    def nan_ok(self, x, k):  # the table rows the ids read
        idx = {"wte": x["ids"], "wpe": x["pos"], "wtt": x["types"] if x["types"] is not None else [0]}[k]
        return np.isin(np.arange(x[k].shape[0]), idx)[:, None]

    def ref_out(self, x, meta):
        return R.embedding_fwd(x["ids"], x["types"], x["pos"], x["wte"], x["wpe"], x["wtt"])

    def ref_grads(self, x, g, meta):
        shapes = [None if x[k] is None else x[k].shape for k in ("wte", "wpe", "wtt")]
        d = R.embedding_bwd(g, x["ids"], x["types"], x["pos"], shapes, meta["pad_id"])
        return {k: v for k, v in zip(("dwte", "dwpe", "dwtt"), d) if v is not None}

    def be_out(self, be, x, meta):
        return call(be, self.fwd, out=nan((x["N"], x["C"])), **x)["out"]

    def be_grads(self, be, x, g, pre, meta):
        return call(be, self.bwd, dwte=pre.get("dwte"), dwpe=pre.get("dwpe"), dwtt=pre.get("dwtt"), dout=g,
                    ids=x["ids"], types=x["types"], pos=x["pos"], N=x["N"], C=x["C"], pad_id=meta["pad_id"],
                    sorted=meta["sorted"])


@pair
class MatmulPair(Pair):
    fwd, bwd = "matmul_forward", "matmul_backward"
    cases = ("bias", "nobias")
    grad_of = {"inp": "dinp", "w": "dw", "b": "db"}

    def make(self, rng, case):
        N, C, OC = 7, 13, 5
        return dict(inp=rng.standard_normal((N, C)), w=rng.standard_normal((OC, C)) / 3,
                    b=rng.standard_normal(OC) if case == "bias" else None, N=N, C=C, OC=OC), {}

    def ref_out(self, x, meta):
        return R.matmul_fwd(x["inp"], x["w"], x["b"])

    def ref_grads(self, x, g, meta):
        return dict(zip(("dinp", "dw", "db"), R.matmul_bwd(g, x["inp"], x["w"])))

    def be_out(self, be, x, meta):
        return call(be, self.fwd, out=nan((x["N"], x["OC"])), **x)["out"]

    def be_grads(self, be, x, g, pre, meta):
        return call(be, self.bwd, dinp=pre.get("dinp"), dw=pre.get("dw"), db=pre.get("db"), dout=g, inp=x["inp"],
                    w=x["w"], N=x["N"], C=x["C"], OC=x["OC"])


LORA_DROP = dict(seed=(5 << 32) + 17, step=3, stream=0x20000009)


@pair
class LoraPair(Pair):
    """peft's lora.Linear branch; y is pre-filled (the base layer's output) and may be a column slice of a
    wider row (ldy > OC: q, k, v inside the fused qkv output); dropout keyed by x's padded indices."""
    fwd, bwd = "lora_forward", "lora_backward"
    cases = ("padded", "strided", "padded-drop", "packed-drop", "first-drop", "r1")
    grad_of = {"x": "dx", "A": "dA", "B": "dB"}

    def make(self, rng, case):
        lay = case.split("-")[0] if case.split("-")[0] in ("packed", "first") else "padded"
        rows = _rows(lay, 3, 5, [3, 0, 5])  # an empty sequence inside the packed rows
        C, OC, r = 13, 9, 1 if case == "r1" else 4
        ldy = 3 * OC + 2 if case == "strided" else OC
        N = rows["N"]
        drop = dict(LORA_DROP, p=0.3 if case.endswith("drop") else 0.0)
        return dict(y=rng.standard_normal((N, ldy)), ldy=ldy, x=rng.standard_normal((N, C)),
                    A=rng.standard_normal((r, C)) / 3, B=rng.standard_normal((OC, r)) / 2, rows=rows, C=C, r=r,
                    OC=OC, scale=1.7, drop=drop), {}

    def ref_out(self, x, meta):
        return R.lora_fwd(x["y"], x["x"], x["A"], x["B"], x["rows"], x["scale"], x["drop"])[0]

    def ref_grads(self, x, g, meta):
        return dict(zip(("dx", "dA", "dB"), R.lora_bwd(g, x["x"], x["A"], x["B"], x["rows"], x["scale"], x["drop"])))

    def _fwd(self, be, x):
        return call(be, self.fwd, u=nan((x["rows"]["N"], x["r"])), **x)

    def be_out(self, be, x, meta):
        return self._fwd(be, x)["y"]

    def be_grads(self, be, x, g, pre, meta):
        u = self._fwd(be, x)["u"]  # the forward's u goes to the backward
        return call(be, self.bwd, dx=pre.get("dx"), dA=pre.get("dA"), dB=pre.get("dB"), dy=g, ldy=x["ldy"], x=x["x"],
                    A=x["A"], B=x["B"], u=u, rows=x["rows"], C=x["C"], r=x["r"], OC=x["OC"], scale=x["scale"],
                    drop=x["drop"])


@pair
class LayernormPair(Pair):
    fwd, bwd = "layernorm_forward", "layernorm_backward"
    cases = ("residual", "plain")
    grad_of = {"a": "dres", "r": "dres", "w": "dw", "b": "db"}

    def make(self, rng, case):
        N, C = 7, 13
        return dict(a=rng.normal(0.3, 1.2, (N, C)), r=rng.standard_normal((N, C)) if case == "residual" else None,
                    w=1 + 0.3 * rng.standard_normal(C), b=0.2 * rng.standard_normal(C), N=N, C=C, eps=1e-5), {}

    def ref_out(self, x, meta):
        return R.layernorm_fwd(x["a"], x["r"], x["w"], x["b"], x["eps"])[0]

    def ref_grads(self, x, g, meta):
        res = x["a"] if x["r"] is None else x["a"] + x["r"]
        return dict(zip(("dres", "dw", "db"), R.layernorm_bwd(g, res, x["w"], x["eps"])))

    def _fwd(self, be, x):
        N, C = x["N"], x["C"]
        return call(be, self.fwd, out=nan((N, C)), mean=nan(N), rstd=nan(N), res=nan((N, C)), **x)

    def be_out(self, be, x, meta):
        return self._fwd(be, x)["out"]

    def be_grads(self, be, x, g, pre, meta):
        f = self._fwd(be, x)
        return call(be, self.bwd, dres=pre.get("dres"), dw=pre.get("dw"), db=pre.get("db"), dout=g, res=f["res"],
                    w=x["w"], mean=f["mean"], rstd=f["rstd"], N=x["N"], C=x["C"])


@pair
class BiasActPair(Pair):
    fwd, bwd = "bias_act_forward", "bias_act_backward"
    cases = ("gelu", "relu", "gelu_tanh", "gelu-nobias")
    grad_of = {"x": "dx", "b": "db"}
    ACT = {"gelu": _C.ACT_GELU, "relu": _C.ACT_RELU, "gelu_tanh": _C.ACT_GELU_TANH}

    def make(self, rng, case):
        N, OC = 7, 13
        act = self.ACT[case.split("-")[0]]
        pre = rng.standard_normal((N, OC)) * 1.5
        pre = np.sign(pre) * (0.15 + np.abs(pre))  # away from ReLU's kink by more than any difference step
        b = 0.3 * rng.standard_normal(OC) if case != "gelu-nobias" else None
        return dict(x=pre if b is None else pre - b, b=b, N=N, OC=OC, act=act), {}

    def ref_out(self, x, meta):
        return R.bias_act_fwd(x["x"], x["b"], x["act"])[0]

    def ref_grads(self, x, g, meta):
        pre = x["x"] if x["b"] is None else x["x"] + x["b"]
        return dict(zip(("dx", "db"), R.bias_act_bwd(g, pre, x["act"])))

    def be_out(self, be, x, meta):
        return call(be, self.fwd, out=nan((x["N"], x["OC"])), **x)["out"]

    def be_grads(self, be, x, g, pre, meta):
        f = call(be, self.fwd, out=nan((x["N"], x["OC"])), **x)  # x becomes the pre-activation
        return call(be, self.bwd, dx=pre.get("dx"), db=pre.get("db"), dout=g, x=f["x"], N=x["N"], OC=x["OC"],
                    act=x["act"])


def _att_alloc(be, B, T, NH, p):
    return (be.alloc(be.attention_saved_bytes(B, T, NH, True, p)),
            be.alloc(be.attention_scratch_bytes(B, T, NH, True, p)))


ATT_DROP = dict(seed=2 ** 33 + 12345, step=7, stream=3)


@pair
class AttentionPair(Pair):
    fwd, bwd = "attention_forward", "attention_backward"
    cases = tuple("%s-q%d-p%s" % (lay, qf, p) for lay in ("padded", "nomask", "packed") for qf in (0, 1)
                  for p in ("0", "0.25"))
    grad_of = {"qkv": "dqkv"}

    def make(self, rng, case):
        lay, qf, p = case.split("-")
        B, T, C, NH = 3, 6, 15, 3  # 3 heads of 5
        lens = [4, 6, 1]
        mask = seq_off = None
        if lay == "packed":
            seq_off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
            N = int(seq_off[-1])
        else:
            N = B * T
        if lay == "padded":  # ragged, one hole, a non-1 "keep" value (the contract: mask == 0 is masked)
            mask = np.zeros((B, T), np.int32)
            for b, n in enumerate(lens):
                mask[b, :n] = 1
            mask[0, 1] = 0
            mask[1, 2] = 2
        drop = dict(ATT_DROP, p=float(p[1:]))
        return dict(qkv=rng.standard_normal((N, 3 * C)), mask=mask, seq_off=seq_off, q_first=int(qf[1:]), B=B, T=T,
                    C=C, NH=NH, drop=drop), {}

    def _args(self, x):
        return {k: x[k] for k in ("qkv", "mask", "seq_off", "q_first", "B", "T", "C", "NH")}

    def nan_ok(self, x, k):
        N, C = x["qkv"].shape[0], x["C"]
        ok = np.ones((N, 3 * C), bool)
        if x["mask"] is not None and x["seq_off"] is None:  # masked keys are not read (HF: -FLT_MAX)
            ok &= (np.asarray(x["mask"]) != 0).reshape(-1, 1)
        if x["q_first"]:  # the queries of token 0 only
            first = np.zeros(N, bool)
            first[R.first_rows(dict(B=x["B"], T=x["T"], seq_off=x["seq_off"]))] = True
            ok[~first, :C] = False
        return ok

    def ref_out(self, x, meta):
        return R.attention_fwd(drop=x["drop"], **self._args(x))

    def ref_grads(self, x, g, meta):
        return dict(dqkv=R.attention_bwd(g, drop=x["drop"], **self._args(x)))

    def _fwd(self, be, x):
        B, T, NH = x["B"], x["T"], x["NH"]
        saved, scratch = _att_alloc(be, B, T, NH, x["drop"]["p"])
        nout = B if x["q_first"] else x["qkv"].shape[0]
        f = call(be, self.fwd, out=nan((nout, x["C"])), saved=saved, scratch=scratch, **x)
        return f, saved, scratch

    def be_out(self, be, x, meta):
        return self._fwd(be, x)[0]["out"]

    def be_grads(self, be, x, g, pre, meta):
        f, saved, scratch = self._fwd(be, x)  # the same saved buffer (and the output) go to the backward
        return call(be, self.bwd, dqkv=pre.get("dqkv"), dout=g, out=f["out"], saved=saved, scratch=scratch, qkv=x["qkv"],
                    seq_off=x["seq_off"], q_first=x["q_first"], B=x["B"], T=x["T"], C=x["C"], NH=x["NH"],
                    drop=x["drop"])


DROP = dict(seed=(7 << 32) + 99, step=11, stream=4)


@pair
class DropoutPair(Pair):
    fwd, bwd = "dropout_forward", "dropout_backward"
    cases = ("padded-0.3", "packed-0.3", "first-0.3", "padded-0", "packed-1", "big-0.3")
    grad_of = {"inp": "dinp"}

    def make(self, rng, case):
        lay, p = case.split("-")
        if lay == "big":  # 4736 elements: the vector path and two parallel chunks of 4096
            rows, C = _rows("padded", 2, 37, None), 64
        else:  # an empty sequence inside the packed rows; C odd: unaligned Philox blocks
            rows, C = _rows(lay, 3, 5, [3, 0, 5]), 13
        return dict(inp=rng.standard_normal((rows["N"], C)), rows=rows, C=C, drop=dict(DROP, p=float(p))), {}

    def ref_out(self, x, meta):
        return R.dropout_fwd(x["inp"], x["rows"], x["C"], x["drop"])

    def ref_grads(self, x, g, meta):
        return dict(dinp=R.dropout_fwd(g, x["rows"], x["C"], x["drop"]))  # a diagonal op: its own adjoint

    def be_out(self, be, x, meta):
        return call(be, self.fwd, out=nan(x["inp"].shape), **x)["out"]

    def be_grads(self, be, x, g, pre, meta):
        return call(be, self.bwd, dinp=pre.get("dinp"), dout=g, rows=x["rows"], C=x["C"], drop=x["drop"])


@pair
class TanhPair(Pair):
    fwd, bwd = "tanh_forward", "tanh_backward"
    grad_of = {"inp": "dinp"}

    def make(self, rng, case):
        return dict(inp=rng.standard_normal(23) * 1.5, n=23), {}

    def ref_out(self, x, meta):
        return R.tanh_fwd(x["inp"])

    def ref_grads(self, x, g, meta):
        return dict(dinp=R.tanh_bwd(g, x["inp"]))

    def be_out(self, be, x, meta):
        return call(be, self.fwd, out=nan(x["n"]), **x)["out"]

    def be_grads(self, be, x, g, pre, meta):
        out = self.be_out(be, x, meta)
        return call(be, self.bwd, dinp=pre.get("dinp"), dout=g, out=out, n=x["n"])


@pair
class Token0Pair(Pair):
    fwd, bwd = "token0_forward", "token0_backward"
    cases = ("padded", "packed", "first")
    grad_of = {"inp": "dinp"}

    def make(self, rng, case):
        rows, C = _rows(case, 3, 5, [2, 5, 1]), 13
        return dict(inp=rng.standard_normal((rows["N"], C)), rows=rows, C=C), {}

    def nan_ok(self, x, k):  # token 0 of each sequence
        ok = np.zeros(x["inp"].shape[0], bool)
        ok[R.first_rows(x["rows"])] = True
        return ok[:, None]

    def ref_out(self, x, meta):
        return R.token0_fwd(x["inp"], x["rows"])

    def ref_grads(self, x, g, meta):
        return dict(dinp=R.token0_bwd(g, x["rows"], x["rows"]["N"]))

    def be_out(self, be, x, meta):
        return call(be, self.fwd, out=nan((x["rows"]["B"], x["C"])), **x)["out"]

    def be_grads(self, be, x, g, pre, meta):
        return call(be, self.bwd, dinp=pre.get("dinp"), dout=g, rows=x["rows"], C=x["C"])


@pair
class MeanPoolPair(Pair):
    fwd, bwd = "mean_pool_forward", "mean_pool_backward"
    cases = ("padded-mask", "padded-nomask", "packed")
    grad_of = {"h": "dh"}

    def make(self, rng, case):
        B, T, C = 3, 5, 13
        if case == "packed":  # an empty sequence (mean 0); the mask is ignored for packed rows
            rows = _rows("packed", B, T, [2, 0, 5])
            mask = rng.integers(0, 2, (B, T)).astype(np.int32)
        else:
            rows = _rows("padded", B, T, None)
            mask = np.array([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [2, 1, 1, 1, -1]], np.int32) \
                if case == "padded-mask" else None
        return dict(h=rng.standard_normal((rows["N"], C)), mask=mask, rows=rows, C=C), {}

    def nan_ok(self, x, k):
        if x["mask"] is None or x["rows"].get("seq_off") is not None:
            return super().nan_ok(x, k)
        return (np.asarray(x["mask"]) != 0).reshape(-1, 1)  # masked tokens are not read

    def ref_out(self, x, meta):
        return R.mean_pool_fwd(x["h"], x["mask"], x["rows"])

    def ref_grads(self, x, g, meta):
        return dict(dh=R.mean_pool_bwd(g, x["mask"], x["rows"]))

    def be_out(self, be, x, meta):
        return call(be, self.fwd, out=nan((x["rows"]["B"], x["C"])), **x)["out"]

    def be_grads(self, be, x, g, pre, meta):
        return call(be, self.bwd, dh=pre.get("dh"), dout=g, mask=x["mask"], rows=x["rows"], C=x["C"])


@pair
class ConcatPair(Pair):
    fwd, bwd = "concat_forward", "concat_backward"
    cases = ("h7-f4", "h5-f0")
    grad_of = {"h": "dh", "f": "df"}

    def make(self, rng, case):
        B, H, F = (3, 7, 4) if case == "h7-f4" else (3, 5, 0)
        return dict(h=rng.standard_normal((B, H)), f=rng.standard_normal((B, F)), B=B, H=H, F=F), {}

    def ref_out(self, x, meta):
        return R.concat_fwd(x["h"], x["f"])

    def ref_grads(self, x, g, meta):
        return dict(zip(("dh", "df"), R.concat_bwd(g, x["H"])))

    def be_out(self, be, x, meta):
        return call(be, self.fwd, out=nan((x["B"], x["H"] + x["F"])), **x)["out"]

    def be_grads(self, be, x, g, pre, meta):
        return call(be, self.bwd, dh=pre.get("dh"), df=pre.get("df"), dout=g, B=x["B"], H=x["H"], F=x["F"])


@pair
class GatherRowsPair(Pair):
    fwd, bwd = "gather_rows_forward", "gather_rows_backward"
    cases = ("repeats-and-empty", "one")
    grad_of = {"inp": "dinp"}

    def make(self, rng, case):
        M, C = (8, 13) if case != "one" else (1, 3)
        idx = np.array([5, -1, 0, 5, 7, 2], np.int32) if case != "one" else np.array([0], np.int32)
        return dict(inp=rng.standard_normal((M, C)), idx=idx, N=len(idx), C=C), {}

    def nan_ok(self, x, k):  # the rows idx reads
        return np.isin(np.arange(x["inp"].shape[0]), x["idx"])[:, None]

    def ref_out(self, x, meta):
        return R.gather_rows_fwd(x["inp"], x["idx"])

    def ref_grads(self, x, g, meta):
        return dict(dinp=R.gather_rows_bwd(g, x["idx"], x["inp"].shape[0]))

    def be_out(self, be, x, meta):
        return call(be, self.fwd, out=nan((x["N"], x["C"])), **x)["out"]

    def be_grads(self, be, x, g, pre, meta):
        return call(be, self.bwd, dinp=pre.get("dinp"), dout=g, idx=x["idx"], N=x["N"], C=x["C"])


@pair
class SegmentPoolPair(Pair):
    """Pooling across each song's windows: segments of 1, 4 and 2 rows (one song of a single window), and
    one long segment; the attention scores differenced with the rows."""
    fwd, bwd = "segment_pool_forward", "segment_pool_backward"
    cases = tuple("%s-%s" % (m, k) for m in R.SEGPOOL_MODES for k in ("1-4-2", "long"))
    grad_of = {"x": "dx", "scores": "dscores"}

    def make(self, rng, case):
        mode, kind = case.split("-", 1)
        lens = [1, 4, 2] if kind == "1-4-2" else [23]
        off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
        N, C = int(off[-1]), 13
        m = R.SEGPOOL_MODES.index(mode)
        scores = rng.standard_normal(N) * 2 if mode == "attention" else None
        x = rng.standard_normal((N, C))
        if mode == "max":  # each column's max clear of the runner-up, so the differences do not cross it
            for a, b in zip(off[:-1], off[1:]):
                x[a + rng.integers(0, b - a, C), np.arange(C)] += 4.0
        return dict(x=x, scores=scores, seg_off=off, S=len(lens), N=N, C=C, mode=m), {}

    def ref_out(self, x, meta):
        return R.segment_pool_fwd(x["x"], x["scores"], x["seg_off"], x["mode"])

    def ref_grads(self, x, g, meta):
        dx, ds = R.segment_pool_bwd(g, x["x"], x["scores"], x["seg_off"], x["mode"])
        return dict(dx=dx) if ds is None else dict(dx=dx, dscores=ds)

    def be_out(self, be, x, meta):
        return call(be, self.fwd, out=nan((x["S"], x["C"])), **x)["out"]

    def be_grads(self, be, x, g, pre, meta):
        return call(be, self.bwd, dx=pre.get("dx"), dscores=pre.get("dscores"), dout=g, x=x["x"], scores=x["scores"],
                    seg_off=x["seg_off"], S=x["S"], N=x["N"], C=x["C"], mode=x["mode"])


@pair
class LstmCellPair(Pair):
    """One LSTM step; the output compared and differenced is [h | c] (both feed the next step), the
    upstream gradient g splits into dh and dc. The gradient w.r.t. gh is dgates too (pre = gates + gh)."""
    fwd, bwd = "lstm_cell_forward", "lstm_cell_backward"
    cases = ("continue-some", "continue-all", "start", "saturated")
    grad_of = {"gates": "dgates", "gh": "dgates", "c_prev": "dc_prev"}

    def make(self, rng, case):
        N, H = 5, 7  # H odd: the vector loops' remainders
        Np = {"continue-some": 3, "continue-all": 5, "start": 0, "saturated": 4}[case]
        scale = 6.0 if case == "saturated" else 1.0  # |pre| up to ~20: sigmoid and tanh near 0 and 1
        x = dict(gates=rng.standard_normal((N, 4 * H)) * scale, gh=rng.standard_normal((N, 4 * H)) * scale,
                 c_prev=rng.standard_normal((Np, H)) * 1.5 if Np else None, N=N, Np=Np, H=H)
        return x, {}

    def ref_out(self, x, meta):
        h, c, _ = R.lstm_cell_fwd(x["gates"], x["gh"], x["c_prev"], x["Np"])
        return np.concatenate([h.ravel(), c.ravel()])

    def ref_grads(self, x, g, meta):
        n = x["N"] * x["H"]
        dg, dcp = R.lstm_cell_bwd(g[:n].reshape(x["N"], x["H"]), g[n:].reshape(x["N"], x["H"]), x["gates"], x["gh"],
                                  x["c_prev"], x["Np"])
        return dict(dgates=dg, dc_prev=dcp) if x["Np"] else dict(dgates=dg)

    def _fwd(self, be, x):
        N, H = x["N"], x["H"]
        return call(be, self.fwd, h=nan((N, H)), c=nan((N, H)), **x)

    def be_out(self, be, x, meta):
        f = self._fwd(be, x)
        return np.concatenate([f["h"].ravel(), f["c"].ravel()])

    def be_grads(self, be, x, g, pre, meta):
        f = self._fwd(be, x)  # its gates hold the activations now
        N, H = x["N"], x["H"]
        return call(be, self.bwd, dgates=pre.get("dgates"), dc_prev=pre.get("dc_prev"),
                    dh=g[:N * H].reshape(N, H), dc=g[N * H:].reshape(N, H), gates=f["gates"], c=f["c"],
                    c_prev=x["c_prev"], N=N, Np=x["Np"], H=H)


@pair
class BatchnormPair(Pair):
    fwd, bwd = "batchnorm_forward", "batchnorm_backward"
    cases = ("train", "train-noaffine-norunning", "eval")
    grad_of = {"x": "dx", "gamma": "dgamma", "beta": "dbeta"}

    def make(self, rng, case):
        N, C = 7, 5
        affine = case != "train-noaffine-norunning"
        running = case != "train-noaffine-norunning"
        return dict(x=rng.standard_normal((N, C)) * 2 + 0.5,
                    gamma=1 + 0.3 * rng.standard_normal(C) if affine else None,
                    beta=0.2 * rng.standard_normal(C) if affine else None,
                    running_mean=0.1 * rng.standard_normal(C) if running else None,
                    running_var=0.5 + rng.random(C) if running else None,
                    N=N, C=C, training=int(case != "eval"), momentum=0.1, eps=1e-5), {}

    def _ref(self, x):
        return R.batchnorm_fwd(x["x"], x["gamma"], x["beta"], x["running_mean"], x["running_var"], x["training"],
                               x["momentum"], x["eps"])

    def ref_out(self, x, meta):
        return self._ref(x)[0]

    def _batch_stats(self, x):
        return int(bool(x["training"]) or x["running_mean"] is None)

    def ref_grads(self, x, g, meta):
        _, mean, rstd, _, _ = self._ref(x)
        return dict(zip(("dx", "dgamma", "dbeta"),
                        R.batchnorm_bwd(g, x["x"], x["gamma"], mean, rstd, self._batch_stats(x))))

    def _fwd(self, be, x):
        C = x["C"]
        return call(be, self.fwd, out=nan((x["N"], C)), save_mean=nan(C), save_rstd=nan(C), **x)

    def be_out(self, be, x, meta):
        return self._fwd(be, x)["out"]

    def be_grads(self, be, x, g, pre, meta):
        f = self._fwd(be, x)
        return call(be, self.bwd, dx=pre.get("dx"), dgamma=pre.get("dgamma"), dbeta=pre.get("dbeta"), dout=g,
                    x=x["x"], gamma=x["gamma"], save_mean=f["save_mean"], save_rstd=f["save_rstd"], N=x["N"],
                    C=x["C"], batch_stats=self._batch_stats(x))


class LossPair(Pair):
    """A loss: L = grad_scale * loss, whose gradient is the op's (written) dlogits."""

    def make_g(self, rng, out, meta):
        return np.array([meta["grad_scale"]])

    def be_out(self, be, x, meta):
        return call(be, self.fwd, loss=nan(1), **x)["loss"]

    def be_grads(self, be, x, g, pre, meta):
        (d,) = RULE[self.bwd]
        return call(be, self.bwd, loss=nan(1), **{d: pre.get(d)}, **x)


@pair
class CrossEntropyPair(LossPair):
    fwd = bwd = "cross_entropy"
    cases = ("plain", "weighted-ignore", "ignore-in-range")
    grad_of = {"logits": "dlogits"}

    def make(self, rng, case):
        N, K = 7, 5
        labels = rng.integers(0, K, N).astype(np.int64)
        w, ign, gs = None, -100, 1.0
        if case == "weighted-ignore":
            w, gs = rng.uniform(0.5, 2.0, K), 0.5
            labels[[1, 4]] = -100
        elif case == "ignore-in-range":
            ign, gs = 2, 2.0
            labels[[0, 3]] = 2
        x = dict(logits=rng.standard_normal((N, K)) * 2, labels=labels, class_weight=w, N=N, K=K, ignore_index=ign,
                 grad_scale=gs)
        return x, dict(grad_scale=gs)

    def _ref(self, x):
        return R.cross_entropy(x["logits"], x["labels"], x["class_weight"], x["ignore_index"], x["grad_scale"])

    def nan_ok(self, x, k):
        if k != "logits":
            return super().nan_ok(x, k)
        return (np.asarray(x["labels"]) != x["ignore_index"]).reshape(-1, 1)  # ignored rows are not read

    def ref_out(self, x, meta):
        return np.array([self._ref(x)[0]])

    def ref_grads(self, x, g, meta):
        return dict(dlogits=self._ref(x)[1])


@pair
class BcePair(LossPair):
    fwd = bwd = "bce_with_logits"
    cases = ("plain", "pos_weight-soft")
    grad_of = {"logits": "dlogits"}

    def make(self, rng, case):
        N, K = 7, 3
        soft = case == "pos_weight-soft"
        t = rng.random((N, K)) if soft else rng.integers(0, 2, (N, K)).astype(np.float64)
        x = dict(logits=rng.standard_normal((N, K)) * 2, targets=t,
                 pos_weight=rng.uniform(0.5, 3.0, K) if soft else None, N=N, K=K, grad_scale=1.5)
        return x, dict(grad_scale=1.5)

    def _ref(self, x):
        return R.bce_with_logits(x["logits"], x["targets"], x["pos_weight"], x["grad_scale"])

    def ref_out(self, x, meta):
        return np.array([self._ref(x)[0]])

    def ref_grads(self, x, g, meta):
        return dict(dlogits=self._ref(x)[1])


@pair
class MsePair(LossPair):
    fwd = bwd = "mse"
    grad_of = {"preds": "dpreds"}

    def make(self, rng, case):
        return dict(preds=rng.standard_normal(11), targets=rng.standard_normal(11), n=11, grad_scale=0.7), \
            dict(grad_scale=0.7)

    def ref_out(self, x, meta):
        return np.array([R.mse(x["preds"], x["targets"], x["grad_scale"])[0]])

    def ref_grads(self, x, g, meta):
        return dict(dpreds=R.mse(x["preds"], x["targets"], x["grad_scale"])[1])


PAIR_CASES = [(name, case) for name, p in PAIRS.items() for case in p.cases]


def _setup(be, name, case):
    p = PAIRS[name]
    need(be, p.fwd, p.bwd)
    rng = rng_for(name, case)
    x, meta = p.make(rng, case)
    xq = prep(be, p.fwd, **x)
    return p, rng, xq, meta


def _frozen_variants(be, p, grads):
    """() and each optional gradient argument passed as None; with three or more gradients, all the
    optional ones but the last as None too."""
    s = sig(be, p.bwd)
    opt = [k for k in grads if s[k][3]]
    v = [()] + [(k,) for k in opt]
    if len(grads) >= 3 and len(opt) >= 2:
        v.append(tuple(opt[:-1]))
    return v


# ------------------------------------------------------------------ the table itself

def test_every_op_has_a_test():
    table = _C.Backend("cpu").ops()
    ops = set(table)
    assert COVERED == ops, "ops without a test: %s; tests of unknown ops: %s" % (ops - COVERED, COVERED - ops)
    losses = {op for op, args in table.items() if any(a[0] == "loss" for a in args)}
    backward = {op for op in ops if op.endswith("_backward")} | losses
    assert losses == {"cross_entropy", "bce_with_logits", "mse"}
    assert set(PAIRS) == backward == set(RULE), \
        "every backward op and loss needs a Pair (finite differences) and a RULE entry"


def test_every_backend_lists_the_same_ops(be):
    ref = _C.Backend("cpu").ops()
    assert be.ops() == ref
    assert be.name in BACKENDS and be.dtype in DTYPES


def test_gradient_rule_is_the_bindings():
    """The binding uploads and downloads every gradient: accumulated ones are read and written
    ('u'), written ones only written ('o'); RULE names every output of each backward op."""
    ops = _C.Backend("cpu").ops()
    for op, rule in RULE.items():
        outs = {a[0]: a[4] for a in ops[op] if a[1] == "t" and a[2] != "w" and a[4] != "i" and a[0] != "loss"}
        assert set(outs) == set(rule), (op, outs, rule)
        for arg, how in rule.items():
            assert outs[arg] == ("u" if how == "+=" else "o"), (op, arg, outs[arg], how)


# ------------------------------------------------------------------ pairs: forward, backward, differences

@pytest.mark.parametrize("name,case", PAIR_CASES)
def test_forward_vs_reference(be, name, case):
    p, rng, xq, meta = _setup(be, name, case)
    close(p.be_out(be, xq, meta), p.ref_out(f64(xq), meta), be.dtype, what=p.fwd)


@pytest.mark.parametrize("name,case", PAIR_CASES)
def test_backward_vs_reference_and_gradient_rule(be, name, case):
    p, rng, xq, meta = _setup(be, name, case)
    out = p.ref_out(f64(xq), meta)
    g = quant(be, p.make_g(rng, out, meta))
    ref = p.ref_grads(f64(xq), f64(g), meta)
    s = sig(be, p.bwd)
    for frozen in _frozen_variants(be, p, ref):
        pre, expect = {}, {}
        for k, r in ref.items():
            if k in frozen:
                continue
            if RULE[p.bwd][k] == "+=":
                fill = rng.standard_normal(r.shape)
                fill = quant(be, fill) if s[k][2] == "a" else fill.astype(np.float32)
                pre[k], expect[k] = fill, fill + r
            else:
                pre[k], expect[k] = nan(r.shape), r
        res = p.be_grads(be, xq, g, pre, meta)
        for k, e in expect.items():
            close(res[k], e, be.dtype, what="%s %s (%s; None: %s)" % (p.bwd, k, RULE[p.bwd][k], frozen or "-"))
        for k in frozen:
            assert res[k] is None
        if "loss" in res:
            close(res["loss"], out, be.dtype, what="%s loss (None: %s)" % (p.bwd, frozen or "-"))


@pytest.mark.parametrize("name,case", PAIR_CASES)
def test_backward_vs_backend_finite_differences(be, name, case):
    p, rng, xq, meta = _setup(be, name, case)
    out = p.ref_out(f64(xq), meta)
    g = quant(be, p.make_g(rng, out, meta))
    shapes = p.ref_grads(f64(xq), f64(g), meta)
    res = p.be_grads(be, xq, g, {k: np.zeros(v.shape) for k, v in shapes.items()}, meta)
    grads = {w: res[p.grad_of[w]] for w in p.wrt(xq)}
    fd = FD[be.dtype]
    fd_check(lambda xx: loss_of(p.be_out(be, xx, meta), f64(g)), xq, grads, rng, fd["eps"], fd["rtol"],
             fd["noise"], quantize=lambda k, a: prep(be, p.fwd, **{k: a})[k], masks=meta.get("fd_mask"),
             what="%s vs %s" % (p.bwd, p.fwd))


@pytest.mark.parametrize("name,case", PAIR_CASES)
def test_reference_backward_vs_finite_differences(name, case):
    p = PAIRS[name]
    rng = rng_for("ref", name, case)
    x, meta = p.make(rng, case)
    x = f64(x)
    out = p.ref_out(x, meta)
    g = p.make_g(rng, out, meta)
    ref = p.ref_grads(x, g, meta)
    grads = {w: ref[p.grad_of[w]] for w in p.wrt(x)}
    assert grads and any(np.abs(v).max() > 0 for v in grads.values() if v.size) or case.endswith("-1")
    fd_check(lambda xx: loss_of(p.ref_out(xx, meta), g), x, grads, rng, REF_FD["eps"], REF_FD["rtol"],
             REF_FD["noise"], masks=meta.get("fd_mask"), what="reference %s" % p.bwd)


# ------------------------------------------------------------------ NaN propagation (as torch)

def _float_inputs(be, p, x):
    """The forward's float tensor arguments that it reads (inputs and updated tensors), present in x."""
    s = sig(be, p.fwd)
    return [k for k, v in x.items() if isinstance(v, np.ndarray) and v.size and k in s and s[k][1] == "t"
            and s[k][2] in ("a", "f") and s[k][4] in ("i", "u")]


def _nan_at(a, rng, ok):
    cand = np.flatnonzero(np.broadcast_to(ok, np.shape(a)))
    if not cand.size:
        return None
    b = np.array(a, copy=True)
    b.flat[int(rng.choice(cand))] = np.nan
    return b


def _grads_vs_ref(be, p, x, g, meta, what):
    ref = p.ref_grads(f64(x), f64(g), meta)
    pre = {k: np.zeros(r.shape) if RULE[p.bwd][k] == "+=" else nan(r.shape) for k, r in ref.items()}
    res = p.be_grads(be, x, g, pre, meta)
    for k, r in ref.items():
        close(res[k], r, be.dtype, what="%s %s (%s)" % (p.bwd, k, what))


NAN_OPS = set()  # the ops whose NaN behaviour a test checks (test_every_op_propagates_nan_as_torch)


def nan_covers(*ops):
    def deco(f):
        NAN_OPS.update(ops)
        return f
    return deco


@nan_covers(*[op for pr in PAIRS.values() for op in (pr.fwd, pr.bwd)])
@pytest.mark.parametrize("name,case", PAIR_CASES)
def test_nan_propagates_as_in_torch(be, name, case):
    """NaN in, NaN out, as torch: a NaN in any element an op reads (each float input in turn, then the upstream
    gradient) makes NaN exactly the outputs and gradients that the float64 references make NaN. The references
    follow torch: products and sums propagate, the softmax max and every comparison keep NaN, relu(x) is
    x < 0 ? 0 : x, its gradient torch's select where(x <= 0, 0, dout), dropout input * mask / (1 - p) (a dropped
    NaN stays NaN). close() demands NaN exactly where the reference has NaN."""
    with np.errstate(invalid="ignore"):
        _nan_case(be, name, case)


def _nan_case(be, name, case):
    p, rng, xq, meta = _setup(be, name, case)
    keys = _float_inputs(be, p, xq)
    assert keys, "no float input found for %s" % p.fwd
    g = quant(be, p.make_g(rng, p.ref_out(f64(xq), meta), meta))
    hit = False
    for k in keys:
        a = _nan_at(xq[k], rng, p.nan_ok(xq, k))
        if a is None:
            continue
        x2 = dict(xq, **{k: a})
        ref = p.ref_out(f64(x2), meta)
        hit = hit or bool(np.isnan(ref).any())
        close(p.be_out(be, x2, meta), ref, be.dtype, what="%s with a NaN in %s" % (p.fwd, k))
        _grads_vs_ref(be, p, x2, g, meta, "a NaN in %s" % k)
    assert hit, "no NaN input of %s reached its output" % p.fwd
    if not isinstance(p, LossPair):  # a loss's upstream gradient is its grad_scale argument
        g2 = _nan_at(g, rng, True)
        _grads_vs_ref(be, p, xq, g2, meta, "a NaN in the upstream gradient")


def test_nan_references_are_torch():
    """The references' NaN rules are torch's: relu and its select gradient, dropout's product (p = 1
    included), an LSTM cell starting from c0 = 0 with a NaN forget gate."""
    torch = pytest.importorskip("torch")
    x = np.array([np.nan, -0.0, -1.0, 2.0])
    g = np.array([1.0, np.nan, np.nan, 3.0])
    tx = torch.tensor(x, requires_grad=True)
    torch.relu(tx).backward(torch.tensor(g))
    out, _ = R.bias_act_fwd(x, None, R.RELU)
    dx, _ = R.bias_act_bwd(g, x, R.RELU)
    assert np.array_equal(out, torch.relu(torch.tensor(x)).numpy(), equal_nan=True)
    assert np.array_equal(dx, tx.grad.numpy(), equal_nan=True)
    xs = np.array([[np.nan, -1.0, 2.0, np.inf]])
    for p in (0.5, 1.0):
        t = torch.nn.functional.dropout(torch.tensor(xs), p, True).numpy()
        r = R.dropout_fwd(xs, dict(N=1, B=1, T=1), 4, dict(p=p, seed=1, step=0, stream=0))
        assert np.isnan(t[0, 0]) and np.isnan(r[0, 0])
        if p == 1.0:  # every element dropped: inf * 0 is NaN too
            assert np.array_equal(np.isnan(t), np.isnan(r))
    H = 3
    cell = torch.nn.LSTMCell(2, H, bias=True).double()
    with torch.no_grad():
        cell.weight_ih.zero_()
        cell.weight_hh.zero_()
        cell.bias_hh.zero_()
        bias = np.linspace(-1, 1, 4 * H)
        bias[H + 1] = np.nan  # the forget gate of unit 1
        cell.bias_ih.copy_(torch.tensor(bias))
        th, tc = cell(torch.zeros(1, 2, dtype=torch.float64), (torch.zeros(1, H, dtype=torch.float64),) * 2)
    h, c, _ = R.lstm_cell_fwd(bias[None, :], np.zeros((1, 4 * H)), None, 0)
    assert np.isnan(tc.numpy()[0, 1]) and np.array_equal(np.isnan(c), np.isnan(tc.numpy()))
    assert np.array_equal(np.isnan(h), np.isnan(th.numpy()))


@nan_covers("cast")
def test_cast_keeps_nan_and_inf(be):
    need(be, "cast")
    src = np.array([np.nan, -np.nan, np.inf, -np.inf, 1.5], np.float32)
    h = call(be, "cast", dst=np.zeros(3, np.float32), dt="bf16", src=src, st="f32", n=5)["dst"].view(np.uint16)
    back = call(be, "cast", dst=nan(5), dt="f32", src=h.view(np.float32), st="bf16", n=5)["dst"]
    assert np.isnan(back[:2]).all() and back[2] == np.inf and back[3] == -np.inf and back[4] == 1.5


@nan_covers("adam_step", "grad_norm_clip")
def test_optimizer_nan_gradient_stays_nan(be):
    """torch.optim.AdamW with a NaN gradient element: that parameter (and its m, v) become NaN, the others
    step as usual; clip_grad_norm_ then makes every trainable gradient NaN (test_grad_norm_clip)."""
    need(be, "adam_step")
    rng = rng_for("adam-nan")
    params = rng.standard_normal(NPAR).astype(np.float32)
    grads = rng.standard_normal(NPAR).astype(np.float32)
    grads[3] = np.nan
    z = np.zeros(NSTATE, np.float32)
    cfg = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, decoupled=1)
    steps = np.zeros(4, np.int64)
    f = call(be, "adam_step", params=params, grads=grads, m=z, v=z, n=NPAR, nstate=NSTATE, segs=SEGS, nseg=4,
             steps=steps, lr_scale=None, cfg=cfg)
    rp, rm, rv, _ = R.adam_step(params, grads, z, z, SEGS, steps, None, cfg)
    assert np.isnan(rp[3]) and np.isnan(f["params"][3]) and np.isnan(f["m"][3]) and np.isnan(f["v"][3])
    assert np.array_equal(np.isnan(f["params"]), np.isnan(rp))
    close(f["params"], rp, "f32", what="params")


def test_every_op_propagates_nan_as_torch():
    ops = set(_C.Backend("cpu").ops())
    assert NAN_OPS == ops, "ops without a NaN-propagation case: %s" % sorted(ops - NAN_OPS)


# ------------------------------------------------------------------ forward outputs beyond the pairs' main one

@covers("lstm_cell_forward")
@pytest.mark.parametrize("case", LstmCellPair.cases)
def test_lstm_cell_forward_keeps_the_gate_activations(be, case):
    need(be, "lstm_cell_forward")
    x, _ = PAIRS["lstm_cell_backward"].make(rng_for("lstm acts", case), case)
    x = prep(be, "lstm_cell_forward", **x)
    f = call(be, "lstm_cell_forward", h=nan((x["N"], x["H"])), c=nan((x["N"], x["H"])), **x)
    _, _, acts = R.lstm_cell_fwd(f64(x["gates"]), f64(x["gh"]), f64(x["c_prev"]), x["Np"])
    close(f["gates"], acts, be.dtype, what="lstm_cell_forward gate activations (i, f, g, o)")


@covers("layernorm_forward")
@pytest.mark.parametrize("residual", [True, False])
def test_layernorm_forward_writes_res_mean_rstd(be, residual):
    need(be, "layernorm_forward")
    x, _ = PAIRS["layernorm_backward"].make(rng_for("ln", residual), "residual" if residual else "plain")
    x = prep(be, "layernorm_forward", **x)
    N, C = x["N"], x["C"]
    f = call(be, "layernorm_forward", out=nan((N, C)), mean=nan(N), rstd=nan(N), res=nan((N, C)), **x)
    out, mean, rstd, res = R.layernorm_fwd(*(f64(x)[k] for k in ("a", "r", "w", "b", "eps")))
    for k, r in (("out", out), ("mean", mean), ("rstd", rstd), ("res", res)):
        close(f[k], r, be.dtype, what="layernorm_forward " + k)


@covers("lora_forward")
@pytest.mark.parametrize("case", LoraPair.cases)
def test_lora_forward_keeps_u_and_leaves_the_other_columns(be, case):
    need(be, "lora_forward")
    x, _ = LoraPair().make(rng_for("lora-u", case), case)
    x = prep(be, "lora_forward", **x)
    f = call(be, "lora_forward", u=nan((x["rows"]["N"], x["r"])), **x)
    y, u = R.lora_fwd(f64(x["y"]), f64(x["x"]), f64(x["A"]), f64(x["B"]), x["rows"], x["scale"], x["drop"])
    close(f["u"], u, be.dtype, what="lora_forward u")
    assert np.array_equal(f["y"][:, x["OC"]:], x["y"][:, x["OC"]:]), "columns past OC must stay as they were"


@covers("bias_act_forward")
@pytest.mark.parametrize("bias", [True, False])
def test_bias_act_forward_leaves_the_preactivation_in_x(be, bias):
    need(be, "bias_act_forward")
    x, _ = PAIRS["bias_act_backward"].make(rng_for("ba", bias), "gelu" if bias else "gelu-nobias")
    x = prep(be, "bias_act_forward", **x)
    f = call(be, "bias_act_forward", out=nan(x["x"].shape), **x)
    out, pre = R.bias_act_fwd(f64(x)["x"], f64(x)["b"], x["act"])
    close(f["x"], pre, be.dtype, what="x (pre-activation)")
    close(f["out"], out, be.dtype, what="out")


@covers("batchnorm_forward")
@pytest.mark.parametrize("case", BatchnormPair.cases)
def test_batchnorm_forward_stats_and_running_update(be, case):
    need(be, "batchnorm_forward")
    p = PAIRS["batchnorm_backward"]
    x, _ = p.make(rng_for("bn", case), case)
    x = prep(be, "batchnorm_forward", **x)
    f = p._fwd(be, x)
    out, mean, rstd, rm, rv = p._ref(f64(x))
    close(f["out"], out, be.dtype, what="out")
    close(f["save_mean"], mean, be.dtype, what="save_mean")
    close(f["save_rstd"], rstd, be.dtype, what="save_rstd")
    if x["running_mean"] is not None:
        close(f["running_mean"], rm, "f32", what="running_mean")  # F32 state, f64 sums
        close(f["running_var"], rv, "f32", what="running_var (unbiased)")
        if not x["training"]:
            assert np.array_equal(f["running_mean"], x["running_mean"])
            assert np.array_equal(f["running_var"], x["running_var"])


@covers("attention_forward", "attention_backward")
@pytest.mark.parametrize("p", [0.0, 0.25], ids=["p0", "p0.25"])
@pytest.mark.parametrize("q_first", [0, 1], ids=["all", "q_first"])
def test_attention_fully_masked_sequence_is_uniform(be, q_first, p):
    """A sequence with no key left (mask all 0) sees equal scores, as HF's -FLT_MAX does in float32:
    its outputs are the plain mean of its value rows, and its gradients those of a uniform softmax (torch's
    autograd through the additive mask). The GPU kernels recompute the probabilities from a saved
    log-sum-exp, which rounds to -FLT_MAX on such a row (tests/test_cuda_numerics.py): the backward must
    still use 1/L, not exp(0) = 1."""
    need(be, "attention_forward", "attention_backward")
    B, T, C, NH = 3, 40, 6, 2  # 40 keys: two of the SIMT kernels' 32-key tiles
    rng = rng_for("att-masked", q_first)
    qkv = quant(be, rng.standard_normal((B * T, 3 * C)))
    mask = np.zeros((B, T), np.int32)
    mask[0, :2] = 1
    mask[2, :33] = 1
    saved, scratch = _att_alloc(be, B, T, NH, p)
    drop = dict(ATT_DROP, p=p)
    args = dict(qkv=qkv, seq_off=None, q_first=q_first, B=B, T=T, C=C, NH=NH, drop=drop)
    nout = B if q_first else B * T
    f = call(be, "attention_forward", out=nan((nout, C)), saved=saved, scratch=scratch, mask=mask, **args)
    if p == 0:
        v1 = qkv[T:2 * T, 2 * C:].astype(np.float64)
        got = f["out"][1:2] if q_first else f["out"][T:2 * T]
        close(got, np.tile(v1.mean(0), (len(got), 1)), be.dtype, what="fully masked sequence")
    ref = dict(args, qkv=qkv.astype(np.float64), mask=mask)
    close(f["out"], R.attention_fwd(**ref), be.dtype)
    g = quant(be, rng.standard_normal((nout, C)))
    d = call(be, "attention_backward", dqkv=np.zeros((B * T, 3 * C)), dout=g, out=f["out"], saved=saved,
             scratch=scratch, **args)
    dref = R.attention_bwd(g.astype(np.float64), **ref)
    close(d["dqkv"][T:2 * T], dref[T:2 * T], be.dtype, scale=np.abs(dref).max(), what="dqkv, fully masked sequence")
    close(d["dqkv"], dref, be.dtype, what="dqkv")


@covers("dropout_forward")
def test_dropout_mask_is_the_philox_spec_and_depends_on_every_key(be):
    need(be, "dropout_forward")
    rows, C = dict(N=24, B=2, T=12), 16
    ones = np.ones((24, C))
    base = dict(p=0.5, seed=2 ** 40 + 3, step=5, stream=9)
    masks = []
    for change in ({}, {"seed": 2 ** 40 + 4}, {"seed": 3}, {"step": 6}, {"stream": 8}):
        d = dict(base, **change)
        got = call(be, "dropout_forward", out=nan(ones.shape), inp=ones, rows=rows, C=C, drop=d)["out"]
        keep = R.keep_at(R.padded_index(rows, C), d)
        assert np.array_equal(got != 0, keep), d
        close(got[keep], np.full(int(keep.sum()), 2.0), be.dtype)
        masks.append(keep)
    for m in masks[1:]:  # seed (both halves), step and stream each change the mask
        assert not np.array_equal(m, masks[0])
    assert 0.4 < masks[0].mean() < 0.6


@covers("dropout_forward")
@pytest.mark.parametrize("C", [16, 6], ids=["C16", "C6"])  # rows of 4k elements take the CUDA 4-wide kernel
def test_dropout_keeps_non_finite_inputs_non_finite(be, C):
    """Every input NaN or inf: torch's input * mask / (1 - p) makes a dropped NaN or inf NaN, never 0, so the
    output is non-finite everywhere (the elements a loss scaler must see), kept ones as their inputs."""
    need(be, "dropout_forward")
    rows = dict(N=24, B=2, T=12)
    x = np.where(np.arange(24 * C).reshape(24, C) % 3 == 0, np.inf, np.nan)
    d = dict(p=0.5, seed=7, step=1, stream=0)
    with np.errstate(invalid="ignore"):
        got = call(be, "dropout_forward", out=np.zeros(x.shape), inp=x, rows=rows, C=C, drop=d)["out"]
    keep = R.keep_at(R.padded_index(rows, C), d)
    assert 0 < keep.sum() < keep.size
    assert np.isnan(got[~keep]).all(), "a dropped NaN or inf became a number"
    assert np.array_equal(np.isposinf(got[keep]), np.isposinf(x[keep])) and np.isnan(got[keep][np.isnan(x[keep])]).all()


@covers("cross_entropy")
def test_cross_entropy_every_row_ignored(be):
    need(be, "cross_entropy")
    N, K = 3, 4
    f = call(be, "cross_entropy", loss=np.zeros(1), dlogits=nan((N, K)), logits=np.ones((N, K)),
             labels=np.full(N, -100, np.int64), class_weight=None, N=N, K=K, ignore_index=-100, grad_scale=1.0)
    assert np.isnan(f["loss"][0])  # torch: 0/0
    assert np.array_equal(f["dlogits"], np.zeros((N, K)))


@covers("embedding_backward")
@pytest.mark.parametrize("vocab", [600, 70000], ids=["v600", "v70000"])
def test_sorted_embedding_backward_at_scale(be, vocab):
    """The indexed (sorted) embedding backward on keys that need every part of the index: an id with more than
    LNN_EMB_CHUNK = 256 rows (split into chunks summed through partial slots), 600 ids of one or a few rows, the
    pad id left out, positions each repeated B times, all rows of token type 0 or 1 (several chunks each), and
    ids past 2^16 (the radix sort's second pass); against float64 and the serial path."""
    need(be, "embedding_backward")
    rng = rng_for("emb-sorted", vocab)
    B, T, C = 24, 40, 24
    N = B * T
    ids = rng.integers(0, vocab, N).astype(np.int32)
    ids[rng.permutation(N)[:300]] = 5  # 300 rows of id 5: two chunks
    ids[rng.permutation(N)[:40]] = 3  # the pad id
    pos = np.tile(np.arange(T, dtype=np.int32), B)
    types = (rng.random(N) < 0.3).astype(np.int32)
    g = quant(be, rng.standard_normal((N, C)))
    shapes = [(vocab, C), (T, C), (2, C)]
    pre = [rng.standard_normal(s).astype(np.float32) for s in shapes]  # the gradients accumulate
    ref = R.embedding_bwd(g.astype(np.float64), ids, types, pos, shapes, 3)
    runs = {}
    for srt in (0, 1):
        runs[srt] = call(be, "embedding_backward", dwte=pre[0], dwpe=pre[1], dwtt=pre[2], dout=g, ids=ids,
                         types=types, pos=pos, N=N, C=C, pad_id=3, sorted=srt)
    for k, r, p in zip(("dwte", "dwpe", "dwtt"), ref, pre):
        close(runs[1][k], p + r, "f32", what=k + " (sorted)")
        close(runs[1][k], runs[0][k], "f32", what=k + " sorted vs serial")
    assert np.array_equal(runs[1]["dwte"][3], pre[0][3])  # the pad row: untouched
    again = call(be, "embedding_backward", dwte=pre[0], dwpe=pre[1], dwtt=pre[2], dout=g, ids=ids, types=types,
                 pos=pos, N=N, C=C, pad_id=3, sorted=1)
    for k in ("dwte", "dwpe", "dwtt"):
        np.testing.assert_array_equal(again[k], runs[1][k])  # deterministic


# ------------------------------------------------------------------ cast

def _bf16_rne_reference(x):
    """bf16 bits of finite float32 x by the definition: the nearer of the two neighbouring bf16
    values (exact float64 distances), ties to the even pattern; inf and NaN handled by the caller."""
    u = int(np.float32(x).view(np.uint32))
    lo = u >> 16
    hi = lo + 1
    v = float(np.float32(x))
    vlo = float(np.uint32(lo << 16).view(np.float32))
    # IEEE overflow: past the largest bf16, inf rounds as if it were 2^128
    vhi = float(np.uint32((hi & 0xFFFF) << 16).view(np.float32)) if (hi & 0x7FFF) < 0x7F80 else math.copysign(
        2.0 ** 128, v)
    dlo, dhi = abs(v - vlo), abs(vhi - v)
    if dlo < dhi or (dlo == dhi and lo % 2 == 0):
        return lo
    return hi & 0xFFFF


@covers("cast")
def test_cast_f32_to_bf16_rounds_to_nearest_even(be):
    need(be, "cast")
    bits = [0x3F808000, 0x3F818000, 0x3F808001, 0x3F80FFFF, 0xC0200000, 0x7F7FFFFF, 0x00012345, 0x80000000,
            0x7F800000, 0xFF800000, 0x7F800001, 0xFFC12345, 0x3EAAAAAB]
    src = np.array(bits, np.uint32).view(np.float32)
    n = len(src)  # odd: the last bf16 of dst shares its float32 word with an untouched half
    dst = np.full((n + 1) // 2, 0xDEADBEEF, np.uint32).view(np.float32)
    got = call(be, "cast", dst=dst, dt="bf16", src=src, st="f32", n=n)["dst"].view(np.uint16)
    for i, b in enumerate(bits):
        h = int(got[i])
        if (b & 0x7FFFFFFF) > 0x7F800000:  # NaN stays a quiet NaN with its sign
            assert (h & 0x7F80) == 0x7F80 and (h & 0x40) and (h >> 15) == (b >> 31), hex(h)
        elif (b & 0x7FFFFFFF) == 0x7F800000:
            assert h == b >> 16
        else:
            assert h == _bf16_rne_reference(src[i]), (hex(b), hex(h))
    assert got[n] == 0xDEAD  # the half word after n is not written


@covers("cast")
def test_cast_bf16_to_f32_and_copies(be):
    need(be, "cast")
    halves = np.array([0x3F80, 0xC0A1, 0x0001, 0x8000, 0x7F80, 0xFF80, 0x7FC1], np.uint16)
    src = np.concatenate([halves, [0]]).astype(np.uint16).view(np.float32)
    got = call(be, "cast", dst=nan(7), dt="f32", src=src, st="bf16", n=7)["dst"]
    assert np.array_equal(got.view(np.uint32), halves.astype(np.uint32) << 16)
    # same dtype: copies of n elements, the rest untouched
    s32 = np.arange(1, 6, dtype=np.float32)
    got = call(be, "cast", dst=np.full(7, -1.0), dt="f32", src=s32, st="f32", n=5)["dst"]
    assert np.array_equal(got, np.concatenate([s32, [-1, -1]]).astype(np.float32))
    got = call(be, "cast", dst=np.full(3, 0xDEADBEEF, np.uint32).view(np.float32), dt="bf16", src=src, st="bf16",
               n=5)["dst"].view(np.uint16)
    assert np.array_equal(got[:5], halves[:5]) and got[5] == 0xDEAD
    # n = 0 writes nothing
    got = call(be, "cast", dst=np.full(2, 7.0), dt="bf16", src=np.ones(2), st="f32", n=0)["dst"]
    assert np.array_equal(got, np.full(2, 7.0, np.float32))


@covers("cast")
def test_cast_f32_and_f16_round_trip_as_numpy(be):
    """f32 -> f16 rounds to nearest even as numpy's astype(float16) (overflow to inf, subnormals, NaN quiet with its
    sign), and f16 -> f32 is exact: every one of the 65536 half values."""
    need(be, "cast")
    r = np.random.default_rng(7)
    src = np.concatenate([r.standard_normal(3000) * 10.0 ** r.uniform(-9, 6, 3000),
                          [0.0, -0.0, 65504, 65519.99, 65520, -1e6, 6.1e-5, 5.96e-8, 2.98e-8, 2.99e-8, 1.00048828125,
                           1.000732421875, np.inf, -np.inf]]).astype(np.float32)
    n = len(src)
    got = call(be, "cast", dst=np.zeros((n + 1) // 2, np.float32), dt="f16", src=src, st="f32", n=n)["dst"]
    with np.errstate(over="ignore"):
        ref = src.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(got.view(np.uint16)[:n], ref)
    nans = np.array([0x7FC00001, 0xFFA00000], np.uint32).view(np.float32)
    h = call(be, "cast", dst=np.zeros(1, np.float32), dt="f16", src=nans, st="f32", n=2)["dst"].view(np.uint16)
    assert all((int(v) & 0x7E00) == 0x7E00 for v in h) and h[0] >> 15 == 0 and h[1] >> 15 == 1, [hex(v) for v in h]
    halves = np.arange(65536, dtype=np.uint16)
    back = call(be, "cast", dst=nan(65536), dt="f32", src=halves.view(np.float32), st="f16", n=65536)["dst"]
    ref = halves.view(np.float16).astype(np.float32)
    ok = (back.view(np.uint32) == ref.view(np.uint32)) | (np.isnan(back) & np.isnan(ref))
    assert ok.all(), np.flatnonzero(~ok)[:5]


# ------------------------------------------------------------------ optimizer ops (F32 on every backend)

SEGS = np.array([[0, 10, 1, 0], [10, 7, 0, 10], [17, 5, 2, 0], [25, 13, 1, 17]], np.int64)  # decay, no decay,
NPAR, NSTATE = 38, 30                                                                        # frozen, gap 22..25


@covers("grad_norm_clip")
@pytest.mark.parametrize("case", ["norm", "clip", "noclip", "all", "nan-trainable", "nan-frozen"])
def test_grad_norm_clip(be, case):
    need(be, "grad_norm_clip")
    rng = rng_for("clip", case)
    grads = rng.standard_normal(NPAR).astype(np.float32)
    segs = None if case == "all" else SEGS
    if case == "nan-trainable":
        grads[12] = np.nan
    if case == "nan-frozen":
        grads[18] = np.nan
    norm0, _ = R.grad_norm_clip(grads, segs, False, 0.0)
    clip = int(case != "norm")
    max_norm = {"noclip": 10 * norm0}.get(case, 0.5 * norm0) if math.isfinite(norm0) else 1.0
    f = call(be, "grad_norm_clip", norm=nan(1), grads=grads, n=NPAR, segs=segs, nseg=0 if segs is None else 4,
             clip=clip, max_norm=max_norm)
    norm, ref = R.grad_norm_clip(grads, segs, clip, max_norm)
    close(f["norm"], [norm], "f32", what="norm")
    if case == "nan-trainable":
        assert np.isnan(f["norm"][0])
        trainable = np.zeros(NPAR, bool)
        for a, b in R.trainable_ranges(segs, NPAR):
            trainable[a:b] = True
        assert np.isnan(f["grads"][trainable]).all()  # torch: the NaN coefficient propagates
        assert np.array_equal(f["grads"][~trainable], grads[~trainable])
        return
    close(f["grads"], ref, "f32", what="grads")
    if segs is not None:  # frozen and the gap: bit-identical
        assert np.array_equal(f["grads"][17:25], grads[17:25], equal_nan=True)
    if case in ("norm", "noclip"):
        assert np.array_equal(f["grads"], grads, equal_nan=True)
    if case == "clip":
        assert abs(np.linalg.norm(np.concatenate([f["grads"][a:b] for a, b in R.trainable_ranges(SEGS, NPAR)]))
                   - max_norm) < 1e-5 * max_norm


@covers("adam_step")
@pytest.mark.parametrize("decoupled", [1, 0])
@pytest.mark.parametrize("lr_scale", [False, True])
def test_adam_step(be, decoupled, lr_scale):
    need(be, "adam_step")
    rng = rng_for("adam", decoupled, lr_scale)
    params = rng.standard_normal(NPAR).astype(np.float32)
    m = np.zeros(NSTATE, np.float32)
    v = np.zeros(NSTATE, np.float32)
    steps = np.array([0, 0, 0, 4], np.int64)  # the last segment resumes at step 4
    scale = np.array([1.0, 0.5, 2.0, 0.25], np.float32) if lr_scale else None
    cfg = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, decoupled=decoupled)
    for step in range(3):
        grads = rng.standard_normal(NPAR).astype(np.float32)
        f = call(be, "adam_step", params=params, grads=grads, m=m, v=v, n=NPAR, nstate=NSTATE, segs=SEGS, nseg=4,
                 steps=steps, lr_scale=scale, cfg=cfg)
        rp, rm, rv, rs = R.adam_step(params, grads, m, v, SEGS, steps, scale, cfg)
        assert np.array_equal(f["steps"], rs.astype(np.int64)), (f["steps"], rs)
        assert np.array_equal(f["params"][17:25], params[17:25])  # frozen and the gap: untouched
        ulp = np.spacing(np.abs(params).astype(np.float32)).astype(np.float64)
        err = np.abs((f["params"].astype(np.float64) - params) - (rp - params))
        assert (err <= 1e-4 * np.abs(rp - params) + 2 * ulp).all(), (step, err.max())
        close(f["m"], rm, "f32", what="m")
        close(f["v"], rv, "f32", what="v")
        params, m, v, steps = f["params"], f["m"], f["v"], f["steps"]


@covers("grad_norm_clip", "adam_step")
@pytest.mark.parametrize("clip", [1, 0], ids=["clip", "noclip"])
@pytest.mark.parametrize("scale", [1.0, 65536.0, 3.0], ids=["unscaled", "scale2^16", "scale3"])
def test_unscale_clip_and_the_fused_step(be, scale, clip):
    """Loss scaling and the fused step: gradients scaled by `scale` (GradScaler's loss scale), then
    grad_norm_clip with inv_scale = 1/scale gives the unscaled gradients' norm and clips them; with a coef
    output it leaves the gradients alone and adam_step applies the factor itself (writing the unscaled,
    clipped gradients back and refreshing the activation-dtype weight copy wact). With a power-of-two scale
    every result is bit-identical to the unscaled, unfused path."""
    need(be, "grad_norm_clip", "adam_step")
    rng = rng_for("fused", scale, clip)
    params = rng.standard_normal(NPAR).astype(np.float32)
    g = rng.standard_normal(NPAR).astype(np.float32)
    gs = (g * np.float32(scale)).astype(np.float32)
    m, v = rng.standard_normal(NSTATE).astype(np.float32) * 0.1, rng.random(NSTATE).astype(np.float32)
    steps = np.array([2, 0, 0, 5], np.int64)
    cfg = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, decoupled=1)
    max_norm = 0.5 * R.grad_norm_clip(g, SEGS, False, 0.0)[0]
    inv = float(np.float32(1.0 / scale))
    # the separate passes on the unscaled gradients (the reference path)
    a = call(be, "grad_norm_clip", norm=nan(1), grads=g, n=NPAR, segs=SEGS, nseg=4, clip=clip, max_norm=max_norm)
    a2 = call(be, "adam_step", params=params, grads=a["grads"], m=m, v=v, n=NPAR, nstate=NSTATE, segs=SEGS, nseg=4,
              steps=steps, lr_scale=None, cfg=cfg)
    # scaled gradients, separate passes
    b = call(be, "grad_norm_clip", norm=nan(1), grads=gs, n=NPAR, segs=SEGS, nseg=4, clip=clip, max_norm=max_norm,
             inv_scale=inv)
    # scaled gradients, fused: the factor out, applied inside the step, the weight copy written
    c = call(be, "grad_norm_clip", norm=nan(1), grads=gs, n=NPAR, segs=SEGS, nseg=4, clip=clip, max_norm=max_norm,
             inv_scale=inv, coef=np.full(1, np.nan))
    assert np.array_equal(c["grads"], gs)  # untouched: the step applies the factor
    wact = np.full(NPAR, -7.0, np.float32)
    c2 = call(be, "adam_step", params=params, grads=gs, m=m, v=v, n=NPAR, nstate=NSTATE, segs=SEGS, nseg=4,
              steps=steps, lr_scale=None, cfg=cfg, gcoef=c["coef"], skip_norm=c["norm"], wact=wact)
    exact = scale in (1.0, 65536.0)
    for got in (b["norm"], c["norm"]):
        (np.testing.assert_array_equal if exact else np.testing.assert_allclose)(got, a["norm"])
    upd = np.ones(NPAR, bool)
    upd[17:25] = False  # frozen and the gap: not unscaled, not stepped, their weight copy not written
    for got in (b["grads"], c2["grads"]):
        if exact:
            np.testing.assert_array_equal(got[upd], a["grads"][upd])
        else:
            close(got[upd], a["grads"][upd], "f32", what="unscaled grads")
        np.testing.assert_array_equal(got[~upd], gs[~upd])
    for k in ("params", "m", "v", "steps"):
        if exact:
            np.testing.assert_array_equal(c2[k], a2[k], err_msg=k)
        else:
            close(c2[k], a2[k], "f32", what=k)
    np.testing.assert_array_equal(c2["wact"][upd], quant(be, c2["params"])[upd])
    assert (c2["wact"][~upd] == -7.0).all()
    if not clip and scale == 1.0:
        assert c["coef"][0] == 1.0 and np.array_equal(b["grads"], g)  # nothing to do: untouched


@covers("adam_step")
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_adam_step_skips_on_a_non_finite_norm(be, bad):
    """GradScaler.step: inf / NaN gradients (their norm not finite) skip the step: parameters, state, step
    counters and the weight copy stay as they were; a finite norm steps as without skip_norm."""
    need(be, "adam_step")
    rng = rng_for("skip", str(bad))
    params = rng.standard_normal(NPAR).astype(np.float32)
    g = rng.standard_normal(NPAR).astype(np.float32)
    g[3] = bad
    m, v = rng.standard_normal(NSTATE).astype(np.float32) * 0.1, rng.random(NSTATE).astype(np.float32)
    steps = np.array([1, 1, 0, 1], np.int64)
    cfg = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=1)
    n = call(be, "grad_norm_clip", norm=nan(1), grads=g, n=NPAR, segs=SEGS, nseg=4, clip=0, max_norm=0.0)["norm"]
    assert not np.isfinite(n[0])
    wact = np.full(NPAR, 5.0, np.float32)
    f = call(be, "adam_step", params=params, grads=g, m=m, v=v, n=NPAR, nstate=NSTATE, segs=SEGS, nseg=4,
             steps=steps, lr_scale=None, cfg=cfg, skip_norm=n, wact=wact)
    for k, ref in (("params", params), ("m", m), ("v", v), ("steps", steps), ("wact", wact)):
        np.testing.assert_array_equal(f[k], ref, err_msg=k)
    g[3] = 0.5
    ok = call(be, "adam_step", params=params, grads=g, m=m, v=v, n=NPAR, nstate=NSTATE, segs=SEGS, nseg=4,
              steps=steps, lr_scale=None, cfg=cfg, skip_norm=np.ones(1))
    plain = call(be, "adam_step", params=params, grads=g, m=m, v=v, n=NPAR, nstate=NSTATE, segs=SEGS, nseg=4,
                 steps=steps, lr_scale=None, cfg=cfg)
    for k in ("params", "m", "v", "steps"):
        np.testing.assert_array_equal(ok[k], plain[k], err_msg=k)


# ------------------------------------------------------------------ thread-count independence

def _det_run(be):
    rng = np.random.default_rng(5)
    out = {}
    N, C, OC = 517, 648, 640  # 4.3e8 flops per GEMM: the tiled path (2 tiles)
    inp, w, b = rng.standard_normal((N, C)), rng.standard_normal((OC, C)) / 25, rng.standard_normal(OC)
    out["mm"] = call(be, "matmul_forward", out=np.zeros((N, OC)), inp=inp, w=w, b=b, N=N, C=C, OC=OC)["out"]
    dout = rng.standard_normal((N, OC))
    f = call(be, "matmul_backward", dinp=np.zeros((N, C)), dw=np.zeros((OC, C)), db=np.zeros(OC), dout=dout,
             inp=inp, w=w, N=N, C=C, OC=OC)
    out.update(mm_dinp=f["dinp"], mm_dw=f["dw"], mm_db=f["db"])
    Ns, Cs, OCs = 12, 128, 512  # an LSTM step near a batch's end: few rows, split by columns (2 tiles)
    ins, ws = rng.standard_normal((Ns, Cs)), rng.standard_normal((OCs, Cs)) / 25
    out["mm_few_rows"] = call(be, "matmul_forward", out=np.zeros((Ns, OCs)), inp=ins, w=ws, b=None, N=Ns, C=Cs,
                              OC=OCs)["out"]
    f = call(be, "matmul_backward", dinp=np.zeros((Ns, Cs)), dw=None, db=None, dout=rng.standard_normal((Ns, OCs)),
             inp=ins, w=ws, N=Ns, C=Cs, OC=OCs)
    out["mm_few_rows_dinp"] = f["dinp"]
    B, T, Ca, NH = 4, 16, 48, 4
    off = np.array([0, 16, 25, 28, 40], np.int32)
    qkv = rng.standard_normal((40, 3 * Ca))
    drop = dict(ATT_DROP, p=0.2)
    saved, scratch = _att_alloc(be, B, T, NH, 0.2)
    out["att"] = call(be, "attention_forward", out=np.zeros((40, Ca)), saved=saved, scratch=scratch, qkv=qkv,
                      mask=None, seq_off=off, q_first=0, B=B, T=T, C=Ca, NH=NH, drop=drop)["out"]
    out["att_d"] = call(be, "attention_backward", dqkv=np.zeros((40, 3 * Ca)), dout=rng.standard_normal((40, Ca)),
                        out=out["att"], saved=saved, scratch=scratch, qkv=qkv, seq_off=off, q_first=0, B=B, T=T, C=Ca, NH=NH,
                        drop=drop)["dqkv"]
    x = rng.standard_normal((150, 97))
    out["drop"] = call(be, "dropout_forward", out=np.zeros(x.shape), inp=x, rows=dict(N=150, B=6, T=25), C=97,
                       drop=dict(DROP, p=0.3))["out"]
    n = 40000  # three chunks of 16384
    segs = np.array([[0, 20000, 1, 0], [20000, 3000, 2, 0], [23000, 17000, 0, 20000]], np.int64)
    g = rng.standard_normal(n)
    f = call(be, "grad_norm_clip", norm=np.zeros(1), grads=g, n=n, segs=segs, nseg=3, clip=1, max_norm=1.0)
    out.update(norm=f["norm"], clipped=f["grads"])
    f = call(be, "adam_step", params=rng.standard_normal(n), grads=g, m=rng.standard_normal(37000) * 0.1,
             v=rng.random(37000), n=n, nstate=37000, segs=segs, nseg=3, steps=np.array([3, 0, 3], np.int64),
             lr_scale=None, cfg=dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, decoupled=1))
    out.update(adam_p=f["params"], adam_m=f["m"], adam_v=f["v"])
    Ne, Ce, V = 300, 200, 50  # 4 column blocks, many repeated ids
    ids = rng.integers(0, V, Ne).astype(np.int32)
    f = call(be, "embedding_backward", dwte=np.zeros((V, Ce)), dwpe=np.zeros((64, Ce)), dwtt=np.zeros((2, Ce)),
             dout=rng.standard_normal((Ne, Ce)), ids=ids, types=rng.integers(0, 2, Ne).astype(np.int32),
             pos=rng.integers(0, 64, Ne).astype(np.int32), N=Ne, C=Ce, pad_id=3)
    out.update(emb_te=f["dwte"], emb_pe=f["dwpe"], emb_tt=f["dwtt"])
    Nl, Npl, Hl = 64, 50, 128  # an LSTM step of the benchmark's shape: rows over the threads
    f = call(be, "lstm_cell_forward", h=np.zeros((Nl, Hl)), c=np.zeros((Nl, Hl)), gates=rng.standard_normal((Nl, 4 * Hl)),
             gh=rng.standard_normal((Nl, 4 * Hl)), c_prev=rng.standard_normal((Npl, Hl)), N=Nl, Np=Npl, H=Hl)
    out.update(lstm_h=f["h"], lstm_c=f["c"], lstm_acts=f["gates"])
    f = call(be, "lstm_cell_backward", dgates=np.zeros((Nl, 4 * Hl)), dc_prev=np.zeros((Npl, Hl)),
             dh=rng.standard_normal((Nl, Hl)), dc=rng.standard_normal((Nl, Hl)), gates=f["gates"], c=f["c"],
             c_prev=rng.standard_normal((Npl, Hl)), N=Nl, Np=Npl, H=Hl)
    out.update(lstm_dg=f["dgates"], lstm_dcp=f["dc_prev"])
    idx = rng.integers(-1, 40, 300).astype(np.int32)  # repeats: 4 column blocks add them in row order
    out["gather_d"] = call(be, "gather_rows_backward", dinp=np.zeros((40, 200)), dout=rng.standard_normal((300, 200)),
                           idx=idx, N=300, C=200)["dinp"]
    Nl, Cl, rl = 1024, 640, 8  # the rank-r GEMMs split by rows (2 tiles), dropout in parallel chunks
    lrows, ldrop = dict(N=Nl, B=4, T=256), dict(LORA_DROP, p=0.1)
    xl, Al, Bl = rng.standard_normal((Nl, Cl)), rng.standard_normal((rl, Cl)) / 25, rng.standard_normal((Cl, rl))
    f = call(be, "lora_forward", y=np.zeros((Nl, Cl)), ldy=Cl, x=xl, A=Al, B=Bl, u=np.zeros((Nl, rl)), rows=lrows, C=Cl,
             r=rl, OC=Cl, scale=2.0, drop=ldrop)
    out.update(lora_y=f["y"], lora_u=f["u"])
    f = call(be, "lora_backward", dx=np.zeros((Nl, Cl)), dA=np.zeros((rl, Cl)), dB=np.zeros((Cl, rl)),
             dy=rng.standard_normal((Nl, Cl)), ldy=Cl, x=xl, A=Al, B=Bl, u=f["u"], rows=lrows, C=Cl, r=rl, OC=Cl,
             scale=2.0, drop=ldrop)
    out.update(lora_dx=f["dx"], lora_dA=f["dA"], lora_dB=f["dB"])
    lens = rng.integers(1, 9, 37)  # songs of 1..8 windows over the threads
    soff = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    Nw, Cw = int(soff[-1]), 384
    xw, sw, dw = rng.standard_normal((Nw, Cw)), rng.standard_normal(Nw), rng.standard_normal((37, Cw))
    for m, mode in enumerate(R.SEGPOOL_MODES):
        sc = sw if mode == "attention" else None
        out["seg_" + mode] = call(be, "segment_pool_forward", out=np.zeros((37, Cw)), x=xw, scores=sc, seg_off=soff,
                                  S=37, N=Nw, C=Cw, mode=m)["out"]
        f = call(be, "segment_pool_backward", dx=np.zeros((Nw, Cw)), dscores=None if sc is None else np.zeros(Nw),
                 dout=dw, x=xw, scores=sc, seg_off=soff, S=37, N=Nw, C=Cw, mode=m)
        out["seg_d" + mode] = f["dx"]
        if sc is not None:
            out["seg_ds"] = f["dscores"]
    return out, (inp, w, b)


@covers("matmul_forward", "matmul_backward", "attention_forward", "attention_backward", "dropout_forward",
        "grad_norm_clip", "adam_step", "embedding_backward", "lstm_cell_forward", "lstm_cell_backward",
        "gather_rows_backward", "lora_forward", "lora_backward", "segment_pool_forward", "segment_pool_backward")
def test_thread_count_independent(be):
    need(be, "matmul_forward", "matmul_backward", "attention_forward", "attention_backward", "dropout_forward",
         "grad_norm_clip", "adam_step", "embedding_backward", "lstm_cell_forward", "lstm_cell_backward",
         "gather_rows_backward", "lora_forward", "lora_backward", "segment_pool_forward", "segment_pool_backward")
    before = lyricnn.get_num_threads()
    try:
        runs = []
        for nt in (1, 2):
            lyricnn.set_num_threads(nt)
            assert lyricnn.get_num_threads() == nt
            runs.append(_det_run(be))
    finally:
        lyricnn.set_num_threads(before)
    assert lyricnn.get_num_threads() == before
    (one, inputs), (two, _) = runs
    for k in one:
        assert one[k].tobytes() == two[k].tobytes(), "%s differs between 1 and 2 threads" % k
    # and the tiled GEMM is right
    xi, xw, xb = (f64(quant(be, a)) for a in inputs)
    close(one["mm"], xi @ xw.T + xb, be.dtype, what="tiled matmul_forward")


# ------------------------------------------------------------------ bad input to Backend.call

def _readonly(shape):
    a = np.zeros(shape, np.float32)
    a.flags.writeable = False
    return a


def _mm(**over):
    a = dict(out=np.zeros((2, 3), np.float32), inp=np.ones((2, 4), np.float32), w=np.ones((3, 4), np.float32),
             b=None, N=2, C=4, OC=3)
    a.update(over)
    return a


def _emb(**over):
    a = dict(out=np.zeros((3, 2), np.float32), ids=np.array([0, 1, 2], np.int32), types=None,
             pos=np.array([0, 1, 0], np.int32), wte=np.ones((4, 2), np.float32), wpe=np.ones((2, 2), np.float32),
             wtt=None, N=3, C=2)
    a.update(over)
    return a


def _ce(**over):
    a = dict(loss=np.zeros(1), dlogits=None, logits=np.zeros((2, 3), np.float32), labels=np.array([0, 2], np.int64),
             class_weight=None, N=2, K=3, ignore_index=-100, grad_scale=1.0)
    a.update(over)
    return a


def _drop_args(off, **over):
    a = dict(out=np.zeros((5, 2), np.float32), inp=np.ones((5, 2), np.float32),
             rows=dict(N=5, B=2, T=3, seq_off=np.array(off, np.int32)), C=2, drop=dict(p=0.1, seed=1, step=0, stream=0))
    a.update(over)
    return a


def _lora(**over):
    a = dict(y=np.zeros((4, 3), np.float32), ldy=3, x=np.ones((4, 5), np.float32), A=np.ones((2, 5), np.float32),
             B=np.ones((3, 2), np.float32), u=np.zeros((4, 2), np.float32), rows=dict(N=4, B=4, T=1), C=5, r=2, OC=3,
             scale=1.0, drop=dict(p=0.0, seed=0, step=0, stream=0))
    a.update(over)
    return a


def _seg(**over):
    a = dict(out=np.zeros((3, 2), np.float32), x=np.ones((5, 2), np.float32), scores=None,
             seg_off=np.array([0, 1, 2, 5], np.int32), S=3, N=5, C=2, mode=0)
    a.update(over)
    return a


def _att(be, B=2, T=3, off=None, **over):
    sv, sc = _att_alloc(be, B, T, 1, 0.0)
    n = B * T if off is None else off[-1]
    a = dict(out=np.zeros((n, 2), np.float32), saved=sv, scratch=sc, qkv=np.ones((n, 6), np.float32), mask=None,
             seq_off=None if off is None else np.array(off, np.int32), q_first=0, B=B, T=T, C=2, NH=1,
             drop=dict(p=0.0, seed=0, step=0, stream=0))
    a.update(over)
    return a


BAD = {
    "unknown op": (ValueError, "unknown op", lambda be: be.call("no_such_op", n=1)),
    "unknown keyword": (TypeError, "no argument bogus", lambda be: be.call("matmul_forward", bogus=1, **_mm())),
    "missing argument": (TypeError, "needs the argument OC",
                         lambda be: be.call("matmul_forward", **{k: v for k, v in _mm().items() if k != "OC"})),
    "required None": (TypeError, "w of matmul_forward cannot be None", lambda be: be.call("matmul_forward",
                                                                                           **_mm(w=None))),
    "wrong float dtype": (TypeError, "inp must have dtype", lambda be: be.call("matmul_forward",
                                                                              **_mm(inp=np.ones((2, 4)))) ),
    "wrong index dtype": (TypeError, "ids must have dtype", lambda be: be.call(
        "embedding_forward", **_emb(ids=np.array([0, 1, 2], np.int64)))),
    "not an array": (TypeError, "inp must be a numpy array", lambda be: be.call("matmul_forward",
                                                                                **_mm(inp=[[1.0] * 4] * 2))),
    "non-int size": (TypeError, "N must be an int", lambda be: be.call("matmul_forward", **_mm(N=2.0))),
    "too small": (ValueError, "w has 9 elements", lambda be: be.call("matmul_forward",
                                                                     **_mm(w=np.ones((3, 3), np.float32)))),
    "too small output": (ValueError, "out has 5 elements", lambda be: be.call("matmul_forward",
                                                                              **_mm(out=np.zeros(5, np.float32)))),
    "non-contiguous": (ValueError, "inp must be C-contiguous", lambda be: be.call(
        "matmul_forward", **_mm(inp=np.ones((4, 2), np.float32).T))),
    "read-only output": (ValueError, "writeable", lambda be: be.call("matmul_forward", **_mm(out=_readonly((2, 3))))),
    "token id too large": (IndexError, r"ids\[1\] = 4", lambda be: be.call(
        "embedding_forward", **_emb(ids=np.array([0, 4, 1], np.int32)))),
    "negative token id": (IndexError, r"ids\[2\] = -1", lambda be: be.call(
        "embedding_forward", **_emb(ids=np.array([0, 1, -1], np.int32)))),
    "position out of range": (IndexError, "pos", lambda be: be.call("embedding_forward",
                                                                     **_emb(pos=np.array([0, 2, 0], np.int32)))),
    "backward token id": (IndexError, "ids", lambda be: be.call(
        "embedding_backward", dwte=np.zeros((4, 2), np.float32), dwpe=None, dwtt=None, dout=np.ones((3, 2), np.float32),
        ids=np.array([0, 9, 1], np.int32), types=None, pos=np.zeros(3, np.int32), N=3, C=2, pad_id=-1)),
    "label out of range": (IndexError, r"labels\[1\] = 3", lambda be: be.call(
        "cross_entropy", **_ce(labels=np.array([0, 3], np.int64)))),
    "negative label": (IndexError, "labels", lambda be: be.call("cross_entropy",
                                                                **_ce(labels=np.array([-1, 0], np.int64)))),
    "rows seq_off decreasing": (ValueError, "seq_off", lambda be: be.call("dropout_forward",
                                                                          **_drop_args([0, 3, 2]))),
    "rows seq_off longer than T": (ValueError, "seq_off", lambda be: be.call("dropout_forward",
                                                                             **_drop_args([0, 1, 5]))),
    "rows seq_off not ending at N": (ValueError, "seq_off", lambda be: be.call("dropout_forward",
                                                                               **_drop_args([0, 2, 4]))),
    "rows seq_off not starting at 0": (ValueError, "seq_off", lambda be: be.call("dropout_forward",
                                                                                 **_drop_args([1, 3, 5]))),
    "rows seq_off wrong length": (ValueError, "seq_off", lambda be: be.call(
        "dropout_forward", **_drop_args([0, 5], rows=dict(N=5, B=2, T=3, seq_off=np.array([0, 5], np.int32))))),
    "padded rows N != B*T": (ValueError, "N == B", lambda be: be.call(
        "dropout_forward", **_drop_args([0, 2, 5], rows=dict(N=5, B=2, T=3)))),
    "attention seq_off": (ValueError, "seq_off", lambda be: be.call("attention_forward",
                                                                    **_att(be, off=[0, 2, 1]))),
    "attention seq_off longer than T": (ValueError, "seq_off", lambda be: be.call("attention_forward",
                                                                                  **_att(be, off=[0, 4, 5]))),
    "attention C % NH": (ValueError, "multiple of NH", lambda be: be.call("attention_forward", **_att(be, NH=4))),
    "drop.p out of range": (ValueError, "drop.p", lambda be: be.call(
        "dropout_forward", **_drop_args([0, 2, 5], drop=dict(p=1.5, seed=0, step=0, stream=0)))),
    "drop key missing": (KeyError, "seed", lambda be: be.call(
        "dropout_forward", **_drop_args([0, 2, 5], drop=dict(p=0.5, step=0, stream=0)))),
    "mean_pool first_only": (ValueError, "first_only", lambda be: be.call(
        "mean_pool_forward", out=np.zeros((2, 2), np.float32), h=np.zeros((2, 2), np.float32), mask=None,
        rows=dict(N=2, B=2, T=3, first_only=1), C=2)),
    "bad activation": (ValueError, "act must be", lambda be: be.call(
        "bias_act_forward", out=np.zeros((1, 2), np.float32), x=np.zeros((1, 2), np.float32), b=None, N=1, OC=2,
        act=7)),
    "adam bad segments": (ValueError, "segments", lambda be: be.call(
        "adam_step", params=np.zeros(4, np.float32), grads=np.zeros(4, np.float32), m=np.zeros(4, np.float32),
        v=np.zeros(4, np.float32), n=4, nstate=4, segs=np.array([[0, 5, 0, 0]], np.int64), nseg=1,
        steps=np.zeros(1, np.int64), lr_scale=None, cfg=dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                                                             weight_decay=0.0))),
    "adam bad config": (ValueError, "optimizer", lambda be: be.call(
        "adam_step", params=np.zeros(4, np.float32), grads=np.zeros(4, np.float32), m=np.zeros(4, np.float32),
        v=np.zeros(4, np.float32), n=4, nstate=4, segs=np.array([[0, 4, 0, 0]], np.int64), nseg=1,
        steps=np.zeros(1, np.int64), lr_scale=None, cfg=dict(lr=1e-3, beta1=1.5, beta2=0.999, eps=1e-8,
                                                             weight_decay=0.0))),
    "cast to an index dtype": (ValueError, "cast converts", lambda be: be.call(
        "cast", dst=np.zeros(2, np.float32), dt="i32", src=np.zeros(2, np.float32), st="f32", n=2)),
    "saved too small": (ValueError, "saved has 0 bytes", lambda be: be.call(
        "attention_forward", **_att(be, saved=be.alloc(0)))),
    "Buffer of another Backend": (ValueError, "another Backend", lambda be: be.call(
        "attention_forward", **_att(be, saved=_C.Backend(BACKENDS[0]).alloc(1 << 12)))),
    "embedding wpe without pos": (ValueError, "wpe and pos go together", lambda be: be.call(
        "embedding_forward", **_emb(pos=None))),
    "gather index past the rows": (IndexError, r"idx\[1\] = 4 is outside the 4 rows of inp", lambda be: be.call(
        "gather_rows_forward", out=np.zeros((2, 3), np.float32), inp=np.zeros((4, 3), np.float32),
        idx=np.array([0, 4], np.int32), N=2, C=3)),
    "lstm Np > N": (ValueError, "Np", lambda be: be.call(
        "lstm_cell_forward", h=np.zeros((2, 3), np.float32), c=np.zeros((2, 3), np.float32),
        gates=np.zeros((2, 12), np.float32), gh=np.zeros((2, 12), np.float32), c_prev=np.zeros((3, 3), np.float32),
        N=2, Np=3, H=3)),
    "lstm c_prev missing": (ValueError, "c_prev is needed", lambda be: be.call(
        "lstm_cell_forward", h=np.zeros((2, 3), np.float32), c=np.zeros((2, 3), np.float32),
        gates=np.zeros((2, 12), np.float32), gh=np.zeros((2, 12), np.float32), c_prev=None, N=2, Np=1, H=3)),
    "lstm gates too small": (ValueError, "gates has 12 elements", lambda be: be.call(
        "lstm_cell_backward", dgates=np.zeros((2, 12), np.float32), dc_prev=None, dh=np.zeros((2, 3), np.float32),
        dc=np.zeros((2, 3), np.float32), gates=np.zeros((1, 12), np.float32), c=np.zeros((2, 3), np.float32),
        c_prev=None, N=2, Np=0, H=3)),
    "index array as a Buffer": (TypeError, "holds indices", lambda be: be.call(
        "embedding_forward", **_emb(ids=be.alloc(64)))),
    "seq_off as a Buffer": (TypeError, "holds indices", lambda be: be.call(
        "attention_forward", **_att(be, off=[0, 2, 5], seq_off=be.alloc(64)))),
    "workspace as an array": (TypeError, "must be a Buffer", lambda be: be.call(
        "attention_forward", **_att(be, scratch=np.zeros(1024, np.float32)))),
    "segment_pool unsorted": (ValueError, "seg_off must grow", lambda be: be.call(
        "segment_pool_forward", **_seg(seg_off=np.array([0, 3, 2, 5], np.int32)))),
    "segment_pool empty segment": (ValueError, "no empty segment", lambda be: be.call(
        "segment_pool_forward", **_seg(seg_off=np.array([0, 2, 2, 5], np.int32)))),
    "segment_pool not ending at N": (ValueError, r"seg_off\[S\] = 4 but N = 5", lambda be: be.call(
        "segment_pool_forward", **_seg(seg_off=np.array([0, 1, 2, 4], np.int32)))),
    "segment_pool seg_off short": (ValueError, "seg_off has 3 elements", lambda be: be.call(
        "segment_pool_forward", **_seg(seg_off=np.array([0, 2, 5], np.int32)))),
    "segment_pool mode": (ValueError, "mode must be", lambda be: be.call("segment_pool_forward", **_seg(mode=3))),
    "segment_pool attention without scores": (ValueError, "needs scores", lambda be: be.call(
        "segment_pool_forward", **_seg(mode=2))),
    "segment_pool dscores for mean": (ValueError, "dscores is only", lambda be: be.call(
        "segment_pool_backward", dx=np.zeros((5, 2), np.float32), dscores=np.zeros(5, np.float32),
        dout=np.zeros((3, 2), np.float32), x=np.zeros((5, 2), np.float32), scores=None,
        seg_off=np.array([0, 1, 2, 5], np.int32), S=3, N=5, C=2, mode=0)),
    "lora ldy < OC": (ValueError, "ldy must be in OC", lambda be: be.call("lora_forward", **_lora(ldy=2))),
    "lora y too small for ldy": (ValueError, "y has 12 elements", lambda be: be.call("lora_forward", **_lora(ldy=4))),
    "lora B for another rank": (ValueError, "B has 6 elements", lambda be: be.call("lora_forward", **_lora(
        r=3, u=np.zeros((4, 3), np.float32), A=np.ones((3, 5), np.float32)))),
    "lora dropout p": (ValueError, "drop.p must be in", lambda be: be.call("lora_forward", **_lora(
        drop=dict(p=1.5, seed=0, step=0, stream=0)))),
}


@covers("matmul_forward", "embedding_forward", "embedding_backward", "cross_entropy", "dropout_forward",
        "attention_forward", "mean_pool_forward", "bias_act_forward", "adam_step", "cast", "gather_rows_forward",
        "lstm_cell_forward", "lstm_cell_backward", "lora_forward", "segment_pool_forward", "segment_pool_backward")
@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_and_the_backend_still_works(be, case):
    exc, match, fn = BAD[case]
    with pytest.raises(exc, match=match):
        fn(be)
    f = call(be, "matmul_forward", **_mm(inp=np.arange(8.0).reshape(2, 4)))
    close(f["out"], np.tile(np.arange(8.0).reshape(2, 4).sum(1, keepdims=True), (1, 3)), be.dtype)


def test_unsupported_dtype_is_a_value_error():
    for name in BACKENDS:
        try:
            _C.Backend(name, dtype="bf16")
        except ValueError as e:
            assert "bf16" in str(e)
    with pytest.raises(ValueError, match="dtype"):
        _C.Backend(BACKENDS[0], dtype="f64")
    with pytest.raises(ValueError, match="f16"):
        _C.Backend("cpu", dtype="f16")  # the CPU runs float32 activations
    with pytest.raises(ValueError, match="no backend"):
        _C.Backend("no-such-backend")


# ------------------------------------------------------------------ empty packed sequences

@covers("token0_forward", "token0_backward")
@pytest.mark.parametrize("op", ["token0_forward", "token0_backward"])
def test_token0_rejects_an_empty_packed_sequence(be, op):
    need(be, op)
    C = 3
    rows = dict(N=5, B=3, T=4, seq_off=np.array([0, 3, 5, 5], np.int32))
    # one row more than rows.N, so the out-of-range access lands inside the array (no undefined behaviour)
    big = np.arange(6 * C, dtype=np.float32).reshape(6, C)
    if op == "token0_forward":
        args = dict(out=np.zeros((3, C), np.float32), inp=big, rows=rows, C=C)
    else:
        args = dict(dinp=big, dout=np.ones((3, C), np.float32), rows=rows, C=C)
    with pytest.raises(ValueError, match="packed sequence 2 is empty"):
        be.call(op, **args)


@covers("attention_forward")
def test_q_first_attention_rejects_an_empty_packed_sequence(be):
    need(be, "attention_forward")
    B, T, C, NH = 3, 4, 6, 2
    seq_off = np.array([0, 2, 2, 5], np.int32)  # sequence 1 is empty: it has no first query
    saved = be.alloc(be.attention_saved_bytes(B, T, NH, False, 0.0))
    scratch = be.alloc(be.attention_scratch_bytes(B, T, NH, False, 0.0))
    with pytest.raises(ValueError, match="packed sequence 1 is empty; q_first attention"):
        be.call("attention_forward", out=np.zeros((B, C), np.float32), saved=saved, scratch=scratch,
                qkv=np.zeros((5, 3 * C), np.float32), mask=None, seq_off=seq_off, q_first=1, B=B, T=T, C=C, NH=NH,
                drop=dict(p=0.0, seed=0, step=0, stream=0))


# ------------------------------------------------------------------ segment pooling: NaN and ties

@covers("segment_pool_forward", "segment_pool_backward")
def test_segment_pool_nan_propagates_and_ties_go_to_the_first_row(be):
    """max: a NaN anywhere in a segment's column is the column's max (torch.max), and its gradient goes
    to the first NaN's row; of equal values, to the first; attention: a NaN score makes the song NaN
    (torch.softmax); mean: a NaN row makes the mean NaN. The other segments stay finite."""
    need(be, "segment_pool_forward", "segment_pool_backward")
    x = np.array([[1, 2, 5], [np.nan, 2, 5], [3, np.nan, 5], [4, 1, 0], [7, 7, 7]], np.float32)
    off = np.array([0, 3, 4, 5], np.int32)
    kw = dict(seg_off=off, S=3, N=5, C=3)
    out = call(be, "segment_pool_forward", out=nan((3, 3)), x=x, scores=None, mode=1, **kw)["out"]
    np.testing.assert_array_equal(out, [[np.nan, np.nan, 5], [4, 1, 0], [7, 7, 7]])
    dx = call(be, "segment_pool_backward", dx=np.zeros((5, 3)), dscores=None, dout=np.ones((3, 3)), x=x, scores=None,
              mode=1, **kw)["dx"]
    np.testing.assert_array_equal(dx, [[0, 0, 1], [1, 0, 0], [0, 1, 0], [1, 1, 1], [1, 1, 1]])
    fin = np.nan_to_num(x)
    sc = np.array([0.5, np.nan, 0.1, 0.2, 0.3], np.float32)
    out = call(be, "segment_pool_forward", out=nan((3, 3)), x=fin, scores=sc, mode=2, **kw)["out"]
    assert np.isnan(out[0]).all() and np.array_equal(out[1:], fin[3:])
    out = call(be, "segment_pool_forward", out=nan((3, 3)), x=x, scores=None, mode=0, **kw)["out"]
    assert np.isnan(out[0, :2]).all() and out[0, 2] == 5 and np.array_equal(out[1:], x[3:])
