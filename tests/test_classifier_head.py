"""The configurable head (pooling cls/mean/flatten, Linear stack, BatchNorm1d, activation, feature
concatenation) against the equivalent torch.nn module on top of the transformers encoder."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
nn = torch.nn
F = torch.nn.functional

from lyricnn.classifier import SequenceClassifier, normalize_head  # noqa: E402
from _clf_oracle import TINY_BERT, TINY_DISTIL, batch, noisy, torch_adamw, torch_step  # noqa: E402


class Block(nn.Module):
    def __init__(self, i, o, bn, momentum, eps):
        super().__init__()
        self.dense = nn.Linear(i, o)
        if bn:
            self.norm = nn.BatchNorm1d(o, momentum=momentum, eps=eps)


class TorchHeadModel(nn.Module):
    """encoder + pool + [Linear -> BatchNorm1d -> act -> Dropout]* -> Linear, features concatenated
    before Linear number features_at; parameter names as lyricnn's."""

    def __init__(self, kind, encoder, head, C, K, Fn):
        super().__init__()
        setattr(self, kind, encoder)
        self.kind, self.h, self.Fn = kind, head, Fn
        width = head["max_length"] * C if head["pooling"] == "flatten" else C
        blocks = []
        for j, w in enumerate(head["hidden"]):
            if Fn and head["features_at"] == j:
                width += Fn
            blocks.append(Block(width, w, head["batchnorm"], head["momentum"], head["eps"]))
            width = w
        if Fn and head["features_at"] == len(head["hidden"]):
            width += Fn
        self.head = nn.ModuleList(blocks)
        self.classifier = nn.Linear(width, K)
        self.act = nn.ReLU() if head["activation"] == "relu" else nn.Tanh()

    def forward(self, ids, mask, feats):
        h = getattr(self, self.kind)(input_ids=ids, attention_mask=mask).last_hidden_state
        p = self.h["pooling"]
        if p == "cls":
            x = h[:, 0]
        elif p == "mean":
            m = mask.unsqueeze(-1).float()
            x = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        else:
            x = h.reshape(h.shape[0], -1)
        for j, blk in enumerate(self.head):
            if self.Fn and self.h["features_at"] == j:
                x = torch.cat([x, feats], 1)
            x = blk.dense(x)
            if self.h["batchnorm"]:
                x = blk.norm(x)
            x = self.act(x)
        if self.Fn and self.h["features_at"] == len(self.head):
            x = torch.cat([x, feats], 1)
        return self.classifier(x)


CASES = {
    # the popularity workflow: MLP with BatchNorm, 31 audio features after the second layer, BCE
    "popularity": dict(kind="distilbert", K=1, Fn=31, pt="multi_label_classification",
                       head=dict(pooling="cls", hidden=[24, 16], batchnorm=True, features_at=2)),
    "mean_tanh_features_first_mse": dict(kind="bert", K=1, Fn=5, pt="regression",
                                         head=dict(pooling="mean", hidden=[12], batchnorm=True, activation="tanh",
                                                   features_at=0, momentum=0.3, eps=1e-3)),
    # momentum=None: running stats are the cumulative average of the training batches (factor 1, 1/2, ...)
    "cumulative_bn_ce": dict(kind="distilbert", K=3, Fn=0, pt="single_label_classification",
                             head=dict(pooling="mean", hidden=[16, 8], batchnorm=True, momentum=None)),
    "flatten_halving_ce": dict(kind="distilbert", K=3, Fn=0, pt="single_label_classification",
                               head=dict(pooling="flatten", hidden="halving", max_length=10)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_configurable_head_matches_torch(case, tmp_path):
    c = CASES[case]
    kind, K, Fn, pt = c["kind"], c["K"], c["Fn"], c["pt"]
    torch.manual_seed(0)
    if kind == "distilbert":
        enc = transformers.DistilBertModel(transformers.DistilBertConfig(**TINY_DISTIL))
    else:
        enc = transformers.BertModel(transformers.BertConfig(**TINY_BERT), add_pooling_layer=False)
    enc.config._attn_implementation = "eager"
    noisy(enc, 0)
    enc.save_pretrained(tmp_path / "base")
    m = SequenceClassifier.from_pretrained(tmp_path / "base", num_labels=K, problem_type=pt, head=c["head"],
                                           num_features=Fn, seed=5)
    head = m.head
    assert head == normalize_head(c["head"], 32, K, Fn)
    ref = TorchHeadModel(kind, enc, head, 32, K, Fn)
    missing, unexpected = ref.load_state_dict({k: torch.tensor(v) for k, v in m.state_dict().items()}, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    ref.train()
    B, T = 6, 10
    ids, mask, _ = batch(B, T, seed=1, lengths=[10, 4, 7, 10, 3, 9])
    # different first tokens: with one shared [CLS] a tiny random encoder gives nearly equal pooled
    # rows, and BatchNorm's (x - mean) * rstd amplifies fp32 rounding (ill-conditioned, in torch too)
    ids[:, 0] = [5, 17, 33, 48, 60, 91]
    r = np.random.default_rng(2)
    feats = r.standard_normal((B, Fn)).astype(np.float32) if Fn else None
    if pt == "single_label_classification":
        labels = np.array([0, 1, 2, 2, 1, 0])
    elif pt == "multi_label_classification":
        labels = (r.random(B) > 0.5).astype(np.float32)  # one binary logit: (B,) accepted
    else:
        labels = r.standard_normal(B).astype(np.float32)
    y = torch.tensor(labels)
    ft = None if feats is None else torch.tensor(feats)

    def loss_fn():
        logits = ref(torch.tensor(ids), torch.tensor(mask), ft)
        if pt == "single_label_classification":
            return F.cross_entropy(logits, y)
        if pt == "multi_label_classification":
            return F.binary_cross_entropy_with_logits(logits[:, 0], y)
        return F.mse_loss(logits[:, 0], y)

    # eps=1e-4: tensors whose true gradient is 0 (a Linear bias right before BatchNorm, the last
    # LayerNorm bias under pooling + BatchNorm) get rounding-noise gradients (1e-9 to 1e-7, depending on
    # the GEMM kernels), which Adam turns into steps of lr * noise / eps in either implementation: +-lr
    # with eps=1e-8, still up to 1e-4 * lr with eps=1e-6; with 1e-4 they stay below the tolerance
    m.configure_optimizer("adamw", lr=1e-3, weight_decay=0.01, max_grad_norm=1.0, eps=1e-4)
    opt = torch_adamw(ref, 1e-3, 0.01, eps=1e-4)
    for step in range(2):
        want = torch_step(ref, opt, loss_fn)[0]
        got = m.train_step(ids, mask, labels, features=feats)
        assert abs(got - want) < 2e-5 * max(1, abs(want))
        if step == 0:  # gradients (after clipping) agree
            scale = max(float(p.grad.abs().max()) for p in ref.parameters())
            for k, p in ref.named_parameters():
                np.testing.assert_allclose(m.grads[k], p.grad.numpy(), atol=1e-5 * scale, rtol=1e-4, err_msg=k)
    sd = ref.state_dict()
    for k, v in m.state_dict().items():
        np.testing.assert_allclose(v, sd[k].numpy(), atol=2e-5, rtol=1e-4, err_msg=k)
    if head["batchnorm"]:
        assert m.state_dict()["head.0.norm.num_batches_tracked"] == 2
        assert not np.allclose(m.buffers["head.0.norm.running_var"], 1.0)  # the running stats moved
    ref.eval()
    with torch.no_grad():
        want = ref(torch.tensor(ids), torch.tensor(mask), ft).numpy()
    np.testing.assert_allclose(m(ids, mask, features=feats).logits, want, atol=2e-5, rtol=1e-4)


def test_configurable_head_save_and_reload(tmp_path):
    c = CASES["popularity"]
    cfg = dict(model_type="distilbert", **{k: v for k, v in TINY_DISTIL.items()})
    m = SequenceClassifier.from_config(cfg, num_labels=1, problem_type="multi_label_classification",
                                       head=dict(c["head"], dropout=0.2), num_features=31, seed=3)
    ids, mask, _ = batch(4, 8, seed=3, lengths=[8, 5, 6, 2])
    feats = np.random.default_rng(4).standard_normal((4, 31)).astype(np.float32)
    m.configure_optimizer(lr=1e-3)
    for _ in range(2):
        m.train_step(ids, mask, np.array([1, 0, 1, 0], np.float32), features=feats)
    m.save_pretrained(tmp_path / "pop")
    cfg_saved = json.loads((tmp_path / "pop" / "config.json").read_text())
    assert cfg_saved["lyricnn_head"]["features_at"] == 2 and cfg_saved["lyricnn_head"]["num_features"] == 31
    m2 = SequenceClassifier.from_pretrained(tmp_path / "pop")
    assert m2.head == m.head and m2.num_features == 31 and m2.num_labels == 1
    assert m2.problem_type == "multi_label_classification"
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(m2.state_dict()[k], v, err_msg=k)
    np.testing.assert_array_equal(m2(ids, mask, features=feats).logits, m(ids, mask, features=feats).logits)
    # transformers reads the encoder part of the directory
    base = transformers.AutoModel.from_pretrained(tmp_path / "pop", attn_implementation="eager")
    with torch.no_grad():
        h = base(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
    np.testing.assert_allclose(m.encoder(ids, mask).last_hidden_state, h, atol=2e-6, rtol=1e-5)


def test_head_dropout_uses_philox_streams_and_train_differs_from_eval():
    cfg = dict(model_type="distilbert", **{k: v for k, v in TINY_DISTIL.items()})
    mk = lambda s: SequenceClassifier.from_config(cfg, num_labels=2, head=dict(hidden=[16], dropout=0.5,  # noqa
                                                                                 input_dropout=0.2), seed=s)
    ids, mask, _ = batch(4, 8, seed=5)
    a, b = mk(0), mk(0)
    la = a._clf.forward(*a._inputs(ids, mask, None, None), True, 7, 3)
    lb = b._clf.forward(*b._inputs(ids, mask, None, None), True, 7, 3)
    lc = b._clf.forward(*b._inputs(ids, mask, None, None), True, 7, 4)
    np.testing.assert_array_equal(la, lb)  # keyed by (seed, step) only
    assert not np.array_equal(la, lc)
    assert not np.allclose(la, a(ids, mask).logits)


def test_configurable_head_on_bert_leaves_the_unused_pooler_alone(tmp_path):
    """BERT checkpoint with a pooler + a configurable head: the pooler is kept (and saved) but, as in
    torch where it gets no gradient, never updated (no weight decay) and has no optimizer state."""
    torch.manual_seed(0)
    enc = transformers.BertModel(transformers.BertConfig(**TINY_BERT), add_pooling_layer=True)
    enc.save_pretrained(tmp_path / "base")
    m = SequenceClassifier.from_pretrained(tmp_path / "base", num_labels=2, head=dict(hidden=[8]))
    pool = {k: m.params[k].copy() for k in ("bert.pooler.dense.weight", "bert.pooler.dense.bias")}
    m.configure_optimizer(lr=1e-2, weight_decay=0.1)
    ids, mask, _ = batch(3, 6, seed=1)
    m.train_step(ids, mask, np.array([0, 1, 1]))
    for k, v in pool.items():
        np.testing.assert_array_equal(m.params[k], v)
    assert m.optimizer_state()["m"].size == m.num_parameters() - sum(v.size for v in pool.values())
    # reloading with the same head spec (written without defaults) reuses the saved head weights
    m.save_pretrained(tmp_path / "ft")
    m2 = SequenceClassifier.from_pretrained(tmp_path / "ft", head=dict(hidden=[8]))
    np.testing.assert_array_equal(m2.params["classifier.weight"], m.params["classifier.weight"])
    np.testing.assert_array_equal(m2(ids, mask).logits, m(ids, mask).logits)


def test_cumulative_batchnorm_resumes_its_average(tmp_path):
    # momentum=None survives save/load with num_batches_tracked, so the average goes on where it stopped
    cfg = dict(model_type="distilbert", **{k: v for k, v in TINY_DISTIL.items()})
    head = dict(pooling="mean", hidden=[8], batchnorm=True, momentum=None)
    ids, mask, _ = batch(4, 8, seed=3, lengths=[8, 5, 6, 2])
    y = np.array([0, 1, 1, 0])
    a = SequenceClassifier.from_config(cfg, num_labels=2, head=head, seed=3)
    a.configure_optimizer(lr=0.0)  # lr 0: the encoder and head stay fixed, only the running stats move
    a.train_step(ids, mask, y)
    a.save_pretrained(tmp_path / "m")
    b = SequenceClassifier.from_pretrained(tmp_path / "m", num_labels=2)
    assert b.head["momentum"] is None and b.state_dict()["head.0.norm.num_batches_tracked"] == 1
    ids2, mask2, _ = batch(4, 8, seed=5, lengths=[3, 8, 7, 4])
    fresh = SequenceClassifier.from_pretrained(tmp_path / "m", num_labels=2)
    fresh._num_batches["head.0.norm"] = 0  # as if the count were lost: the second batch would replace the stats
    for m in (a, b, fresh):
        m.configure_optimizer(lr=0.0)
        m.train_step(ids2, mask2, y)
    np.testing.assert_array_equal(a.buffers["head.0.norm.running_mean"], b.buffers["head.0.norm.running_mean"])
    assert not np.allclose(a.buffers["head.0.norm.running_mean"], fresh.buffers["head.0.norm.running_mean"])
    with pytest.raises(IndexError, match="not a BatchNorm op"):
        a._clf.set_batchnorm_momentum(0, 0.5)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\]"):
        a._clf.set_batchnorm_momentum(a._bn_cumulative[0], 1.5)
    with pytest.raises(ValueError, match="momentum must be in"):
        SequenceClassifier.from_config(cfg, num_labels=2, head=dict(head, momentum=-0.1))
