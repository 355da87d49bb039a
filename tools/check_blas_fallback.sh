#!/usr/bin/env bash
# Build the engine a second time in a scratch copy with the fallback GEMM library (the scipy-openblas32
# wheel, what a machine without oneDNN gets), and run the parity tests against it. The in-place build (make
# build) is left as it is. CI runs tools/check_wheel.sh instead, whose wheel is this build, installed.
# Usage: tools/check_blas_fallback.sh [python]   (the venv's python; make test-blas-fallback passes it)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-.venv/bin/python}"
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
cp -r setup.py pyproject.toml csrc "$T"/
mkdir "$T/lyricnn" && tar -C lyricnn --exclude='*.so' --exclude=__pycache__ -cf - . | tar -C "$T/lyricnn" -xf -
(cd "$T" && LYRICNN_BLAS=scipy-openblas32 "$PY" setup.py -q build_ext --inplace >build.log 2>&1) \
  || { cat "$T/build.log"; exit 1; }
# -P: the scratch copy (PYTHONPATH), not the checkout's editable install, is the lyricnn under test
LYRICNN_EXPECT_BLAS=openblas PYTHONPATH="$T" "$PY" -P -m pytest -q -p no:cacheprovider \
  tests/test_foundation.py tests/test_encoder.py tests/test_classifier.py tests/test_classifier_head.py \
  tests/test_train_ops.py tests/test_unpad.py tests/test_encoder_full.py tests/test_checkpoint.py
