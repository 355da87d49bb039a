"""The CUDA backend end to end (the per-op bench, tests/test_backend_ops.py, covers every op on it on its
own). Skips with the reason on machines where the CUDA backend is not usable (a build without CUDA, no
driver, no GPU); tools/gpu_check.sh runs it on a GPU machine."""
import numpy as np
import pytest

import lyricnn
from lyricnn._device import cuda_available


def _why_not():
    try:
        lyricnn.cuda_info()
        return ""
    except lyricnn.LyricnnError as e:
        return str(e)


pytestmark = pytest.mark.skipif(not cuda_available(), reason="needs the CUDA backend and a GPU: %s" % _why_not())

from lyricnn.classifier import SequenceClassifier  # noqa: E402
from lyricnn.encoder import Encoder  # noqa: E402
from test_device_paths import batch as device_batch  # noqa: E402

DISTIL = dict(model_type="distilbert", vocab_size=120, dim=64, n_layers=2, n_heads=2, hidden_dim=128,
              max_position_embeddings=64, dropout=0.1, attention_dropout=0.1)
BERT = dict(model_type="bert", vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=128, max_position_embeddings=64, type_vocab_size=2)


def batch(B=6, T=33, seed=0):
    return device_batch(B, T, seed, vocab=120, min_len=3)


def test_cuda_info():
    info = lyricnn.cuda_info()
    assert info["runtime_version"] > 0 and info["driver_version"] > 0 and info["devices"]
    d = info["devices"][0]
    assert d["name"] and d["total_memory"] > 0 and len(d["compute_capability"]) == 2


@pytest.mark.parametrize("cfg", [DISTIL, BERT], ids=["distilbert", "bert"])
@pytest.mark.parametrize("head", [None, dict(pooling="mean", hidden=[32], batchnorm=True, dropout=0.1, features_at=1)],
                         ids=["hf-head", "mlp-head"])
def test_train_steps_fp32_match_the_cpu(cfg, head):
    """Three AdamW steps with dropout on: fp32 on the GPU equals the CPU engine to float rounding (same
    Philox masks, no TF32), for the HF heads and a configurable head with BatchNorm and features. Compared
    where that is robust: the logits and the (clipped) gradients of the first step, both at the same initial
    weights, and the loss trajectory. Not the weights after the steps: Adam's first update is lr * sign(g),
    so a near-zero gradient whose sign differs between the devices' summation orders moves a weight by 2 lr."""
    ids, mask = batch()
    y = np.arange(6) % 3
    nf = 4 if head else 0
    feats = np.random.default_rng(2).standard_normal((6, nf)).astype(np.float32) if nf else None
    runs = {}
    for dev in ("cpu", "cuda"):
        m = SequenceClassifier.from_config(cfg, num_labels=3, seed=3, head=head, num_features=nf, device=dev,
                                           precision=None if dev == "cpu" else "fp32")
        m.configure_optimizer("adamw", lr=1e-3, weight_decay=0.01, max_grad_norm=1.0)
        logits0 = m(ids, mask, features=feats).logits
        losses = [m.train_step(ids, mask, y, features=feats)]
        grads0 = {k: np.array(m.grads[k]) for k in m.grads}  # after step 1: the gradients at the initial weights
        losses += [m.train_step(ids, mask, y, features=feats) for _ in range(2)]
        runs[dev] = (losses, logits0, grads0)
    np.testing.assert_allclose(runs["cuda"][0], runs["cpu"][0], rtol=2e-5)
    np.testing.assert_allclose(runs["cuda"][1], runs["cpu"][1], rtol=1e-5, atol=1e-6)
    scale = max(np.abs(v).max() for v in runs["cpu"][2].values())
    for k, v in runs["cpu"][2].items():
        np.testing.assert_allclose(runs["cuda"][2][k], v, rtol=1e-4, atol=1e-5 * scale, err_msg=k)


@pytest.mark.parametrize("how", ["mean", "max", "attention"])
@pytest.mark.parametrize("cfg", [DISTIL, BERT], ids=["distilbert", "bert"])
def test_windows_train_like_the_cpu(cfg, how):
    """Songs as windows (segment_pool on the GPU, the attention scorer): three fp32 AdamW steps equal the CPU's."""
    ids, mask = batch()
    win = np.array([0, 0, 1, 1, 1, 2], np.int32)
    y = np.array([2, 0, 1])
    runs = {}
    for dev in ("cpu", "cuda"):
        m = SequenceClassifier.from_config(cfg, num_labels=3, seed=3, device=dev, long_text="windows",
                                           window_pooling=how, precision=None if dev == "cpu" else "fp32")
        m.configure_optimizer("adamw", lr=1e-3, weight_decay=0.01, max_grad_norm=1.0)
        losses = [m.train_step(ids, mask, y, windows_of=win) for _ in range(3)]
        runs[dev] = (losses, m(ids, mask, windows_of=win).logits, m.state_dict())
    np.testing.assert_allclose(runs["cuda"][0], runs["cpu"][0], rtol=2e-5)
    np.testing.assert_allclose(runs["cuda"][1], runs["cpu"][1], rtol=1e-4, atol=1e-5)
    for k, v in runs["cpu"][2].items():
        np.testing.assert_allclose(runs["cuda"][2][k], v, rtol=1e-4, atol=2e-6, err_msg=k)


@pytest.mark.parametrize("problem", ["single_label_classification", "multi_label_classification", "regression"])
def test_losses_match_the_cpu(problem):
    ids, mask = batch(4, 17, seed=5)
    K = 1 if problem != "single_label_classification" else 3
    y = np.array([0, 2, 1, 2]) if K == 3 else np.random.default_rng(1).random((4, 1)).astype(np.float32)
    out = {}
    for dev in ("cpu", "cuda"):
        m = SequenceClassifier.from_config(DISTIL, num_labels=K, problem_type=problem, seed=1, device=dev,
                                           precision=None if dev == "cpu" else "fp32")
        m.configure_optimizer("adamw", lr=1e-3)
        out[dev] = [m.train_step(ids, mask, y) for _ in range(2)]
    np.testing.assert_allclose(out["cuda"], out["cpu"], rtol=2e-5)


def test_same_seed_same_bits_run_to_run():
    ids, mask = batch()
    y = np.arange(6) % 2
    runs = []
    for _ in range(2):
        m = SequenceClassifier.from_config(BERT, num_labels=2, seed=9, device="cuda")
        m.configure_optimizer("adamw", lr=1e-3)
        runs.append(([m.train_step(ids, mask, y) for _ in range(3)], m.state_dict()))
    assert runs[0][0] == runs[1][0]
    for k, v in runs[0][1].items():
        np.testing.assert_array_equal(v, runs[1][1][k], err_msg=k)


def test_dropout_masks_equal_the_cpu():
    """The same seed gives the same Philox masks on both devices: the dropout op's output, bit for bit."""
    x = np.random.default_rng(0).standard_normal((37, 29)).astype(np.float32)
    outs = []
    for name in ("cpu", "cuda"):
        out = np.zeros_like(x)
        lyricnn._C.Backend(name).call("dropout_forward", out=out, inp=x, rows=dict(N=37, B=37, T=1), C=29,
                                      drop=dict(p=0.3, seed=123456789012, step=7, stream=5))
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])


def test_encoder_matches_transformers_on_cuda(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA here")
    torch.manual_seed(0)
    cfg = transformers.DistilBertConfig(**{k: v for k, v in DISTIL.items() if k != "model_type"})
    hf = transformers.DistilBertModel(cfg).eval()
    hf.save_pretrained(tmp_path)
    enc = Encoder.from_pretrained(str(tmp_path), device="cuda", precision="fp32")
    ids, mask = batch()
    ref = hf.cuda()(input_ids=torch.tensor(ids).long().cuda(), attention_mask=torch.tensor(mask).cuda())
    got = enc(ids, mask).last_hidden_state
    np.testing.assert_allclose(got * mask[..., None], ref.last_hidden_state.detach().cpu().numpy() * mask[..., None],
                               rtol=1e-4, atol=1e-4)


def test_save_pretrained_from_the_gpu_loads_in_transformers(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    m = SequenceClassifier.from_config(DISTIL, num_labels=2, seed=4, device="cuda", precision="fp32")
    m.configure_optimizer("adamw", lr=1e-3)
    ids, mask = batch()
    m.train_step(ids, mask, np.arange(6) % 2)
    m.save_pretrained(tmp_path)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    ref = hf(input_ids=torch.tensor(ids).long(), attention_mask=torch.tensor(mask)).logits.detach().numpy()
    np.testing.assert_allclose(m(ids, mask).logits, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("half", ["bf16", "fp16"])
def test_half_precision_trains_close_to_fp32(half):
    """bf16, and fp16 with loss scaling (on by default with precision='fp16', GradScaler's initial 65536), follow
    the fp32 run's losses within their rounding."""
    ids, mask = batch(8, 33, seed=6)
    y = np.arange(8) % 2
    losses = {}
    for prec in ("fp32", half):
        m = SequenceClassifier.from_config(DISTIL, num_labels=2, seed=2, device="cuda", precision=prec)
        m.configure_optimizer("adamw", lr=1e-3)
        assert (m.loss_scale == 65536.0) == (prec == "fp16")
        losses[prec] = [m.train_step(ids, mask, y) for _ in range(5)]
        assert not m.last_step_skipped
    np.testing.assert_allclose(losses[half], losses["fp32"], rtol=5e-2 if half == "bf16" else 1e-2)


def test_out_of_memory_names_the_batch():
    m = SequenceClassifier.from_config(dict(DISTIL, max_position_embeddings=8192), num_labels=2, device="cuda",
                                       precision="fp32")
    m.configure_optimizer("adamw", lr=1e-3)
    ids = np.ones((4096, 8192), np.int32)
    with pytest.raises(MemoryError, match="batch 4096 x sequence 8192"):
        m.train_step(ids, np.ones_like(ids), np.zeros(4096, np.int64))
    # the model is still usable after the failure
    ids2, mask2 = batch()
    assert np.isfinite(m.train_step(ids2, mask2, np.arange(6) % 2))


def test_device_errors():
    with pytest.raises(ValueError, match="this machine has"):
        Encoder(DISTIL, device="cuda:99")
    with pytest.raises(ValueError, match="precision must be one of"):
        Encoder(DISTIL, device="cuda", precision="fp8")


# ------------------------------------------------------------------ tensor-core attention (attention_tc.cu)

import _backend_refs as R  # noqa: E402

ATT_LENS = [80, 1, 37, 65]  # two key tiles of 64, a single token, lengths not multiples of 16


def _att_backend(mode, monkeypatch):
    """A bf16 CUDA context whose attention is mode's: LYRICNN_CUDA_ATTENTION is read at context creation."""
    monkeypatch.setenv("LYRICNN_CUDA_ATTENTION", mode)
    return lyricnn._C.Backend("cuda", dtype="bf16")


def _att_case(layout, hs, q_first, p):
    r = np.random.default_rng(hs + 2 * q_first + (layout == "packed"))
    B, T, NH = len(ATT_LENS), max(ATT_LENS), 2
    C = NH * hs
    mask = seq_off = None
    if layout == "packed":
        seq_off = np.concatenate([[0], np.cumsum(ATT_LENS)]).astype(np.int32)
        N = int(seq_off[-1])
    else:  # ragged, a hole, and sequence 3 fully masked (every query then averages all values, as HF)
        N = B * T
        mask = np.zeros((B, T), np.int32)
        for b, n in enumerate(ATT_LENS[:3]):
            mask[b, :n] = 1
        mask[0, 5] = 0
    qkv = R.round_bf16(r.standard_normal((N, 3 * C)))
    dout = R.round_bf16(r.standard_normal((B if q_first else N, C)))
    pre = R.round_bf16(0.1 * r.standard_normal((N, 3 * C)))  # dqkv accumulates (+=)
    drop = dict(seed=2 ** 33 + 77, step=3, stream=2, p=p)
    return dict(qkv=qkv, mask=mask, seq_off=seq_off, q_first=q_first, B=B, T=T, C=C, NH=NH, drop=drop), dout, pre


def _att_run(be, x, dout, pre):
    """(out, dqkv) of the backend's attention forward and backward."""
    B, T, NH = x["B"], x["T"], x["NH"]
    saved = be.alloc(be.attention_saved_bytes(B, T, NH, True, x["drop"]["p"]))
    scratch = be.alloc(be.attention_scratch_bytes(B, T, NH, True, x["drop"]["p"]))
    out = np.full(dout.shape, np.nan, np.float32)
    be.call("attention_forward", out=out, saved=saved, scratch=scratch, **x)
    dqkv = pre.copy()
    be.call("attention_backward", dqkv=dqkv, dout=dout, out=out, saved=saved, scratch=scratch,
            **{k: v for k, v in x.items() if k != "mask"})
    return out, dqkv


def _att_close(got, ref, what):
    """within bf16 rounding: |got - ref| <= 2e-2 |ref| + 2e-2 max|ref| (tests/test_backend_ops.py's bf16 TOL)"""
    lim = 2e-2 * np.abs(ref) + 2e-2 * np.abs(ref).max()
    bad = np.abs(got - ref) > lim
    assert not bad.any(), "%s: %d of %d values off, max |err| %.3g (scale %.3g)" % (
        what, bad.sum(), bad.size, np.abs(got - ref).max(), np.abs(ref).max())


@pytest.mark.parametrize("p", [0.0, 0.25], ids=["p0", "p0.25"])
@pytest.mark.parametrize("q_first", [0, 1], ids=["all", "q_first"])
@pytest.mark.parametrize("hs", [32, 64])
@pytest.mark.parametrize("layout", ["padded", "packed"])
def test_attention_tc_matches_simt_and_the_reference(layout, hs, q_first, p, monkeypatch):
    """The tensor-core attention (bf16, hs 32 / 64) against the SIMT kernels and the float64 reference, forward
    and backward: padded rows with a ragged mask (a hole, a fully masked sequence) and packed rows (lengths
    80, 1, 37, 65: two key tiles, a single token, ends inside a 16-row fragment), q_first, dropout (the same
    Philox masks: with p > 0 a different mask would miss the reference by far more than bf16 rounding)."""
    x, dout, pre = _att_case(layout, hs, q_first, p)
    tc = _att_run(_att_backend("tc", monkeypatch), x, dout, pre)
    simt = _att_run(_att_backend("simt", monkeypatch), x, dout, pre)
    ref = dict(x, qkv=x["qkv"].astype(np.float64))
    ref_out = R.attention_fwd(**ref)
    ref_dqkv = R.attention_bwd(dout.astype(np.float64), **ref)  # the contribution added to pre
    # the tensor cores ran (P is rounded to bf16 there, not in the SIMT kernels): the bits differ
    assert not np.array_equal(tc[0], simt[0]), "LYRICNN_CUDA_ATTENTION=tc ran the SIMT kernels"
    _att_close(tc[0], simt[0], "tc vs simt out")
    _att_close(tc[1] - pre, simt[1] - pre, "tc vs simt dqkv")
    _att_close(tc[0], ref_out, "tc vs reference out")
    _att_close(tc[1] - pre, ref_dqkv, "tc vs reference dqkv (+= pre)")
    again = _att_run(_att_backend("tc", monkeypatch), x, dout, pre)  # deterministic: no atomics
    np.testing.assert_array_equal(again[0], tc[0])
    np.testing.assert_array_equal(again[1], tc[1])


@pytest.mark.parametrize("cfg", [DISTIL, BERT], ids=["distilbert", "bert"])
def test_attention_tc_trains_like_simt(cfg, monkeypatch):
    """A bf16 model (head size 32, dropout on) trains three steps with the tensor-core attention to the
    SIMT attention's losses, within bf16 rounding."""
    ids, mask = batch(6, 70, seed=4)
    y = np.arange(6) % 3
    runs = {}
    for mode in ("simt", "tc"):
        monkeypatch.setenv("LYRICNN_CUDA_ATTENTION", mode)  # read when the model's context is created
        m = SequenceClassifier.from_config(dict(cfg, max_position_embeddings=128), num_labels=3, seed=5,
                                           device="cuda", precision="bf16")
        m.configure_optimizer("adamw", lr=1e-3)
        runs[mode] = ([m.train_step(ids, mask, y) for _ in range(3)], m(ids, mask).logits)
    assert not np.array_equal(runs["tc"][1], runs["simt"][1]), "the model did not run the tensor-core attention"
    np.testing.assert_allclose(runs["tc"][0], runs["simt"][0], rtol=2e-2)
    np.testing.assert_allclose(runs["tc"][1], runs["simt"][1], rtol=5e-2, atol=5e-2)


# ------------------------------------------------------------------ biased linears on cuBLASLt (gemm_lt.cu)

# (N, C, OC): one token, a ragged token count with BERT-base's fused QKV (OC = 3 * 768), a classifier head
# (OC = 3: leading dimensions off 16 bytes), and widths that are not multiples of 8
GEMM_SHAPES = [(1, 768, 2304), (37, 768, 2304), (130, 64, 96), (257, 128, 3), (19, 33, 45)]


def _linear(mode, dtype, x, w, b, monkeypatch):
    """matmul_forward with a bias on a fresh CUDA context whose LYRICNN_CUDA_GEMM is mode, twice (the second
    call finds the cached algorithm); both outputs."""
    monkeypatch.setenv("LYRICNN_CUDA_GEMM", mode)  # read at context creation
    be = lyricnn._C.Backend("cuda", dtype=dtype)
    outs = []
    for _ in range(2):
        out = np.full((x.shape[0], w.shape[0]), np.nan, np.float32)
        be.call("matmul_forward", out=out, inp=x, w=w, b=b, N=x.shape[0], C=x.shape[1], OC=w.shape[0])
        outs.append(out)
    return outs


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=["x".join(map(str, s)) for s in GEMM_SHAPES])
def test_linear_lt_matches_blas_and_the_reference(shape, dtype, monkeypatch):
    """out = x @ w^T + b with LYRICNN_CUDA_GEMM=lt (one cuBLASLt GEMM, bias epilogue) against =blas (bias
    broadcast, then a beta = 1 GEMM) and float64: exact F32 (no TF32) to float rounding, bf16 to one rounding
    of the output; bit-identical run to run and between a fresh context and a cached algorithm."""
    N, C, OC = shape
    r = np.random.default_rng(N + C + OC)
    x = r.standard_normal((N, C)).astype(np.float32)
    w = (r.standard_normal((OC, C)) / np.sqrt(C)).astype(np.float32)
    b = r.standard_normal(OC).astype(np.float32)
    if dtype == "bf16":  # the backend rounds the uploads so; the reference starts from the same values
        x, w, b = R.round_bf16(x), R.round_bf16(w), R.round_bf16(b)
    ref = x.astype(np.float64) @ w.astype(np.float64).T + b
    # lt-strict raises where cuBLASLt refuses, so the aligned shapes prove the cuBLASLt path ran; the others
    # (rows off 16 bytes, or a single row, for which cuBLASLt may offer only split-K algorithms) may fall back
    # to cuBLAS, as "lt" does
    mode = "lt-strict" if C % 8 == 0 and OC % 8 == 0 and N > 1 else "lt"
    lt = _linear(mode, dtype, x, w, b, monkeypatch)
    blas = _linear("blas", dtype, x, w, b, monkeypatch)
    np.testing.assert_array_equal(lt[1], lt[0])  # deterministic, the cached algorithm included
    np.testing.assert_array_equal(_linear(mode, dtype, x, w, b, monkeypatch)[0], lt[0])
    np.testing.assert_array_equal(blas[1], blas[0])
    if dtype == "f32":
        tol = dict(rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    else:  # the output is rounded to bf16 (relative 2^-9) once on both paths
        tol = dict(rtol=1e-2, atol=1e-2 * np.abs(ref).max())
    np.testing.assert_allclose(lt[0], ref, **tol)
    np.testing.assert_allclose(blas[0], ref, **tol)
    np.testing.assert_allclose(lt[0], blas[0], **tol)


@pytest.mark.parametrize("cfg", [DISTIL, BERT], ids=["distilbert", "bert"])
def test_linear_lt_trains_like_blas(cfg, monkeypatch):
    """A bf16 model (dropout on) trains three steps with its biased linears on cuBLASLt to the cuBLAS path's
    losses, within bf16 rounding."""
    ids, mask = batch(6, 33, seed=8)
    y = np.arange(6) % 3
    runs = {}
    for mode in ("blas", "lt"):
        monkeypatch.setenv("LYRICNN_CUDA_GEMM", mode)  # read when the model's context is created
        m = SequenceClassifier.from_config(cfg, num_labels=3, seed=6, device="cuda", precision="bf16")
        m.configure_optimizer("adamw", lr=1e-3)
        runs[mode] = ([m.train_step(ids, mask, y) for _ in range(3)], m(ids, mask).logits)
    np.testing.assert_allclose(runs["lt"][0], runs["blas"][0], rtol=2e-2)
    np.testing.assert_allclose(runs["lt"][1], runs["blas"][1], rtol=5e-2, atol=5e-2)


# ------------------------------------------------------------------ the fused optimizer step (LNN_PATH_FUSED_OPT)

@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_fused_optimizer_step_is_bit_identical(precision, monkeypatch):
    """LYRICNN_CUDA_FUSED_OPT=1 (the clip factor and the weight cast inside the Adam pass) trains to the same bits
    as the separate clip, step and cast passes: losses, gradients, weights and optimizer state."""
    ids, mask = batch(6, 33, seed=9)
    y = np.arange(6) % 3
    runs = {}
    for fused in ("0", "1"):
        monkeypatch.setenv("LYRICNN_CUDA_FUSED_OPT", fused)  # read when the model's context is created
        m = SequenceClassifier.from_config(DISTIL, num_labels=3, seed=7, device="cuda", precision=precision)
        m.configure_optimizer("adamw", lr=1e-3, weight_decay=0.01, max_grad_norm=0.5)
        losses = [m.train_step(ids, mask, y) for _ in range(3)]
        runs[fused] = (losses, m.state_dict(), {k: m.grads[k] for k in m.grads}, m.optimizer_state(),
                       m(ids, mask).logits)
    assert runs["0"][0] == runs["1"][0]
    for i in (1, 2):
        for k, v in runs["0"][i].items():
            np.testing.assert_array_equal(runs["1"][i][k], v, err_msg=k)
    for k in ("m", "v", "steps"):
        np.testing.assert_array_equal(runs["1"][3][k], runs["0"][3][k], err_msg=k)
    np.testing.assert_array_equal(runs["1"][4], runs["0"][4])  # the forward reads the fused step's weight copy


# ------------------------------------------------------------------ precision="fp16" (T4 / V100 path)

def test_fp16_loss_scale_follows_grad_scaler_on_the_gpu():
    """On the GPU, in fp16: the scale moves as torch's GradScaler on the same clean / NaN gradient sequence, and
    a skipped step changes no weight (tests/test_loss_scaling.py runs the same on the CPU)."""
    import test_loss_scaling as L
    kw = dict(init_scale=2.0 ** 12, growth_interval=3)
    ref = L.grad_scaler_reference(L.PATTERN, **kw)
    m = SequenceClassifier.from_config(L.DISTIL, num_labels=3, seed=4, head=L.HEAD, num_features=2, device="cuda",
                                       precision="fp16")
    m.configure_optimizer("adamw", lr=1e-3, max_grad_norm=1.0, loss_scaling=kw)
    ids, mask, y, f = L.batch()
    for k, ok in enumerate(L.PATTERN):
        before = m.state_dict()
        L.step(m, ids, mask, y, f, ok)
        assert (m.loss_scale, m.last_step_skipped) == ref[k][:2], k
        if not ok:
            for name, v in before.items():
                np.testing.assert_array_equal(m.state_dict()[name], v, err_msg=name)


def test_fp16_learns_like_fp32():
    """A small learnable task (the label is whether token 7 occurs): fp16 reaches fp32's training accuracy within
    noise (issue 17's fp16 proof in miniature; bench/gpu.py times the full-size model)."""
    r = np.random.default_rng(0)
    ids = r.integers(8, 120, (96, 24)).astype(np.int32)
    y = r.integers(0, 2, 96)
    ids[y == 1, r.integers(1, 24, int((y == 1).sum()))] = 7
    mask = np.ones_like(ids)
    acc = {}
    for prec in ("fp32", "fp16"):
        m = SequenceClassifier.from_config(dict(DISTIL, dropout=0.0, attention_dropout=0.0), num_labels=2, seed=1,
                                           device="cuda", precision=prec)
        m.configure_optimizer("adamw", lr=2e-3)
        for epoch in range(8):  # fp32 reaches 1.0 from epoch 4 (checked on the CPU, the same arithmetic)
            for s in range(0, 96, 16):
                m.train_step(ids[s:s + 16], mask[s:s + 16], y[s:s + 16])
        acc[prec] = float((m(ids, mask).logits.argmax(1) == y).mean())
    assert acc["fp32"] > 0.9, acc
    assert abs(acc["fp16"] - acc["fp32"]) <= 0.05, acc


# ------------------------------------------------------------------ the sorted embedding backward (LYRICNN_CUDA_EMBED)

@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("cfg", [DISTIL, BERT], ids=["distilbert", "bert"])
def test_sorted_embedding_backward(cfg, precision, monkeypatch):
    """LYRICNN_CUDA_EMBED=sorted (the id-sorted row indexes built on the host, a block per id) gives the serial
    kernel's embedding gradients (within the order of the sums: float rounding), run-to-run identical, and in
    fp32 the CPU's (which sums in the same (id, row) order)."""
    ids, mask = batch(6, 33, seed=3)
    ids[:, :5] = 7  # a frequent id
    y = np.arange(6) % 3
    names = [k for k in ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                         "embeddings.token_type_embeddings.weight")]
    grads = {}
    for mode in ("serial", "sorted", "sorted-again"):
        monkeypatch.setenv("LYRICNN_CUDA_EMBED", mode.split("-")[0])  # read when the model's context is created
        m = SequenceClassifier.from_config(cfg, num_labels=3, seed=5, device="cuda", precision=precision)
        m.configure_optimizer("adamw", lr=1e-3)
        m.train_step(ids, mask, y)
        grads[mode] = {k: m.grads[k] for k in names if k in m.grads}
    cpu = SequenceClassifier.from_config(cfg, num_labels=3, seed=5, device="cpu")
    cpu.configure_optimizer("adamw", lr=1e-3)
    cpu.train_step(ids, mask, y)
    tol = dict(rtol=1e-4, atol=1e-6) if precision == "fp32" else dict(rtol=5e-2, atol=5e-3)
    for k, v in grads["serial"].items():
        np.testing.assert_array_equal(grads["sorted-again"][k], grads["sorted"][k], err_msg=k)
        np.testing.assert_allclose(grads["sorted"][k], v, err_msg=k, **tol)
        np.testing.assert_allclose(grads["sorted"][k], cpu.grads[k], err_msg=k, **tol)


# ------------------------------------------------------------------ the attention's dropout mask kept as bits

@pytest.mark.parametrize("mode", ["simt", "tc"])
@pytest.mark.parametrize("layout", ["padded", "packed"])
def test_attention_dropout_bits(layout, mode, monkeypatch):
    """LYRICNN_CUDA_DROPOUT_BITS=1 (the mask drawn once in the forward, one Philox call per 4 elements, kept as
    bits for both backward kernels) gives the recomputed mask's results bit for bit, forward and backward, for
    the SIMT and the tensor-core kernels, padded (a fully masked sequence) and packed rows, q_first too."""
    for q_first in (0, 1):
        x, dout, pre = _att_case(layout, 32, q_first, 0.25)
        runs = {}
        for bits in ("0", "1"):
            monkeypatch.setenv("LYRICNN_CUDA_DROPOUT_BITS", bits)  # read at context creation
            runs[bits] = _att_run(_att_backend(mode, monkeypatch), x, dout, pre)
        np.testing.assert_array_equal(runs["1"][0], runs["0"][0])
        np.testing.assert_array_equal(runs["1"][1], runs["0"][1])


def test_attention_dropout_bits_train_like_recomputed(monkeypatch):
    ids, mask = batch(6, 70, seed=4)
    y = np.arange(6) % 3
    runs = {}
    for bits in ("0", "1"):
        monkeypatch.setenv("LYRICNN_CUDA_DROPOUT_BITS", bits)
        m = SequenceClassifier.from_config(dict(BERT, max_position_embeddings=128), num_labels=3, seed=5,
                                           device="cuda", precision="bf16")
        m.configure_optimizer("adamw", lr=1e-3)
        runs[bits] = ([m.train_step(ids, mask, y) for _ in range(3)], m.state_dict())
    assert runs["1"][0] == runs["0"][0]
    for k, v in runs["0"][1].items():
        np.testing.assert_array_equal(runs["1"][1][k], v, err_msg=k)


# ------------------------------------------------------------------ column sums folded into the backward (LYRICNN_CUDA_FOLD)

FOLD_SHAPES = [(1, 64), (300, 768), (1000, 1024), (517, 384), (129, 1100), (70, 33)]  # 1100: the unfolded fallback


@pytest.mark.parametrize("dtype", ["f32", "bf16", "f16"])
@pytest.mark.parametrize("shape", FOLD_SHAPES, ids=["x".join(map(str, s)) for s in FOLD_SHAPES])
def test_fold_layernorm_and_bias_act_backward(shape, dtype, monkeypatch):
    """LYRICNN_CUDA_FOLD=1: LayerNorm's weight/bias gradients summed inside the dres pass, and bias_act's bias
    gradient inside the dx pass: dres and dx bit-identical to the separate passes, bias_act's db too (the same
    chunks, the same order), LayerNorm's dw/db within float rounding of them and of float64; run to run the
    same bits. bias_act runs GELU and ReLU; ReLU's upstream gradient holds NaN and inf where x <= 0, which
    torch's select gradient turns into 0 in dx and db (the folded kernel must not multiply them)."""
    N, C = shape
    r = np.random.default_rng(N + C)
    q = R.round_bf16 if dtype == "bf16" else R.round_f16 if dtype == "f16" else (lambda a: a.astype(np.float32))
    res, dout, w = q(r.standard_normal((N, C))), q(r.standard_normal((N, C))), q(1 + 0.1 * r.standard_normal(C))
    mean = res.astype(np.float64).mean(1)
    rstd = 1 / np.sqrt(res.astype(np.float64).var(1) + 1e-12)
    pre_dw, pre_db = r.standard_normal(C).astype(np.float32), r.standard_normal(C).astype(np.float32)
    x, g = q(r.standard_normal((N, C))), q(r.standard_normal((N, C)))
    g_relu = g.copy()
    neg = np.flatnonzero(x.ravel() <= 0)[:: max(1, (N * C) // 16)]
    g_relu.ravel()[neg[0::2]], g_relu.ravel()[neg[1::2]] = np.nan, np.inf
    out = {}
    for fold in ("0", "1", "1again"):
        monkeypatch.setenv("LYRICNN_CUDA_FOLD", fold[0])  # read at context creation
        be = lyricnn._C.Backend("cuda", dtype=dtype)
        a = dict(dres=q(0.1 * r.standard_normal((N, C))) if fold == "0" else out["0"]["pre"].copy(), dw=pre_dw.copy(),
                 db=pre_db.copy(), dout=dout, res=res, w=w, mean=mean.astype(np.float32),
                 rstd=rstd.astype(np.float32), N=N, C=C)
        pre = a["dres"].copy()
        be.call("layernorm_backward", **a)
        b = dict(dx=np.full((N, C), np.nan, np.float32), db=pre_db.copy(), dout=g, x=x, N=N, OC=C, act=R.GELU)
        be.call("bias_act_backward", **b)
        br = dict(dx=np.full((N, C), np.nan, np.float32), db=pre_db.copy(), dout=g_relu, x=x, N=N, OC=C,
                  act=R.RELU)
        be.call("bias_act_backward", **br)
        out[fold] = dict(pre=pre, ln=a, ba=b, relu=br)
    f0, f1 = out["0"], out["1"]
    np.testing.assert_array_equal(f1["ln"]["dres"], f0["ln"]["dres"])
    for k in ("ba", "relu"):
        np.testing.assert_array_equal(f1[k]["dx"], f0[k]["dx"], err_msg=k)
        np.testing.assert_array_equal(f1[k]["db"], f0[k]["db"], err_msg=k)
    dx_ref, _ = R.bias_act_bwd(g_relu.astype(np.float64), x.astype(np.float64), R.RELU)
    assert np.isfinite(dx_ref).all() and np.isfinite(f1["relu"]["dx"]).all() and np.isfinite(f1["relu"]["db"]).all()
    for k in ("dres", "dw", "db"):
        np.testing.assert_array_equal(out["1again"]["ln"][k], f1["ln"][k], err_msg=k)
    xh = (res.astype(np.float64) - mean[:, None]) * rstd[:, None]
    ref_dw = pre_dw + (dout.astype(np.float64) * xh).sum(0)
    ref_db = pre_db + dout.astype(np.float64).sum(0)
    for k, ref in (("dw", ref_dw), ("db", ref_db)):
        scale = np.abs(dout).sum(0).max() * (np.abs(xh).max() if k == "dw" else 1) + 1
        np.testing.assert_allclose(f1["ln"][k], ref, rtol=1e-4, atol=1e-5 * scale, err_msg=k)
        np.testing.assert_allclose(f1["ln"][k], f0["ln"][k], rtol=1e-4, atol=1e-5 * scale, err_msg=k)
