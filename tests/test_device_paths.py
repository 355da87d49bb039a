"""The device argument, and the code paths of device backends, run on the "cpu-copy" backend: the CPU's ops with its memory treated
as device memory, so parameters, gradients, optimizer state and BatchNorm statistics cross to numpy as
copies only (lyricnn._device). Every result must equal the "cpu" backend's bit for bit."""
import numpy as np
import pytest

import warnings

import lyricnn
from lyricnn import _C, _device
from lyricnn._device import cuda_available
from lyricnn.classifier import SequenceClassifier
from lyricnn.encoder import Encoder

DISTIL = dict(model_type="distilbert", vocab_size=90, dim=24, n_layers=2, n_heads=3, hidden_dim=40,
              max_position_embeddings=32, dropout=0.1, attention_dropout=0.1)
BERT = dict(model_type="bert", vocab_size=90, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
            intermediate_size=40, max_position_embeddings=32, type_vocab_size=2)


def batch(B=4, T=11, seed=0, vocab=90, min_len=2):
    """Random ids in [1, vocab) and a right-padded mask of lengths in [min_len, T]."""
    r = np.random.default_rng(seed)
    ids = r.integers(1, vocab, (B, T)).astype(np.int32)
    mask = np.ones((B, T), np.int32)
    for b, n in enumerate(r.integers(min_len, T + 1, B)):
        mask[b, n:] = 0
    return ids, mask


def test_backends_of_this_build():
    assert "cpu" in _C.backends() and "cpu-copy" in _C.backends()
    assert _C.Backend("cpu").host_memory and not _C.Backend("cpu-copy").host_memory


def test_device_argument_errors():
    if cuda_available():  # a GPU machine (tools/gpu_check.sh runs this file there)
        with pytest.raises(ValueError, match="this machine has"):
            Encoder(DISTIL, device="cuda:%d" % len(lyricnn.cuda_info()["devices"]))
    else:
        with pytest.raises(ValueError, match="needs the CUDA backend"):
            SequenceClassifier.from_config(DISTIL, num_labels=2, device="cuda")
        with pytest.raises(ValueError, match="needs the CUDA backend"):
            Encoder(DISTIL, device="cuda:1")
    with pytest.raises(ValueError, match="device must be 'cpu', 'auto' or 'cuda"):
        Encoder(DISTIL, device="gpu")
    with pytest.raises(ValueError, match="device must look like 'cuda' or 'cuda:N'"):
        Encoder(DISTIL, device="cuda:x")
    with pytest.raises(TypeError, match="device must be a string"):
        Encoder(DISTIL, device=0)
    expect = "cuda" if (_device.CUDA_VERIFIED and cuda_available()) else "cpu"
    assert Encoder(DISTIL, device="auto")._engine.backend == expect


FAKE_GPU = [dict(name="Fake GPU", bf16=True, compute_capability=(9, 0))]


@pytest.fixture
def fake_cuda(monkeypatch):
    """resolve_device on a machine that seems to have a usable CUDA backend and one sm_90 GPU."""
    monkeypatch.setattr(_device, "cuda_available", lambda: True)
    monkeypatch.setattr(_device, "_cuda_devices", lambda: FAKE_GPU)
    monkeypatch.setattr(_device, "_warned_unverified", False)


def test_unverified_cuda_is_not_picked_by_auto_and_warns_once(fake_cuda, monkeypatch):
    """CUDA_VERIFIED = False (until tools/gpu_check.sh has passed on a GPU): "auto" (the CLI's default) is the
    CPU even where the backend is usable, and device="cuda" works but warns, once per process."""
    monkeypatch.setattr(_device, "CUDA_VERIFIED", False)
    assert _device.resolve_device("auto") == ("cpu", "f32", 0, False)
    assert _device.resolve_device(None)[0] == "cpu"
    with pytest.warns(RuntimeWarning, match="not yet been verified on a GPU"):
        assert _device.resolve_device("cuda") == ("cuda", "bf16", 0, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _device.resolve_device("cuda:0", "fp32") == ("cuda", "f32", 0, False)  # no second warning
    from lyricnn import cli
    assert cli.build_parser().parse_args(["train", "x.csv", "--output-dir", "m"]).device == "auto"


def test_verified_cuda_is_picked_by_auto_without_a_warning(fake_cuda, monkeypatch):
    monkeypatch.setattr(_device, "CUDA_VERIFIED", True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _device.resolve_device("auto") == ("cuda", "bf16", 0, False)
        assert _device.resolve_device("cuda", "tf32") == ("cuda", "f32", 0, True)
    monkeypatch.setattr(_device, "cuda_available", lambda: False)  # verified, but no GPU here: the CPU
    assert _device.resolve_device("auto")[0] == "cpu"


@pytest.mark.parametrize("cfg,head", [(DISTIL, dict(pooling="mean", hidden=[16], batchnorm=True, dropout=0.1,
                                                     features_at=1)),
                                      (DISTIL, None), (BERT, None)])
def test_classifier_on_device_memory_equals_cpu(cfg, head, tmp_path):
    ids, mask = batch()
    y = np.array([0, 1, 2, 1])
    nf = 3 if head else 0
    feats = np.random.default_rng(1).standard_normal((4, nf)).astype(np.float32) if nf else None
    runs = {}
    for dev in ("cpu", "cpu-copy"):
        m = SequenceClassifier.from_config(cfg, num_labels=3, seed=5, device=dev, head=head, num_features=nf)
        m.configure_optimizer("adamw", lr=1e-3, weight_decay=0.01)
        losses = [m.train_step(ids, mask, y, features=feats) for _ in range(3)]
        logits = m(ids, mask, features=feats).logits
        runs[dev] = (losses, logits, m.state_dict(), m.optimizer_state(), m)
    (l0, z0, s0, o0, m0), (l1, z1, s1, o1, m1) = runs["cpu"], runs["cpu-copy"]
    assert l0 == l1
    np.testing.assert_array_equal(z0, z1)
    assert set(s0) == set(s1)
    for k in s0:
        np.testing.assert_array_equal(s0[k], s1[k], err_msg=k)
    for k in ("m", "v", "steps"):
        np.testing.assert_array_equal(o0[k], o1[k], err_msg=k)
    # device memory crosses as copies: writing to them changes nothing; load_state_dict does
    name = "classifier.weight"
    got = m1.params[name]
    got[...] = 0
    np.testing.assert_array_equal(m1.params[name], s1[name])
    assert type(m0.params) is dict and type(m1.params) is not dict
    state = {k: v * 0.5 if v.dtype == np.float32 else v for k, v in s1.items()}
    m1.load_state_dict(state)
    np.testing.assert_array_equal(m1.params[name], s1[name] * 0.5)
    # the optimizer state round-trips through the copies
    m1.load_optimizer_state(o1)
    np.testing.assert_array_equal(m1.optimizer_state()["v"], o1["v"])
    # and checkpoints: save on the device, load on the CPU and on the device
    m1.load_state_dict(s1)
    m1.save_pretrained(tmp_path / "saved")
    for dev in ("cpu", "cpu-copy"):
        back = SequenceClassifier.from_pretrained(tmp_path / "saved", device=dev, seed=5,
                                                  num_features=nf or None)
        np.testing.assert_array_equal(back(ids, mask, features=feats).logits, z1)


def test_batchnorm_buffers_on_device_memory():
    head = dict(pooling="cls", hidden=[8], batchnorm=True)
    m = SequenceClassifier.from_config(DISTIL, num_labels=2, head=head, device="cpu-copy")
    buf = m.buffers
    np.testing.assert_array_equal(buf["head.0.norm.running_var"], np.ones(8, np.float32))
    buf["head.0.norm.running_var"][...] = 7  # a copy
    np.testing.assert_array_equal(m.buffers["head.0.norm.running_var"], np.ones(8, np.float32))
    m.load_buffers({"head.0.norm.running_mean": np.arange(8, dtype=np.float32)})
    np.testing.assert_array_equal(m.buffers["head.0.norm.running_mean"], np.arange(8, dtype=np.float32))
    with pytest.raises(lyricnn.CheckpointError, match="needs \\(8,\\)"):
        m.load_buffers({"head.0.norm.running_mean": np.zeros(3, np.float32)})


def test_encoder_on_device_memory_equals_cpu():
    ids, mask = batch(3, 9, seed=2)
    outs = []
    for dev in ("cpu", "cpu-copy"):
        enc = Encoder.from_config(BERT, seed=3, device=dev)
        out = enc(ids, mask, train=True, seed=9)
        g = np.random.default_rng(4).standard_normal(out.last_hidden_state.shape).astype(np.float32)
        enc.backward(g, np.ones_like(out.pooler_output))
        outs.append((out.last_hidden_state, out.pooler_output, {k: enc.grads[k] for k in enc.grads}, enc))
    for a, b in zip(outs[0][:2], outs[1][:2]):
        np.testing.assert_array_equal(a, b)
    for k, v in outs[0][2].items():
        np.testing.assert_array_equal(v, outs[1][2][k], err_msg=k)
    enc = outs[1][3]
    with pytest.raises(lyricnn.LyricnnError, match="read copies with Engine.read"):
        enc._engine.params_buffer()
    w = enc.params["embeddings.word_embeddings.weight"]
    enc.load_tensors({k: enc.params[k] * 0 + 1 for k in enc.params})
    assert (enc.params["embeddings.word_embeddings.weight"] == 1).all() and not (w == 1).all()


def test_estimator_fit_and_resume_on_device_memory(tmp_path):
    r = np.random.default_rng(0)
    words = ["love", "night", "rain", "fire", "road", "heart", "gold", "sky"]
    X = [" ".join(r.choice(words, 6)) for _ in range(24)]
    y = np.array(["a", "b"] * 12)
    preds = {}
    for dev in ("cpu", "cpu-copy"):
        ck = tmp_path / dev
        kw = dict(epochs=2, batch_size=8, max_length=16, seed=1, verbose=0, checkpoint_dir=str(ck), device=dev)
        full = lyricnn.TextClassifier(**dict(kw, checkpoint_dir=None)).fit(X, y)
        part = lyricnn.TextClassifier(**kw).fit(X, y, callbacks=[lambda est, info: info["step"] < 4])  # stop mid-fit
        assert part.interrupted_ and part.n_steps_ == 4
        resumed = lyricnn.TextClassifier(**kw).fit(X, y, resume=True)
        np.testing.assert_array_equal(full.predict_proba(X), resumed.predict_proba(X))
        preds[dev] = full.predict_proba(X)
    np.testing.assert_array_equal(preds["cpu"], preds["cpu-copy"])


@pytest.mark.parametrize("how", ["mean", "max", "attention"])
def test_windows_on_device_memory_equal_cpu(how):
    """Songs as windows (segment pooling, the scorer, windows_of uploaded per step) on device memory."""
    ids, mask = batch(B=6, seed=4)
    win = np.array([0, 0, 0, 1, 2, 2], np.int32)
    y = np.array([0, 1, 2])
    runs = {}
    for dev in ("cpu", "cpu-copy"):
        m = SequenceClassifier.from_config(BERT, num_labels=3, seed=2, device=dev, long_text="windows",
                                           window_pooling=how)
        m.configure_optimizer("adamw", lr=1e-3)
        losses = [m.train_step(ids, mask, y, windows_of=win) for _ in range(2)]
        runs[dev] = (losses, m(ids, mask, windows_of=win).logits, m.state_dict())
    assert runs["cpu"][0] == runs["cpu-copy"][0]
    np.testing.assert_array_equal(runs["cpu"][1], runs["cpu-copy"][1])
    for k, v in runs["cpu"][2].items():
        np.testing.assert_array_equal(runs["cpu-copy"][2][k], v, err_msg=k)


def test_backend_lookup_from_many_threads_at_once():
    """The CUDA backend is looked for once (pthread_once), whichever thread asks first: threads that start
    together in a fresh process all get the same list and reason."""
    import subprocess
    import sys
    code = ("import threading, lyricnn\n"
            "from lyricnn import _C\n"
            "out, go = [], threading.Barrier(8)\n"
            "def f():\n"
            "    go.wait()\n"
            "    out.append((tuple(_C.backends()), _C.Backend('cpu').name))\n"
            "ts = [threading.Thread(target=f) for _ in range(8)]\n"
            "[t.start() for t in ts]\n"
            "[t.join() for t in ts]\n"
            "assert len(out) == 8 and len(set(out)) == 1, out\n"
            "print(out[0][0])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "cpu" in r.stdout
