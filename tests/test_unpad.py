"""Unpadding: with a right-padded attention_mask the classifier runs the encoder on the real tokens
only (packed rows, attention per sequence). It must give the padded run's numbers -- logits, losses,
gradients, updates, even the dropout masks -- and HF's; other masks fall back to the padded run."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lyricnn.classifier import SequenceClassifier  # noqa: E402
from _clf_oracle import batch, hf_classifier, twin  # noqa: E402

DROPOUT = {"distilbert": dict(dropout=0.1, attention_dropout=0.1, seq_classif_dropout=0.2),
           "bert": dict(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)}
LENGTHS = [11, 6, 1, 9, 3]


def _pair(kind, tmp_path, **kw):
    hf = hf_classifier(kind, num_labels=3, seed=4, **DROPOUT[kind])
    a, b = twin(hf, tmp_path, **kw), twin(hf, tmp_path, **kw)
    b.unpad = False
    assert a.unpad and not b.unpad
    return hf, a, b


@pytest.mark.parametrize("kind,head,left", [("distilbert", None, False), ("bert", None, False),
                                            ("distilbert", dict(pooling="mean", hidden=[16], dropout=0.1), False),
                                            ("bert", None, True), ("distilbert", dict(pooling="cls"), True)])
def test_unpadded_training_equals_the_padded_run_with_dropout(kind, head, left, tmp_path):
    """Right padding: packed rows, and for token-0 heads a last layer that runs query 0 only. Left
    padding: padded rows, still with the token-0 last layer."""
    kw = {} if head is None else dict(head=head)
    _, a, b = _pair(kind, tmp_path, **kw)
    ids, mask, tt = batch(5, 11, seed=3, lengths=LENGTHS, types=kind == "bert")
    if left:
        ids, mask = ids[:, ::-1].copy(), mask[:, ::-1].copy()
    token0 = head is None or head.get("pooling") == "cls"
    labels = np.array([0, 2, 1, 2, 0])
    for m in (a, b):
        m.configure_optimizer("adamw", lr=1e-3, weight_decay=0.01, max_grad_norm=1.0)
    la, lb = [], []
    for step in range(3):
        la.append(a.train_step(ids, mask, labels, token_type_ids=tt))
        lb.append(b.train_step(ids, mask, labels, token_type_ids=tt))
        if step == 0:
            rows = 5 * 11 if left else sum(LENGTHS)
            assert a._clf.encoder_rows == rows and b._clf.encoder_rows == 5 * 11
            assert a._clf.last_layer_rows == (5 if token0 else rows) and b._clf.last_layer_rows == 5 * 11
            for name in a.grads:  # after clipping
                np.testing.assert_allclose(a.grads[name], b.grads[name], atol=1e-7, rtol=1e-4, err_msg=name)
    # dropout is on: equal losses mean the same entries were dropped in both layouts
    np.testing.assert_allclose(la, lb, rtol=2e-6)
    for name in a.params:  # 3 Adam steps of lr 1e-3: rounding-level gradient differences move by ~1e-6
        np.testing.assert_allclose(a.params[name], b.params[name], atol=1e-5, rtol=1e-5, err_msg=name)
    assert la[0] != la[1]  # dropout masks change from step to step
    np.testing.assert_allclose(a(ids, mask, token_type_ids=tt).logits, b(ids, mask, token_type_ids=tt).logits,
                               atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("pattern", ["left", "holes", "none", "empty_row"])
def test_other_masks_run_padded_and_match_transformers(pattern, tmp_path):
    hf = hf_classifier("bert", num_labels=3, seed=5)
    m = twin(hf, tmp_path)
    B, T = 4, 10
    ids, mask, tt = batch(B, T, seed=6, lengths=[10, 4, 7, 2], types=True)
    if pattern == "left":
        mask, ids = mask[:, ::-1].copy(), ids[:, ::-1].copy()
    elif pattern == "holes":
        mask[0, 3] = 0
    elif pattern == "none":
        mask[:] = 1
    else:
        mask[2] = 0
    got = m(ids, mask, token_type_ids=tt).logits
    assert m._clf.encoder_rows == B * T
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                 token_type_ids=torch.tensor(tt)).logits.numpy()
    np.testing.assert_allclose(got, ref, atol=2e-6, rtol=1e-5)


def test_encoder_api_keeps_padded_positions(tmp_path):
    """The classifier's unpadding is for its own calls: its encoder, called directly afterwards, still
    gives transformers' hidden states at the padded positions."""
    hf = hf_classifier("distilbert", num_labels=2, seed=7)
    m = twin(hf, tmp_path)
    ids, mask, _ = batch(3, 8, seed=8, lengths=[8, 3, 5])
    m(ids, mask)
    assert m._clf.encoder_rows == 16
    out = m.encoder(ids, mask).last_hidden_state
    with torch.no_grad():
        ref = hf.distilbert(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
    np.testing.assert_allclose(out, ref.numpy(), atol=2e-6, rtol=1e-5)
    assert np.abs(out[1, 3:]).max() > 0.1  # padded rows computed, not zero-filled


def test_flatten_pooling_never_unpads():
    cfg = dict(model_type="distilbert", vocab_size=97, dim=16, n_layers=1, n_heads=2, hidden_dim=32,
               max_position_embeddings=16)
    m = SequenceClassifier.from_config(cfg, num_labels=2, head=dict(pooling="flatten", max_length=6), seed=0)
    ids, mask, _ = batch(2, 6, seed=9, lengths=[6, 2])
    m(ids, mask)
    assert m._clf.encoder_rows == 12


def test_unpad_flag_validation(tmp_path):
    _, a, _ = _pair("distilbert", tmp_path)
    with pytest.raises(TypeError):
        del a._clf.unpad


@pytest.mark.parametrize("kind", ["distilbert", "bert"])
def test_one_layer_encoder_with_token0_head(kind, tmp_path):
    """With one layer the token-0 layer is the whole encoder (and the embeddings take its gradient)."""
    cfg = dict(n_layers=1) if kind == "distilbert" else dict(num_hidden_layers=1)
    hf = hf_classifier(kind, num_labels=2, seed=9, **cfg, **DROPOUT[kind])
    a, b = twin(hf, tmp_path), twin(hf, tmp_path)
    b.unpad = False
    ids, mask, tt = batch(3, 7, seed=4, lengths=[7, 2, 5], types=kind == "bert")
    labels = np.array([1, 0, 1])
    for m in (a, b):
        m.configure_optimizer("adamw", lr=1e-3, max_grad_norm=0)
        m.train_step(ids, mask, labels, token_type_ids=tt)
    assert a._clf.last_layer_rows == 3
    for name in a.grads:
        np.testing.assert_allclose(a.grads[name], b.grads[name], atol=1e-7, rtol=1e-4, err_msg=name)
