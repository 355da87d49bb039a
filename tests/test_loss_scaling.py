"""Dynamic loss scaling (precision="fp16"'s, torch.amp.GradScaler's semantics), run on the CPU backend: the
engine applies it on any dtype, so its rule is checked here against torch's own GradScaler on the same
sequence of finite and non-finite gradients, and scaled training is bit-identical to unscaled training while
the gradients stay finite (a power-of-two scale is exact in float32). tests/test_cuda.py checks fp16 itself."""
import numpy as np
import pytest

import lyricnn
from lyricnn.classifier import GRAD_SCALER_DEFAULTS, SequenceClassifier

torch = pytest.importorskip("torch")

DISTIL = dict(model_type="distilbert", vocab_size=90, dim=24, n_layers=2, n_heads=3, hidden_dim=40,
              max_position_embeddings=32, dropout=0.1, attention_dropout=0.1)
HEAD = dict(pooling="cls", hidden=[8], dropout=0.1, features_at=1)


def batch(seed=0, B=5, T=9):
    r = np.random.default_rng(seed)
    ids = r.integers(1, 90, (B, T)).astype(np.int32)
    mask = np.ones((B, T), np.int32)
    for b, n in enumerate(r.integers(2, T + 1, B)):
        mask[b, n:] = 0
    return ids, mask, np.arange(B) % 3, r.standard_normal((B, 2)).astype(np.float32)


def model(loss_scaling, max_grad_norm=1.0, head=HEAD, device="cpu"):
    m = SequenceClassifier.from_config(DISTIL, num_labels=3, seed=4, head=head, num_features=2 if head else 0,
                                       device=device)
    m.configure_optimizer("adamw", lr=1e-3, weight_decay=0.01, max_grad_norm=max_grad_norm,
                          loss_scaling=loss_scaling)
    return m


def step(m, ids, mask, y, f, finite=True):
    """A train_step whose gradients are finite or, with finite=False, NaN: the classifier's bias is NaN for that
    step (so the logits, the loss and every gradient are), and restored after it."""
    if finite:
        return m.train_step(ids, mask, y, features=f)
    name = "classifier.bias"
    good = m.state_dict()[name]
    m.load_state_dict({name: np.full_like(good, np.nan)}, strict=False)
    loss = m.train_step(ids, mask, y, features=f)
    m.load_state_dict({name: good}, strict=False)
    return loss


# finite (True) or not (False) gradients, step by step: growth after 3 clean steps, back-off, growth again
PATTERN = [True, True, True, True, False, False, True, True, True, True, True, True, True, False, True]


def grad_scaler_reference(pattern, **kw):
    """torch.amp.GradScaler on the CPU over a dummy parameter whose gradient is finite or not per step:
    (scale after the step, step skipped) for each step."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", **kw)
    out = []
    for ok in pattern:
        opt.zero_grad()
        x = torch.full((3,), 0.5 if ok else float("inf"))
        scaler.scale((p * x).sum()).backward()
        before = p.detach().clone()
        scaler.step(opt)
        scaler.update()
        out.append((scaler.get_scale(), bool(torch.equal(before, p.detach())), scaler.state_dict()["_growth_tracker"]))
    return out


@pytest.mark.parametrize("clip", [1.0, None], ids=["clip", "noclip"])
def test_the_scale_follows_grad_scaler_on_the_same_gradients(clip):
    """The same sequence of clean and NaN gradients moves lyricnn's scale as torch's GradScaler moves its own;
    skipped steps change no weight, optimizer state or step counter."""
    kw = dict(init_scale=2.0 ** 10, growth_factor=2.0, backoff_factor=0.5, growth_interval=3)
    ref = grad_scaler_reference(PATTERN, **kw)
    m = model(kw, max_grad_norm=clip)
    assert m.loss_scale == 2.0 ** 10
    ids, mask, y, f = batch()
    for k, ok in enumerate(PATTERN):
        before = (m.state_dict(), m.optimizer_state())
        step(m, ids, mask, y, f, ok)
        scale, skipped, tracker = ref[k]
        assert m.loss_scale == scale, (k, m.loss_scale, scale)
        assert m.last_step_skipped == skipped == (not ok), k
        assert m.optimizer_state()["loss_scale_growth_tracker"] == tracker, k
        if skipped:
            after = (m.state_dict(), m.optimizer_state())
            for name, v in before[0].items():
                np.testing.assert_array_equal(after[0][name], v, err_msg=name)
            for name in ("m", "v", "steps"):
                np.testing.assert_array_equal(after[1][name], before[1][name], err_msg=name)
            if clip:
                assert not np.isfinite(m.last_grad_norm)


def test_the_update_rule_at_the_float32_ceiling():
    """GradScaler grows only while the grown scale is finite in float32."""
    kw = dict(init_scale=2.0 ** 126, growth_interval=1)
    ref = grad_scaler_reference([True] * 3, **kw)
    m = model(kw)
    ids, mask, y, f = batch()
    for k in range(3):
        m.train_step(ids, mask, y, features=f)
        assert m.loss_scale == ref[k][0], (k, m.loss_scale, ref[k][0])
    assert m.loss_scale == 2.0 ** 127


@pytest.mark.parametrize("clip", [1.0, None], ids=["clip", "noclip"])
@pytest.mark.parametrize("head", [HEAD, None], ids=["mlp-head", "hf-head"])
def test_scaled_training_equals_unscaled_bit_for_bit(clip, head):
    """While the gradients are finite, training with the default scale (65536, a power of two) gives the
    unscaled run's losses, gradient norms, gradients and weights bit for bit: every op of the backward is
    linear in its incoming gradient, and the unscaling is exact."""
    runs = []
    for ls in (False, True):
        m = model(ls, max_grad_norm=clip, head=head)
        ids, mask, y, f = batch(1)
        f = f if head else None
        losses = [(m.train_step(ids, mask, y, features=f), m.last_grad_norm) for _ in range(3)]
        runs.append((losses, m.state_dict(), {k: np.array(m.grads[k]) for k in m.grads}, m.optimizer_state()))
        assert m.loss_scale == (GRAD_SCALER_DEFAULTS["init_scale"] if ls else None)
    (l0, s0, g0, o0), (l1, s1, g1, o1) = runs
    assert l0 == l1
    for name in s0:
        np.testing.assert_array_equal(s1[name], s0[name], err_msg=name)
    for name in g0:
        np.testing.assert_array_equal(g1[name], g0[name], err_msg=name)
    for name in ("m", "v", "steps"):
        np.testing.assert_array_equal(o1[name], o0[name], err_msg=name)


def test_resume_keeps_the_scale_and_the_growth_tracker(tmp_path):
    """optimizer_state() carries GradScaler's state (the scale and the growth tracker): a model restored from it
    continues exactly as the original."""
    kw = dict(init_scale=256.0, growth_interval=4)
    ids, mask, y, f = batch(2)
    a = model(kw)
    for ok in (True, False, True, True):
        step(a, ids, mask, y, f, ok)
    st, opt = a.state_dict(), a.optimizer_state()
    assert opt["loss_scale"] == 128.0 and opt["loss_scale_growth_tracker"] == 2
    b = model(False)
    b.load_state_dict(st)
    b.load_optimizer_state(opt)
    assert b.loss_scale == 128.0
    for _ in range(3):
        assert a.train_step(ids, mask, y, features=f) == b.train_step(ids, mask, y, features=f)
        assert a.loss_scale == b.loss_scale
    assert a.loss_scale == 256.0  # grew after its 4th clean step in a row
    np.testing.assert_array_equal(a.state_dict()["classifier.weight"], b.state_dict()["classifier.weight"])


def test_loss_scaling_argument():
    m = model("auto")
    assert m.loss_scale is None and not m.last_step_skipped  # float32 on the CPU: off
    assert "loss_scale" not in m.optimizer_state()
    m.configure_optimizer("adamw", loss_scaling=True)
    assert m.loss_scale == 65536.0 and m.optimizer_state()["loss_scaling"] == GRAD_SCALER_DEFAULTS
    with pytest.raises(ValueError, match="unknown key"):
        m.configure_optimizer("adamw", loss_scaling=dict(init_scale=8.0, growth=2))
    with pytest.raises(ValueError, match="backoff_factor"):
        m.configure_optimizer("adamw", loss_scaling=dict(backoff_factor=1.5))
    with pytest.raises(ValueError, match="float32"):
        m.configure_optimizer("adamw", loss_scaling=dict(init_scale=1e39))
    with pytest.raises(TypeError, match="loss_scaling must be"):
        m.configure_optimizer("adamw", loss_scaling="static")
    with pytest.raises(ValueError, match="growth_interval"):
        m.configure_optimizer("adamw", loss_scaling=dict(growth_interval=0))


def test_precision_fp16_needs_a_gpu():
    with pytest.raises(ValueError, match="needs a GPU"):
        SequenceClassifier.from_config(DISTIL, num_labels=2, device="cpu", precision="fp16")
    assert "fp16" in lyricnn._device.PRECISIONS
