#!/usr/bin/env bash
# Compile and link the CUDA backend (csrc/cuda/*.cu) for every target architecture of a default build, without
# a GPU, through setup.py's own discovery and build (`python setup.py nvcc_check`: nvcc processes in parallel,
# NVCC_CHECK_JOBS at a time, default the CPU count), so CI proves that what users build compiles and links.
# Where neither the CUDA toolkit nor the Python environment has cuBLAS, the PyPI wheel nvidia-cublas provides
# it: fetched once into .nvcc-deps/ (git-ignored; its include/ and versioned lib*.so.N files only, as pip
# installs them), where setup.py's find_cublas looks last. Never part of `make test` or of a user's install.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
cu=(csrc/cuda/*.cu)
if [ ${#cu[@]} -eq 0 ]; then echo "nvcc-check: no CUDA sources in this version"; exit 0; fi
NVCC="${NVCC:-$(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc")}"
if [ ! -x "$NVCC" ]; then echo "nvcc-check: skipped, nvcc not found (set CUDA_HOME)"; exit 0; fi
export CUDA_HOME="$(dirname "$(dirname "$NVCC")")"  # setup.py's _nvcc() takes $CUDA_HOME/bin/nvcc
PY="${PYTHON:-$(command -v python3)}"
# setup.py's discovery: 0 when it finds cuBLAS (toolkit, LYRICNN_CUBLAS_*, pip nvidia-cublas, .nvcc-deps)
major=$("$PY" -c 'import setup; print(setup._nvcc_version(setup._nvcc())[0])')
if ! "$PY" -c 'import setup, sys; n = setup._nvcc(); sys.exit(0 if setup.find_cublas(setup._cuda_root(n), setup._nvcc_version(n)[0]) else 1)'; then
  deps=.nvcc-deps
  pkg=nvidia-cublas; [ "$major" = 12 ] && pkg=nvidia-cublas-cu12
  echo "nvcc-check: no cuBLAS for CUDA $major here; fetching it from the PyPI wheel $pkg into $deps/"
  rm -rf "$deps/wheel"
  "$PY" -m pip download -q --no-deps --only-binary=:all: "$pkg" -d "$deps/wheel"
  "$PY" - "$deps" <<'PYEOF'
import glob, re, sys, zipfile
deps = sys.argv[1]
whl = sorted(glob.glob(deps + "/wheel/nvidia_cublas*.whl"))[-1]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if "/include/" in n or re.search(r"/lib/libcublas(Lt)?\.so\.\d+$", n):
            z.extract(n, deps)
PYEOF
  rm -rf "$deps/wheel"
fi
"$PY" setup.py -q nvcc_check ${NVCC_CHECK_JOBS:+--jobs "$NVCC_CHECK_JOBS"}
