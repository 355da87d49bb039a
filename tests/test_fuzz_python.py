"""The Python-level fuzz harness (tests/fuzz_python.py) for a few seconds per target, in a subprocess so that a
crash fails the test too: mutated arguments of every op of the per-op bench and of the models' forward and
train_step either work or raise an expected exception, and the backend and models still give their first
results afterwards. `make fuzz` runs it longer (FUZZ_SECONDS)."""
import os
import subprocess
import sys

from conftest import ROOT


def test_fuzz_harness_finds_nothing():
    seed = int(os.environ.get("LYRICNN_FUZZ_SEED", "12345"))
    p = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzz_python.py"), "--seconds", "3", "--seed", str(seed)],
                       capture_output=True, text=True, timeout=600, cwd=str(ROOT))
    out = p.stdout + p.stderr
    assert p.returncode == 0, "fuzz_python (seed %d) exited with %d:\n%s" % (seed, p.returncode, out[-6000:])
    assert "fuzz_python: ok" in out
    for target in ("ops on cpu:", "models:"):
        line = next(ln for ln in out.splitlines() if target in ln)
        assert int(line.split(": ")[2].split()[0]) > 100, line  # it ran calls
