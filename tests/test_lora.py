"""LoRA adapters (lyricnn.lora, the lora_forward / lora_backward ops in the encoder graph) against peft 0.21 +
transformers + torch (CPU, fp32): logits, one training step and 3-step AdamW trajectories with clipping,
DistilBERT and BERT, query/value and all-linear targets, rslora, trained biases, LoRA dropout (peft's dropout
modules replaced by the Philox mask spec the engine draws), merge / unmerge / merge_and_unload, adapter files
both ways, bad input, and bit-identical resume."""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

import lyricnn  # noqa: E402
from lyricnn import CheckpointError, LyricnnError  # noqa: E402
from lyricnn.classifier import SequenceClassifier  # noqa: E402
from lyricnn.lora import PREFIX  # noqa: E402
from _clf_oracle import batch, hf_classifier, torch_adamw, torch_step  # noqa: E402
from test_estimators import love_hate  # noqa: E402
import _backend_refs as R  # noqa: E402

LR, WD = 1e-3, 0.01
TARGETS = {  # (peft's target_modules, lyricnn's)
    ("distilbert", "qv"): (None, None),  # the defaults: q_lin, v_lin (peft needs them named for DistilBERT)
    ("bert", "qv"): (None, None),  # peft's BERT default: query, value
    ("distilbert", "all"): (["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"], "all-linear"),
    ("bert", "all"): ("all-linear", "all-linear"),  # peft's all-linear includes bert.pooler.dense
}
DISTIL_QV = ["q_lin", "v_lin"]


def _t(a):
    return None if a is None else torch.tensor(a)


def ours_name(name):
    """lyricnn's name of a peft model parameter."""
    n = name.replace(".modules_to_save.default.", ".").replace(".default.", ".")
    if ".lora_A." in n or ".lora_B." in n:
        return n
    return n[len(PREFIX):].replace(".base_layer.", ".")


def make_pair(kind, tmp_path, targets="qv", r=4, alpha=8, dropout=0.0, rslora=False, bias="none", seed=0,
              num_labels=3, init_b=True, **ours):
    """(peft model, lyricnn model, base dir): one transformers classifier saved as the base, peft's LoRA on it
    with random B (so the branch is not zero), and lyricnn's twin holding the same adapter and head."""
    hf = hf_classifier(kind, num_labels=num_labels, seed=seed)
    base = tmp_path / ("base_%s_%d" % (kind, seed))
    hf.save_pretrained(base)
    pt, ot = TARGETS[kind, targets]
    if pt is None and kind == "distilbert":
        pt = DISTIL_QV
    cfg = peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=dropout,
                          target_modules=pt, use_rslora=rslora, bias=bias)
    pm = peft.get_peft_model(hf, cfg)
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n and init_b:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    m = SequenceClassifier.from_pretrained(base, num_labels=num_labels, lora=dict(
        r=r, alpha=alpha, dropout=dropout, target_modules=ot, rslora=rslora, bias=bias), **ours)
    copy_into(pm, m)
    return pm, m, base


def copy_into(pm, m):
    trained = {ours_name(n): p.detach().numpy() for n, p in pm.named_parameters() if p.requires_grad}
    assert trained, "peft trains nothing?"
    m.load_state_dict(trained, strict=False)
    return trained


def trainable(pm):
    return {ours_name(n): p for n, p in pm.named_parameters() if p.requires_grad}


def logits(pm, ids, mask, tt):
    with torch.no_grad():
        return pm(input_ids=_t(ids), attention_mask=_t(mask), token_type_ids=_t(tt)).logits.numpy()


CASES = [("distilbert", "qv", "none", False), ("bert", "qv", "none", False), ("distilbert", "all", "lora_only", False),
         ("bert", "all", "all", False), ("bert", "qv", "none", True), ("distilbert", "qv", "all", True)]


@pytest.mark.parametrize("kind,targets,bias,rslora", CASES)
def test_logits_match_peft(kind, targets, bias, rslora, tmp_path):
    pm, m, _ = make_pair(kind, tmp_path, targets, bias=bias, rslora=rslora)
    pm.eval()
    ids, mask, tt = batch(5, 13, lengths=[13, 9, 4, 13, 2], types=kind == "bert")
    ref = logits(pm, ids, mask, tt)
    np.testing.assert_allclose(m(ids, mask, token_type_ids=tt).logits, ref, atol=2e-6, rtol=1e-5)
    m.unpad = False  # every padded position computed, as transformers does
    np.testing.assert_allclose(m(ids, mask, token_type_ids=tt).logits, ref, atol=2e-6, rtol=1e-5)
    # the adapter changes the logits (a test of the branch, not of the base alone)
    base = SequenceClassifier.from_pretrained(tmp_path / ("base_%s_0" % kind), num_labels=3)
    assert np.abs(base(ids, mask, token_type_ids=tt).logits - ref).max() > 2e-4
    # the same tensors train, under the same names
    assert set(trainable(pm)) == {n for n, (_, _, _, f) in zip(m._names, m.encoder._info)
                                  if not f & lyricnn._C.TENSOR_FROZEN}


@pytest.mark.parametrize("kind,targets,bias,rslora", CASES)
def test_train_steps_match_peft(kind, targets, bias, rslora, tmp_path):
    """One full step (forward, CE, backward, clip_grad_norm_, AdamW with no-decay groups over the trainable
    tensors), then 2 more: losses, clipped gradients and the updated adapters and head match."""
    pm, m, _ = make_pair(kind, tmp_path, targets, bias=bias, rslora=rslora, seed=1)
    pm.train()
    ids, mask, tt = batch(4, 11, seed=2, lengths=[11, 7, 11, 5], types=kind == "bert")
    labels = np.array([0, 2, 1, 2])
    m.configure_optimizer("adamw", lr=LR, weight_decay=WD, max_grad_norm=1.0)
    opt = torch_adamw(pm, LR, WD)
    info = {full: flags for full, (_, _, _, flags) in zip(m._names, m.encoder._info)}
    frozen0 = {n: m.params[n].copy() for n, f in info.items() if f & lyricnn._C.TENSOR_FROZEN}

    def loss_fn():
        return pm(input_ids=_t(ids), attention_mask=_t(mask), token_type_ids=_t(tt), labels=_t(labels)).loss

    ref_loss, ref_norm = torch_step(pm, opt, loss_fn)
    loss = m.train_step(ids, mask, labels, token_type_ids=tt)
    assert abs(loss - ref_loss) < 1e-5 * max(1.0, abs(ref_loss))
    assert abs(m.last_grad_norm - ref_norm) < 1e-5 * ref_norm
    tr = trainable(pm)
    for name, p in tr.items():  # gradients after clipping
        np.testing.assert_allclose(m.grads[name], p.grad.numpy(), atol=1e-7, rtol=1e-4, err_msg=name)
    losses, ref = [loss], [ref_loss]
    for _ in range(2):
        ref.append(torch_step(pm, opt, loss_fn)[0])
        losses.append(m.train_step(ids, mask, labels, token_type_ids=tt))
    np.testing.assert_allclose(losses, ref, rtol=1e-5)
    for name, p in tr.items():
        if name.endswith(("k_lin.bias", "key.bias")):
            continue  # softmax ignores the key bias: its gradient is rounding noise, which Adam scales up to lr
        np.testing.assert_allclose(m.params[name], p.detach().numpy(), atol=2e-5, rtol=1e-4, err_msg=name)
    # the base stays as it was, without gradient work or optimizer state
    for n, v in frozen0.items():
        np.testing.assert_array_equal(m.params[n], v, err_msg=n)
        assert not m.grads[n].any(), n
    assert m.optimizer_state()["m"].size == m.num_parameters(trainable_only=True) == sum(p.numel() for p in tr.values())


class PhiloxDropout(torch.nn.Module):
    """peft's lora_dropout replaced by the engine's mask: Philox keyed by (seed, step, stream) and the padded
    element index, which for transformers' (B, T, C) input is the flat index."""

    def __init__(self, p, seed, stream):
        super().__init__()
        self.p, self.seed, self.stream, self.step = p, seed, stream, 0

    def forward(self, x):
        if not self.training:
            return x
        d = dict(p=self.p, seed=self.seed, step=self.step, stream=self.stream)
        keep = R.keep_at(np.arange(x.numel(), dtype=np.uint64).reshape(tuple(x.shape)), d)
        return x * torch.tensor(keep, dtype=x.dtype) * R.drop_scale(d)


def philox_dropouts(pm, p, seed):
    from lyricnn.lora import SITES
    kind = pm.config.model_type
    mods = []
    for name, mod in pm.named_modules():
        if not hasattr(mod, "lora_dropout"):
            continue
        if ".pooler." in name:
            stream = 0x20000000 + 8 * pm.config.num_hidden_layers
        else:
            layer = int(name.split(".layer.")[1].split(".")[0])
            site = [i for i, s in enumerate(SITES[kind]) if name.endswith(s)][0]
            stream = 0x20000000 + 8 * layer + site
        mod.lora_dropout["default"] = PhiloxDropout(p, seed, stream)
        mods.append(mod.lora_dropout["default"])
    return mods


@pytest.mark.parametrize("kind,targets", [("distilbert", "all"), ("bert", "all")])
def test_dropout_matches_peft_through_the_philox_spec(kind, targets, tmp_path):
    """LoRA dropout on (p=0.3; the encoder's own dropouts off): with peft's dropout modules drawing the engine's
    Philox masks, three training steps match; the token-0 last layer and the unpadded rows key the masks by the
    padded position, as transformers' padded run does."""
    pm, m, _ = make_pair(kind, tmp_path, targets, dropout=0.3, seed=3, bias="none")
    drops = philox_dropouts(pm, 0.3, m.seed)
    assert len(drops) == (13 if kind == "bert" else 12)
    pm.train()
    ids, mask, tt = batch(4, 11, seed=4, lengths=[11, 7, 11, 5], types=kind == "bert")
    labels = np.array([1, 2, 0, 2])
    m.configure_optimizer("adamw", lr=LR, weight_decay=WD, max_grad_norm=1.0)
    opt = torch_adamw(pm, LR, WD)

    def loss_fn():
        return pm(input_ids=_t(ids), attention_mask=_t(mask), token_type_ids=_t(tt), labels=_t(labels)).loss

    for step in range(3):
        for d in drops:
            d.step = step
        ref_loss, ref_norm = torch_step(pm, opt, loss_fn)
        loss = m.train_step(ids, mask, labels, token_type_ids=tt)
        assert abs(loss - ref_loss) < 1e-5 * max(1.0, abs(ref_loss)), step
        assert abs(m.last_grad_norm - ref_norm) < 1e-5 * ref_norm, step
    for name, p in trainable(pm).items():
        np.testing.assert_allclose(m.params[name], p.detach().numpy(), atol=2e-5, rtol=1e-4, err_msg=name)
    # and the masks are not the identity: without them the loss differs
    with torch.no_grad():
        for d in drops:
            d.p = 0.0
        assert abs(float(loss_fn()) - float(m.train_step(ids, mask, labels, token_type_ids=tt))) > 1e-4


def test_dropout_is_the_same_packed_padded_and_token0(tmp_path):
    """With LoRA dropout on, the unpadded + token-0 run and the fully padded run draw the same masks."""
    _, a, base = make_pair("distilbert", tmp_path, "all", dropout=0.2, seed=5)
    b = SequenceClassifier.from_pretrained(base, num_labels=3, lora=dict(r=4, alpha=8, dropout=0.2,
                                                                         target_modules="all-linear"))
    b.load_state_dict(a.state_dict())
    b.unpad = False
    ids, mask, _ = batch(3, 9, seed=6, lengths=[9, 3, 6])
    for m in (a, b):
        m.configure_optimizer(lr=1e-3)
    la = [a.train_step(ids, mask, np.array([0, 1, 2])) for _ in range(2)]
    lb = [b.train_step(ids, mask, np.array([0, 1, 2])) for _ in range(2)]
    np.testing.assert_allclose(la, lb, rtol=1e-6)
    for n in a.params:
        np.testing.assert_allclose(a.params[n], b.params[n], atol=1e-6, err_msg=n)


@pytest.mark.parametrize("kind", ["distilbert", "bert"])
def test_merge_unmerge_and_merge_and_unload(kind, tmp_path):
    pm, m, base = make_pair(kind, tmp_path, "all", bias="lora_only")
    pm.eval()
    ids, mask, tt = batch(4, 10, seed=8, lengths=[10, 6, 3, 10], types=kind == "bert")
    ref = logits(pm, ids, mask, tt)
    w0 = {n: m.params[n].copy() for n in m.params}
    m.merge()
    assert m.merged
    pm.merge_adapter()  # peft's merged weights
    sd = pm.state_dict()
    for full, w, a, b in m._lora_sites():
        np.testing.assert_allclose(m.params[w], sd[PREFIX + full + ".base_layer.weight"].numpy(), atol=1e-6, err_msg=w)
    np.testing.assert_allclose(m(ids, mask, token_type_ids=tt).logits, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(LyricnnError, match="unmerge"):
        m.configure_optimizer()
        m.train_step(ids, mask, np.array([0, 1, 2, 0]), token_type_ids=tt)
    m.unmerge()
    assert not m.merged
    for n, v in w0.items():
        np.testing.assert_allclose(m.params[n], v, atol=1e-6, err_msg=n)
    np.testing.assert_allclose(m(ids, mask, token_type_ids=tt).logits, ref, atol=2e-6, rtol=1e-5)
    # merge_and_unload: a plain model; its save_pretrained directory loads in transformers, same logits
    plain = m.merge_and_unload()
    assert plain.lora_config is None and not any("lora" in n for n in plain.params)
    assert not m.merged and m.lora_config is not None
    np.testing.assert_allclose(plain(ids, mask, token_type_ids=tt).logits, ref, atol=1e-5, rtol=1e-5)
    for d, model in (("merged", plain), ("direct", m)):  # save_pretrained of the LoRA model writes merged weights
        model.save_pretrained(tmp_path / d)
        hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / d)
        hf.eval()
        np.testing.assert_allclose(logits(hf, ids, mask, tt), ref, atol=1e-5, rtol=1e-5)
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        assert not os.path.exists(tmp_path / "direct" / f)


@pytest.mark.parametrize("kind,targets,bias", [("distilbert", "qv", "none"), ("bert", "all", "all"),
                                               ("distilbert", "all", "lora_only")])
def test_peft_saves_lyricnn_loads(kind, targets, bias, tmp_path):
    pm, m, base = make_pair(kind, tmp_path, targets, bias=bias, num_labels=4)
    with torch.no_grad():  # a head and biases that differ from the base checkpoint's
        for n, p in pm.named_parameters():
            if p.requires_grad and "lora" not in n:
                p.add_(0.05)
    pm.eval()
    pm.save_pretrained(tmp_path / "adapter")
    ids, mask, tt = batch(3, 12, seed=9, lengths=[12, 5, 8], types=kind == "bert")
    ref = logits(pm, ids, mask, tt)
    got = SequenceClassifier.from_pretrained(base, adapter=tmp_path / "adapter")
    assert got.num_labels == 4 and got.lora_config["bias"] == bias
    np.testing.assert_allclose(got(ids, mask, token_type_ids=tt).logits, ref, atol=2e-6, rtol=1e-5)
    assert set(trainable(pm)) == {n for n, (_, _, _, f) in zip(got._names, got.encoder._info)
                                  if not f & lyricnn._C.TENSOR_FROZEN}


@pytest.mark.parametrize("kind,targets,bias,rslora", [("distilbert", "qv", "none", False), ("bert", "all", "all", True),
                                                      ("bert", "qv", "lora_only", False)])
def test_lyricnn_saves_peft_loads(kind, targets, bias, rslora, tmp_path):
    hf = hf_classifier(kind, num_labels=3, seed=11)
    base = tmp_path / "base"
    hf.save_pretrained(base)
    lora = dict(r=4, alpha=8, dropout=0.1, target_modules=TARGETS[kind, targets][1], bias=bias, rslora=rslora)
    m = SequenceClassifier.from_pretrained(base, num_labels=3, lora=lora, seed=3)
    m.configure_optimizer(lr=1e-2)
    ids, mask, tt = batch(4, 12, seed=12, lengths=[12, 5, 8, 12], types=kind == "bert")
    for _ in range(3):  # B leaves zero, the head and biases move
        m.train_step(ids, mask, np.array([0, 1, 2, 1]), token_type_ids=tt)
    m.save_adapter(tmp_path / "adapter")
    assert sorted(os.listdir(tmp_path / "adapter")) == ["adapter_config.json", "adapter_model.safetensors"]
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["task_type"] == "SEQ_CLS" and cfg["r"] == 4 and cfg["use_rslora"] == rslora
    ref = m(ids, mask, token_type_ids=tt).logits
    base_hf = transformers.AutoModelForSequenceClassification.from_pretrained(base)
    pm = peft.PeftModel.from_pretrained(base_hf, tmp_path / "adapter")
    pm.eval()
    np.testing.assert_allclose(logits(pm, ids, mask, tt), ref, atol=2e-6, rtol=1e-5)
    # the file holds exactly what peft itself saves for this model
    from safetensors.numpy import load_file
    ours = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    pm.save_pretrained(tmp_path / "again")
    theirs = load_file(tmp_path / "again" / "adapter_model.safetensors")
    # (peft's bias="all" also saves its wrapper's copies of the head's bias: classifier.original_module.bias, the
    # untrained one, and classifier.modules_to_save.bias; it loads files without them)
    assert set(ours) == {k for k in theirs if ".original_module." not in k and ".modules_to_save." not in k}
    for k in ours:
        np.testing.assert_array_equal(ours[k], theirs[k], err_msg=k)
    # and lyricnn reads its own file back to the same logits
    back = SequenceClassifier.from_pretrained(base, adapter=tmp_path / "adapter")
    np.testing.assert_array_equal(back(ids, mask, token_type_ids=tt).logits, ref)


def test_init_is_peft_s_and_seeded(tmp_path):
    hf = hf_classifier("bert", seed=0)
    hf.save_pretrained(tmp_path / "b")
    m = SequenceClassifier.from_pretrained(tmp_path / "b", num_labels=3, lora=dict(r=8, target_modules="all-linear"),
                                           seed=4)
    for full, _, a, b in m._lora_sites():
        A = m.params[a]
        bound = 1 / np.sqrt(A.shape[1])  # kaiming_uniform_(a=sqrt(5)) on (r, in)
        assert np.abs(A).max() <= bound and np.abs(A).max() > 0.9 * bound
        assert not m.params[b].any()
    g = SequenceClassifier.from_pretrained(tmp_path / "b", num_labels=3, lora=dict(r=8, init="gaussian"), seed=4)
    A = np.concatenate([g.params[a].ravel() for _, _, a, _ in g._lora_sites()])
    assert abs(A.std() - 1 / 8) < 0.01 and abs(A.mean()) < 0.01
    again = SequenceClassifier.from_pretrained(tmp_path / "b", num_labels=3, lora=dict(r=8, target_modules="all-linear"),
                                               seed=4)
    other = SequenceClassifier.from_pretrained(tmp_path / "b", num_labels=3, lora=dict(r=8, target_modules="all-linear"),
                                               seed=5)
    a0 = m._lora_sites()[0][2]
    np.testing.assert_array_equal(again.params[a0], m.params[a0])
    assert not np.array_equal(other.params[a0], m.params[a0])
    # the pooler (BERT's HF head) takes an adapter with all-linear, as in peft
    assert any(s[0] == "bert.pooler.dense" for s in m._lora_plan["sites"])


def test_checkpoint_resume_is_bit_identical_with_adapters(tmp_path):
    cfg = dict(model_type="distilbert", vocab_size=97, dim=32, n_layers=2, n_heads=4, hidden_dim=48,
               max_position_embeddings=40, dropout=0.1, attention_dropout=0.1, seq_classif_dropout=0.2)
    lora = dict(r=4, alpha=8, dropout=0.1, target_modules="all-linear", bias="lora_only")
    ids, mask, _ = batch(4, 9, seed=11, lengths=[9, 4, 7, 9])
    labels = np.array([1, 0, 1, 1])

    def run(n, model=None):
        m = model or SequenceClassifier.from_config(cfg, num_labels=2, seed=0, lora=lora)
        if model is None:
            m.configure_optimizer(lr=1e-3, weight_decay=0.01)
        return m, [m.train_step(ids, mask, labels) for _ in range(n)]

    a, la = run(4)
    d, _ = run(2)
    e = SequenceClassifier.from_config(cfg, num_labels=2, seed=0, lora=lora)
    e.load_state_dict(d.state_dict())
    e.load_optimizer_state(d.optimizer_state())
    _, le = run(2, model=e)
    assert le == la[2:]
    for n in a.params:
        assert a.params[n].tobytes() == e.params[n].tobytes(), n
    # and a training step is the same bits on 1 and 2 threads
    before = lyricnn.get_num_threads()
    try:
        res = []
        for nt in (1, 2):
            lyricnn.set_num_threads(nt)
            m, ls = run(2)
            res.append((ls, {n: m.params[n].copy() for n in m.params}))
    finally:
        lyricnn.set_num_threads(before)
    assert res[0][0] == res[1][0]
    for n in res[0][1]:
        assert res[0][1][n].tobytes() == res[1][1][n].tobytes(), n


# ------------------------------------------------------------------ bad input

def _base(tmp_path, kind="distilbert", **cfg):
    d = tmp_path / ("base_%s_%s" % (kind, "_".join("%s%s" % kv for kv in sorted(cfg.items()))))
    if not d.exists():
        hf_classifier(kind, **cfg).save_pretrained(d)
    return d


@pytest.mark.parametrize("lora,exc,match", [
    (dict(target_modules=["q_proj"]), ValueError, "q_proj.*matches no linear.*valid names: q_lin, k_lin, v_lin, out_lin, "
                                                  "lin1, lin2"),
    (dict(target_modules=["classifier"]), ValueError, "classification head"),
    (dict(r=0), ValueError, "lora r"),
    (dict(r=-2), ValueError, "lora r"),
    (dict(r=2.5), TypeError, "lora r"),
    (dict(alpha=0), ValueError, "lora alpha"),
    (dict(alpha=-1.0), ValueError, "lora alpha"),
    (dict(dropout=1.0), ValueError, r"lora dropout.*\[0, 1\)"),
    (dict(dropout=-0.1), ValueError, "lora dropout"),
    (dict(bias="some"), ValueError, "lora bias"),
    (dict(init="pissa"), ValueError, "lora init"),
    (dict(rank=8), ValueError, "unknown key 'rank'"),
    (dict(modules_to_save=["decoder"]), ValueError, "modules_to_save.*pre_classifier, classifier"),
    ("qv", TypeError, "lora must be a dict"),
])
def test_bad_lora_arguments(lora, exc, match, tmp_path):
    with pytest.raises(exc, match=match):
        SequenceClassifier.from_pretrained(_base(tmp_path), num_labels=3, lora=lora)


def test_bad_combinations(tmp_path):
    base = _base(tmp_path)
    with pytest.raises(ValueError, match="freeze_encoder=True and lora are exclusive"):
        SequenceClassifier.from_pretrained(base, lora=dict(r=2), freeze_encoder=True)
    m = SequenceClassifier.from_pretrained(base, num_labels=3, lora=dict(r=2))
    m.save_adapter(tmp_path / "ad")
    with pytest.raises(ValueError, match="not both"):
        SequenceClassifier.from_pretrained(base, lora=dict(r=2), adapter=tmp_path / "ad")
    with pytest.raises(CheckpointError, match="not an adapter directory"):
        SequenceClassifier.from_pretrained(base, adapter=tmp_path / "nowhere")
    with pytest.raises(LyricnnError, match="merge.. needs LoRA adapters; this model has none"):
        SequenceClassifier.from_pretrained(base, num_labels=3).merge()


def test_adapter_for_another_base_names_the_mismatch(tmp_path):
    distil, bert = _base(tmp_path, "distilbert"), _base(tmp_path, "bert")
    SequenceClassifier.from_pretrained(distil, num_labels=3, lora=dict(r=2)).save_adapter(tmp_path / "d")
    with pytest.raises(CheckpointError, match="adapter is for a distilbert model.*is a bert model"):
        SequenceClassifier.from_pretrained(bert, adapter=tmp_path / "d")
    wide = _base(tmp_path, "distilbert", dim=48, n_heads=4)
    with pytest.raises(CheckpointError, match=r"lora_A.weight has shape \(2, 32\) but this model needs \(2, 48\).*hidden "
                                              r"size 48"):
        SequenceClassifier.from_pretrained(wide, adapter=tmp_path / "d")
    deep = _base(tmp_path, "distilbert", n_layers=3, vocab_size=97)
    SequenceClassifier.from_pretrained(deep, num_labels=3, lora=dict(r=2)).save_adapter(tmp_path / "deep")
    with pytest.raises(CheckpointError, match="layers this 2-layer model lacks.*layer.2.attention.q_lin"):
        SequenceClassifier.from_pretrained(distil, adapter=tmp_path / "deep")
    with pytest.raises(CheckpointError, match=r"classifier.bias has shape \(3,\) but this model's "
                                              r"classifier.bias is \(5,\).*num_labels"):
        SequenceClassifier.from_pretrained(distil, adapter=tmp_path / "d", num_labels=5)
    cfg = json.loads((tmp_path / "d" / "adapter_config.json").read_text())
    cfg["use_dora"] = True
    (tmp_path / "d" / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="DoRA"):
        SequenceClassifier.from_pretrained(distil, adapter=tmp_path / "d")


# ------------------------------------------------------------------ estimators and the command line

TINY = {"model_type": "distilbert", "vocab_size": 30522, "dim": 32, "n_layers": 2, "n_heads": 2,
        "hidden_dim": 64, "max_position_embeddings": 64, "dropout": 0.1, "attention_dropout": 0.1,
        "seq_classif_dropout": 0.1, "initializer_range": 0.02}


@pytest.fixture
def one_thread():
    n = lyricnn.get_num_threads()
    lyricnn.set_num_threads(1)  # tiny models: two spinning threads on a busy 2-core machine cost more than they give
    yield
    lyricnn.set_num_threads(n)


def test_estimator_with_lora_trains_resumes_bit_identically_and_saves(tmp_path, one_thread):
    from lyricnn import TextClassifier, TextRegressor
    X, Y = love_hate(64, 0)
    lora = dict(r=4, alpha=8, dropout=0.1, target_modules="all-linear")

    def make(**kw):
        return TextClassifier(model=TINY, epochs=2, batch_size=8, lr=5e-3, max_length=16, verbose=0, seed=0,
                              lora=lora, **kw)

    full = make().fit(X, Y)
    m = full.model_
    assert m.lora_config["r"] == 4 and m.num_parameters(trainable_only=True) < m.num_parameters() / 10
    part = make(checkpoint_dir=str(tmp_path / "ck"))
    part.fit(X, Y, callbacks=[lambda est, info: info["step"] < 5])
    assert part.interrupted_
    resumed = make(checkpoint_dir=str(tmp_path / "ck")).fit(X, Y, resume=True)
    a, b = full.model_.state_dict(), resumed.model_.state_dict()
    assert a.keys() == b.keys() and any(".lora_A." in k for k in a)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    np.testing.assert_array_equal(full.history_["loss"].to_numpy(), resumed.history_["loss"].to_numpy())
    # save() writes the merged model: it loads as a plain model with the same predictions
    full.save(tmp_path / "est")
    back = TextClassifier.load(tmp_path / "est")
    assert back.model_.lora_config is None and back.get_params()["lora"] == lora
    np.testing.assert_allclose(back.predict_proba(X[:16]), full.predict_proba(X[:16]), atol=1e-5)
    # the regressor and the frozen-encoder exclusion
    reg = TextRegressor(model=TINY, epochs=1, batch_size=8, max_length=16, verbose=0, lora=dict(r=2))
    reg.fit(X[:16], np.linspace(0, 1, 16))
    assert reg.model_.lora_config["r"] == 2
    with pytest.raises(ValueError, match="exclusive"):
        make(freeze_encoder=True).fit(X, Y)
    with pytest.raises(ValueError, match="lora r"):
        TextClassifier(model=TINY, lora=dict(r=0), verbose=0).fit(X, Y)


def test_cli_lora_options(tmp_path, one_thread):
    from lyricnn import cli
    pd = pytest.importorskip("pandas")
    X, Y = love_hate(32, 1)
    pd.DataFrame({"lyrics": X, "mood": Y}).to_csv(tmp_path / "t.csv", index=False)
    from conftest import save_random_base

    save_random_base(tmp_path / "tiny", TINY)  # a folder needs weights (no random init from a folder)
    out = tmp_path / "model"
    rc = cli.main(["train", str(tmp_path / "t.csv"), "--text-col", "lyrics", "--label-col", "mood", "--model",
                   str(tmp_path / "tiny"), "--output-dir", str(out), "--epochs", "1", "--batch-size", "8",
                   "--max-length", "16", "--lora-r", "4", "--lora-alpha", "8", "--lora-dropout", "0.0",
                   "--lora-targets", "q_lin,v_lin,lin1", "--quiet"])
    assert rc == 0
    params = json.loads((out / "lyricnn_estimator.json").read_text())["params"]
    assert params["lora"] == dict(r=4, alpha=8.0, dropout=0.0, target_modules=["q_lin", "v_lin", "lin1"])
    assert cli.main(["evaluate", str(out), str(tmp_path / "t.csv")]) == 0
    rc = cli.main(["train", str(tmp_path / "t.csv"), "--text-col", "lyrics", "--label-col", "mood", "--model",
                   str(tmp_path / "tiny"), "--output-dir", str(out), "--lora-targets", "q_proj", "--quiet"])
    assert rc == 2


def _lora_run(base, kind, dev, precision, out_dir):
    """Three AdamW steps with LoRA dropout on every linear (biases training), merge / unmerge, the adapter
    saved and loaded back: (losses, merged logits, state_dict, the reloaded adapter's logits)."""
    ids, mask, tt = batch(4, 10, seed=13, lengths=[10, 6, 3, 10], types=kind == "bert")
    y = np.array([0, 1, 2, 1])
    m = SequenceClassifier.from_pretrained(base, num_labels=3, device=dev, seed=2, precision=precision,
                                           lora=dict(r=4, dropout=0.1, target_modules="all-linear", bias="all"))
    m.configure_optimizer(lr=1e-2)
    losses = [m.train_step(ids, mask, y, token_type_ids=tt) for _ in range(3)]
    m.save_adapter(out_dir)
    m.merge()
    merged = m(ids, mask, token_type_ids=tt).logits
    m.unmerge()
    back = SequenceClassifier.from_pretrained(base, adapter=out_dir, device=dev, precision=precision)
    return losses, merged, m.state_dict(), back(ids, mask, token_type_ids=tt).logits


@pytest.mark.parametrize("kind", ["distilbert", "bert"])
def test_adapters_on_device_memory_equal_cpu(kind, tmp_path, one_thread):
    """On the cpu-copy backend (device memory: copies only, as on a GPU) training, merging and the adapter
    files give the CPU's bits."""
    base = _base(tmp_path, kind)
    (l0, z0, s0, b0) = _lora_run(base, kind, "cpu", None, tmp_path / "cpu")
    (l1, z1, s1, b1) = _lora_run(base, kind, "cpu-copy", None, tmp_path / "copy")
    assert l0 == l1
    np.testing.assert_array_equal(z0, z1)
    np.testing.assert_array_equal(b0, b1)
    for k in s0:
        np.testing.assert_array_equal(s0[k], s1[k], err_msg=k)


# ---------------------------------------------------------------- the GPU (tools/gpu_check.sh runs this)

@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("kind", ["distilbert", "bert"])
def test_cuda_matches_the_cpu(kind, precision, tmp_path, one_thread):
    """The same run on the GPU: fp32 equals the CPU engine to float rounding (the same Philox masks); bf16
    stays close."""
    from lyricnn._device import cuda_available

    if not cuda_available():
        pytest.skip("needs the CUDA backend and a GPU")
    if precision == "bf16" and not lyricnn.cuda_info()["devices"][0]["bf16"]:
        pytest.skip("bf16 needs compute capability 8.0+")
    base = _base(tmp_path, kind)
    (l0, z0, s0, b0) = _lora_run(base, kind, "cpu", None, tmp_path / "cpu")
    (l1, z1, s1, b1) = _lora_run(base, kind, "cuda", precision, tmp_path / "cuda")
    tol = 1e-4 if precision == "fp32" else 5e-2
    np.testing.assert_allclose(l1, l0, rtol=tol)
    np.testing.assert_allclose(z1, z0, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(b1, b0, rtol=tol * 10, atol=tol * 10)
    for k in s0:
        np.testing.assert_allclose(s1[k], s0[k], rtol=tol * 10, atol=tol, err_msg=k)
