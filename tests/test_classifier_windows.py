"""Songs as windows (long_text="windows"): SequenceClassifier against a torch reference that applies
transformers to each window, pools the head's input vector across each song's windows (mean, max,
softmax over a linear scorer), then runs the same head once per song. Logits, loss, every gradient and
3 AdamW steps with clipping; DistilBERT and BERT (tiny, and the real MiniLM with BertTokenizerFast's
overflowing windows); songs of one window and of many in one batch; save/load; bad input."""
import json

import numpy as np
import pytest
from conftest import minilm_path

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
nn = torch.nn
F = torch.nn.functional

from lyricnn.classifier import SequenceClassifier  # noqa: E402
from _clf_oracle import (TINY_BERT, TINY_DISTIL, assert_params_close, hf_classifier, noisy, torch_adamw,  # noqa: E402
                         torch_step)

POOLINGS = ("mean", "max", "attention")


def window_batch(n_windows, T=12, vocab=97, seed=0, types=False):
    """Windows of songs packed as rows: windows_of from the per-song window counts (sorted), the last window
    of each song shorter (right padding), the others full, as a tokenizer's overflowing windows are."""
    rng = np.random.default_rng(seed)
    win = np.repeat(np.arange(len(n_windows)), n_windows).astype(np.int64)
    B = len(win)
    ids = rng.integers(3, vocab, size=(B, T)).astype(np.int64)
    ids[:, 0] = 1
    mask = np.ones((B, T), np.int64)
    last = np.r_[win[1:] != win[:-1], True]
    for b in np.flatnonzero(last):
        n = int(rng.integers(3, T + 1))
        ids[b, n - 1] = 2
        ids[b, n:] = 0
        mask[b, n:] = 0
    tt = rng.integers(0, 2, size=(B, T)).astype(np.int64) if types else None
    return ids, mask, tt, win


def pool_windows(v, win, how, scorer=None):
    """(songs, C) from (windows, C): the reference pooling, in torch."""
    out = []
    w = torch.as_tensor(win)
    for s in range(int(w.max()) + 1):
        rows = v[w == s]
        if how == "mean":
            out.append(rows.mean(0))
        elif how == "max":
            out.append(rows.max(0).values)
        else:
            a = torch.softmax(scorer(rows).squeeze(-1), 0)
            out.append((a[:, None] * rows).sum(0))
    return torch.stack(out)


def hf_windows_logits(hf, kind, ids, mask, tt, win, how):
    """The HF head on the pooled vector: DistilBERT's CLS -> pooled -> pre_classifier, ReLU, dropout,
    classifier; BERT's pooler output -> pooled -> dropout, classifier."""
    t = lambda a: None if a is None else torch.as_tensor(a)  # noqa: E731
    if kind == "distilbert":
        h = hf.distilbert(input_ids=t(ids), attention_mask=t(mask)).last_hidden_state[:, 0]
        x = pool_windows(h, win, how, getattr(hf, "window_scorer", None))
        return hf.classifier(hf.dropout(F.relu(hf.pre_classifier(x))))
    h = hf.bert(input_ids=t(ids), attention_mask=t(mask), token_type_ids=t(tt)).pooler_output
    x = pool_windows(h, win, how, getattr(hf, "window_scorer", None))
    return hf.classifier(hf.dropout(x))


def with_scorer(model, how, C, seed):
    if how == "attention":  # named as lyricnn's window_scorer.weight, saved with the model
        torch.manual_seed(seed + 7)
        model.window_scorer = nn.Linear(C, 1, bias=False)
        with torch.no_grad():
            model.window_scorer.weight.mul_(8.0)  # scores that differ, so the softmax is not flat
    return model


def _check_steps(m, ref, params, loss_fn, step_fn, steps=3, atol_p=3e-5, eps=1e-8):
    """steps AdamW steps with clipping in both: losses and the pre-clip norm each step, every gradient
    after the first, the parameters after the last."""
    opt = torch_adamw(ref, 1e-3, 0.01, eps=eps)
    m.configure_optimizer("adamw", lr=1e-3, weight_decay=0.01, max_grad_norm=0.5, eps=eps)
    for step in range(steps):
        want, want_norm = torch_step(ref, opt, loss_fn, max_norm=0.5)
        got = step_fn()
        assert abs(got - want) < 1e-5 * max(1.0, abs(want)), (step, got, want)
        assert abs(m.last_grad_norm - want_norm) < 1e-5 * want_norm
        if step == 0:
            scale = max(float(p.grad.abs().max()) for p in params)
            for k, p in ref.named_parameters():
                np.testing.assert_allclose(m.grads[k], p.grad.numpy(), atol=1e-6 * scale, rtol=1e-4, err_msg=k)
    assert_params_close(m, ref, atol=atol_p)


@pytest.mark.parametrize("how", POOLINGS)
@pytest.mark.parametrize("kind", ["distilbert", "bert"])
def test_windows_match_torch(kind, how, tmp_path):
    """Songs of 1, 4, 1, 2 and 3 windows in one batch: eval logits, then 3 AdamW steps with clipping
    (loss, norm, every gradient, the parameters), and eval logits again."""
    hf = with_scorer(hf_classifier(kind, num_labels=3, seed=2), how, 32, 2)
    hf.save_pretrained(tmp_path / "hf")
    m = SequenceClassifier.from_pretrained(tmp_path / "hf", long_text="windows", window_pooling=how)
    assert m.long_text == "windows" and m.window_pooling == how
    assert ("window_scorer.weight" in m.params) == (how == "attention")
    assert set(m.params) == {k for k, _ in hf.named_parameters()}
    ids, mask, tt, win = window_batch([1, 4, 1, 2, 3], seed=3, types=kind == "bert")
    labels = np.array([0, 2, 1, 2, 0])
    hf.eval()
    with torch.no_grad():
        want = hf_windows_logits(hf, kind, ids, mask, tt, win, how).numpy()
    got = m(ids, mask, token_type_ids=tt, windows_of=win).logits
    assert got.shape == (5, 3)
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)
    hf.train()

    def loss_fn():
        return F.cross_entropy(hf_windows_logits(hf, kind, ids, mask, tt, win, how), torch.as_tensor(labels))

    _check_steps(m, hf, list(hf.parameters()), loss_fn,
                 lambda: m.train_step(ids, mask, labels, token_type_ids=tt, windows_of=win))
    hf.eval()
    with torch.no_grad():
        want = hf_windows_logits(hf, kind, ids, mask, tt, win, how).numpy()
    np.testing.assert_allclose(m(ids, mask, token_type_ids=tt, windows_of=win).logits, want, atol=2e-5, rtol=1e-4)


class HeadOnWindows(nn.Module):
    """encoder -> masked mean of the tokens per window -> pooled per song -> Linear -> BatchNorm1d -> ReLU
    -> [features] -> Linear: the configurable head per song, names as lyricnn's."""

    def __init__(self, encoder, C, K, Fn, how):
        super().__init__()
        self.distilbert = encoder
        self.head = nn.ModuleList([nn.Module()])
        self.head[0].dense = nn.Linear(C, 12)
        self.head[0].norm = nn.BatchNorm1d(12)
        self.classifier = nn.Linear(12 + Fn, K)
        self.how = how
        if how == "attention":
            self.window_scorer = nn.Linear(C, 1, bias=False)

    def forward(self, ids, mask, win, feats):
        h = self.distilbert(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        x = pool_windows(v, win, self.how, getattr(self, "window_scorer", None))
        x = F.relu(self.head[0].norm(self.head[0].dense(x)))
        return self.classifier(torch.cat([x, feats], 1))


@pytest.mark.parametrize("how", POOLINGS)
def test_configurable_head_per_song_matches_torch(how, tmp_path):
    """Mean-pooled tokens, BatchNorm over the songs of the batch, numeric features per song, class weights:
    the head runs once per song."""
    torch.manual_seed(0)
    enc = transformers.DistilBertModel(transformers.DistilBertConfig(**TINY_DISTIL))
    enc.config._attn_implementation = "eager"
    noisy(enc, 0)
    enc.save_pretrained(tmp_path / "base")
    head = dict(pooling="mean", hidden=[12], batchnorm=True, features_at=1)
    m = SequenceClassifier.from_pretrained(tmp_path / "base", num_labels=3, head=head, num_features=4, seed=5,
                                           long_text="windows", window_pooling=how)
    ref = HeadOnWindows(enc, 32, 3, 4, how)
    missing, unexpected = ref.load_state_dict({k: torch.tensor(v) for k, v in m.state_dict().items()}, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    ids, mask, _, win = window_batch([3, 1, 2, 1, 1, 4], seed=4)
    ids[:, 0] = np.arange(len(ids)) * 7 % 90 + 3  # different first tokens: pooled rows that differ (BatchNorm)
    feats = np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32)
    labels = np.array([0, 1, 2, 2, 1, 0])
    cw = np.array([1.0, 2.0, 0.5], np.float32)
    args = (torch.as_tensor(ids), torch.as_tensor(mask), win, torch.as_tensor(feats))

    def loss_fn():
        return F.cross_entropy(ref(*args), torch.as_tensor(labels), weight=torch.as_tensor(cw))

    ref.train()
    # eps=1e-4: under mean pooling + BatchNorm the last LayerNorm bias and the Linear bias before BatchNorm have
    # a true gradient of 0, and their rounding-noise gradients would become steps of +-lr (test_classifier_head)
    _check_steps(m, ref, list(ref.parameters()), loss_fn,
                 lambda: m.train_step(ids, mask, labels, features=feats, class_weight=cw, windows_of=win), eps=1e-4)
    for k, v in m.buffers.items():  # the running stats over songs, not windows
        np.testing.assert_allclose(v, ref.state_dict()[k].numpy(), atol=2e-5, rtol=1e-4, err_msg=k)
    ref.eval()
    with torch.no_grad():
        want = ref(*args).numpy()
    np.testing.assert_allclose(m(ids, mask, features=feats, windows_of=win).logits, want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("how", POOLINGS)
def test_minilm_with_hf_overflowing_windows(how, tmp_path):
    """The real MiniLM (a BERT) and BertTokenizerFast's overflowing windows (stride, overflow_to_sample_mapping):
    a short song of one window and long ones of several, logits and one step's loss and gradients."""
    d = minilm_path()
    tok = transformers.BertTokenizerFast.from_pretrained(d)
    words = "the night we danced under city lights and you said forever was a word for fools".split()
    rng = np.random.default_rng(7)
    texts = [" ".join(rng.choice(words, n)) for n in (9, 150, 70)]
    enc = tok(texts, truncation=True, max_length=48, stride=12, return_overflowing_tokens=True, padding=True,
              return_tensors="np")
    win = enc["overflow_to_sample_mapping"]
    assert np.bincount(win).tolist()[0] == 1 and np.bincount(win).max() > 3
    hf = transformers.BertForSequenceClassification.from_pretrained(d, num_labels=3, attn_implementation="eager")
    hf = with_scorer(hf, how, hf.config.hidden_size, 0)
    torch.manual_seed(0)
    with torch.no_grad():
        hf.classifier.weight.normal_(0, 0.2)
    hf.save_pretrained(tmp_path / "m")
    m = SequenceClassifier.from_pretrained(tmp_path / "m", long_text="windows", window_pooling=how)
    ids, mask, tt = enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]
    hf.eval()
    with torch.no_grad():
        want = hf_windows_logits(hf, "bert", ids, mask, tt, win, how).numpy()
    np.testing.assert_allclose(m(ids, mask, token_type_ids=tt, windows_of=win).logits, want, atol=2e-5, rtol=1e-4)
    labels = np.array([2, 0, 1])
    hf.train()
    for mod in hf.modules():  # dropout off in both (the C engine's masks are its own Philox draws)
        if isinstance(mod, nn.Dropout):
            mod.p = 0.0
    m2 = SequenceClassifier.from_pretrained(tmp_path / "m", long_text="windows", window_pooling=how, dropout=0.0)
    m2.configure_optimizer("adamw", lr=1e-4, weight_decay=0.01, max_grad_norm=1.0)
    opt = torch_adamw(hf, 1e-4, 0.01)
    want, _ = torch_step(hf, opt, lambda: F.cross_entropy(hf_windows_logits(hf, "bert", ids, mask, tt, win, how),
                                                          torch.as_tensor(labels)))
    got = m2.train_step(ids, mask, labels, token_type_ids=tt, windows_of=win)
    assert abs(got - want) < 2e-5 * max(1.0, abs(want))
    scale = max(float(p.grad.abs().max()) for p in hf.parameters())
    for k, p in hf.named_parameters():
        np.testing.assert_allclose(m2.grads[k], p.grad.numpy(), atol=2e-5 * scale, rtol=2e-3, err_msg=k)


@pytest.mark.parametrize("how", POOLINGS)
def test_one_window_per_song_is_the_plain_model(how, tmp_path):
    """Songs of one window each pool to their own vector: the windows model's logits and first step are the
    plain model's (attention: a softmax over one window is 1); windows_of=None means one window per song."""
    hf = hf_classifier("distilbert", num_labels=2, seed=4)
    hf.save_pretrained(tmp_path / "hf")
    plain = SequenceClassifier.from_pretrained(tmp_path / "hf")
    m = SequenceClassifier.from_pretrained(tmp_path / "hf", long_text="windows", window_pooling=how)
    ids, mask, _, win = window_batch([1, 1, 1, 1], seed=6)
    want = plain(ids, mask).logits
    np.testing.assert_allclose(m(ids, mask, windows_of=win).logits, want, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(m(ids, mask).logits, want, atol=1e-6, rtol=1e-6)
    y = np.array([0, 1, 1, 0])
    for x in (plain, m):
        x.configure_optimizer(lr=1e-3)
    assert abs(plain.train_step(ids, mask, y) - m.train_step(ids, mask, y, windows_of=win)) < 1e-6
    for k in plain.params:
        np.testing.assert_allclose(m.params[k], plain.params[k], atol=1e-6, err_msg=k)


def test_frozen_encoder_trains_the_scorer_only(tmp_path):
    hf = hf_classifier("bert", num_labels=2, seed=5)
    hf.save_pretrained(tmp_path / "hf")
    m = SequenceClassifier.from_pretrained(tmp_path / "hf", long_text="windows", window_pooling="attention",
                                           freeze_encoder=True)
    before = {k: v.copy() for k, v in m.params.items()}
    ids, mask, _, win = window_batch([2, 3], seed=1)
    m.configure_optimizer(lr=1e-2)
    m.train_step(ids, mask, np.array([0, 1]), windows_of=win)
    changed = {k for k in before if not np.array_equal(before[k], m.params[k])}
    assert changed == {"window_scorer.weight", "classifier.weight", "classifier.bias"}


@pytest.mark.parametrize("how", POOLINGS)
def test_save_and_load_keep_the_long_text_settings(how, tmp_path):
    cfg = dict(model_type="bert", **TINY_BERT)
    m = SequenceClassifier.from_config(cfg, num_labels=3, long_text="windows", window_pooling=how, seed=2)
    m.long_text_settings = dict(max_length=12, window_stride=4, max_windows=None)
    ids, mask, _, win = window_batch([2, 1, 3], seed=2)
    m.configure_optimizer(lr=1e-3)
    m.train_step(ids, mask, np.array([0, 2, 1]), windows_of=win)
    m.save_pretrained(tmp_path / "w")
    conf = json.loads((tmp_path / "w" / "config.json").read_text())
    assert conf["lyricnn_long_text"] == dict(long_text="windows", window_pooling=how, max_length=12, window_stride=4,
                                             max_windows=None)
    m2 = SequenceClassifier.from_pretrained(tmp_path / "w")
    assert (m2.long_text, m2.window_pooling, m2.long_text_settings) == ("windows", how, m.long_text_settings)
    np.testing.assert_array_equal(m2(ids, mask, windows_of=win).logits, m(ids, mask, windows_of=win).logits)
    assert "windows" in repr(m2) and how in repr(m2)
    # transformers reads the directory (per-window logits: the pooling is lyricnn's)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "w", attn_implementation="eager")
    assert hf.config.num_labels == 3
    # another pooling on the same weights: a new scorer where attention needs one
    m3 = SequenceClassifier.from_pretrained(tmp_path / "w", window_pooling="max" if how == "attention" else "attention")
    assert m3.long_text == "windows"
    np.testing.assert_array_equal(m3.params["classifier.weight"], m.params["classifier.weight"])
    m4 = SequenceClassifier.from_pretrained(tmp_path / "w", long_text="truncate")
    assert m4.window_pooling is None and "window_scorer.weight" not in m4.params


def test_lora_merge_keeps_the_windows(tmp_path):
    cfg = dict(model_type="distilbert", **TINY_DISTIL)
    m = SequenceClassifier.from_config(cfg, num_labels=2, long_text="windows", window_pooling="attention", seed=1,
                                       lora=dict(r=4, alpha=8, target_modules=["q_lin", "v_lin"]))
    ids, mask, _, win = window_batch([3, 1], seed=3)
    m.configure_optimizer(lr=1e-2)
    before = m.params["window_scorer.weight"].copy()
    m.train_step(ids, mask, np.array([1, 0]), windows_of=win)
    assert not np.array_equal(before, m.params["window_scorer.weight"])  # the scorer trains with the head
    merged = m.merge_and_unload()
    assert merged.window_pooling == "attention"
    np.testing.assert_allclose(merged(ids, mask, windows_of=win).logits, m(ids, mask, windows_of=win).logits,
                               atol=1e-5)


# ------------------------------------------------------------------ bad input

def _m(**kw):
    return SequenceClassifier.from_config(dict(model_type="distilbert", **TINY_DISTIL), num_labels=2, **kw)


@pytest.mark.parametrize("case,exc,match,fn", [
    ("unknown long_text", ValueError, "long_text must be one of", lambda: _m(long_text="sliding")),
    ("unknown window_pooling", ValueError, "window_pooling must be one of",
     lambda: _m(long_text="windows", window_pooling="sum")),
    ("window_pooling without windows", ValueError, "needs long_text='windows'", lambda: _m(window_pooling="max")),
    ("flatten", ValueError, "flatten", lambda: _m(long_text="windows", head=dict(pooling="flatten", max_length=12))),
])
def test_bad_settings(case, exc, match, fn):
    with pytest.raises(exc, match=match):
        fn()


def test_bad_windows_of_and_labels():
    m = _m(long_text="windows", window_pooling="max")
    plain = _m()
    ids, mask, _, win = window_batch([2, 1, 3], seed=0)
    y = np.array([0, 1, 1])
    m.configure_optimizer(lr=1e-3)
    cases = [
        (ValueError, "not sorted", np.array([0, 0, 2, 1, 2, 2])),
        (IndexError, "song 1 has no window", np.array([0, 0, 2, 2, 2, 2])),
        (IndexError, r"windows_of\[0\] = 1", win + 1),
        (IndexError, r"windows_of\[0\] = -1", win - 1),
        (ValueError, "input_ids has 6 rows", win[:-1]),
        (TypeError, "integer song numbers", win.astype(np.float64)),
    ]
    for exc, match, w in cases:
        with pytest.raises(exc, match=match):
            m(ids, mask, windows_of=w)
        with pytest.raises(exc, match=match):
            m.train_step(ids, mask, y, windows_of=w)
    with pytest.raises(ValueError, match="labels has 6 rows, one per window; give one label per song"):
        m.train_step(ids, mask, np.zeros(6, np.int64), windows_of=win)
    with pytest.raises(ValueError, match="does not pool windows"):
        plain(ids, mask, windows_of=win)
    # the engine checks them too (direct _C users)
    c = m._clf
    i32 = lambda a: np.ascontiguousarray(a, np.int32)  # noqa: E731
    with pytest.raises(ValueError, match="not sorted"):
        c.forward(i32(ids), i32(mask), None, None, False, 0, 0, i32([0, 0, 2, 1, 2, 2]))
    with pytest.raises(IndexError, match="song 1 has no window"):
        c.forward(i32(ids), i32(mask), None, None, False, 0, 0, i32([0, 0, 2, 2, 2, 2]))
    with pytest.raises(ValueError, match="windows_of"):
        c.forward(i32(ids), i32(mask), None, None, False, 0, 0, i32([0, 0, 1]))
    with pytest.raises(ValueError, match="one per window"):
        c.train_step(i32(ids), i32(mask), None, None, np.zeros(6, np.int64), None, None, 0, 0, i32(win))
    with pytest.raises(ValueError, match="does not pool windows"):
        plain._clf.forward(i32(ids), i32(mask), None, None, False, 0, 0, i32(win))
    # the model is still usable
    assert m(ids, mask, windows_of=win).logits.shape == (3, 2)
