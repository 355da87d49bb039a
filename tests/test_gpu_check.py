"""tools/gpu_check.sh without a GPU: the script parses, its verdict stage (tools/gpu_verdict.py) reads pytest's
junit XML right, and bench/gpu.py's arguments parse (its --dry-run runs every setup on the CPU; see
csrc/cuda/README.md)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "bench"))

import gpu_verdict  # noqa: E402


def test_the_script_parses():
    r = subprocess.run(["bash", "-n", str(ROOT / "tools" / "gpu_check.sh")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _xml(tmp_path, cases):
    body = []
    for name, outcome in cases:
        cls, _, fn = name.partition("::")
        inner = {"passed": "", "failed": "<failure message='x'/>", "error": "<error message='x'/>",
                 "skipped": "<skipped message='x'/>"}[outcome]
        body.append('<testcase classname="%s" name="%s" time="0.1">%s</testcase>' % (cls, fn, inner))
    p = tmp_path / "tests.xml"
    p.write_text('<?xml version="1.0"?><testsuites><testsuite name="pytest">%s</testsuite></testsuites>'
                 % "".join(body))
    return p


ALL_GOOD = [
    ("tests.test_cuda::test_attention_tc_matches_simt_and_the_reference[padded-32-all-p0]", "passed"),
    ("tests.test_cuda::test_attention_tc_trains_like_simt[bert]", "passed"),
    ("tests.test_backend_ops::test_attention_fully_masked_sequence_is_uniform[cuda-bf16-all-p0]", "passed"),
    ("tests.test_cuda::test_linear_lt_matches_blas_and_the_reference[19x33x45-bf16]", "passed"),
    ("tests.test_cuda::test_fused_optimizer_step_is_bit_identical[bf16]", "passed"),
    ("tests.test_backend_ops::test_unscale_clip_and_the_fused_step[cuda-f16-unscaled-clip]", "passed"),
    ("tests.test_cuda::test_sorted_embedding_backward[bf16]", "passed"),
    ("tests.test_cuda::test_attention_dropout_bits[p0.1]", "passed"),
    ("tests.test_cuda::test_fold_layernorm_and_bias_act_backward[300x768-bf16]", "passed"),
    ("tests.test_cuda::test_half_precision_trains_close_to_fp32[fp16]", "passed"),
    ("tests.test_backend_ops::test_layernorm[cuda-f16]", "passed"),
    ("tests.test_backend_ops::test_layernorm[cpu-f16]", "skipped"),
]


def test_verdict_flips_what_passed(tmp_path, capsys):
    san = tmp_path / "sanitizer.log"
    san.write_text("========= ERROR SUMMARY: 0 errors\n")
    gpu_verdict.main(["x", str(_xml(tmp_path, ALL_GOOD)), "--sanitizer", str(san)])
    out = capsys.readouterr().out
    for sw in ("ATTENTION_DEFAULT", "GEMM_DEFAULT", "FUSED_OPT_DEFAULT", "EMBED_DEFAULT", "DROPOUT_BITS_DEFAULT",
               "FOLD_DEFAULT", "CUDA_VERIFIED"):
        assert "FLIP " + sw in out, out
    assert "VERIFIED fp16" in out and "sm_75 itself stays unverified" in out


def test_verdict_keeps_what_failed_or_did_not_run(tmp_path, capsys):
    cases = [(n, "failed" if "linear_lt" in n else o) for n, o in ALL_GOOD if "dropout_bits" not in n]
    gpu_verdict.main(["x", str(_xml(tmp_path, cases))])
    out = capsys.readouterr().out
    assert "FLIP ATTENTION_DEFAULT" in out and "KEEP GEMM_DEFAULT" in out and "test_linear_lt_matches" in out
    assert "KEEP DROPOUT_BITS_DEFAULT in csrc/cuda/attention.cu: no test of it ran" in out
    # the failure is the kept switch's own test: the default paths are verified all the same
    assert "FLIP CUDA_VERIFIED" in out and "the kept switches' own tests" in out
    cases[-1] = ("tests.test_backend_ops::test_layernorm[cuda-f16]", "failed")  # a default path fails
    gpu_verdict.main(["x", str(_xml(tmp_path, cases))])
    out = capsys.readouterr().out
    assert "KEEP CUDA_VERIFIED = False: 1 tests failed (tests.test_backend_ops::test_layernorm[cuda-f16])" in out
    assert "UNVERIFIED fp16" in out
    san = tmp_path / "sanitizer.log"
    san.write_text("========= ERROR SUMMARY: 3 errors\n")
    gpu_verdict.main(["x", str(_xml(tmp_path, ALL_GOOD)), "--sanitizer", str(san)])
    assert "KEEP CUDA_VERIFIED = False: compute-sanitizer: 3 errors" in capsys.readouterr().out
    gpu_verdict.main(["x", str(_xml(tmp_path, ALL_GOOD)), str(tmp_path / "ops.xml")])  # the op run was cut short
    out = capsys.readouterr().out
    assert "missing test results" in out and "KEEP CUDA_VERIFIED = False: a test run left no results" in out
    assert gpu_verdict.main(["x", str(tmp_path / "missing.xml")]) == 1
    assert "no switch may flip" in capsys.readouterr().out


def test_bench_arguments():
    gpu = pytest.importorskip("gpu")  # bench/gpu.py (imports lyricnn only)
    a = gpu.parse_args(["--quick", "--skip-compile", "--budget", "200", "--shapes", "8x64"])
    assert a.steps == 5 and a.songs == 256 and a.shapes == [(8, 64)] and a.budget == 200
    assert "torch.compile bf16" not in a.setups and a.setups[0] == "torch eager bf16"
    assert gpu.parse_args(["--dry-run"]).shapes == [(2, 16)]
    with pytest.raises(SystemExit):
        gpu.parse_args(["--setups", "lyricnn bf16 warp"])
    with pytest.raises(SystemExit):
        gpu.parse_args(["--shapes", "32by128"])
