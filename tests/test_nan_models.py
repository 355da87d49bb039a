"""NaN that stays NaN (issue 20, case 3), at the model level: a NaN weight gives NaN logits exactly where
transformers (torch) gives them, a NaN LoRA B or LSTM gate does too, train_step returns the NaN loss, and the
training loop's "loss became NaN" guard fires. The per-op rules are tested in test_backend_ops.py
(test_nan_propagates_as_in_torch)."""
import math

import numpy as np
import pytest

import lyricnn
from lyricnn import SequenceClassifier
from lyricnn.estimators import TextClassifier

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from _clf_oracle import batch, hf_classifier, twin  # noqa: E402
from test_lstm import TorchNet, make_net  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    n = lyricnn.get_num_threads()
    lyricnn.set_num_threads(1)
    yield
    lyricnn.set_num_threads(n)


# (kind, tensor, index): a NaN that reaches every logit (an FFN unit, the head's hidden layer, the pooler, a
# position every sequence has), and one that reaches none (the embedding row of a token not in the batch)
CASES = [("distilbert", "distilbert.transformer.layer.0.ffn.lin1.weight", (5, 3)),
         ("distilbert", "pre_classifier.weight", (2, 1)),     # the head's ReLU: NaN in, NaN out
         ("distilbert", "pre_classifier.bias", (0,)),
         ("distilbert", "distilbert.embeddings.position_embeddings.weight", (1, 0)),
         ("distilbert", "distilbert.embeddings.word_embeddings.weight", (2, 0)),   # id 2 is not in the batch
         ("bert", "bert.encoder.layer.1.attention.self.key.weight", (0, 0)),
         ("bert", "bert.pooler.dense.bias", (3,)),
         ("bert", "bert.embeddings.LayerNorm.weight", (7,))]


@pytest.mark.parametrize("kind,name,index", CASES, ids=["%s-%s" % (c[0], c[1].split(".", 1)[1]) for c in CASES])
def test_nan_weight_gives_the_logits_transformers_gives(tmp_path, kind, name, index):
    hf = hf_classifier(kind, num_labels=2, seed=3)
    with torch.no_grad():
        hf.state_dict()[name][index] = float("nan")
    ids, mask, _ = batch(3, 9, seed=1, lengths=[9, 5, 2])
    ids[ids == 2] = 5
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    m = twin(hf, tmp_path)
    for unpad in (False, True):
        m.unpad = unpad
        got = m(ids, mask).logits
        assert np.array_equal(np.isnan(got), np.isnan(ref)), (unpad, got, ref)
        fin = ~np.isnan(ref)
        np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-4, atol=1e-5)
    if "word_embeddings" in name:
        assert not np.isnan(ref).any()  # a row no token reads
    else:
        assert np.isnan(ref).all()


def test_nan_lora_b_gives_nan_logits():
    m = SequenceClassifier.from_config(dict(model_type="distilbert", vocab_size=97, dim=32, n_layers=1, n_heads=2,
                                            hidden_dim=48, max_position_embeddings=40), num_labels=2,
                                       lora=dict(r=2, target_modules=["q_lin", "v_lin"]))
    ids, mask, _ = batch(2, 6, seed=0)
    assert np.isfinite(m(ids, mask).logits).all()
    name = [n for n in m.params if n.endswith("v_lin.lora_B.weight")][0]
    b = np.array(m.params[name])
    b[0, 0] = np.nan
    m.load_state_dict({name: b}, strict=False)
    assert np.isnan(m(ids, mask).logits).all()
    # merged: the NaN goes into the base weight, with the same result
    m.merge()
    assert np.isnan(m(ids, mask).logits).all()


def test_train_step_returns_the_nan_loss_and_fit_stops(tmp_path):
    hf = hf_classifier("distilbert", num_labels=2, seed=0, vocab_size=30522)  # the bundled tokenizer's vocabulary
    with torch.no_grad():
        hf.distilbert.transformer.layer[0].ffn.lin2.weight[0, 0] = float("nan")
    m = twin(hf, tmp_path)
    m.configure_optimizer(lr=1e-3)
    ids, mask, _ = batch(4, 8, seed=2)
    loss = m.train_step(ids, mask, np.array([0, 1, 0, 1]))
    assert math.isnan(loss)  # was ln 2: the head's ReLU turned the NaN hidden state into 0
    # the training loop's guard then stops fit at its first step, naming the loss
    d = tmp_path / "nan_model"
    hf.save_pretrained(d)
    from lyricnn.tokenizer import Tokenizer

    Tokenizer.from_pretrained("distilbert-base-uncased").save_pretrained(d)
    est = TextClassifier(model=str(d), epochs=1, batch_size=4, max_length=8, verbose=0)
    with pytest.raises(FloatingPointError, match=r"the training loss became nan at step 1"):
        est.fit(["a b c", "d e f", "g h", "i j"] * 2, [0, 1] * 4)


def test_lstm_nan_forget_gate_from_the_zero_state_as_torch():
    """torch's nn.LSTM computes c = f * c0 + i * g with c0 = 0: a NaN forget gate gives NaN even on a
    sequence of one word (the lyricnn cell computed f * c0 only for rows that continue)."""
    net = make_net(num_layers=1, num_labels=2, seed=4)
    H = net.config["hidden_size"]
    b = np.array(net.params["lstm.bias_ih_l0"])
    b[H + 2] = np.nan  # the forget gate of unit 2
    net.load_state_dict({"lstm.bias_ih_l0": b}, strict=False)
    ids = np.array([[3, 0, 0], [4, 5, 6]])
    lengths = np.array([1, 3])
    t = TorchNet(1, False, 2, net.config["vocab_size"], net.config["embedding_dim"], H).double()
    t.load_state_dict({k: torch.from_numpy(np.array(v, np.float64)) for k, v in net.state_dict().items()})
    with torch.no_grad():
        ref = t(torch.tensor(ids), torch.tensor(lengths)).numpy()
    got = net(ids, lengths).logits
    assert np.isnan(ref).all() and np.isnan(got).all()
    net.configure_optimizer(lr=1e-3)
    assert math.isnan(net.train_step(ids, lengths, np.array([0, 1])))
