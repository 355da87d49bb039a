"""Heads, losses and the optimizer of the C engine against torch (CPU, fp32)."""
import numpy as np
import pytest

import lyricnn
from lyricnn import _C
from lyricnn import _train_ops as ops

torch = pytest.importorskip("torch")
F = torch.nn.functional


def rng(seed=0):
    return np.random.default_rng(seed)


def close(a, b, rtol=1e-5, atol=1e-6):
    a = a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def t(a, grad=False):
    return torch.tensor(np.array(a), requires_grad=grad)


# ------------------------------------------------------------------ cross-entropy

@pytest.mark.parametrize("n,c", [(1, 2), (7, 3), (32, 21), (4, 1)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy_vs_torch(n, c, weighted, ignore):
    r = rng(n * 100 + c)
    logits = (r.standard_normal((n, c)) * 3).astype(np.float32)
    labels = r.integers(0, c, n).astype(np.int64)
    if ignore and n > 1:
        labels[::3] = -100
    weight = r.uniform(0.2, 3.0, c).astype(np.float32) if weighted else None
    scale = 0.37
    loss, d = ops.cross_entropy(logits, labels, weight, grad_scale=scale)
    x = t(logits, True)
    ref = F.cross_entropy(x, t(labels), weight=None if weight is None else t(weight))
    (ref * scale).backward()
    close(loss, ref.item(), rtol=1e-6)
    close(d, x.grad, rtol=1e-5, atol=1e-7)


def test_cross_entropy_custom_ignore_index_and_no_grad():
    r = rng(1)
    logits = r.standard_normal((10, 4)).astype(np.float32)
    labels = r.integers(0, 4, 10).astype(np.int64)
    w = np.array([1.0, 2.0, 0.5, 3.0], np.float32)
    loss, d = ops.cross_entropy(logits, labels, w, ignore_index=2, grad=False)
    assert d is None
    ref = F.cross_entropy(t(logits), t(labels), weight=t(w), ignore_index=2)
    close(loss, ref.item(), rtol=1e-6)


def test_cross_entropy_all_ignored_is_nan_like_torch():
    logits = np.ones((3, 4), np.float32)
    labels = np.full(3, -100, np.int64)
    loss, d = ops.cross_entropy(logits, labels)
    assert np.isnan(loss) and np.isnan(F.cross_entropy(t(logits), t(labels)).item())
    assert not d.any()


def test_cross_entropy_extreme_logits_are_finite():
    logits = np.array([[1000.0, -1000.0, 0.0], [-1e4, 1e4, 3.0]], np.float32)
    labels = np.array([1, 0], np.int64)
    loss, d = ops.cross_entropy(logits, labels)
    x = t(logits, True)
    ref = F.cross_entropy(x, t(labels))
    ref.backward()
    close(loss, ref.item(), rtol=1e-6)
    close(d, x.grad)


@pytest.mark.parametrize("bad", [3, -1, 99])
def test_cross_entropy_label_out_of_range(bad):
    logits = np.zeros((3, 3), np.float32)
    labels = np.array([0, bad, 1], np.int64)
    with pytest.raises(IndexError, match=r"labels\[1\] = %d is out of range for 3 classes" % bad):
        ops.cross_entropy_forward_backward(logits, labels)


def test_cross_entropy_bad_arguments():
    logits = np.zeros((3, 4), np.float32)
    with pytest.raises(TypeError, match="labels must have dtype"):
        ops.cross_entropy_forward_backward(logits, np.zeros(3, np.int32))
    with pytest.raises(ValueError, match=r"labels has shape \(4,\) but \(3,\) was expected"):
        ops.cross_entropy_forward_backward(logits, np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"weight has shape \(3,\) but \(4,\)"):
        ops.cross_entropy_forward_backward(logits, np.zeros(3, np.int64), np.ones(3, np.float32))
    with pytest.raises(TypeError, match="logits must have dtype"):
        ops.cross_entropy_forward_backward(logits.astype(np.float64), np.zeros(3, np.int64))
    ro = np.zeros((3, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="dlogits must be writeable"):
        ops.cross_entropy_forward_backward(logits, np.zeros(3, np.int64), None, ro)
    with pytest.raises(ValueError, match="logits must be C-contiguous"):
        ops.cross_entropy_forward_backward(np.zeros((4, 3), np.float32).T, np.zeros(3, np.int64))


# ------------------------------------------------------------------ BCE, MSE

@pytest.mark.parametrize("n,k", [(1, 1), (16, 1), (8, 5)])
@pytest.mark.parametrize("pos", [False, True])
@pytest.mark.parametrize("soft", [False, True])
def test_bce_with_logits_vs_torch(n, k, pos, soft):
    r = rng(n * 10 + k)
    logits = (r.standard_normal((n, k)) * 4).astype(np.float32)
    logits.flat[0] = 60.0  # stability at large |x|
    if logits.size > 1:
        logits.flat[1] = -60.0
    targets = (r.uniform(0, 1, (n, k)) if soft else r.integers(0, 2, (n, k))).astype(np.float32)
    pw = r.uniform(0.3, 4.0, k).astype(np.float32) if pos else None
    loss, d = ops.bce_with_logits(logits, targets, pw, grad_scale=2.5)
    x = t(logits, True)
    ref = F.binary_cross_entropy_with_logits(x, t(targets), pos_weight=None if pw is None else t(pw))
    (ref * 2.5).backward()
    close(loss, ref.item(), rtol=1e-6)
    close(d, x.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("shape", [(1, 1), (9,), (6, 3)])
def test_mse_vs_torch(shape):
    r = rng(len(shape))
    p = r.standard_normal(shape).astype(np.float32)
    y = r.standard_normal(shape).astype(np.float32)
    loss, d = ops.mse(p, y, grad_scale=0.5)
    x = t(p, True)
    ref = F.mse_loss(x, t(y))
    (ref * 0.5).backward()
    close(loss, ref.item(), rtol=1e-6)
    close(d, x.grad)


def test_loss_shape_mismatch_errors():
    with pytest.raises(ValueError, match=r"targets has shape \(4, 1\) but \(4, 2\)"):
        ops.bce_with_logits_forward_backward(np.zeros((4, 2), np.float32), np.zeros((4, 1), np.float32))
    with pytest.raises(ValueError, match=r"pos_weight has shape"):
        ops.bce_with_logits_forward_backward(np.zeros((4, 2), np.float32), np.zeros((4, 2), np.float32),
                                            np.ones(3, np.float32))
    with pytest.raises(ValueError, match="targets must have 2 dimension"):
        ops.mse_forward_backward(np.zeros((4, 1), np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"dpreds has shape"):
        ops.mse_forward_backward(np.zeros(4, np.float32), np.zeros(4, np.float32), np.zeros(3, np.float32))


# ------------------------------------------------------------------ linear, activations

@pytest.mark.parametrize("n,k,m", [(1, 3, 2), (8, 16, 5), (33, 64, 31)])
def test_linear_vs_torch(n, k, m):
    r = rng(n + k + m)
    x = r.standard_normal((n, k)).astype(np.float32)
    w = r.standard_normal((m, k)).astype(np.float32)
    b = r.standard_normal(m).astype(np.float32)
    g = r.standard_normal((n, m)).astype(np.float32)
    out = ops.linear_forward(x, w, b)
    tx, tw, tb = t(x, True), t(w, True), t(b, True)
    ref = F.linear(tx, tw, tb)
    ref.backward(t(g))
    close(out, ref, rtol=1e-5, atol=1e-5)
    dx, dw, db = np.zeros_like(x), np.zeros_like(w), np.zeros_like(b)
    ops.linear_backward(g, x, w, dx, dw, db)
    close(dx, tx.grad, atol=1e-5)
    close(dw, tw.grad, atol=1e-5)
    close(db, tb.grad, atol=1e-5)
    ops.linear_backward(g, x, w, dx, dw, db)  # accumulates
    close(dw, 2 * tw.grad, atol=2e-5)
    close(db, 2 * tb.grad, atol=2e-5)
    ops.linear_backward(g, x, w, None, None, db)  # grads may be skipped
    close(db, 3 * tb.grad, atol=3e-5)
    out_nb = ops.linear_forward(x, w, None)
    close(out_nb, F.linear(t(x), t(w)), atol=1e-5)


def test_linear_bad_shapes():
    with pytest.raises(ValueError, match=r"weight has shape \(3, 5\) but \(3, 4\)"):
        ops.head_linear_forward(np.zeros((2, 4), np.float32), np.zeros((3, 5), np.float32), None,
                               np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"out has shape"):
        ops.head_linear_forward(np.zeros((2, 4), np.float32), np.zeros((3, 4), np.float32), None,
                               np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"dbias has shape"):
        ops.head_linear_backward(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32),
                                np.zeros((3, 4), np.float32), None, None, np.zeros(4, np.float32))


def test_relu_tanh_vs_torch():
    r = rng(3)
    x = r.standard_normal((6, 7)).astype(np.float32)
    g = r.standard_normal((6, 7)).astype(np.float32)
    for name, fn in (("relu", torch.relu), ("tanh", torch.tanh)):
        out = np.empty_like(x)
        getattr(ops, "head_%s_forward" % name)(x, out)
        tx = t(x, True)
        ref = fn(tx)
        ref.backward(t(g))
        close(out, ref, rtol=1e-6)
        dx = np.ones_like(x)
        getattr(ops, "head_%s_backward" % name)(g, out, dx)
        close(dx - 1, tx.grad, rtol=1e-5, atol=1e-6)
    inplace = x.copy()
    ops.head_relu_forward(inplace, inplace)
    close(inplace, np.maximum(x, 0))


def test_dropout_reproducible_and_scaled():
    x = np.ones(20000, np.float32)
    out, mask = np.empty_like(x), np.empty(x.shape, np.uint8)
    ops.head_dropout_forward(x, out, mask, 0.25, 123)
    out2, mask2 = np.empty_like(x), np.empty(x.shape, np.uint8)
    ops.head_dropout_forward(x, out2, mask2, 0.25, 123)
    assert np.array_equal(out, out2) and np.array_equal(mask, mask2)
    ops.head_dropout_forward(x, out2, mask2, 0.25, 124)
    assert not np.array_equal(mask, mask2)
    assert abs(mask.mean() - 0.75) < 0.02
    close(out, mask / 0.75, rtol=1e-6)
    dx = np.zeros_like(x)
    ops.head_dropout_backward(x * 2, dx, 0.25, 123)
    close(dx, 2 * mask / 0.75, rtol=1e-6)
    ops.head_dropout_forward(x, out2, mask2, 0.0, 1)
    assert mask2.all() and np.array_equal(out2, x)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        ops.head_dropout_forward(x, out2, mask2, 1.0, 1)


# ------------------------------------------------------------------ batchnorm

@pytest.mark.parametrize("n,c", [(2, 3), (16, 7), (64, 40)])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm1d_train_eval_running_stats(n, c, affine):
    r = rng(n * c)
    bn = torch.nn.BatchNorm1d(c, eps=1e-5, momentum=0.1, affine=affine)
    if affine:
        with torch.no_grad():
            bn.weight.copy_(t(r.uniform(0.5, 1.5, c).astype(np.float32)))
            bn.bias.copy_(t(r.standard_normal(c).astype(np.float32)))
    gamma = bn.weight.detach().numpy().copy() if affine else None
    beta = bn.bias.detach().numpy().copy() if affine else None
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    for step in range(4):
        x = (r.standard_normal((n, c)) * 2 + 1).astype(np.float32)
        g = r.standard_normal((n, c)).astype(np.float32)
        bn.train()
        tx = t(x, True)
        ref = bn(tx)
        ref.backward(t(g))
        out, sm, sr = ops.batchnorm1d_forward(x, gamma, beta, rm, rv, training=True)
        close(out, ref, rtol=1e-5, atol=1e-5)
        close(rm, bn.running_mean, rtol=1e-6, atol=1e-7)
        close(rv, bn.running_var, rtol=1e-6, atol=1e-7)
        dx = np.zeros_like(x)
        dg = np.zeros(c, np.float32) if affine else None
        db = np.zeros(c, np.float32) if affine else None
        ops.head_batchnorm1d_backward(g, x, gamma, sm, sr, dx, dg, db, True)
        close(dx, tx.grad, rtol=1e-4, atol=1e-5)
        if affine:
            close(dg, bn.weight.grad, rtol=1e-5, atol=1e-5)
            close(db, bn.bias.grad, rtol=1e-5, atol=1e-5)
            bn.weight.grad = None
            bn.bias.grad = None
    # eval: running statistics, and their gradients
    bn.eval()
    x = r.standard_normal((n, c)).astype(np.float32)
    g = r.standard_normal((n, c)).astype(np.float32)
    tx = t(x, True)
    ref = bn(tx)
    ref.backward(t(g))
    rm0, rv0 = rm.copy(), rv.copy()
    out, sm, sr = ops.batchnorm1d_forward(x, gamma, beta, rm, rv, training=False)
    assert np.array_equal(rm, rm0) and np.array_equal(rv, rv0)
    close(out, ref, rtol=1e-5, atol=1e-5)
    dx = np.zeros_like(x)
    dg = np.zeros(c, np.float32) if affine else None
    db = np.zeros(c, np.float32) if affine else None
    ops.head_batchnorm1d_backward(g, x, gamma, sm, sr, dx, dg, db, False)
    close(dx, tx.grad, rtol=1e-5, atol=1e-6)
    if affine:
        close(dg, bn.weight.grad, rtol=1e-5, atol=1e-5)
        close(db, bn.bias.grad, rtol=1e-5, atol=1e-5)


def test_batchnorm1d_no_running_stats_uses_batch_stats():
    r = rng(5)
    x = r.standard_normal((5, 3)).astype(np.float32)
    bn = torch.nn.BatchNorm1d(3, track_running_stats=False, affine=False).eval()
    out, _, _ = ops.batchnorm1d_forward(x, training=False)
    close(out, bn(t(x)), atol=1e-5)


def test_batchnorm1d_errors():
    x = np.zeros((1, 3), np.float32)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ops.batchnorm1d_forward(x, None, None, np.zeros(3, np.float32), np.ones(3, np.float32), training=True)
    out, _, _ = ops.batchnorm1d_forward(x, None, None, np.zeros(3, np.float32), np.ones(3, np.float32),
                                        training=False)  # eval with one row is fine, as in torch
    with pytest.raises(ValueError, match=r"gamma has shape \(4,\) but \(3,\)"):
        ops.batchnorm1d_forward(np.zeros((2, 3), np.float32), np.ones(4, np.float32))
    with pytest.raises(ValueError, match="running_mean and running_var"):
        ops.batchnorm1d_forward(np.zeros((2, 3), np.float32), None, None, np.zeros(3, np.float32), None)


# ------------------------------------------------------------------ pooling, concat

def _torch_pool(h, mask, mode):
    if mode == "cls":
        return h[:, 0]
    if mode == "flatten":
        return h.reshape(h.shape[0], -1)
    m = mask.unsqueeze(-1).expand(h.size()).float()
    return (h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)


@pytest.mark.parametrize("mode", ["cls", "mean", "flatten"])
@pytest.mark.parametrize("b,tt,c", [(1, 1, 4), (3, 5, 8), (4, 16, 12)])
def test_pooling_vs_torch(mode, b, tt, c):
    r = rng(b * tt * c)
    h = r.standard_normal((b, tt, c)).astype(np.float32)
    lengths = r.integers(1, tt + 1, b)
    mask = (np.arange(tt)[None, :] < lengths[:, None]).astype(np.int64)
    if b > 2:
        mask[2] = 0  # an all-padding row: mean pools to 0, like sentence-transformers
    out = ops.pool_forward(h, mask, mode)
    th = t(h, True)
    ref = _torch_pool(th, t(mask), mode)
    g = r.standard_normal(ref.shape).astype(np.float32)
    ref.backward(t(g))
    close(out, ref, rtol=1e-5, atol=1e-6)
    dh = np.full_like(h, 0.5)
    ops.head_pool_backward(g, mask, dh, mode)
    close(dh - 0.5, th.grad, rtol=1e-5, atol=1e-6)


def test_pooling_errors():
    h = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="mean pooling needs the attention mask"):
        ops.head_pool_forward(h, None, np.zeros((2, 4), np.float32), "mean")
    with pytest.raises(ValueError, match="'max'"):
        ops.head_pool_forward(h, None, np.zeros((2, 4), np.float32), "max")
    with pytest.raises(ValueError, match=r"out has shape \(2, 4\) but \(2, 12\)"):
        ops.head_pool_forward(h, None, np.zeros((2, 4), np.float32), "flatten")
    with pytest.raises(ValueError, match=r"mask has shape \(2, 2\) but \(2, 3\)"):
        ops.head_pool_forward(h, np.ones((2, 2), np.int64), np.zeros((2, 4), np.float32), "mean")


def test_concat_vs_torch():
    r = rng(7)
    h = r.standard_normal((5, 6)).astype(np.float32)
    f = r.standard_normal((5, 31)).astype(np.float32)
    out = ops.concat_forward(h, f)
    th, tf = t(h, True), t(f, True)
    ref = torch.cat([th, tf], 1)
    g = r.standard_normal(ref.shape).astype(np.float32)
    ref.backward(t(g))
    assert np.array_equal(out, ref.detach().numpy())
    dh, df = np.zeros_like(h), np.zeros_like(f)
    ops.head_concat_backward(g, dh, df)
    assert np.array_equal(dh, th.grad.numpy()) and np.array_equal(df, tf.grad.numpy())
    dh2 = np.zeros_like(h)
    ops.head_concat_backward(g, dh2, None)  # features need no gradient
    assert np.array_equal(dh2, dh)
    with pytest.raises(ValueError, match=r"f has shape \(4, 31\) but \(5, 31\)"):
        ops.head_concat_forward(h, f[:4].copy(), out)
    with pytest.raises(ValueError, match="must add up"):
        ops.head_concat_backward(g, dh, np.zeros((5, 3), np.float32))


def test_head_stack_vs_torch_module():
    """Linear -> BatchNorm1d -> ReLU -> concat(features) -> Linear -> CE, forward and backward."""
    r = rng(11)
    B, H, F1, NF, C = 8, 12, 10, 3, 4
    torch.manual_seed(0)
    l1, bn, l2 = torch.nn.Linear(H, F1), torch.nn.BatchNorm1d(F1), torch.nn.Linear(F1 + NF, C)
    x = r.standard_normal((B, H)).astype(np.float32)
    feats = r.standard_normal((B, NF)).astype(np.float32)
    y = r.integers(0, C, B).astype(np.int64)
    tx = t(x, True)
    z = torch.relu(bn(l1(tx)))
    logits = l2(torch.cat([z, t(feats)], 1))
    ref = F.cross_entropy(logits, t(y))
    ref.backward()
    np_ = lambda p: p.detach().numpy().copy()
    w1, b1, g, be, w2, b2 = map(np_, (l1.weight, l1.bias, bn.weight, bn.bias, l2.weight, l2.bias))
    rm, rv = np.zeros(F1, np.float32), np.ones(F1, np.float32)
    a1 = ops.linear_forward(x, w1, b1)
    a2, sm, sr = ops.batchnorm1d_forward(a1, g, be, rm, rv, training=True)
    a3 = ops.relu_forward(a2)
    a4 = ops.concat_forward(a3, feats)
    lg = ops.linear_forward(a4, w2, b2)
    loss, dlg = ops.cross_entropy(lg, y)
    close(loss, ref.item(), rtol=1e-5)
    da4, dw2, db2 = np.zeros_like(a4), np.zeros_like(w2), np.zeros_like(b2)
    ops.linear_backward(dlg, a4, w2, da4, dw2, db2)
    da3 = np.zeros_like(a3)
    ops.head_concat_backward(da4, da3, None)
    da2 = np.zeros_like(a2)
    ops.head_relu_backward(da3, a3, da2)
    da1, dg, dbe = np.zeros_like(a1), np.zeros_like(g), np.zeros_like(be)
    ops.head_batchnorm1d_backward(da2, a1, g, sm, sr, da1, dg, dbe, True)
    dx, dw1, db1 = np.zeros_like(x), np.zeros_like(w1), np.zeros_like(b1)
    ops.linear_backward(da1, x, w1, dx, dw1, db1)
    for mine, p in ((dw2, l2.weight), (db2, l2.bias), (dg, bn.weight), (dbe, bn.bias), (dw1, l1.weight),
                    (db1, l1.bias)):
        close(mine, p.grad, rtol=1e-4, atol=1e-6)
    close(dx, tx.grad, rtol=1e-4, atol=1e-6)
    close(rm, bn.running_mean, rtol=1e-6, atol=1e-7)
    close(rv, bn.running_var, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ optimizer

SPECS = [  # name, shape, decay, frozen, lr multiplier
    ("encoder.weight", (6, 5), True, True, 1.0),
    ("dense.weight", (7, 6), True, False, 1.0),
    ("dense.bias", (7,), False, False, 1.0),
    ("LayerNorm.weight", (6,), False, False, 1.0),
    ("frozen.bias", (3,), False, True, 1.0),
    ("classifier.weight", (3, 40000), True, False, 2.0),  # > one work chunk
    ("classifier.bias", (3,), False, False, 2.0),
]


def _setup(seed=0):
    r = rng(seed)
    sizes = [int(np.prod(s)) for _, s, _, _, _ in SPECS]
    names = [n for n, _, _, _, _ in SPECS]
    frozen = {n for n, _, _, fz, _ in SPECS if fz}
    segs, nstate = ops.make_segments(sizes, names, frozen=frozen)
    params = r.standard_normal(sum(sizes)).astype(np.float32)
    scale = np.array([s[4] for s in SPECS], np.float32)
    return r, sizes, segs, nstate, params, scale


def _torch_opt(cls, tparams, lr, wd):
    groups = {}
    for (name, _, decay, frozen, mult), p in zip(SPECS, tparams):
        if frozen:
            p.requires_grad_(False)
            continue
        key = (decay, mult)
        groups.setdefault(key, []).append(p)
    pg = [{"params": ps, "lr": lr * mult, "weight_decay": wd if decay else 0.0}
          for (decay, mult), ps in groups.items()]
    return cls(pg, lr=lr, betas=(0.9, 0.98), eps=1e-6)


@pytest.mark.parametrize("decoupled", [True, False])
def test_adam_vs_torch(decoupled):
    r, sizes, segs, nstate, params, scale = _setup()
    assert nstate == sum(s for (_, _, _, fz, _), s in zip(SPECS, sizes) if not fz)
    assert segs[2, 2] == 0 and segs[3, 2] == 0 and segs[1, 2] == ops.SEG_DECAY
    lr, wd = 1e-3, 0.1
    tparams = [torch.nn.Parameter(t(p).reshape(s[1])) for p, s in
               zip(np.split(params.copy(), np.cumsum(sizes)[:-1]), SPECS)]
    topt = _torch_opt(torch.optim.AdamW if decoupled else torch.optim.Adam, tparams, lr, wd)
    grads = np.zeros_like(params)
    opt = ops.FlatAdam(params, grads, segs, lr=lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=wd,
                       decoupled=decoupled, lr_scale=scale)
    frozen0 = params[segs[0, 0]:segs[0, 0] + segs[0, 1]].copy()
    for step in range(6):
        grads[:] = r.standard_normal(grads.shape).astype(np.float32) * (step + 1)
        for p, g in zip(tparams, np.split(grads, np.cumsum(sizes)[:-1])):
            if p.requires_grad:
                p.grad = t(g.copy()).reshape(p.shape)
        topt.step()
        opt.step()
    mine = np.split(params, np.cumsum(sizes)[:-1])
    for i, ((name, shape, _, frozen, _), p, seg) in enumerate(zip(SPECS, tparams, segs)):
        close(mine[i].reshape(shape), p, rtol=1e-6, atol=1e-7)
        if not frozen:
            st = topt.state[p]
            sl = slice(seg[3], seg[3] + seg[1])
            # atol: torch's lerp is one FMA; a build without FMA (LYRICNN_PORTABLE=1) rounds twice,
            # 1 ulp of the gradients' scale where m is near 0
            close(opt.m[sl], st["exp_avg"].reshape(-1), rtol=1e-5, atol=1e-6)
            close(opt.v[sl], st["exp_avg_sq"].reshape(-1), rtol=1e-5, atol=1e-10)
    assert np.array_equal(params[segs[0, 0]:segs[0, 0] + segs[0, 1]], frozen0)
    assert list(opt.steps) == [0 if s[3] else 6 for s in SPECS]
    assert grads.any()  # Adam's L2 term is not written back into the grads


def test_adam_state_resume_bit_identical():
    r, sizes, segs, nstate, params, scale = _setup(1)
    gseq = [r.standard_normal(params.shape).astype(np.float32) for _ in range(6)]

    def run(p, steps, opt=None):
        g = np.zeros_like(p)
        opt = opt or ops.FlatAdam(p, g, segs, lr=2e-3, weight_decay=0.01)
        opt.grads = g
        for gs in steps:
            g[:] = gs
            opt.step()
        return opt

    full = params.copy()
    run(full, gseq)
    part = params.copy()
    opt = run(part, gseq[:3])
    state = opt.state_dict()
    saved = part.copy()
    del opt
    resumed = ops.FlatAdam(saved, np.zeros_like(saved), segs, lr=2e-3, weight_decay=0.01)
    resumed.load_state_dict(state)
    run(saved, gseq[3:], resumed)
    assert np.array_equal(saved, full)
    bad = dict(state, m=state["m"][:-1])
    with pytest.raises(ValueError, match="optimizer state 'm' has shape"):
        resumed.load_state_dict(bad)


def test_adam_and_clip_thread_count_independent():
    _, _, segs, nstate, params, _ = _setup(2)
    grads = rng(3).standard_normal(params.shape).astype(np.float32)
    outs = []
    old = lyricnn.get_num_threads()
    try:
        for n in (1, 2):
            lyricnn.set_num_threads(n)
            p = params.copy()
            m, v = np.zeros(nstate, np.float32), np.zeros(nstate, np.float32)
            steps = np.zeros(len(segs), np.int64)
            for _ in range(3):
                ops.adam_step(p, grads, m, v, segs, steps, 1e-3, weight_decay=0.01)
            g = grads.copy()
            norm = np.array([ops.clip_grad_norm(g, 0.5, segs), ops.grad_norm(grads)])
            outs.append((p, m, v, g, norm))
    finally:
        lyricnn.set_num_threads(old)
    for a, b in zip(*outs):
        assert np.array_equal(a, b)


def test_adam_bad_inputs():
    p = np.zeros(10, np.float32)
    m, v, steps = np.zeros(10, np.float32), np.zeros(10, np.float32), np.zeros(2, np.int64)
    good = np.array([[0, 5, 1, 0], [5, 5, 0, 5]], np.int64)
    ops.adam_step(p, p.copy(), m, v, good, steps, 1e-3)
    with pytest.raises(ValueError, match=r"segments\[1\] = \(offset 5, size 6\) does not fit"):
        ops.adam_step(p, p.copy(), m, v, np.array([[0, 5, 1, 0], [5, 6, 0, 5]], np.int64), steps, 1e-3)
    with pytest.raises(ValueError, match=r"segments\[1\] \(offset 3\) overlaps"):
        ops.adam_step(p, p.copy(), m, v, np.array([[0, 5, 1, 0], [3, 2, 0, 5]], np.int64), steps, 1e-3)
    with pytest.raises(ValueError, match=r"segments\[1\] state range"):
        ops.adam_step(p, p.copy(), m[:8].copy(), v[:8].copy(), good, steps, 1e-3)
    with pytest.raises(ValueError, match="unknown flags"):
        ops.adam_step(p, p.copy(), m, v, np.array([[0, 5, 8, 0]], np.int64), steps[:1].copy(), 1e-3)
    with pytest.raises(ValueError, match=r"segments has shape \(2, 3\) but \(2, 4\)"):
        ops.adam_step(p, p.copy(), m, v, good[:, :3].copy(), steps, 1e-3)
    with pytest.raises(ValueError, match=r"steps has shape \(3,\) but \(2,\)"):
        ops.adam_step(p, p.copy(), m, v, good, np.zeros(3, np.int64), 1e-3)
    with pytest.raises(ValueError, match=r"grads has shape \(9,\) but \(10,\)"):
        ops.adam_step(p, np.zeros(9, np.float32), m, v, good, steps, 1e-3)
    with pytest.raises(ValueError, match="betas in"):
        ops.adam_step(p, p.copy(), m, v, good, steps, 1e-3, beta1=1.0)
    with pytest.raises(TypeError, match="segments must be"):
        ops.adam_step(p, p.copy(), m, v, None, steps, 1e-3)


@pytest.mark.parametrize("max_norm", [0.5, 1.0, 1e6])
def test_clip_grad_norm_vs_torch(max_norm):
    r, sizes, segs, _, _, _ = _setup(4)
    grads = (r.standard_normal(sum(sizes)) * 0.01).astype(np.float32)
    tgrads = []
    for (name, shape, _, frozen, _), g in zip(SPECS, np.split(grads.copy(), np.cumsum(sizes)[:-1])):
        if not frozen:
            p = torch.nn.Parameter(torch.zeros(shape))
            p.grad = t(g).reshape(shape)
            tgrads.append(p)
    ref = torch.nn.utils.clip_grad_norm_(tgrads, max_norm)
    frozen_before = grads[:segs[0, 1]].copy()
    norm = ops.clip_grad_norm(grads, max_norm, segs)
    close(norm, ref.item(), rtol=1e-6)
    mine = [g for g, s in zip(np.split(grads, np.cumsum(sizes)[:-1]), SPECS) if not s[3]]
    for a, p in zip(mine, tgrads):
        close(a.reshape(p.shape), p.grad, rtol=1e-6, atol=1e-12)
    assert np.array_equal(grads[:segs[0, 1]], frozen_before)  # frozen grads are not touched


def test_clip_grad_norm_whole_buffer_and_errors():
    g = rng(5).standard_normal(100000).astype(np.float32)
    tg = torch.nn.Parameter(torch.zeros(100000))
    tg.grad = t(g.copy())
    ref = torch.nn.utils.clip_grad_norm_([tg], 2.0)
    assert abs(ops.grad_norm(g) - ref.item()) < 1e-6 * ref.item()
    norm = ops.clip_grad_norm(g, 2.0)
    close(norm, ref.item(), rtol=1e-6)
    close(g, tg.grad, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="max_norm must be a finite number >= 0"):
        ops.clip_grad_norm(g, -1.0)
    with pytest.raises(ValueError, match="grads must have 1 dimension"):
        ops.clip_grad_norm(g.reshape(10, -1), 1.0)


def test_make_segments_default_no_decay_and_frozen():
    names = ["distilbert.embeddings.word_embeddings.weight", "distilbert.embeddings.LayerNorm.weight",
             "distilbert.transformer.layer.0.sa_layer_norm.weight", "distilbert.transformer.layer.0.ffn.lin1.bias",
             "bert.encoder.layer.0.output.LayerNorm.bias", "pre_classifier.weight", "classifier.bias"]
    segs, nstate = ops.make_segments([4, 2, 2, 3, 2, 6, 2], names, frozen=lambda n: n.startswith("distilbert"))
    assert segs[:, 2].tolist() == [3, 2, 2, 2, 0, 1, 0]
    assert segs[:, 0].tolist() == [0, 4, 6, 8, 11, 13, 19]
    assert segs[4:, 3].tolist() == [0, 2, 8] and nstate == 10


def test_cross_entropy_wrapper_rejects_float_labels():
    with pytest.raises(TypeError, match="labels must be integer class indices"):
        ops.cross_entropy(np.zeros((2, 3), np.float32), np.array([0.0, 1.5]))
