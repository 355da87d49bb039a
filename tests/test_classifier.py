"""SequenceClassifier (HF heads) against transformers' *ForSequenceClassification + torch.optim (CPU, fp32):
logits, one full training step, 5-step trajectories, every loss, save/load round trips, freezing."""
import json

import numpy as np
import pytest
from conftest import minilm_path

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
F = torch.nn.functional

from lyricnn.classifier import SequenceClassifier  # noqa: E402
from _clf_oracle import (assert_params_close, batch, hf_classifier, torch_adamw, torch_step,  # noqa: E402
                         twin)

LR, WD = 1e-3, 0.01


def _t(a):
    return None if a is None else torch.tensor(a)


@pytest.mark.parametrize("kind", ["distilbert", "bert"])
def test_hf_checkpoint_logits(kind, tmp_path):
    hf = hf_classifier(kind, num_labels=3)
    m = twin(hf, tmp_path)
    assert m.num_labels == 3 and m.problem_type == "single_label_classification"
    ids, mask, tt = batch(5, 13, lengths=[13, 9, 4, 13, 2], types=kind == "bert")
    with torch.no_grad():
        ref = hf(input_ids=_t(ids), attention_mask=_t(mask), token_type_ids=_t(tt)).logits.numpy()
    got = m(ids, mask, token_type_ids=tt).logits
    assert got.shape == (5, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=2e-6, rtol=1e-5)
    assert set(m.params) == {k for k, _ in hf.named_parameters()}


@pytest.mark.parametrize("kind", ["distilbert", "bert"])
def test_train_step_matches_torch(kind, tmp_path):
    """One full step (forward, CE, backward, clip_grad_norm_, AdamW with no-decay groups), then 4 more:
    the updated parameters match to ~1e-5 and the 5 losses match."""
    hf = hf_classifier(kind, num_labels=3, seed=1)
    m = twin(hf, tmp_path)
    hf.train()
    ids, mask, tt = batch(4, 11, seed=2, lengths=[11, 7, 11, 5], types=kind == "bert")
    labels = np.array([0, 2, 1, 2])
    m.configure_optimizer("adamw", lr=LR, weight_decay=WD, max_grad_norm=1.0)
    opt = torch_adamw(hf, LR, WD)

    def loss_fn():
        return hf(input_ids=_t(ids), attention_mask=_t(mask), token_type_ids=_t(tt), labels=_t(labels)).loss

    ref_loss, ref_norm = torch_step(hf, opt, loss_fn)
    loss = m.train_step(ids, mask, labels, token_type_ids=tt)
    assert m.step == 1
    assert abs(loss - ref_loss) < 1e-5 * max(1.0, abs(ref_loss))
    assert abs(m.last_grad_norm - ref_norm) < 1e-5 * ref_norm
    for name, p in hf.named_parameters():  # gradients after clipping
        np.testing.assert_allclose(m.grads[name], p.grad.numpy(), atol=1e-7, rtol=1e-4, err_msg=name)
    assert_params_close(m, hf, atol=1e-5)
    losses, ref = [loss], [ref_loss]
    for _ in range(4):
        ref.append(torch_step(hf, opt, loss_fn)[0])
        losses.append(m.train_step(ids, mask, labels, token_type_ids=tt))
    np.testing.assert_allclose(losses, ref, rtol=1e-5)
    assert losses[-1] < losses[0]
    assert_params_close(m, hf, atol=3e-5)


@pytest.mark.parametrize("case", ["class_weight", "bce", "bce_pos_weight", "bce_one_logit", "mse", "mse_multi",
                                  "adam_l2_noclip"])
def test_losses_and_optimizers_match_torch(case, tmp_path):
    kind = "bert" if case in ("bce_pos_weight", "mse") else "distilbert"
    K = {"bce_one_logit": 1, "mse": 1, "mse_multi": 2}.get(case, 3)
    pt = ("multi_label_classification" if case.startswith("bce") else
          "regression" if case.startswith("mse") else "single_label_classification")
    hf = hf_classifier(kind, num_labels=K, seed=3, problem_type=pt)
    m = twin(hf, tmp_path, num_labels=K, problem_type=pt)
    assert m.problem_type == pt
    hf.train()
    B = 6
    ids, mask, _ = batch(B, 9, seed=4, lengths=[9, 3, 6, 9, 8, 2])
    r = np.random.default_rng(5)
    kw, weight = {}, None
    if pt == "single_label_classification":
        labels = np.array([0, 1, 2, 2, 0, 2])
    elif pt == "multi_label_classification":
        labels = (r.random((B, K)) > 0.5).astype(np.float32)
    else:
        labels = r.standard_normal((B, K)).astype(np.float32)
    if case == "class_weight":
        weight = np.array([0.5, 2.0, 1.5], np.float32)
        kw = dict(class_weight=weight)
    if case == "bce_pos_weight":
        weight = np.array([3.0, 0.5, 1.0], np.float32)
        kw = dict(pos_weight=weight)
    adam = case == "adam_l2_noclip"
    max_norm = None if adam else 0.5
    m.configure_optimizer("adam" if adam else "adamw", lr=LR, weight_decay=WD, max_grad_norm=max_norm,
                          betas=(0.8, 0.99), eps=1e-7)
    opt = torch_adamw(hf, LR, WD, betas=(0.8, 0.99), eps=1e-7, adam=adam)

    def loss_fn():
        logits = hf(input_ids=_t(ids), attention_mask=_t(mask)).logits
        y = torch.tensor(labels)
        if pt == "single_label_classification":
            return F.cross_entropy(logits, y, weight=_t(weight))
        if pt == "multi_label_classification":
            return F.binary_cross_entropy_with_logits(logits, y, pos_weight=_t(weight))
        return F.mse_loss(logits, y)

    lab = labels[:, 0] if K == 1 and case == "mse" else labels  # (B,) accepted when num_labels == 1
    losses, ref = [], []
    for _ in range(3):
        ref.append(torch_step(hf, opt, loss_fn, max_norm=max_norm)[0])
        losses.append(m.train_step(ids, mask, lab, **kw))
    np.testing.assert_allclose(losses, ref, rtol=2e-5)
    assert_params_close(m, hf, atol=2e-5)


@pytest.mark.parametrize("kind", ["distilbert", "bert"])
def test_save_pretrained_loads_in_transformers(kind, tmp_path):
    m = SequenceClassifier.from_config(dict(model_type=kind, **(
        dict(vocab_size=97, dim=32, n_layers=2, n_heads=4, hidden_dim=48, max_position_embeddings=40)
        if kind == "distilbert" else
        dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             max_position_embeddings=40, type_vocab_size=2))), num_labels=4, seed=7)
    ids, mask, _ = batch(3, 10, seed=8, lengths=[10, 6, 3])
    m.configure_optimizer(lr=1e-3)
    m.train_step(ids, mask, np.array([0, 3, 1]))  # not the init any more
    m.id2label = {0: "drake", 1: "adele", 2: "eminem", 3: "taylor"}
    m.save_pretrained(tmp_path / "out")
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["architectures"] == [{"distilbert": "DistilBertForSequenceClassification",
                                     "bert": "BertForSequenceClassification"}[kind]]
    assert cfg["problem_type"] == "single_label_classification" and cfg["id2label"]["2"] == "eminem"
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "out", attn_implementation="eager")
    hf.eval()
    assert hf.config.num_labels == 4
    with torch.no_grad():
        ref = hf(input_ids=_t(ids), attention_mask=_t(mask)).logits.numpy()
    np.testing.assert_allclose(m(ids, mask).logits, ref, atol=2e-6, rtol=1e-5)
    # and back: lyricnn reads its own directory (num_labels from the checkpoint)
    m2 = SequenceClassifier.from_pretrained(tmp_path / "out")
    assert m2.num_labels == 4 and m2.id2label[3] == "taylor"
    np.testing.assert_array_equal(m2(ids, mask).logits, m(ids, mask).logits)


def test_freeze_encoder_trains_only_the_head(tmp_path):
    hf = hf_classifier("distilbert", num_labels=3, seed=9)
    m = twin(hf, tmp_path, freeze_encoder=True)
    assert m.freeze_encoder
    head = [n for n in m.params if not n.startswith("distilbert.")]
    assert sorted(head) == ["classifier.bias", "classifier.weight", "pre_classifier.bias", "pre_classifier.weight"]
    enc0 = {n: p.copy() for n, p in m.params.items() if n.startswith("distilbert.")}
    m.configure_optimizer(lr=LR, weight_decay=WD)
    st = m.optimizer_state()
    assert st["m"].size == st["v"].size == sum(m.params[n].size for n in head)
    for p in hf.distilbert.parameters():
        p.requires_grad_(False)
    hf.train()
    opt = torch_adamw(hf, LR, WD)
    ids, mask, _ = batch(4, 8, seed=10, lengths=[8, 5, 8, 2])
    labels = np.array([2, 0, 1, 1])

    def loss_fn():
        return hf(input_ids=_t(ids), attention_mask=_t(mask), labels=_t(labels)).loss

    for _ in range(3):
        ref = torch_step(hf, opt, loss_fn)[0]
        loss = m.train_step(ids, mask, labels)
        assert abs(loss - ref) < 1e-5
    for n, p in enc0.items():
        np.testing.assert_array_equal(m.params[n], p, err_msg=n)
        assert not m.grads[n].any(), n  # no gradient work for frozen tensors
    assert_params_close(m, hf, atol=1e-5)


def test_dropout_is_seeded_and_resume_is_bit_identical():
    cfg = dict(model_type="distilbert", vocab_size=97, dim=32, n_layers=2, n_heads=4, hidden_dim=48,
               max_position_embeddings=40, dropout=0.1, attention_dropout=0.1, seq_classif_dropout=0.3)
    ids, mask, _ = batch(4, 9, seed=11, lengths=[9, 4, 7, 9])
    labels = np.array([1, 0, 1, 1])

    def run(seed, n, model=None):
        m = model or SequenceClassifier.from_config(cfg, num_labels=2, seed=seed)
        if model is None:
            m.configure_optimizer(lr=1e-3, weight_decay=0.01)
        return m, [m.train_step(ids, mask, labels) for _ in range(n)]

    a, la = run(0, 4)
    b, lb = run(0, 4)
    assert la == lb
    c, lc = run(1, 4)
    assert lc != la
    # eval mode is deterministic and dropout-free: two calls agree
    np.testing.assert_array_equal(a(ids, mask).logits, a(ids, mask).logits)
    # stop after 2 steps, save weights + optimizer state, resume in a new model
    d, _ = run(0, 2)
    sd, osd = d.state_dict(), d.optimizer_state()
    e = SequenceClassifier.from_config(cfg, num_labels=2, seed=0)
    e.load_state_dict(sd)
    e.load_optimizer_state(osd)
    assert e.step == 2
    _, le = run(0, 2, model=e)
    assert le == la[2:]
    for n in a.params:
        np.testing.assert_array_equal(e.params[n], a.params[n], err_msg=n)


def test_finetuned_checkpoint_with_other_num_labels_is_an_error(tmp_path):
    import lyricnn
    hf = hf_classifier("distilbert", num_labels=3)
    d = tmp_path / "ft"
    hf.save_pretrained(d)
    with pytest.raises(lyricnn.CheckpointError, match="num_labels=5 disagrees.*3 rows"):
        SequenceClassifier.from_pretrained(d, num_labels=5)
    # a base encoder checkpoint: any num_labels, new seeded head
    hf.distilbert.save_pretrained(tmp_path / "base")
    m = SequenceClassifier.from_pretrained(tmp_path / "base", num_labels=5, seed=3)
    m2 = SequenceClassifier.from_pretrained(tmp_path / "base", num_labels=5, seed=3)
    assert m.num_labels == 5
    np.testing.assert_array_equal(m.params["classifier.weight"], m2.params["classifier.weight"])
    assert m.params["classifier.weight"].std() > 0.01


def test_real_minilm_as_bert_classifier():
    """The real pretrained all-MiniLM-L6-v2 as a BertForSequenceClassification base: same logits as
    transformers once the (new) classifier weights agree."""
    path = minilm_path()
    m = SequenceClassifier.from_pretrained(path, num_labels=3, seed=0)
    hf = transformers.BertForSequenceClassification.from_pretrained(path, num_labels=3, attn_implementation="eager")
    hf.eval()
    with torch.no_grad():
        hf.classifier.weight.copy_(torch.tensor(m.params["classifier.weight"]))
        hf.classifier.bias.copy_(torch.tensor(m.params["classifier.bias"]))
    from lyricnn import Tokenizer
    tok = Tokenizer.from_pretrained(path)
    enc = tok(["I wrote a song about the rain", "Baby, baby, baby, oh", "We will, we will rock you"],
              padding=True, return_tensors="np")
    ids, mask = np.asarray(enc["input_ids"]), np.asarray(enc["attention_mask"])
    with torch.no_grad():
        ref = hf(input_ids=_t(ids.astype(np.int64)), attention_mask=_t(mask.astype(np.int64))).logits.numpy()
    np.testing.assert_allclose(m(ids, mask).logits, ref, atol=1e-5, rtol=1e-4)


def test_train_steps_bit_identical_on_any_thread_count(tmp_path):
    # every sum in a step is split by the shapes alone, never by the thread count (GEMMs: a grid of tiles
    # of C that depends on the GEMM's shape, each tile one single-threaded library call over the full K),
    # so 1, 2 and 3 threads give the same bits with oneDNN and with OpenBLAS, whose kernels round a
    # tile's edges differently from its interior; the model is large enough that its GEMMs are tiled
    import lyricnn
    torch.manual_seed(0)
    cfg = transformers.DistilBertConfig(vocab_size=200, dim=128, n_layers=2, n_heads=4, hidden_dim=512,
                                        max_position_embeddings=128, num_labels=3)
    transformers.DistilBertForSequenceClassification(cfg).save_pretrained(tmp_path)
    r = np.random.default_rng(0)
    ids = r.integers(5, 200, (8, 96)).astype(np.int32)
    mask = (np.arange(96)[None] < r.integers(5, 97, 8)[:, None]).astype(np.int32)
    y = r.integers(0, 3, 8)
    n0, runs = lyricnn.get_num_threads(), []
    try:
        for nt in (1, 2, 3):
            lyricnn.set_num_threads(nt)
            m = SequenceClassifier.from_pretrained(tmp_path, num_labels=3, seed=0,
                                                   head=dict(pooling="mean", hidden=[256]))
            m.configure_optimizer("adamw", lr=1e-3)
            losses = [m.train_step(ids, mask, y) for _ in range(3)]
            runs.append((losses, {k: v.copy() for k, v in m.params.items()}))
    finally:
        lyricnn.set_num_threads(n0)
    for other in runs[1:]:
        assert runs[0][0] == other[0]
        for k, v in runs[0][1].items():
            np.testing.assert_array_equal(v, other[1][k], err_msg=k)