"""The LSTM baseline (csrc/models/lstm.c, lyricnn/lstm.py) against torch: nn.Embedding(padding_idx=0) + nn.LSTM
on pack_padded_sequence + nn.Linear with the same weights (float64 in torch, the oracle; float32 in lyricnn).

- logits, loss and every gradient for 1 and 2 layers, one and two directions, ragged lengths with length 1,
  batch sizes 1 and 64; three Adam steps with gradient clipping; the weights exchanged both ways;
- a length-0 sequence (torch refuses it): the zero state, so fc's bias; the gradient with dropout on against
  finite differences of the engine's own training forward (torch's masks differ);
- the word vocabulary, the estimators (fit/predict/score/evaluate, history, class weights, bce, early stopping,
  resume, save/load, get_params/clone), the CLI, thread counts and the cpu-copy device path;
- bad input: empty texts, an empty vocabulary, hidden_size <= 0, non-string texts, ids outside the vocabulary,
  bad lengths.
"""
import json
import os

import numpy as np
import pytest

import lyricnn
from lyricnn import LSTMClassifier, LSTMNet, LSTMRegressor, WordVocab, datasets
from lyricnn.lstm import WORD_PATTERN

torch = pytest.importorskip("torch")

V, E, H, K = 40, 7, 6, 3


def make_net(num_layers=2, bidirectional=False, num_labels=K, seed=0, **kw):
    return LSTMNet(V, embedding_dim=E, hidden_size=H, num_layers=num_layers, num_labels=num_labels,
                   bidirectional=bidirectional, seed=seed, **kw)


class TorchNet(torch.nn.Module):
    """The torch model the LSTMNet is: its state_dict has the same names."""

    def __init__(self, num_layers, bidirectional, num_labels=K, vocab=V, emb=E, hid=H):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, emb, padding_idx=0)
        self.lstm = torch.nn.LSTM(emb, hid, num_layers=num_layers, bidirectional=bidirectional, batch_first=True)
        self.fc = torch.nn.Linear((2 if bidirectional else 1) * hid, num_labels)

    def forward(self, ids, lengths):
        packed = torch.nn.utils.rnn.pack_padded_sequence(self.embedding(ids), lengths, batch_first=True,
                                                         enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        last = torch.cat([h[-2], h[-1]], 1) if self.lstm.bidirectional else h[-1]
        return self.fc(last)


def torch_twin(net, dtype=torch.float64):
    c = net.config
    t = TorchNet(c["num_layers"], c["bidirectional"], net.num_labels, c["vocab_size"], c["embedding_dim"],
                 c["hidden_size"]).to(dtype)
    t.load_state_dict({k: torch.from_numpy(np.array(v, np.float64)) for k, v in net.state_dict().items()})
    return t


def batch(B, T, rng, min_len=1):
    lengths = rng.integers(min_len, T + 1, B)
    lengths[0] = T
    if B > 2:
        lengths[1] = 1  # a one-token sequence
    ids = rng.integers(1, V, (B, T))
    ids[np.arange(T)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


def close(got, ref, rtol, what):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    scale = max(float(np.abs(ref).max()), 1e-30)
    err = float(np.abs(got - ref).max())
    assert err <= rtol * scale, "%s: max |err| %.3g at scale %.3g (limit %.3g)" % (what, err, scale, rtol * scale)


# ---------------------------------------------------------------- parity with torch

CONFIGS = [(1, False), (2, False), (1, True), (2, True)]


@pytest.mark.parametrize("B", [1, 64])
@pytest.mark.parametrize("num_layers,bidirectional", CONFIGS)
def test_logits_loss_and_every_gradient_match_torch(num_layers, bidirectional, B):
    rng = np.random.default_rng([num_layers, bidirectional, B])
    net = make_net(num_layers, bidirectional, seed=B)
    ref = torch_twin(net)
    ids, lengths = batch(B, 11, rng)
    labels = rng.integers(0, K, B)
    logits = net(ids, lengths).logits
    ref_logits = ref(torch.from_numpy(ids), torch.from_numpy(lengths))
    close(logits, ref_logits.detach().numpy(), 1e-5, "logits")
    net.configure_optimizer("adam", lr=0.0)  # lr 0: the step leaves the weights as they are
    loss = net.train_step(ids, lengths, labels)
    ref_loss = torch.nn.functional.cross_entropy(ref_logits, torch.from_numpy(labels))
    ref_loss.backward()
    assert abs(loss - ref_loss.item()) <= 1e-6 * max(1.0, abs(ref_loss.item()))
    grads = dict(ref.named_parameters())
    assert set(net.grads) == set(grads)
    for name, p in grads.items():
        close(net.grads[name], p.grad.numpy(), 2e-5, "gradient of " + name)
    assert not net.grads["embedding.weight"][0].any()  # the padding row gets none


@pytest.mark.parametrize("num_layers,bidirectional", [(2, False), (2, True)])
def test_three_adam_steps_with_clipping_match_torch(num_layers, bidirectional):
    rng = np.random.default_rng(3)
    net = make_net(num_layers, bidirectional, seed=4)
    ref = torch_twin(net)
    lr, clip = 0.05, 0.02
    net.configure_optimizer("adam", lr=lr, max_grad_norm=clip)
    opt = torch.optim.Adam(ref.parameters(), lr=lr)
    for step in range(3):
        ids, lengths = batch(16, 9 + step, rng)
        labels = rng.integers(0, K, 16)
        loss = net.train_step(ids, lengths, labels)
        opt.zero_grad()
        ref_loss = torch.nn.functional.cross_entropy(ref(torch.from_numpy(ids), torch.from_numpy(lengths)),
                                                     torch.from_numpy(labels))
        ref_loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
        opt.step()
        assert abs(loss - ref_loss.item()) <= 1e-5 * abs(ref_loss.item()), step
        assert abs(net.last_grad_norm - norm.item()) <= 1e-5 * norm.item(), step
        assert norm.item() > clip  # the clipping is exercised
    for name, p in ref.named_parameters():
        close(net.params[name], p.detach().numpy(), 1e-4, "weights after 3 steps: " + name)


def test_weights_exchange_with_torch_both_ways(tmp_path):
    rng = np.random.default_rng(5)
    ids, lengths = batch(6, 8, rng)
    ref = TorchNet(2, True).float()
    net = make_net(2, True)
    net.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    expect = ref(torch.from_numpy(ids), torch.from_numpy(lengths)).detach().numpy()
    close(net(ids, lengths).logits, expect, 1e-5, "logits with torch's weights")
    back = TorchNet(2, True).float()
    back.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in net.state_dict().items()})  # strict
    close(back(torch.from_numpy(ids), torch.from_numpy(lengths)).detach().numpy(), expect, 1e-6, "torch again")
    net.save_pretrained(tmp_path)
    again = LSTMNet.from_pretrained(tmp_path)
    assert np.array_equal(again(ids, lengths).logits, net(ids, lengths).logits)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "lyricnn-lstm"


def test_torch_init_scheme():
    net = LSTMNet(5000, embedding_dim=64, hidden_size=50, num_layers=2, num_labels=4, seed=1)
    p = net.params
    assert not p["embedding.weight"][0].any()
    assert abs(p["embedding.weight"][1:].std() - 1.0) < 0.02
    bound = 1 / np.sqrt(50)
    for name in ("lstm.weight_ih_l0", "lstm.weight_hh_l1", "lstm.bias_ih_l1"):
        assert np.abs(p[name]).max() <= bound and np.abs(p[name]).max() > 0.9 * bound, name
    assert np.abs(p["fc.weight"]).max() <= bound
    same = LSTMNet(5000, embedding_dim=64, hidden_size=50, num_layers=2, num_labels=4, seed=1)
    assert all(np.array_equal(p[k], same.params[k]) for k in p)


# ---------------------------------------------------------------- lengths, masks, empty sequences

def test_lengths_or_a_mask_and_padding_never_enters():
    rng = np.random.default_rng(6)
    net = make_net(2, True)
    ids, lengths = batch(5, 7, rng)
    mask = (np.arange(7)[None, :] < lengths[:, None]).astype(np.int64)
    a = net(ids, lengths).logits
    assert np.array_equal(a, net(ids, mask).logits)
    junk = ids.copy()
    junk[mask == 0] = rng.integers(1, V, int((mask == 0).sum()))  # other ids in the padding: same logits
    assert np.array_equal(a, net(junk, lengths).logits)
    wider = np.zeros((5, 12), np.int64)
    wider[:, :7] = ids
    assert np.allclose(a, net(wider, lengths).logits, rtol=0, atol=1e-6)  # more padding: same logits
    one = net(ids[2:3, :lengths[2]], None).logits  # a batch of one, no padding
    assert np.allclose(one, a[2:3], rtol=0, atol=1e-6)


def test_empty_sequence_is_the_zero_state():
    rng = np.random.default_rng(7)
    net = make_net(2, True)
    ids, lengths = batch(4, 6, rng)
    lengths[3] = 0
    ids[3] = 0
    logits = net(ids, lengths).logits
    assert np.allclose(logits[3], net.params["fc.bias"], rtol=0, atol=1e-7)
    ref = net(ids[:3], lengths[:3]).logits
    assert np.allclose(logits[:3], ref, rtol=0, atol=1e-6)
    all_empty = net(np.zeros((2, 0), np.int64), np.zeros(2, np.int64)).logits
    assert np.allclose(all_empty, net.params["fc.bias"][None], rtol=0, atol=1e-7)
    net.configure_optimizer("adam", lr=0.0)
    net.train_step(ids, lengths, np.array([0, 1, 2, 0]))
    g_with = {k: v.copy() for k, v in net.grads.items()}
    net.train_step(ids[:3], lengths[:3], np.array([0, 1, 2]))
    # the empty row adds to fc.bias's gradient only (the losses' means differ: compare the LSTM's direction)
    for k in g_with:
        if k.startswith(("lstm.", "embedding.")):
            assert np.allclose(g_with[k] * 4, net.grads[k] * 3, rtol=1e-4, atol=1e-9), k


def test_gradient_with_dropout_matches_finite_differences():
    """Dropout between the layers and before fc: torch's masks differ, so the engine's gradient is checked
    against central differences of its own training forward (same seed and step: the same masks)."""
    net = make_net(2, True, dropout=0.3, fc_dropout=0.2, seed=9)
    rng = np.random.default_rng(9)
    ids, lengths = batch(5, 6, rng)
    labels = rng.integers(0, K, 5)
    _, mask, _, _ = net._inputs(ids, lengths)
    ids32 = ids.astype(np.int32)

    def loss_at(flat):
        buf = net.encoder._engine.params_buffer()
        keep = buf.copy()
        buf[:] = flat
        z = net._clf.forward(ids32, mask, None, None, True, net.seed, 0).astype(np.float64)
        buf[:] = keep
        z = z - z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(5), labels]))

    net.configure_optimizer("adam", lr=0.0)
    loss = net.train_step(ids, lengths, labels)  # step 0: the same dropout masks as the forward above
    flat = net.encoder._engine.params_buffer().copy().astype(np.float64)
    assert abs(loss_at(flat) - loss) < 1e-6
    g = net.encoder._engine.grads_buffer().copy().astype(np.float64)
    g[:V * E] = 0  # the embedding rows are sparse; the directions below perturb the LSTM and fc
    for d in range(3):
        v = rng.standard_normal(flat.size) * (g != 0)
        eps = 1e-3 / np.sqrt(np.mean(v[v != 0] ** 2))
        fd = (loss_at(flat + eps * v) - loss_at(flat - eps * v)) / (2 * eps)
        assert abs(fd - g @ v) <= 2e-3 * abs(g @ v) + 1e-6, (d, fd, g @ v)
    net.train_step(ids, lengths, labels)  # step 1: other masks, so another loss
    assert net(ids, lengths).logits.shape == (5, K)


def test_bit_identical_on_one_and_two_threads():
    rng = np.random.default_rng(10)
    ids, lengths = batch(33, 40, rng)
    labels = rng.integers(0, K, 33)
    runs = []
    before = lyricnn.get_num_threads()
    try:
        for nt in (1, 2):
            lyricnn.set_num_threads(nt)
            net = LSTMNet(V, embedding_dim=48, hidden_size=64, num_layers=2, num_labels=K, bidirectional=True,
                          dropout=0.2, seed=3)
            net.configure_optimizer("adam", lr=1e-2, max_grad_norm=1.0)
            for _ in range(2):
                net.train_step(ids, lengths, labels)
            runs.append(net.state_dict())
    finally:
        lyricnn.set_num_threads(before)
    for k in runs[0]:
        assert runs[0][k].tobytes() == runs[1][k].tobytes(), k


def test_cpu_copy_device_gives_the_cpu_bits():
    rng = np.random.default_rng(11)
    ids, lengths = batch(8, 10, rng)
    labels = rng.integers(0, K, 8)
    out = []
    for dev in ("cpu", "cpu-copy"):
        net = make_net(2, True, dropout=0.1, device=dev)
        net.configure_optimizer("adam", lr=1e-2, max_grad_norm=1.0)
        net.train_step(ids, lengths, labels)
        out.append((net.state_dict(), net.optimizer_state()["m"], net(ids, lengths).logits))
    for k in out[0][0]:
        assert np.array_equal(out[0][0][k], out[1][0][k]), k
    assert np.array_equal(out[0][1], out[1][1]) and np.array_equal(out[0][2], out[1][2])


# ---------------------------------------------------------------- bad input to the net

@pytest.mark.parametrize("kw,exc,match", [
    (dict(vocab_size=0), ValueError, "vocab_size"),
    (dict(hidden_size=0), ValueError, "hidden_size"),
    (dict(hidden_size=-3), ValueError, "hidden_size"),
    (dict(hidden_size=1.5), TypeError, "hidden_size"),
    (dict(embedding_dim=0), ValueError, "embedding_dim"),
    (dict(num_layers=0), ValueError, "num_layers"),
    (dict(dropout=1.0), ValueError, "dropout"),
    (dict(num_labels=1, problem_type="single_label_classification"), ValueError, "num_labels"),
    (dict(padding_idx=V), ValueError, "padding_idx"),
])
def test_bad_constructor_arguments(kw, exc, match):
    args = dict(vocab_size=V, embedding_dim=E, hidden_size=H)
    args.update(kw)
    with pytest.raises(exc, match=match):
        LSTMNet(**args)


def test_bad_ids_and_lengths():
    net = make_net(1)
    ids = np.array([[1, 2, 3], [4, 5, 0]])
    with pytest.raises(IndexError, match=r"input_ids\[1, 1\] = 40 is outside the vocabulary"):
        net(np.array([[1, 2, 3], [4, 40, 0]]), [3, 2])
    with pytest.raises(ValueError, match=r"lengths\[1\] = 4 is outside \[0, 3\]"):
        net(ids, [3, 4])
    with pytest.raises(ValueError, match="lengths must be"):
        net(ids, [3, 2, 1])
    with pytest.raises(ValueError, match="not right-padded"):
        net(ids, np.array([[1, 0, 1], [1, 1, 0]]))
    with pytest.raises(TypeError, match="integers"):
        net(np.array([[1.5, 2.0]]), [2])
    with pytest.raises(TypeError, match="lengths must hold integers"):
        net(ids, [2.5, 1.0])
    assert net(ids, [3, 2]).logits.shape == (2, K)  # still usable
    net.configure_optimizer()
    with pytest.raises(IndexError, match="labels"):
        net.train_step(ids, [3, 2], [0, K])


# ---------------------------------------------------------------- the vocabulary

def test_word_vocab_rules(tmp_path):
    v = WordVocab.build(["Don't stop, don't STOP!", "the café's rock'n'roll -- 'quoted' _x_ 42 42"], min_freq=1)
    assert v.itos[:2] == ["<pad>", "<unk>"] and v.pad_token_id == 0 and v.unk_token_id == 1
    assert v.tokenize("Don't stop, 'quoted' rock'n'roll café's _x_") == \
        ["don't", "stop", "quoted", "rock'n'roll", "café's", "x"]
    assert v.itos[2:5] == ["42", "don't", "stop"]  # by frequency, ties alphabetical
    assert list(v.encode("STOP unseen don't")) == [v.stoi["stop"], 1, v.stoi["don't"]]
    assert list(v.encode("stop stop stop", max_length=2)) == [v.stoi["stop"]] * 2
    assert len(WordVocab.build(["a a a b b c"], min_freq=2)) == 4
    assert WordVocab.build(["a a a b b c"], max_size=1).itos == ["<pad>", "<unk>", "a"]
    ids, lengths = v.encode_batch(["stop", "", "don't stop stop"])
    assert ids.shape == (3, 3) and list(lengths) == [1, 0, 3] and ids[1].sum() == 0
    v.save_pretrained(tmp_path)
    w = WordVocab.from_pretrained(tmp_path)
    assert w.itos == v.itos and w.pattern == WORD_PATTERN
    with pytest.raises(TypeError, match=r"texts\[1\] is 3"):
        WordVocab.build(["ok", 3])
    with pytest.raises(TypeError, match="not a single str"):
        WordVocab.build("a text")
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(lyricnn.CheckpointError, match="not a vocabulary"):
        WordVocab.from_pretrained(tmp_path)


# ---------------------------------------------------------------- the estimators

def poems(n=160, seed=0):
    d = datasets.load_poets()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(d["text"]), n, replace=False)
    return np.array(d["text"], object)[idx], np.array(d["label"], object)[idx]


X, Y = poems(160)
XV, YV = poems(48, seed=1)


def small(**kw):
    args = dict(embedding_dim=24, hidden_size=16, num_layers=2, max_length=60, batch_size=32, epochs=2, lr=1e-2,
                min_freq=2, verbose=0, seed=0)
    args.update(kw)
    return LSTMClassifier(**args)


def test_classifier_protocol_and_save_load(tmp_path):
    clf = small(eval_steps=3, class_weight="balanced")
    assert clf.fit(X, Y, eval_set=(XV, YV)) is clf
    h = clf.history_
    assert {"step", "epoch", "loss", "val_loss", "val_accuracy"} <= set(h.columns)
    assert h["step"].max() == clf.n_steps_ == 2 * 5 and h["val_accuracy"].notna().sum() >= 3
    proba = clf.predict_proba(XV)
    assert proba.shape == (48, 4) and np.allclose(proba.sum(1), 1)
    assert set(clf.predict(XV)) <= set(clf.classes_)
    rep = clf.evaluate(XV, YV)
    assert rep["accuracy"] == clf.score(XV, YV) and rep["confusion_matrix"].shape == (4, 4)
    assert isinstance(clf.tokenizer_, WordVocab) and clf.model_.vocab_size == len(clf.tokenizer_)
    clf.save(tmp_path)
    assert {"config.json", "model.safetensors", "vocab.json", "lyricnn_estimator.json"} <= set(os.listdir(tmp_path))
    back = LSTMClassifier.load(tmp_path)
    assert np.array_equal(back.predict_proba(XV), proba)
    assert back.get_params() == clf.get_params()


def test_get_params_set_params_and_clone():
    sklearn_base = pytest.importorskip("sklearn.base")
    clf = small(bidirectional=True, hidden_size=8)
    p = clf.get_params()
    assert p["bidirectional"] is True and p["hidden_size"] == 8 and "model" not in p and "head" not in p
    assert clf.set_params(hidden_size=12) is clf and clf.hidden_size == 12
    with pytest.raises(ValueError, match="invalid parameter"):
        clf.set_params(pooling="cls")
    twin = sklearn_base.clone(clf)
    assert twin.get_params() == clf.get_params()


def test_binary_bce_empty_texts_and_regressor():
    y2 = np.where(Y == Y[0], "same", "other")
    clf = small(loss="bce", epochs=1).fit(X, y2)
    assert clf.model_.num_labels == 1 and clf.predict_proba(["", "!!"]).shape == (2, 2)
    z = clf.decision_function(["", "...", X[0]])  # no words: the zero state, fc's bias
    assert np.allclose(z[0], clf.model_.params["fc.bias"]) and np.allclose(z[1], z[0])
    yr = np.array([len(t) % 7 for t in X], float)
    reg = LSTMRegressor(embedding_dim=16, hidden_size=8, max_length=40, epochs=1, verbose=0).fit(X, yr)
    assert reg.predict(X[:5]).shape == (5,) and set(reg.evaluate(X, yr)) >= {"mse", "rmse", "mae", "pearson_r"}


def test_early_stopping_and_bit_identical_resume(tmp_path):
    full = small(epochs=3).fit(X, Y, eval_set=(XV, YV))
    part = small(epochs=3, checkpoint_dir=str(tmp_path))
    part.fit(X, Y, eval_set=(XV, YV), callbacks=[lambda est, info: info["step"] < 7])
    assert part.interrupted_ and part.n_steps_ == 7
    resumed = small(epochs=3, checkpoint_dir=str(tmp_path)).fit(X, Y, eval_set=(XV, YV), resume=True)
    assert resumed.n_steps_ == full.n_steps_ == 15
    a, b = full.model_.state_dict(), resumed.model_.state_dict()
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    np.testing.assert_array_equal(full.history_["loss"].to_numpy(), resumed.history_["loss"].to_numpy())
    es = small(epochs=30, lr=0.3, early_stopping=True, patience=1).fit(X, Y, eval_set=(XV, YV))
    assert es.stopped_early_ and es.n_steps_ < 150


@pytest.mark.parametrize("X_bad,kw,exc,match", [
    ([""] * 8, {}, ValueError, "empty vocabulary"),                # texts without words
    (["a", "b"] * 4, dict(min_freq=9), ValueError, "empty vocabulary"),  # no word occurs min_freq times
    (["a", "b"] * 4, dict(max_size=0), ValueError, "empty vocabulary"),
    (["one", 2, "three"] + ["x"] * 5, {}, TypeError, r"X\[1\] is 2"),
    ("just one string", {}, TypeError, "not a single str"),
])
def test_estimator_bad_texts(X_bad, kw, exc, match):
    with pytest.raises(exc, match=match):
        small(**kw).fit(X_bad, ["a", "b"] * 4)


def test_estimator_bad_parameters():
    with pytest.raises(ValueError, match="hidden_size"):
        small(hidden_size=0).fit(X, Y)
    with pytest.raises(TypeError, match="num_layers"):
        small(num_layers=2.0).fit(X, Y)
    with pytest.raises(ValueError, match="min_freq"):
        small(min_freq=0).fit(X, Y)
    with pytest.raises(ValueError, match="no numeric features"):
        small().fit(X, Y, features=np.ones((len(X), 2)))


def test_cli_train_evaluate_predict_with_the_lstm(tmp_path):
    pd = pytest.importorskip("pandas")
    from lyricnn import cli

    pd.DataFrame({"text": X, "label": Y}).to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "model"
    assert cli.main(["train", str(tmp_path / "train.csv"), "--model", "lstm", "--output-dir", str(out),
                     "--epochs", "1", "--embedding-dim", "16", "--hidden-size", "8", "--max-length", "40",
                     "--quiet"]) == 0
    est = LSTMClassifier.load(out)
    assert est.embedding_dim == 16 and est.hidden_size == 8 and est.lr == 1e-3  # the LSTM's default lr
    assert cli.main(["evaluate", str(out), str(tmp_path / "train.csv"), "--device", "cpu"]) == 0
    assert cli.main(["predict", str(out), str(tmp_path / "train.csv"), "--output", str(tmp_path / "p.csv"),
                     "--device", "cpu"]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(X)


# ---------------------------------------------------------------- the GPU (tools/gpu_check.sh runs this)

@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_matches_the_cpu(precision):
    """Three Adam steps with dropout, bidirectional, ragged lengths with an empty row: fp32 on the GPU equals
    the CPU engine to float rounding (the same Philox masks); bf16 stays close."""
    from lyricnn._device import cuda_available

    if not cuda_available():
        pytest.skip("needs the CUDA backend and a GPU")
    if precision == "bf16" and not lyricnn.cuda_info()["devices"][0]["bf16"]:
        pytest.skip("bf16 needs compute capability 8.0+")
    rng = np.random.default_rng(12)
    ids, lengths = batch(24, 30, rng)
    lengths[5], ids[5] = 0, 0
    labels = rng.integers(0, K, 24)
    out = {}
    for dev in ("cpu", "cuda"):
        net = make_net(2, True, dropout=0.2, fc_dropout=0.1, device=dev,
                       precision=None if dev == "cpu" else precision)
        net.configure_optimizer("adam", lr=1e-2, max_grad_norm=1.0)
        losses = [net.train_step(ids, lengths, labels) for _ in range(3)]
        out[dev] = (losses, net.state_dict(), net(ids, lengths).logits)
    tol = 1e-4 if precision == "fp32" else 5e-2
    np.testing.assert_allclose(out["cuda"][0], out["cpu"][0], rtol=tol)
    for k, v in out["cpu"][1].items():
        close(out["cuda"][1][k], v, tol, "weights after 3 steps: " + k)
    close(out["cuda"][2], out["cpu"][2], tol * 10, "logits")
