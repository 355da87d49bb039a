"""Checkpoint I/O against live oracles: transformers/torch models, the safetensors package."""
import json
import os
import shutil

import numpy as np
import pytest

import lyricnn
from lyricnn import checkpoint as ck
from lyricnn import _C

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")
safetensors_torch = pytest.importorskip("safetensors.torch")


# ------------------------------------------------------------------ helpers

def expected_shapes(cfg, pooler=True):
    """Encoder tensor names (prefix-free) and shapes for an HF config dict."""
    mt = cfg["model_type"]
    if mt == "distilbert":
        H, F, L, V, P = cfg["dim"], cfg["hidden_dim"], cfg["n_layers"], cfg["vocab_size"], cfg["max_position_embeddings"]
        e = {"embeddings.word_embeddings.weight": (V, H), "embeddings.position_embeddings.weight": (P, H),
             "embeddings.LayerNorm.weight": (H,), "embeddings.LayerNorm.bias": (H,)}
        for i in range(L):
            p = "transformer.layer.%d." % i
            for lin in ("q_lin", "k_lin", "v_lin", "out_lin"):
                e[p + "attention.%s.weight" % lin] = (H, H)
                e[p + "attention.%s.bias" % lin] = (H,)
            e[p + "ffn.lin1.weight"], e[p + "ffn.lin1.bias"] = (F, H), (F,)
            e[p + "ffn.lin2.weight"], e[p + "ffn.lin2.bias"] = (H, F), (H,)
            for ln in ("sa_layer_norm", "output_layer_norm"):
                e[p + ln + ".weight"], e[p + ln + ".bias"] = (H,), (H,)
        return e
    H, F, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    e = {"embeddings.word_embeddings.weight": (cfg["vocab_size"], H),
         "embeddings.position_embeddings.weight": (cfg["max_position_embeddings"], H),
         "embeddings.token_type_embeddings.weight": (cfg["type_vocab_size"], H),
         "embeddings.LayerNorm.weight": (H,), "embeddings.LayerNorm.bias": (H,)}
    for i in range(L):
        p = "encoder.layer.%d." % i
        for n in ("query", "key", "value"):
            e[p + "attention.self.%s.weight" % n], e[p + "attention.self.%s.bias" % n] = (H, H), (H,)
        e[p + "attention.output.dense.weight"], e[p + "attention.output.dense.bias"] = (H, H), (H,)
        e[p + "attention.output.LayerNorm.weight"], e[p + "attention.output.LayerNorm.bias"] = (H,), (H,)
        e[p + "intermediate.dense.weight"], e[p + "intermediate.dense.bias"] = (F, H), (F,)
        e[p + "output.dense.weight"], e[p + "output.dense.bias"] = (H, F), (H,)
        e[p + "output.LayerNorm.weight"], e[p + "output.LayerNorm.bias"] = (H,), (H,)
    if pooler:
        e["pooler.dense.weight"], e["pooler.dense.bias"] = (H, H), (H,)
    return e


def torch_state(model):
    return {k: v.detach().float().numpy() for k, v in model.state_dict().items()}


def assert_same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == np.float32 and a[k].flags.c_contiguous, k
        assert a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def make_models():
    from transformers import (BertConfig, BertForSequenceClassification, BertModel, DistilBertConfig,
                              DistilBertForSequenceClassification, DistilBertModel)
    torch.manual_seed(1234)
    bcfg = BertConfig(vocab_size=101, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=24, max_position_embeddings=40, type_vocab_size=2)
    dcfg = DistilBertConfig(vocab_size=97, dim=16, n_layers=2, n_heads=2, hidden_dim=24,
                            max_position_embeddings=40)
    models = {"bert": BertModel(bcfg), "bert_cls": BertForSequenceClassification(bcfg),
              "distilbert": DistilBertModel(dcfg), "distilbert_cls": DistilBertForSequenceClassification(dcfg)}
    with torch.no_grad():  # non-trivial biases / LayerNorm weights
        for m in models.values():
            for p in m.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return models


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """Each model saved by transformers as safetensors, and as a torch pytorch_model.bin twin."""
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for name, m in make_models().items():
        sdir, bdir = root / (name + "_safe"), root / (name + "_bin")
        m.save_pretrained(sdir, safe_serialization=True)
        bdir.mkdir()
        shutil.copy(sdir / "config.json", bdir / "config.json")
        torch.save(m.state_dict(), bdir / "pytorch_model.bin")  # what save_pretrained wrote before v5
        out[name] = (m, sdir, bdir)
    return out


# ------------------------------------------------------------------ third-party checkpoints

@pytest.mark.parametrize("folder,heads,ignored", [
    ("tiny-random-bert-seqcls-encoderfile", {"classifier.weight", "classifier.bias"}, set()),
    ("tiny-random-bert-lmhead-lmbuddy", set(), {"cls.predictions.bias", "cls.predictions.transform.dense.weight",
                                                 "cls.predictions.transform.dense.bias",
                                                 "cls.predictions.transform.LayerNorm.weight",
                                                 "cls.predictions.transform.LayerNorm.bias"}),
])
def test_shared_tiny_models(shared, folder, heads, ignored):
    d = shared("models", folder)
    cfg = ck.read_config(d)
    state = ck.load_state_dict(d)
    ref = safetensors_numpy.load_file(str(d / "model.safetensors"))
    assert_same(state, ref)
    exp = expected_shapes(cfg)
    ign = []
    matched, hd = ck.match_state_dict(exp, state, cfg["model_type"], ignored=ign, allow_missing=("pooler.",))
    has_pooler = "bert.pooler.dense.weight" in state
    assert sorted(matched) == sorted(k for k in exp if has_pooler or not k.startswith("pooler."))
    assert all(matched[k].shape == exp[k] for k in matched)
    if not has_pooler:  # the LM-head model has no pooler: an error unless allowed
        with pytest.raises(lyricnn.CheckpointError, match="missing:   pooler.dense.weight"):
            ck.match_state_dict(exp, state, "bert")
    assert set(hd) == heads and set(ign) == ignored
    # without the pooler in the encoder it becomes a head
    exp2 = expected_shapes(cfg, pooler=False)
    _, hd2 = ck.match_state_dict(exp2, state, "bert")
    assert set(hd2) == heads | ({"pooler.dense.weight", "pooler.dense.bias"} if has_pooler else set())


# ------------------------------------------------------------------ transformers-saved models

@pytest.mark.parametrize("name", ["bert", "bert_cls", "distilbert", "distilbert_cls"])
def test_safetensors_and_bin_match_torch(hf, name):
    m, sdir, bdir = hf[name]
    want = torch_state(m)
    s = ck.load_state_dict(sdir)
    b = ck.load_state_dict(bdir)
    assert_same(s, want)
    assert_same(b, want)   # pytorch_model.bin == its safetensors twin == torch
    cfg = ck.read_config(sdir)
    matched, heads = ck.match_state_dict(expected_shapes(cfg), b, cfg["model_type"])
    assert len(matched) == len(expected_shapes(cfg))
    if name == "distilbert_cls":
        assert set(heads) == {"pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"}
        np.testing.assert_array_equal(heads["classifier.weight"], want["classifier.weight"])
    elif name == "bert_cls":
        assert set(heads) == {"classifier.weight", "classifier.bias"}
        np.testing.assert_array_equal(matched["pooler.dense.weight"], want["bert.pooler.dense.weight"])
    else:
        assert heads == {}


def test_single_file_paths(hf):
    m, sdir, bdir = hf["bert"]
    want = torch_state(m)
    assert_same(ck.load_state_dict(sdir / "model.safetensors"), want)
    assert_same(ck.load_state_dict(str(bdir / "pytorch_model.bin")), want)


def test_sharded_safetensors(tmp_path):
    m = make_models()["bert_cls"]
    m.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    assert_same(ck.load_state_dict(tmp_path), torch_state(m))
    assert_same(ck.load_state_dict(tmp_path / "model.safetensors.index.json"), torch_state(m))


def test_sharded_bin(tmp_path):
    m = make_models()["distilbert"]
    sd = m.state_dict()
    keys = list(sd)
    shards = {"pytorch_model-00001-of-00002.bin": keys[:10], "pytorch_model-00002-of-00002.bin": keys[10:]}
    wm = {}
    for fname, ks in shards.items():
        torch.save({k: sd[k] for k in ks}, tmp_path / fname)
        wm.update({k: fname for k in ks})
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    assert_same(ck.load_state_dict(tmp_path), torch_state(m))
    # a tensor listed in the index but absent from its shard
    wm["extra.weight"] = "pytorch_model-00001-of-00002.bin"
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": wm}))
    with pytest.raises(lyricnn.CheckpointError, match="extra.weight"):
        ck.load_state_dict(tmp_path)


@pytest.mark.parametrize("shard", ["../evil.safetensors", "/etc/passwd", "sub/x.safetensors", ".."])
def test_index_rejects_paths_outside_the_folder(tmp_path, shard):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": shard}}))
    with pytest.raises(lyricnn.CheckpointError, match="plain file name"):
        ck.load_state_dict(tmp_path)


def test_bin_views_and_dtypes(tmp_path):
    torch.manual_seed(0)
    base = torch.randn(6, 5)
    sd = {
        "t": base.t(),                      # transposed view (strides (1, 5))
        "slice": base[2:4, 1:],             # offset + strided view of the same storage
        "same": base,                       # shared storage
        "f16": torch.randn(3, 4).half(),
        "bf16": torch.randn(7).bfloat16(),
        "f64": torch.randn(2, 2, dtype=torch.float64),
        "param": torch.nn.Parameter(torch.randn(4)),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "position_ids": torch.arange(5),    # integer buffer: skipped
    }
    torch.save(sd, tmp_path / "pytorch_model.bin")
    got = ck.load_state_dict(tmp_path)
    assert "position_ids" not in got
    want = {k: v.detach().float().numpy() for k, v in sd.items() if k != "position_ids"}
    assert_same(got, want)


def test_f16_bf16_convert_exactly(tmp_path):
    bits = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)  # every 16-bit pattern
    h, b = bits.view(torch.float16).clone(), bits.view(torch.bfloat16).clone()
    safetensors_torch.save_file({"h": h, "b": b, "f": torch.randn(3, 3)}, str(tmp_path / "model.safetensors"))
    got = ck.load_state_dict(tmp_path)
    for name, t in (("h", h), ("b", b)):
        want = t.float().numpy()
        g = got[name]
        assert g.dtype == np.float32 and g.shape == (65536,)
        nan = np.isnan(want)
        assert np.array_equal(np.isnan(g), nan)
        assert np.array_equal(g[~nan].view(np.uint32), want[~nan].view(np.uint32))  # bit-exact, -0 and subnormals
    # read_safetensors keeps F16 (numpy has it) and turns BF16 into float32
    raw = ck.read_safetensors(tmp_path / "model.safetensors")
    assert raw["h"].dtype == np.float16 and np.array_equal(raw["h"].view(np.int16), bits.numpy())
    assert raw["b"].dtype == np.float32
    assert ck.read_safetensors(tmp_path / "model.safetensors", to_float32=True)["h"].dtype == np.float32


def test_f16_bf16_model_checkpoints(tmp_path):
    m = make_models()["distilbert_cls"]
    for dtype in (torch.float16, torch.bfloat16):
        d = tmp_path / str(dtype)
        m.to(dtype).save_pretrained(d, safe_serialization=True)
        assert_same(ck.load_state_dict(d), torch_state(m))
        torch.save(m.state_dict(), d / "w.bin")
        assert_same(ck.load_state_dict(d / "w.bin"), torch_state(m))
        m.float()


# ------------------------------------------------------------------ matching

def test_match_errors_list_everything_together():
    cfg = {"model_type": "distilbert", "dim": 8, "hidden_dim": 12, "n_layers": 1, "vocab_size": 20,
           "max_position_embeddings": 16}
    exp = expected_shapes(cfg)
    state = {"distilbert." + k: np.zeros(s, np.float32) for k, s in exp.items()}
    del state["distilbert.transformer.layer.0.ffn.lin2.bias"]                       # missing
    state["distilbert.embeddings.word_embeddings.weight"] = np.zeros((21, 8), np.float32)  # misshapen
    state["distilbert.transformer.layer.0.attention.foo.weight"] = np.zeros((2, 3), np.float32)  # unknown
    state["vocab_projector.weight"] = np.zeros((20, 8), np.float32)                 # ignored pretraining head
    with pytest.raises(lyricnn.CheckpointError) as ei:
        ck.match_state_dict(exp, state, "distilbert")
    e = ei.value
    msg = str(e)
    assert "1 missing, 1 misshapen, 1 unknown" in msg
    assert "missing:   transformer.layer.0.ffn.lin2.bias, expected shape (8,)" in msg
    assert "embeddings.word_embeddings.weight: expected (20, 8), found (21, 8)" in msg
    assert "unknown:   distilbert.transformer.layer.0.attention.foo.weight, shape (2, 3)" in msg
    assert "vocab_projector" not in msg
    assert [m[0] for m in e.missing] == ["transformer.layer.0.ffn.lin2.bias"]
    assert isinstance(e, ValueError)


def test_match_prefixes_heads_and_ignored():
    cfg = {"model_type": "bert", "hidden_size": 4, "intermediate_size": 8, "num_hidden_layers": 1,
           "vocab_size": 10, "max_position_embeddings": 12, "type_vocab_size": 2}
    exp = expected_shapes(cfg)
    rng = np.random.default_rng(0)
    state = {k: rng.standard_normal(s).astype(np.float32) for k, s in exp.items()}  # no prefix
    # TF-era LayerNorm names
    state["embeddings.LayerNorm.gamma"] = state.pop("embeddings.LayerNorm.weight")
    state["embeddings.LayerNorm.beta"] = state.pop("embeddings.LayerNorm.bias")
    state["classifier.weight"] = np.ones((3, 4), np.float32)
    state["cls.predictions.bias"] = np.ones(10, np.float32)
    state["embeddings.position_ids"] = np.arange(12).astype(np.float32)
    ign = []
    matched, heads = ck.match_state_dict(exp, state, "bert", ignored=ign)
    assert set(matched) == set(exp)
    assert matched["embeddings.LayerNorm.weight"] is state["embeddings.LayerNorm.gamma"]
    assert set(heads) == {"classifier.weight"}
    assert sorted(ign) == ["cls.predictions.bias", "embeddings.position_ids"]
    # a tensor present both with and without the prefix
    state["bert.encoder.layer.0.output.dense.bias"] = state["encoder.layer.0.output.dense.bias"]
    with pytest.raises(lyricnn.CheckpointError, match="duplicate"):
        ck.match_state_dict(exp, state, "bert")


def test_match_wrong_model_type_hint(hf):
    _, sdir, _ = hf["distilbert_cls"]
    state = ck.load_state_dict(sdir)
    cfg = {"model_type": "bert", "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
           "vocab_size": 97, "max_position_embeddings": 40, "type_vocab_size": 2}
    with pytest.raises(lyricnn.CheckpointError, match="model_type"):
        ck.match_state_dict(expected_shapes(cfg), state, "bert")


# ------------------------------------------------------------------ writing

def test_save_roundtrip_read_by_safetensors(tmp_path):
    rng = np.random.default_rng(0)
    t = {"w": rng.standard_normal((3, 5)).astype(np.float32), "h": rng.standard_normal(7).astype(np.float16),
         "d": rng.standard_normal((2, 1, 2)), "i": np.arange(5, dtype=np.int64), "b": np.array([True, False]),
         "u": np.arange(3, dtype=np.uint8), "s": np.array(2.5, np.float32), "z": np.zeros((0, 4), np.float32),
         "nc": rng.standard_normal((4, 3)).astype(np.float32).T, "é/ü \"q\"\n": np.ones(2, np.float32)}
    p = tmp_path / "x.safetensors"
    ck.save_safetensors(p, t, metadata={"format": "pt", "note": "ü"})
    ref = safetensors_numpy.load_file(str(p))
    from safetensors import safe_open
    with safe_open(str(p), "np") as f:
        assert f.metadata() == {"format": "pt", "note": "ü"}
    for store in (ref, ck.read_safetensors(p)):
        assert sorted(store) == sorted(t)
        for k in t:
            assert store[k].dtype == t[k].dtype and store[k].shape == t[k].shape, k
            np.testing.assert_array_equal(store[k], t[k])
    assert ck.safetensors_metadata(p) == {"format": "pt", "note": "ü"}
    raw = p.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0
    for e in ck.safetensors_header(p):   # each tensor aligned to its element size
        size = {"F64": 8, "I64": 8, "F32": 4, "F16": 2}.get(e["dtype"], 1)
        assert (8 + n + e["data_offsets"][0]) % size == 0
    # byte-identical to the safetensors package's file (same order, offsets, escapes and padding)
    t2 = dict(t, i32=np.arange(3, dtype=np.int32), u16=np.arange(3, dtype=np.uint16), i8=np.arange(3, dtype=np.int8))
    t2["ctl\t\x01\x1f/\\"] = np.zeros(1, np.float32)
    ck.save_safetensors(tmp_path / "y.safetensors", t2, metadata={"format": "pt"})
    safetensors_numpy.save_file({k: v.copy(order="C") for k, v in t2.items()}, str(tmp_path / "z.safetensors"),
                                metadata={"format": "pt"})
    assert (tmp_path / "y.safetensors").read_bytes() == (tmp_path / "z.safetensors").read_bytes()


@pytest.mark.parametrize("name", ["bert", "distilbert_cls"])
def test_transformers_loads_what_we_write(hf, tmp_path, name):
    m, sdir, _ = hf[name]
    state = ck.load_state_dict(sdir)
    shutil.copy(sdir / "config.json", tmp_path / "config.json")
    ck.save_safetensors(tmp_path / "model.safetensors", state, metadata={"format": "pt"})
    m2 = type(m).from_pretrained(tmp_path)
    assert_same(torch_state(m2), torch_state(m))


def test_save_bad_inputs(tmp_path):
    p = tmp_path / "x.safetensors"
    with pytest.raises(TypeError, match="dict"):
        ck.save_safetensors(p, [np.zeros(2)])
    with pytest.raises(TypeError, match="dtype"):
        ck.save_safetensors(p, {"a": np.zeros(2, np.complex64)})
    with pytest.raises(TypeError, match="metadata"):
        ck.save_safetensors(p, {"a": np.zeros(2)}, metadata={"a": 1})
    with pytest.raises(ValueError, match="__metadata__"):
        ck.save_safetensors(p, {"__metadata__": np.zeros(2)})
    assert list(tmp_path.iterdir()) == []   # no temp files left behind


def test_atomic_write_failure_keeps_old_file(tmp_path):
    p = tmp_path / "model.safetensors"
    old = {"a": np.arange(1000, dtype=np.float32)}
    ck.save_safetensors(p, old)
    for fail_after in (0, 5, 100, 2000):
        with pytest.raises(OSError, match="simulated"):
            ck.save_safetensors(p, {"a": np.zeros(1000, np.float32), "b": np.ones(10, np.float32)},
                                _fail_after=fail_after)
        np.testing.assert_array_equal(ck.read_safetensors(p)["a"], old["a"])
        assert [x.name for x in tmp_path.iterdir()] == ["model.safetensors"]


def test_atomic_write_killed_process_keeps_old_file(tmp_path):
    import subprocess
    import sys
    p = tmp_path / "model.safetensors"
    ck.save_safetensors(p, {"a": np.arange(10, dtype=np.float32)})
    # the child dies (SIGKILL) after writing the new data but before the rename
    code = ("import os, signal, numpy as np\n"
            "from lyricnn import checkpoint as ck\n"
            "os.replace = lambda a, b: os.kill(os.getpid(), signal.SIGKILL)\n"
            "ck.save_safetensors(%r, {'a': np.zeros(10**6, np.float32)})\n" % str(p))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert r.returncode == -9, r.stderr
    np.testing.assert_array_equal(ck.read_safetensors(p)["a"], np.arange(10, dtype=np.float32))


# ------------------------------------------------------------------ config / missing files

def test_read_config_errors(tmp_path):
    with pytest.raises(lyricnn.CheckpointError, match="config.json"):
        ck.read_config(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert",')
    with pytest.raises(lyricnn.CheckpointError, match="invalid JSON at line 1"):
        ck.read_config(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(lyricnn.CheckpointError, match="JSON object"):
        ck.read_config(tmp_path)
    (tmp_path / "config.json").write_bytes(b'{"a": "\xff"}')
    with pytest.raises(lyricnn.CheckpointError, match="UTF-8"):
        ck.read_config(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    assert ck.read_config(tmp_path / "config.json") == {"model_type": "bert"}


def test_load_state_dict_missing(tmp_path):
    with pytest.raises(lyricnn.CheckpointError, match="model.safetensors.*pytorch_model.bin"):
        ck.load_state_dict(tmp_path)
    with pytest.raises(lyricnn.CheckpointError, match="not found"):
        ck.load_state_dict(tmp_path / "nope.safetensors")
