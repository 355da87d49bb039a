"""The CPU backend's ISA levels (csrc/core/cpu_level.h): csrc/cpu/ is compiled once per x86-64 level and the
highest level the CPU runs is picked at import, capped by LYRICNN_CPU_LEVEL. Each level runs in a child
process (the level is fixed at import). `make test-cpu-levels` (tools/check_cpu_levels.sh) runs the op
bench and the parity tests at every level; here: the cap, its errors, and determinism per level."""
import json
import os
import subprocess
import sys
import tempfile

import pytest

import lyricnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFO = lyricnn.build_info()
ORDER = ["x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"]
BUILT = INFO["cpu_levels"].split(",")
MULTI = all(lv in ORDER for lv in BUILT) and len(BUILT) > 1
RUNNABLE = [lv for lv in BUILT if lv in ORDER and INFO["cpu_level_supported"] in ORDER
            and ORDER.index(lv) <= ORDER.index(INFO["cpu_level_supported"])]
needs_levels = pytest.mark.skipif(not MULTI, reason="a one-level build (%s: LYRICNN_NATIVE=1 or not x86-64 "
                                  "Linux); the levels are built by default on x86-64 Linux" % INFO["cpu_dispatch"])


def run(code, level=None, **env):
    e = dict(os.environ, **env)
    e.pop("LYRICNN_CPU_LEVEL", None)
    if level is not None:
        e["LYRICNN_CPU_LEVEL"] = level
    # PYTHONPATH and a cwd outside the checkout: the lyricnn under test, as the parent imported it
    e["PYTHONPATH"] = os.path.dirname(os.path.dirname(lyricnn.__file__))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=300,
                          cwd=tempfile.gettempdir())


def test_build_info_reports_the_level():
    assert INFO["cpu_level"] in BUILT
    if MULTI and not INFO["cpu_level_cap"]:
        assert INFO["cpu_level"] == max(RUNNABLE, key=ORDER.index), "the highest level this CPU runs"


@needs_levels
@pytest.mark.parametrize("alias,level", [("avx2", "x86-64-v3"), ("V2", "x86-64-v2"), ("baseline", "x86-64"),
                                         ("auto", None)])
def test_cap_selects_the_level(alias, level):
    r = run("import json, lyricnn; print(json.dumps(lyricnn.build_info()))", alias)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout.strip().splitlines()[-1])
    want = level if level in RUNNABLE else max(RUNNABLE, key=ORDER.index)
    assert info["cpu_level"] == want
    if level and "onednn" in info["blas"].lower() and "ONEDNN_MAX_CPU_ISA" not in os.environ:
        assert info["blas_core"] == {"x86-64-v3": "avx2"}.get(want, "sse41"), "oneDNN is capped with the engine"


def test_unknown_level_is_a_clear_error():
    r = run("import lyricnn", "sse9")
    assert r.returncode != 0
    assert "ValueError" in r.stderr and "LYRICNN_CPU_LEVEL=sse9" in r.stderr and "x86-64-v3" in r.stderr


STEP = r"""
import hashlib, json, numpy as np, lyricnn
from lyricnn.classifier import SequenceClassifier
out = {}
for nt in (1, 2):
    lyricnn.set_num_threads(nt)
    m = SequenceClassifier.from_config(dict(model_type="distilbert", vocab_size=512, dim=64, n_layers=2, n_heads=4,
                                            hidden_dim=256, max_position_embeddings=64), num_labels=3, seed=1)
    m.configure_optimizer("adamw", lr=1e-3, weight_decay=0.01, max_grad_norm=1.0)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 512, size=(8, 40)); mask = np.ones((8, 40), np.int64); mask[3, 20:] = 0; mask[5, 7:] = 0
    ids[mask == 0] = 0
    y = rng.integers(0, 3, size=8)
    losses = [float(m.train_step(ids, mask, y)) for _ in range(3)]
    h = hashlib.sha256(b"".join(np.ascontiguousarray(v).tobytes() for _, v in sorted(m.params.items())))
    out[nt] = [losses, h.hexdigest()]
print(json.dumps(dict(level=lyricnn.build_info()["cpu_level"], runs=out)))
"""


@needs_levels
def test_training_is_deterministic_per_level():
    """Three AdamW steps of a small DistilBERT classifier at each level: the same bits on 1 and 2 threads (and
    run to run), and the same losses to float rounding across levels."""
    losses = {}
    for level in RUNNABLE:
        r = run(STEP, level)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout.strip().splitlines()[-1])
        assert got["level"] == level
        one, two = got["runs"]["1"], got["runs"]["2"]
        assert one == two, "%s: 1 and 2 threads differ: %s / %s" % (level, one, two)
        if level == RUNNABLE[0]:  # run to run too (the generic code, with no SIMD beyond SSE2)
            again = json.loads(run(STEP, level).stdout.strip().splitlines()[-1])
            assert again["runs"]["1"] == one, "%s: two runs differ" % level
        losses[level] = one[0]
    ref = losses[RUNNABLE[-1]]
    for level, ls in losses.items():
        assert max(abs(a - b) for a, b in zip(ls, ref)) < 1e-4 * max(abs(x) for x in ref), (level, ls, ref)
