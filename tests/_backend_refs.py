"""float64 numpy references of the backend op table (csrc/core/backend.h), for tests/test_backend_ops.py.

Written from the op contracts in backend.h and torch's definitions, not from the CPU kernels: every
forward here is plain float64 numpy, every backward is the analytic gradient of that forward (proven
against float64 finite differences of the forward in test_backend_ops.py), and the dropout masks come
from the Philox4x32-10 spec (core/philox.h; the same function as tests/test_encoder.py's reference).

Token rows are described by the dict the binding takes: dict(N=, B=, T=, seq_off=None|int32 (B+1),
first_only=0|1).
"""
import math

import numpy as np

FLT_MAX = float(np.finfo(np.float32).max)


# ------------------------------------------------------------------ bf16

def f32_to_bf16_bits(x):
    """float32 -> bf16 bit patterns (uint16), round to nearest even, NaN stays a quiet NaN."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
    r = np.where(nan, ((u >> 16) | 0x40) & 0xFFFF, r)
    return r.astype(np.uint16)


def bf16_bits_to_f32(h):
    return (np.asarray(h, np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_bf16(x):
    """x rounded to the nearest bf16 value, as float32."""
    x = np.asarray(x, np.float32)
    return bf16_bits_to_f32(f32_to_bf16_bits(x)).reshape(x.shape)


def round_f16(x):
    """x rounded to the nearest IEEE half value (overflow to inf), as float32."""
    with np.errstate(over="ignore"):
        return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


# ------------------------------------------------------------------ Philox dropout masks

def philox4x32_10(c, k0, k1):
    """Philox4x32-10 (numpy, uint64 lanes holding uint32 values): counter words c[0..3], key (k0, k1)."""
    MASK = np.uint64(0xFFFFFFFF)
    c = [np.asarray(w, np.uint64) for w in c]
    k0, k1 = np.uint64(k0), np.uint64(k1)
    for r in range(10):
        if r:
            k0 = (k0 + np.uint64(0x9E3779B9)) & MASK
            k1 = (k1 + np.uint64(0xBB67AE85)) & MASK
        p0 = np.uint64(0xD2511F53) * c[0]
        p1 = np.uint64(0xCD9E8D57) * c[2]
        c = [((p1 >> np.uint64(32)) ^ c[1] ^ k0) & MASK, p1 & MASK, ((p0 >> np.uint64(32)) ^ c[3] ^ k1) & MASK,
             p0 & MASK]
    return c


def keep_at(idx, drop):
    """Keep bits (bool) of the dropout site drop=dict(p, seed, step, stream) at element indices idx:
    element i draws word i & 3 of philox(counter {i >> 2 (64-bit), stream, step}, key seed) and is kept
    when that word >= p * 2^32 (p as float32); p <= 0 keeps everything, p >= 1 drops everything."""
    idx = np.asarray(idx, np.uint64)
    p = float(np.float32(drop["p"]))
    if p <= 0:
        return np.ones(idx.shape, bool)
    if p >= 1:
        return np.zeros(idx.shape, bool)
    flat = idx.ravel()
    blk = flat >> np.uint64(2)
    seed = int(drop["seed"])
    c = philox4x32_10([blk & np.uint64(0xFFFFFFFF), blk >> np.uint64(32),
                       np.full(flat.shape, drop["stream"], np.uint64), np.full(flat.shape, drop["step"], np.uint64)],
                      seed & 0xFFFFFFFF, seed >> 32)
    words = np.stack(c, axis=1)[np.arange(flat.size), (flat & np.uint64(3)).astype(np.int64)]
    thr = min(int(p * 4294967296.0), 0xFFFFFFFF)
    return (words >= np.uint64(thr)).reshape(idx.shape)


def drop_scale(drop):
    p = float(np.float32(drop["p"]))
    return 0.0 if p >= 1 else 1.0 / (1.0 - p)


# ------------------------------------------------------------------ token rows

def row_bt(rows):
    """(b, t) of every row of a token-row layout: padded, packed (seq_off) or first_only."""
    B, T = rows["B"], rows["T"]
    if rows.get("first_only"):
        return np.arange(B), np.zeros(B, np.int64)
    off = rows.get("seq_off")
    if off is None:
        return np.repeat(np.arange(B), T), np.tile(np.arange(T), B)
    lens = np.diff(off)
    b = np.repeat(np.arange(B), lens)
    t = np.concatenate([np.arange(n) for n in lens]) if len(b) else np.zeros(0, np.int64)
    return b, t


def padded_index(rows, C):
    """(N, C) padded element indices (b*T + t)*C + c of every entry of a token-row activation."""
    b, t = row_bt(rows)
    return ((b * rows["T"] + t)[:, None] * C + np.arange(C)[None, :]).astype(np.uint64)


# ------------------------------------------------------------------ embeddings

def embedding_fwd(ids, types, pos, wte, wpe, wtt):
    out = wte[ids] + (0.0 if wpe is None else wpe[pos])
    if wtt is not None:
        out = out + wtt[types if types is not None else np.zeros_like(ids)]
    return out


def embedding_bwd(dout, ids, types, pos, shapes, pad_id):
    """-> (dwte, dwpe, dwtt) for tables of the given shapes (None for an absent table)."""
    res = []
    for k, (idx, shape) in enumerate(zip((ids, pos, types if types is not None else np.zeros_like(ids)), shapes)):
        if shape is None:
            res.append(None)
            continue
        d = np.zeros(shape)
        sel = idx != pad_id if k == 0 else np.ones(len(idx), bool)
        np.add.at(d, idx[sel], dout[sel])
        res.append(d)
    return res[0], res[1], res[2]


# ------------------------------------------------------------------ linear, layernorm, activations

def matmul_fwd(inp, w, b):
    out = inp @ w.T
    return out if b is None else out + b


def matmul_bwd(dout, inp, w):
    return dout @ w, dout.T @ inp, dout.sum(0)


def lora_fwd(y, x, A, B, rows, scale, drop):
    """peft's lora.Linear branch: (y with its first OC columns += scale * (drop(x) A^T) B^T, u = drop(x) A^T)."""
    xd = dropout_fwd(x, rows, x.shape[1], drop)
    u = xd @ A.T
    out = np.array(y, np.float64)
    out[:, :B.shape[0]] += scale * (u @ B.T)
    return out, u


def lora_bwd(dy, x, A, B, rows, scale, drop):
    """-> (dx, dA, dB) for the gradient dy (N, ldy) of lora_fwd's y (its first OC columns)."""
    C = x.shape[1]
    xd = dropout_fwd(x, rows, C, drop)
    g = dy[:, :B.shape[0]]
    t = scale * (g @ B)
    return dropout_fwd(t @ A, rows, C, drop), t.T @ xd, scale * (g.T @ (xd @ A.T))


def layernorm_fwd(a, r, w, b, eps):
    res = a if r is None else a + r
    mean = res.mean(1)
    var = ((res - mean[:, None]) ** 2).mean(1)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = (res - mean[:, None]) * rstd[:, None]
    return xhat * w + b, mean, rstd, res


def layernorm_bwd(dout, res, w, eps):
    C = res.shape[1]
    mean = res.mean(1, keepdims=True)
    rstd = 1.0 / np.sqrt(((res - mean) ** 2).mean(1, keepdims=True) + eps)
    xhat = (res - mean) * rstd
    gx = dout * w
    dres = rstd / C * (C * gx - gx.sum(1, keepdims=True) - xhat * (gx * xhat).sum(1, keepdims=True))
    return dres, (dout * xhat).sum(0), dout.sum(0)


_erf = np.vectorize(math.erf, otypes=[np.float64])
GELU, RELU, GELU_TANH = 0, 1, 2  # LNN_ACT_*
_K = math.sqrt(2.0 / math.pi)


def act_fwd(x, act):
    if act == RELU:
        return np.maximum(x, 0.0)
    if act == GELU_TANH:
        return 0.5 * x * (1.0 + np.tanh(_K * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def act_grad(x, act):
    if act == RELU:  # NaN where x is NaN: torch's threshold_backward lets dout through (x <= 0 is false)
        return (~(x <= 0)).astype(np.float64)
    if act == GELU_TANH:
        th = np.tanh(_K * (x + 0.044715 * x ** 3))
        return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th ** 2) * _K * (1.0 + 3 * 0.044715 * x ** 2)
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def bias_act_fwd(x, b, act):
    """-> (out, the pre-activation x + b that the op leaves in x)."""
    pre = x if b is None else x + b
    return act_fwd(pre, act), pre


def bias_act_bwd(dout, pre, act):
    if act == RELU:  # torch's threshold_backward is a select: where(x <= 0, 0, dout), also for a NaN dout
        dx = np.where(pre <= 0, 0.0, dout)
        return dx, dx.sum(0)
    dx = dout * act_grad(pre, act)
    return dx, dx.sum(0)


def tanh_fwd(x):
    return np.tanh(x)


def tanh_bwd(dout, x):
    return dout * (1.0 - np.tanh(x) ** 2)


# ------------------------------------------------------------------ attention

def attention_keep(B, T, NH, drop):
    """(B, NH, T, T) keep bits of the attention probabilities, keyed by ((b*NH + h)*T + i)*T + j."""
    return keep_at(np.arange(B * NH * T * T, dtype=np.uint64).reshape(B, NH, T, T), drop)


def _att_seqs(qkv, B, T, C, seq_off):
    """rows (start, length) of each sequence in qkv."""
    if seq_off is None:
        return [(b * T, T) for b in range(B)]
    return [(int(seq_off[b]), int(seq_off[b + 1] - seq_off[b])) for b in range(B)]


def _att_probs(S, mb):
    """softmax of scores S (Lq, L) with masked keys (mb == 0) adding -FLT_MAX in float32, as HF does:
    a row whose keys are all masked sees equal scores (s - FLT_MAX rounds to -FLT_MAX): uniform."""
    if mb is not None:
        if not mb.any():
            return np.full(S.shape, 1.0 / S.shape[1])
        S = np.where(mb[None, :] != 0, S, -np.inf)
    e = np.exp(S - S.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def attention_fwd(qkv, B, T, C, NH, mask=None, seq_off=None, q_first=False, drop=None):
    """out (N, C) (q_first: (B, C)) of multi-head self-attention over qkv (N, 3C) = [Q | K | V]."""
    hs = C // NH
    keep = attention_keep(B, T, NH, drop) if drop and drop["p"] > 0 else None
    scale = drop_scale(drop) if keep is not None else 1.0
    out = np.zeros((B if q_first else qkv.shape[0], C))
    for b, (r0, L) in enumerate(_att_seqs(qkv, B, T, C, seq_off)):
        if L < 1:
            continue
        mb = mask[b] if (mask is not None and seq_off is None) else None
        Lq = 1 if q_first else L
        for h in range(NH):
            q = qkv[r0:r0 + Lq, h * hs:(h + 1) * hs]
            k = qkv[r0:r0 + L, C + h * hs:C + (h + 1) * hs]
            v = qkv[r0:r0 + L, 2 * C + h * hs:2 * C + (h + 1) * hs]
            P = _att_probs(q @ k.T / math.sqrt(hs), mb)
            if keep is not None:
                P = P * keep[b, h, :Lq, :L] * scale
            o = b if q_first else slice(r0, r0 + L)
            out[o, h * hs:(h + 1) * hs] = P @ v
    return out


def attention_bwd(dout, qkv, B, T, C, NH, mask=None, seq_off=None, q_first=False, drop=None):
    """dqkv (N, 3C): the gradient of sum(attention_fwd(...) * dout) (fully masked rows: torch's autograd
    through the constant mask, i.e. the uniform softmax's own gradient)."""
    hs = C // NH
    keep = attention_keep(B, T, NH, drop) if drop and drop["p"] > 0 else None
    scale = drop_scale(drop) if keep is not None else 1.0
    dqkv = np.zeros_like(qkv)
    for b, (r0, L) in enumerate(_att_seqs(qkv, B, T, C, seq_off)):
        if L < 1:
            continue
        mb = mask[b] if (mask is not None and seq_off is None) else None
        Lq = 1 if q_first else L
        for h in range(NH):
            cq, ck, cv = (slice(o + h * hs, o + (h + 1) * hs) for o in (0, C, 2 * C))
            q, k, v = qkv[r0:r0 + Lq, cq], qkv[r0:r0 + L, ck], qkv[r0:r0 + L, cv]
            P = _att_probs(q @ k.T / math.sqrt(hs), mb)
            M = keep[b, h, :Lq, :L] * scale if keep is not None else np.ones_like(P)
            dO = dout[b:b + 1, h * hs:(h + 1) * hs] if q_first else dout[r0:r0 + L, h * hs:(h + 1) * hs]
            dv = (P * M).T @ dO
            dP = (dO @ v.T) * M
            dS = P * (dP - (dP * P).sum(1, keepdims=True)) / math.sqrt(hs)
            dqkv[r0:r0 + Lq, cq] += dS @ k
            dqkv[r0:r0 + L, ck] += dS.T @ q
            dqkv[r0:r0 + L, cv] += dv
    return dqkv


# ------------------------------------------------------------------ dropout, gathers, pooling

def dropout_fwd(x, rows, C, drop):
    return x * keep_at(padded_index(rows, C), drop) * drop_scale(drop)


def first_rows(rows):
    """row index of token 0 of each sequence."""
    B, T = rows["B"], rows["T"]
    if rows.get("first_only"):
        return np.arange(B)
    off = rows.get("seq_off")
    return np.arange(B) * T if off is None else np.asarray(off[:B], np.int64)


def token0_fwd(x, rows):
    return x[first_rows(rows)]


def token0_bwd(dout, rows, N):
    d = np.zeros((N, dout.shape[1]))
    np.add.at(d, first_rows(rows), dout)
    return d


def _pool_weights(rows, mask):
    """(B, N) weights: out = W @ h."""
    B, T = rows["B"], rows["T"]
    b, t = row_bt(rows)
    W = np.zeros((B, len(b)))
    sel = np.ones(len(b), bool)
    if rows.get("seq_off") is None and mask is not None:
        sel = mask[b, t] != 0
    W[b[sel], np.nonzero(sel)[0]] = 1.0
    cnt = W.sum(1, keepdims=True)
    return W / np.maximum(cnt, 1e-9)


def _pool_rows(rows, mask):
    """(b, count of b) of every token row the pooling reads (masked tokens and rows outside the sequences
    are not read: a NaN there stays out, as a dense W @ h would not keep it)."""
    W = _pool_weights(rows, mask)
    b, r = np.nonzero(W)
    return b, r, W[b, r]


def mean_pool_fwd(h, mask, rows):
    b, r, w = _pool_rows(rows, mask)
    out = np.zeros((rows["B"], h.shape[1]))
    np.add.at(out, b, h[r] * w[:, None])
    return out


def mean_pool_bwd(dout, mask, rows):
    b, r, w = _pool_rows(rows, mask)
    d = np.zeros((_pool_weights(rows, mask).shape[1], dout.shape[1]))
    d[r] = dout[b] * w[:, None]
    return d


def gather_rows_fwd(inp, idx):
    """out[n] = inp[idx[n]], a row of zeros where idx[n] < 0."""
    out = np.zeros((len(idx), inp.shape[1]))
    sel = np.asarray(idx) >= 0
    out[sel] = inp[np.asarray(idx)[sel]]
    return out


def gather_rows_bwd(dout, idx, M):
    d = np.zeros((M, dout.shape[1]))
    sel = np.asarray(idx) >= 0
    np.add.at(d, np.asarray(idx)[sel], dout[sel])
    return d


def concat_fwd(h, f):
    return np.concatenate([h, f], 1)


def concat_bwd(dout, H):
    return dout[:, :H], dout[:, H:]


# ------------------------------------------------------------------ pooling across a song's windows

SEGPOOL_MODES = ("mean", "max", "attention")  # the op's mode numbers 0, 1, 2


def _softmax(v):
    e = np.exp(v - np.max(v))  # a NaN score: NaN max, every weight NaN (torch.softmax)
    return e / e.sum()


def segment_pool_fwd(x, scores, seg_off, mode):
    """out[s] = the mean / per-column max (NaN wins, torch.max) / softmax(scores)-weighted sum of rows
    seg_off[s] .. seg_off[s+1]-1 of x."""
    x = np.asarray(x, np.float64)
    out = np.zeros((len(seg_off) - 1, x.shape[1]))
    for s in range(len(seg_off) - 1):
        a, b = int(seg_off[s]), int(seg_off[s + 1])
        rows = x[a:b]
        if SEGPOOL_MODES[mode] == "mean":
            out[s] = rows.mean(0)
        elif SEGPOOL_MODES[mode] == "max":
            out[s] = rows[np.argmax(rows, axis=0), np.arange(x.shape[1])]  # argmax: first NaN, else first max
        else:
            out[s] = _softmax(np.asarray(scores, np.float64)[a:b]) @ rows
    return out


def segment_pool_bwd(dout, x, scores, seg_off, mode):
    """(dx, dscores): the gradients of segment_pool_fwd; dscores None but for attention."""
    x = np.asarray(x, np.float64)
    dx = np.zeros(x.shape)
    att = SEGPOOL_MODES[mode] == "attention"
    ds = np.zeros(x.shape[0]) if att else None
    for s in range(len(seg_off) - 1):
        a, b = int(seg_off[s]), int(seg_off[s + 1])
        rows, d = x[a:b], dout[s]
        if SEGPOOL_MODES[mode] == "mean":
            dx[a:b] += d / (b - a)
        elif SEGPOOL_MODES[mode] == "max":
            dx[a + np.argmax(rows, axis=0), np.arange(x.shape[1])] += d
        else:
            w = _softmax(np.asarray(scores, np.float64)[a:b])
            dx[a:b] += w[:, None] * d
            g = rows @ d
            ds[a:b] = w * (g - w @ g)
    return dx, ds


# ------------------------------------------------------------------ the LSTM cell (torch's nn.LSTM, gates i, f, g, o)

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_cell_fwd(gates, gh, c_prev, Np):
    """-> (h, c, activations (i, f, g, o)) of one step; rows >= Np start from c = 0."""
    N, H = gates.shape[0], gates.shape[1] // 4
    pre = gates + gh
    i, f, g, o = _sigmoid(pre[:, :H]), _sigmoid(pre[:, H:2 * H]), np.tanh(pre[:, 2 * H:3 * H]), _sigmoid(pre[:, 3 * H:])
    cp = np.zeros((N, H))
    cp[:Np] = np.asarray(c_prev)[:Np] if Np else 0.0
    c = f * cp + i * g
    return o * np.tanh(c), c, np.concatenate([i, f, g, o], 1)


def lstm_cell_bwd(dh, dc, gates, gh, c_prev, Np):
    """-> (dgates (N, 4H): the gradient w.r.t. the pre-activations, dc_prev (Np, H))."""
    H = gates.shape[1] // 4
    _, c, a = lstm_cell_fwd(gates, gh, c_prev, Np)
    i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
    cp = np.zeros_like(c)
    cp[:Np] = np.asarray(c_prev)[:Np] if Np else 0.0
    tc = np.tanh(c)
    dct = dc + dh * o * (1 - tc * tc)
    dg = np.concatenate([dct * g * i * (1 - i), dct * cp * f * (1 - f), dct * i * (1 - g * g), dh * tc * o * (1 - o)], 1)
    return dg, (dct * f)[:Np]


# ------------------------------------------------------------------ batchnorm

def batchnorm_fwd(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    """-> (out, mean used, rstd used, new running_mean, new running_var) with torch's semantics."""
    N = x.shape[0]
    batch = training or running_mean is None
    if batch:
        mean, var = x.mean(0), x.var(0)
    else:
        mean, var = running_mean, running_var
    rstd = 1.0 / np.sqrt(var + eps)
    out = (x - mean) * rstd
    if gamma is not None:
        out = out * gamma
    if beta is not None:
        out = out + beta
    rm, rv = running_mean, running_var
    if training and running_mean is not None:
        rm = (1 - momentum) * running_mean + momentum * mean
        rv = (1 - momentum) * running_var + momentum * x.var(0) * N / (N - 1)
    return out, mean, rstd, rm, rv


def batchnorm_bwd(dout, x, gamma, mean, rstd, batch_stats):
    """-> (dx, dgamma, dbeta); mean, rstd: the statistics the forward used (batch_stats: the batch's,
    as batchnorm_fwd returns them, which then depend on x)."""
    N = x.shape[0]
    g = np.ones(x.shape[1]) if gamma is None else gamma
    xhat = (x - mean) * rstd
    dgamma, dbeta = (dout * xhat).sum(0), dout.sum(0)
    if batch_stats:
        dx = g * rstd / N * (N * dout - dout.sum(0) - xhat * (dout * xhat).sum(0))
    else:
        dx = dout * g * rstd
    return dx, dgamma, dbeta


# ------------------------------------------------------------------ losses

def cross_entropy(logits, labels, class_weight, ignore_index, grad_scale):
    """torch's F.cross_entropy (mean reduction, weights, ignore_index) -> (loss, dlogits)."""
    N, K = logits.shape
    use = labels != ignore_index
    w = np.zeros(N)
    if use.any():
        w[use] = 1.0 if class_weight is None else class_weight[labels[use]]
    tot = w.sum()
    if tot == 0:
        return float("nan"), np.zeros_like(logits)
    m = logits.max(1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(1, keepdims=True)))[:, 0]
    y = np.where(use, labels, 0)
    nll = lse - logits[np.arange(N), y]
    loss = (w * nll).sum() / tot
    p = np.exp(logits - lse[:, None])
    onehot = np.zeros_like(logits)
    onehot[np.arange(N), y] = 1.0
    d = grad_scale * (w / tot)[:, None] * (p - onehot)
    return loss, d


def bce_with_logits(logits, targets, pos_weight, grad_scale):
    """torch's F.binary_cross_entropy_with_logits (mean, pos_weight) -> (loss, dlogits)."""
    x, y = logits, targets
    pw = 1.0 if pos_weight is None else pos_weight
    logsig = -np.logaddexp(0.0, -x)          # log sigmoid(x)
    log1msig = -np.logaddexp(0.0, x)         # log (1 - sigmoid(x))
    l = -(pw * y * logsig + (1 - y) * log1msig)
    sig = 1.0 / (1.0 + np.exp(-x))
    d = pw * y * (sig - 1.0) + (1 - y) * sig
    return l.mean(), grad_scale * d / x.size


def mse(preds, targets, grad_scale):
    d = preds - targets
    return (d * d).mean(), grad_scale * 2.0 * d / d.size


# ------------------------------------------------------------------ optimizer

def trainable_ranges(segs, n):
    if segs is None:
        return [(0, n)]
    return [(int(o), int(o + s)) for o, s, f, _ in segs if not f & 2]


def grad_norm_clip(grads, segs, clip, max_norm):
    """-> (norm, clipped grads) as torch.nn.utils.clip_grad_norm_ over the trainable ranges."""
    g = np.asarray(grads, np.float64).copy()
    rs = trainable_ranges(segs, len(g))
    norm = math.sqrt(sum(float((g[a:b] ** 2).sum()) for a, b in rs))
    if clip:
        coef = min(max_norm / (norm + 1e-6), 1.0) if not math.isnan(norm) else float("nan")
        for a, b in rs:
            g[a:b] *= coef
    return norm, g


def adam_step(params, grads, m, v, segs, steps, lr_scale, cfg):
    """torch.optim.Adam / AdamW (amsgrad off), one step over the trainable segments -> new
    (params, m, v, steps) in float64; frozen segments and gaps untouched."""
    p, m, v, steps = (np.asarray(a, np.float64).copy() for a in (params, m, v, steps))
    b1, b2 = cfg["beta1"], cfg["beta2"]
    for s, (off, size, flags, soff) in enumerate(segs):
        if flags & 2:
            continue
        steps[s] += 1
        t = steps[s]
        lr = cfg["lr"] * (1.0 if lr_scale is None else float(lr_scale[s]))
        wd = cfg["weight_decay"] if flags & 1 else 0.0
        sl, ss = slice(off, off + size), slice(soff, soff + size)
        x, g = p[sl], np.asarray(grads[sl], np.float64)
        if cfg["decoupled"]:
            x = x * (1 - lr * wd)
        else:
            g = g + wd * x
        m[ss] = b1 * m[ss] + (1 - b1) * g
        v[ss] = b2 * v[ss] + (1 - b2) * g * g
        mhat = m[ss] / (1 - b1 ** t)
        denom = np.sqrt(v[ss]) / math.sqrt(1 - b2 ** t) + cfg["eps"]
        p[sl] = x - lr * mhat / denom
    return p, m, v, steps
