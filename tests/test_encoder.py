"""The C encoder against transformers + torch (CPU fp32) on tiny seeded models."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import lyricnn  # noqa: E402
from lyricnn.encoder import Encoder  # noqa: E402

from _encoder_oracle import batch, hf_model, twin  # noqa: E402


def rel_err(ref, got):
    ref = np.asarray(ref, np.float64)
    return np.linalg.norm(ref - got) / max(np.linalg.norm(ref), 1e-6)


def run_oracle(model, kind, ids, mask, tt, g_last, g_pool):
    for p in model.parameters():
        p.requires_grad_(True)
        p.grad = None
    kw = {}
    if mask is not None:
        kw["attention_mask"] = torch.tensor(mask)
    if tt is not None:
        kw["token_type_ids"] = torch.tensor(tt)
    out = model(input_ids=torch.tensor(ids), output_hidden_states=True, **kw)
    loss = (out.last_hidden_state * torch.tensor(g_last)).sum()
    if g_pool is not None:
        loss = loss + (out.pooler_output * torch.tensor(g_pool)).sum()
    loss.backward()
    grads = {n: (p.grad.numpy().copy() if p.grad is not None else np.zeros(tuple(p.shape), np.float32))
             for n, p in model.named_parameters()}
    return out, grads


def check_parity(kind, B, T, lengths=None, use_mask=True, types=False, seed=0, noise=0.05, **cfg):
    model, config = hf_model(kind, seed=seed, noise=noise, **cfg)
    enc = twin(model, config)
    ids, mask, tt = batch(B, T, vocab=config["vocab_size"], seed=seed, lengths=lengths, types=types)
    mask = mask if use_mask else None
    rng = np.random.default_rng(seed + 10)
    H = enc.params["embeddings.LayerNorm.weight"].shape[0]
    g_last = rng.standard_normal((B, T, H)).astype(np.float32)
    g_pool = rng.standard_normal((B, H)).astype(np.float32) if kind == "bert" else None
    ref, ref_grads = run_oracle(model, kind, ids, mask, tt, g_last, g_pool)

    out = enc(ids, mask, token_type_ids=tt, train=True, output_hidden_states=True)
    np.testing.assert_allclose(out.last_hidden_state, ref.last_hidden_state.detach().numpy(), atol=1e-4, rtol=0)
    assert len(out.hidden_states) == len(ref.hidden_states)
    for a, b in zip(out.hidden_states, ref.hidden_states):
        np.testing.assert_allclose(a, b.detach().numpy(), atol=1e-4, rtol=0)
    if kind == "bert":
        np.testing.assert_allclose(out.pooler_output, ref.pooler_output.detach().numpy(), atol=1e-4, rtol=0)
    else:
        assert out.pooler_output is None
    enc.zero_grad()
    enc.backward(g_last, g_pool)
    prefix = "distilbert." if kind == "distilbert" else ""
    assert set(enc.grads) == {n[len(prefix):] if n.startswith(prefix) else n for n in ref_grads}
    for n, gref in ref_grads.items():
        if n.endswith(("k_lin.bias", "key.bias")):
            # zero in exact arithmetic (softmax ignores a shift shared by all keys): both sides hold
            # rounding noise only, tiny next to the query bias gradient
            qn = n.replace("k_lin", "q_lin").replace("key", "query")
            scale = np.linalg.norm(ref_grads[qn])
            assert np.linalg.norm(gref) <= 1e-3 * scale and np.linalg.norm(enc.grads[n]) <= 1e-3 * scale, n
            continue
        err = rel_err(gref, enc.grads[n])
        assert err < 1e-3, "%s: relative gradient error %.2e" % (n, err)
    pad = config["pad_token_id"]
    assert not enc.grads["embeddings.word_embeddings.weight"][pad].any()  # HF leaves the pad row at zero
    # inference gives the same numbers (dropout is 0 here)
    ev = enc(ids, mask, token_type_ids=tt)
    np.testing.assert_array_equal(ev.last_hidden_state, out.last_hidden_state)
    return enc


CASES = [
    # (B, T, lengths, use_mask)
    (3, 9, [9, 5, 2], True),       # mixed padding, one row [CLS] [SEP] only
    (2, 16, None, False),          # no mask at all
    (4, 7, [7, 7, 1, 3], True),    # a row with only [CLS]
    (1, 1, None, True),            # a single token
    (3, 6, [6, 0, 2], True),       # a fully padded row (all keys masked: uniform attention, as HF)
    (2, 33, [33, 20], True),       # odd length
]


@pytest.mark.parametrize("kind", ["distilbert", "bert"])
@pytest.mark.parametrize("B,T,lengths,use_mask", CASES)
def test_parity_tiny(kind, B, T, lengths, use_mask):
    check_parity(kind, B, T, lengths, use_mask, types=(kind == "bert"))


def test_bert_without_token_types():
    check_parity("bert", 2, 8, [8, 4], types=False)


@pytest.mark.parametrize("act", ["relu", "gelu_new"])
def test_distilbert_activation(act):
    check_parity("distilbert", 2, 8, [8, 5], activation=act)


def test_distilbert_sinusoidal():
    check_parity("distilbert", 2, 8, [8, 5], sinusoidal_pos_embds=True)


def test_bert_relu_eps_more_layers():
    check_parity("bert", 2, 10, [10, 3], types=True, hidden_act="relu", layer_norm_eps=1e-5, num_hidden_layers=3,
                 num_attention_heads=2, hidden_size=24, intermediate_size=40)


def test_sinusoidal_init_matches_hf():
    model, config = hf_model("distilbert", sinusoidal_pos_embds=True)
    enc = Encoder.from_config(config)
    np.testing.assert_allclose(enc.params["embeddings.position_embeddings.weight"],
                               model.embeddings.position_embeddings.weight.detach().numpy(), atol=1e-6)


def test_from_config_init():
    cfg = dict(model_type="bert", vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=32, max_position_embeddings=20, initializer_range=0.05, pad_token_id=3)
    enc = Encoder.from_config(cfg, seed=1)
    assert not enc.params["embeddings.word_embeddings.weight"][3].any()
    assert np.all(enc.params["encoder.layer.0.output.LayerNorm.weight"] == 1)
    assert not enc.params["pooler.dense.bias"].any()
    w = enc.params["encoder.layer.0.intermediate.dense.weight"]
    assert w.shape == (32, 16) and 0.03 < w.std() < 0.07
    assert Encoder.from_config(cfg, seed=1).params["pooler.dense.weight"].tolist() == enc.params["pooler.dense.weight"].tolist()
    assert enc.num_parameters() == sum(p.size for p in enc.params.values())
    assert enc.expected_tensors()["encoder.layer.0.attention.self.query.weight"] == (16, 16)


def test_params_are_zero_copy_views_and_grads_accumulate():
    model, config = hf_model("distilbert")
    enc = twin(model, config)
    ids, mask, _ = batch(2, 6, lengths=[6, 4])
    base = enc(ids, mask).last_hidden_state
    enc.params["transformer.layer.1.output_layer_norm.bias"][:] += 1.0
    moved = enc(ids, mask).last_hidden_state
    np.testing.assert_allclose(moved - base, 1.0, atol=1e-5)
    g = np.ones_like(base)
    enc(ids, mask, train=True)
    enc.zero_grad()
    enc.backward(g)
    once = {k: v.copy() for k, v in enc.grads.items()}
    enc.backward(g)  # accumulates
    for k in once:
        np.testing.assert_allclose(enc.grads[k], 2 * once[k], rtol=1e-6, atol=1e-9)
    enc.zero_grad()
    assert all(not v.any() for v in enc.grads.values())
    # qkv weights are adjacent in the buffer (one GEMM), each still its own HF-named view
    q = enc.params["transformer.layer.0.attention.q_lin.weight"]
    k = enc.params["transformer.layer.0.attention.k_lin.weight"]
    assert k.__array_interface__["data"][0] - q.__array_interface__["data"][0] == q.nbytes


def test_arena_grows_and_shrinks():
    model, config = hf_model("bert")
    enc = twin(model, config)
    small = batch(2, 5, lengths=[5, 3], types=True)
    big = batch(6, 30, lengths=[30, 2, 17, 30, 9, 1], types=True)
    a = enc(small[0], small[1], token_type_ids=small[2]).last_hidden_state
    enc(big[0], big[1], token_type_ids=big[2], train=True)
    b = enc(small[0], small[1], token_type_ids=small[2]).last_hidden_state
    np.testing.assert_array_equal(a, b)


def test_freeze():
    model, config = hf_model("bert")
    ids, mask, tt = batch(2, 6, lengths=[6, 3], types=True)
    g = np.random.default_rng(0).standard_normal((2, 6, 32)).astype(np.float32)
    gp = np.random.default_rng(1).standard_normal((2, 32)).astype(np.float32)
    ref = twin(model, config)
    ref(ids, mask, token_type_ids=tt, train=True)
    ref.backward(g, gp)

    enc = twin(model, config)
    enc.freeze()
    enc(ids, mask, token_type_ids=tt, train=True)
    enc.backward(g, gp)
    assert all(not v.any() for v in enc.grads.values())
    assert all(f & lyricnn.encoder.FROZEN for f in enc.tensor_flags().values())

    # freeze only the embeddings and layer 0: the rest matches the unfrozen run
    enc.freeze(False)
    frozen = [n for n in enc.params if n.startswith(("embeddings.", "encoder.layer.0."))]
    enc.freeze(names=frozen)
    enc(ids, mask, token_type_ids=tt, train=True)
    enc.backward(g, gp)
    for n in enc.grads:
        if n in frozen:
            assert not enc.grads[n].any(), n
        else:
            np.testing.assert_allclose(enc.grads[n], ref.grads[n], rtol=1e-5, atol=1e-7)


def test_no_decay_flags():
    _, config = hf_model("distilbert")
    flags = Encoder.from_config(config).tensor_flags()
    nd = lyricnn.encoder.NO_DECAY
    assert flags["transformer.layer.0.ffn.lin1.bias"] & nd
    assert flags["transformer.layer.0.sa_layer_norm.weight"] & nd
    assert flags["embeddings.LayerNorm.weight"] & nd
    assert not flags["transformer.layer.0.ffn.lin1.weight"] & nd
    assert not flags["embeddings.word_embeddings.weight"] & nd


# ---------------------------------------------------------------------- dropout

def _emb_only(p, dim=64):
    """A 0-layer DistilBERT: output = dropout(LayerNorm(embeddings)), so masks are visible."""
    cfg = dict(model_type="distilbert", vocab_size=60, dim=dim, n_layers=0, n_heads=4, hidden_dim=32,
               max_position_embeddings=32, dropout=p, attention_dropout=p)
    enc = Encoder.from_config(cfg, seed=0)
    enc.params["embeddings.LayerNorm.bias"][:] = 0.5  # no exact zeros before dropout
    return enc


def test_dropout_p0_exact():
    model, config = hf_model("bert")  # dropout 0 in the config
    enc = twin(model, config)
    ids, mask, tt = batch(3, 8, lengths=[8, 5, 2], types=True)
    a = enc(ids, mask, token_type_ids=tt)
    b = enc(ids, mask, token_type_ids=tt, train=True, seed=123)
    np.testing.assert_array_equal(a.last_hidden_state, b.last_hidden_state)
    np.testing.assert_array_equal(a.pooler_output, b.pooler_output)


def test_dropout_statistics():
    p = 0.3
    enc = _emb_only(p)
    ids = np.random.default_rng(0).integers(1, 60, size=(8, 32))
    ev = enc(ids).last_hidden_state
    tr = enc(ids, train=True, seed=5, step=0).last_hidden_state
    kept = tr != 0
    assert abs(kept.mean() - (1 - p)) < 0.02
    np.testing.assert_allclose(tr[kept], ev[kept] * np.float32(1 / (1 - p)), rtol=1e-6)
    # masks differ between steps and seeds, repeat for the same (seed, step)
    again = enc(ids, train=True, seed=5, step=0).last_hidden_state
    np.testing.assert_array_equal(again, tr)
    other_step = enc(ids, train=True, seed=5, step=1).last_hidden_state
    other_seed = enc(ids, train=True, seed=6, step=0).last_hidden_state
    assert ((other_step != 0) != kept).mean() > 0.2
    assert ((other_seed != 0) != kept).mean() > 0.2
    # independent-looking masks: the keep rate of the intersection is ~ (1-p)^2
    assert abs(((other_step != 0) & kept).mean() - (1 - p) ** 2) < 0.03


def test_dropout_step_counter():
    enc = _emb_only(0.5)
    ids = np.random.default_rng(0).integers(1, 60, size=(2, 16))
    enc.dropout_seed = 9
    a = enc(ids, train=True).last_hidden_state
    assert enc.step == 1
    b = enc(ids, train=True).last_hidden_state
    assert enc.step == 2
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(enc(ids, train=True, step=0).last_hidden_state, a)
    np.testing.assert_array_equal(enc(ids, train=True, seed=9, step=1).last_hidden_state, b)


def test_dropout_same_on_any_thread_count():
    n0 = lyricnn.get_num_threads()
    try:
        enc = _emb_only(0.4)
        ids = np.random.default_rng(1).integers(1, 60, size=(4, 32))
        model, config = hf_model("bert", hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.3)
        full = twin(model, config)
        bids, bmask, btt = batch(3, 12, lengths=[12, 7, 2], types=True)
        g = np.random.default_rng(2).standard_normal((3, 12, 32)).astype(np.float32)
        res = []
        for nt in (1, 2, 3):
            lyricnn.set_num_threads(nt)
            a = enc(ids, train=True, seed=3, step=4).last_hidden_state
            b = full(bids, bmask, token_type_ids=btt, train=True, seed=3, step=4).last_hidden_state
            full.zero_grad()
            full.backward(g)
            res.append((a, b, full.grads["encoder.layer.0.attention.self.query.weight"].copy()))
        for a, b, gq in res[1:]:
            np.testing.assert_array_equal(a, res[0][0])
            np.testing.assert_allclose(b, res[0][1], atol=1e-5)
            np.testing.assert_allclose(gq, res[0][2], rtol=1e-4, atol=1e-6)
    finally:
        lyricnn.set_num_threads(n0)


def test_dropout_gradients_finite_difference():
    """With dropout on (fixed seed/step) the forward is a deterministic function: check backward
    against central differences along random directions."""
    model, config = hf_model("bert", hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.3)
    enc = twin(model, config)
    buf = enc._engine.params_buffer()
    ids, mask, tt = batch(2, 7, lengths=[7, 4], types=True)
    rng = np.random.default_rng(2)
    g = rng.standard_normal((2, 7, 32)).astype(np.float32)
    gp = rng.standard_normal((2, 32)).astype(np.float32)

    def loss():
        o = enc(ids, mask, token_type_ids=tt, train=True, seed=3, step=7)
        return float((o.last_hidden_state.astype(np.float64) * g).sum() + (o.pooler_output.astype(np.float64) * gp).sum())

    enc.zero_grad()
    loss()
    enc.backward(g, gp)
    grad = enc._engine.grads_buffer().astype(np.float64)
    pad_row = enc.params["embeddings.word_embeddings.weight"][0].size  # the pad row gets no gradient, by design
    p0 = buf.copy()
    for _ in range(2):
        d = rng.standard_normal(buf.shape).astype(np.float32)
        d[:pad_row] = 0
        eps = 1e-4
        buf[:] = p0 + eps * d
        lp = loss()
        buf[:] = p0 - eps * d
        lm = loss()
        buf[:] = p0
        fd = (lp - lm) / (2 * eps)
        an = float(grad @ d)
        assert abs(fd - an) < 2e-3 * abs(an) + 1e-2, (fd, an)


# ---------------------------------------------------------------------- API and bad inputs

def test_int32_and_int64_and_bool_mask():
    model, config = hf_model("distilbert")
    enc = twin(model, config)
    ids, mask, _ = batch(2, 5, lengths=[5, 3])
    a = enc(ids, mask).last_hidden_state
    b = enc(ids.astype(np.int32), mask.astype(bool)).last_hidden_state
    c = enc(ids.tolist(), mask.astype(np.float32)).last_hidden_state
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert a.dtype == np.float32 and a.shape == (2, 5, 32)


def test_bad_inputs():
    model, config = hf_model("distilbert")
    enc = twin(model, config)
    ids, mask, _ = batch(2, 5, lengths=[5, 3])
    bad = ids.copy()
    bad[1, 3] = 97
    with pytest.raises(IndexError, match=r"input_ids\[1, 3\] = 97"):
        enc(bad)
    bad[1, 3] = -1
    with pytest.raises(IndexError, match=r"input_ids\[1, 3\]"):
        enc(bad)
    big = np.full((1, 1), 2**40)
    with pytest.raises(IndexError, match="out of range"):
        enc(big)
    with pytest.raises(ValueError, match="max_position_embeddings=40"):
        enc(np.ones((1, 41), np.int64))
    with pytest.raises(TypeError, match="integers"):
        enc(ids.astype(np.float32))
    with pytest.raises(ValueError, match="2-D"):
        enc(ids[0])
    with pytest.raises(ValueError, match="attention_mask has shape"):
        enc(ids, mask[:, :4])
    with pytest.raises(ValueError, match="only used by BERT"):
        enc(ids, mask, token_type_ids=np.zeros_like(ids))
    with pytest.raises(ValueError, match=">= 1"):
        enc(np.zeros((0, 3), np.int64))
    fresh = twin(model, config)
    with pytest.raises(lyricnn.LyricnnError, match="train=True"):
        fresh.backward(np.zeros((2, 5, 32), np.float32))
    enc(ids, mask)  # an inference forward invalidates backward
    with pytest.raises(lyricnn.LyricnnError, match="train=True"):
        enc.backward(np.zeros((2, 5, 32), np.float32))
    enc(ids, mask, train=True)
    with pytest.raises(ValueError, match="d_last_hidden_state has shape"):
        enc.backward(np.zeros((2, 4, 32), np.float32))
    with pytest.raises(ValueError, match="has no pooler"):
        enc.backward(np.zeros((2, 5, 32), np.float32), np.zeros((2, 32), np.float32))


def test_bad_inputs_bert():
    model, config = hf_model("bert")
    enc = twin(model, config)
    ids, mask, tt = batch(2, 5, lengths=[5, 3], types=True)
    tt[0, 2] = 2
    with pytest.raises(IndexError, match=r"token_type_ids\[0, 2\] = 2"):
        enc(ids, mask, token_type_ids=tt)
    with pytest.raises(ValueError, match="token_type_ids has shape"):
        enc(ids, mask, token_type_ids=tt[:1])
    enc(ids, mask, train=True)
    with pytest.raises(ValueError, match="d_pooler_output has shape"):
        enc.backward(None, np.zeros((3, 32), np.float32))


def test_bad_config_and_tensors():
    with pytest.raises(ValueError, match="model_type"):
        Encoder({"model_type": "gpt2"})
    with pytest.raises(ValueError, match="activation"):
        Encoder({"model_type": "bert", "hidden_act": "swish_x"})
    with pytest.raises(ValueError, match="multiple of the number of heads"):
        Encoder({"model_type": "distilbert", "dim": 30, "n_heads": 4, "n_layers": 1, "vocab_size": 10})
    model, config = hf_model("distilbert")
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    state.pop("transformer.layer.0.ffn.lin1.bias")
    state["transformer.layer.1.ffn.lin2.weight"] = np.zeros((3, 3), np.float32)
    state["transformer.layer.9.foo"] = np.zeros(2, np.float32)
    with pytest.raises(lyricnn.CheckpointError) as e:
        Encoder.from_state_dict(config, state)
    msg = str(e.value)
    assert "missing: transformer.layer.0.ffn.lin1.bias" in msg
    assert "unknown: transformer.layer.9.foo" in msg
    assert "transformer.layer.1.ffn.lin2.weight: expected (32, 48), found (3, 3)" in msg


def test_from_state_dict_with_prefix_and_heads():
    import transformers
    torch.manual_seed(0)
    conf = transformers.DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=24,
                                         max_position_embeddings=16, num_labels=3)
    clf = transformers.DistilBertForSequenceClassification(conf).eval()
    enc = Encoder.from_state_dict(conf.to_dict(), {k: v.numpy() for k, v in clf.state_dict().items()})
    assert set(enc.heads) == {"pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"}
    ids = np.array([[1, 5, 7, 2]])
    ref = clf.distilbert(input_ids=torch.tensor(ids)).last_hidden_state.detach().numpy()
    np.testing.assert_allclose(enc(ids).last_hidden_state, ref, atol=1e-4)


def test_shared_tiny_checkpoints_load(shared):
    """The third-party tiny BERT checkpoints: names and shapes fit, outputs match transformers."""
    st = pytest.importorskip("safetensors.numpy")
    import json
    import transformers
    for name in ("tiny-random-bert-seqcls-encoderfile", "tiny-random-bert-lmhead-lmbuddy"):
        path = shared("models", name)
        config = json.loads((path / "config.json").read_text())
        enc = Encoder.from_state_dict(config, st.load_file(str(path / "model.safetensors")))
        state = st.load_file(str(path / "model.safetensors"))
        has_pooler = any(k.endswith("pooler.dense.weight") for k in state)
        ref = transformers.BertModel.from_pretrained(str(path), attn_implementation="eager",
                                                     add_pooling_layer=has_pooler).eval()
        assert has_pooler == ("pooler.dense.weight" in enc.params)
        ids = np.array([[101, 7592, 2088, 102, 0, 0], [101, 2023, 2003, 1037, 3231, 102]])
        mask = (ids != 0).astype(np.int64)
        out = enc(ids, mask)
        with torch.no_grad():
            r = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
        np.testing.assert_allclose(out.last_hidden_state, r.last_hidden_state.numpy(), atol=1e-4)
        if has_pooler:
            np.testing.assert_allclose(out.pooler_output, r.pooler_output.numpy(), atol=1e-4)


def test_from_pretrained(shared, tmp_path):
    from lyricnn import checkpoint
    if not hasattr(checkpoint, "read_config"):
        pytest.skip("lyricnn.checkpoint (the checkpoint reader) is not in this build yet")
    path = shared("models", "tiny-random-bert-seqcls-encoderfile")
    enc = Encoder.from_pretrained(str(path))
    assert enc.model_type == "bert" and "classifier.weight" in enc.heads
    with pytest.raises(ValueError, match="device"):
        Encoder.from_pretrained(str(path), device="tpu")


from _backend_refs import philox4x32_10 as _philox4x32_10  # noqa: E402  (the one numpy Philox spec)


@pytest.mark.parametrize("ctr,key,out", [
    # Random123's known-answer vectors (kat_vectors): counter, key -> output
    ((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff,) * 4, (0xffffffff,) * 2, (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
])
def test_philox_reference_is_philox4x32_10(ctr, key, out):
    # the dropout spec below is built on this function; lyricnn's masks are checked against the spec
    assert [int(w) for w in _philox4x32_10(ctr, *key)] == list(out)


def _philox_keep(n, p, seed, step, stream):
    """Reference Philox4x32-10 dropout mask (numpy), the spec a GPU backend must reproduce."""
    i = np.arange(n, dtype=np.uint64)
    blk = i >> np.uint64(2)
    c = _philox4x32_10([blk & np.uint64(0xFFFFFFFF), blk >> np.uint64(32), np.full(n, stream, np.uint64),
                        np.full(n, step, np.uint64)], seed & 0xFFFFFFFF, seed >> 32)
    words = np.stack(c, axis=1)[np.arange(n), (i & np.uint64(3)).astype(np.int64)]
    thr = int(float(np.float32(p)) * 4294967296.0)
    return words >= np.uint64(thr)


@pytest.mark.parametrize("seed,step", [(0, 0), (12345678901, 3)])
def test_dropout_mask_is_the_philox_spec(seed, step):
    enc = _emb_only(0.35, dim=36)
    ids = np.random.default_rng(0).integers(1, 60, size=(3, 29))  # 3132 elements: vector + tail paths
    tr = enc(ids, train=True, seed=seed, step=step).last_hidden_state
    expect = _philox_keep(tr.size, 0.35, seed, step, stream=0).reshape(tr.shape)
    np.testing.assert_array_equal(tr != 0, expect)


def test_extra_tensors_share_the_buffers():
    """Head tensors (next issue) append to the same params/grads buffers before allocation."""
    _, config = hf_model("distilbert")
    enc = Encoder(config, extra_tensors=[("pre_classifier.weight", (32, 32), 0), ("classifier.bias", (3,), 1)])
    assert enc.params["classifier.bias"].shape == (3,)
    assert enc.tensor_flags()["classifier.bias"] == lyricnn.encoder.NO_DECAY
    buf = enc._engine.params_buffer()
    assert buf.size == enc.num_parameters()
    last = enc.params["classifier.bias"]
    assert last.__array_interface__["data"][0] == buf.__array_interface__["data"][0] + 4 * (buf.size - 3)
    with pytest.raises(ValueError, match="registered twice"):
        Encoder(config, extra_tensors=[("classifier.bias", (3,), 0), ("classifier.bias", (3,), 0)])
    with pytest.raises(KeyError, match="nope"):
        enc.freeze(names=["nope"])


def test_gil_released_and_concurrent_use_refused():
    """A long forward runs without the GIL: the main thread keeps running meanwhile, and a second
    call on the same encoder is refused instead of racing on its buffers."""
    import threading
    import time
    cfg = dict(model_type="distilbert", vocab_size=100, dim=256, n_layers=4, n_heads=4, hidden_dim=1024,
               max_position_embeddings=128, dropout=0.0, attention_dropout=0.0)
    enc = Encoder.from_config(cfg)
    ids = np.random.default_rng(0).integers(1, 100, size=(16, 128))
    small = ids[:1, :4]
    done = threading.Event()
    errors = []

    def work():
        n = 0
        while n < 3:
            try:
                enc(ids)
                n += 1
            except lyricnn.LyricnnError as e:  # the main thread's small call held it: retry
                if "another thread" not in str(e):
                    errors.append(e)
                    break
                time.sleep(0.001)
        done.set()

    th = threading.Thread(target=work)
    th.start()
    refused = 0
    deadline = time.monotonic() + 120
    while not done.wait(0.002) and time.monotonic() < deadline:  # the main thread runs while the worker is inside the engine
        try:
            enc(small)
        except lyricnn.LyricnnError as e:
            assert "another thread" in str(e)
            refused += 1
    th.join(timeout=120)
    assert done.is_set() and not errors
    assert refused > 0
