#!/usr/bin/env bash
# Compile and link every CUDA source (csrc/cuda/*.cu) with nvcc, without a GPU: the CUDA backend as the
# build makes it (a shared object for sm_80 and sm_90 plus PTX), so CI proves it compiles and links.
# Where the CUDA toolkit has no cuBLAS headers, the PyPI wheel nvidia-cublas provides them (downloaded
# once into .nvcc-deps/; never part of `make test` or of a user's install).
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
cu=(csrc/cuda/*.cu)
if [ ${#cu[@]} -eq 0 ]; then echo "nvcc-check: no CUDA sources in this version"; exit 0; fi
NVCC="${NVCC:-$(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc")}"
if [ ! -x "$NVCC" ]; then echo "nvcc-check: skipped, nvcc not found (set CUDA_HOME)"; exit 0; fi
PY="${PYTHON:-$(command -v python3)}"
inc=() lib=()
if ! printf '#include <cublasLt.h>\n#include <cublas_v2.h>\n' | "$NVCC" -x cu -E - >/dev/null 2>&1; then
  deps=.nvcc-deps
  if [ ! -f "$deps/nvidia/cu13/include/cublasLt.h" ]; then
    echo "nvcc-check: the CUDA toolkit has no cuBLAS headers; fetching them from the PyPI wheel nvidia-cublas"
    mkdir -p "$deps"
    "$PY" -m pip download -q --no-deps nvidia-cublas -d "$deps/wheel"
    "$PY" - "$deps" <<'EOF'
import glob, sys, zipfile
deps = sys.argv[1]
whl = sorted(glob.glob(deps + "/wheel/nvidia_cublas-*.whl"))[-1]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if "/include/" in n or n.endswith(("libcublas.so.13", "libcublasLt.so.13")):
            z.extract(n, deps)
EOF
    rm -rf "$deps/wheel"
  fi
  inc=(-I"$deps/nvidia/cu13/include")
  lib=(-L"$deps/nvidia/cu13/lib")
  for l in "$deps"/nvidia/cu13/lib/lib*.so.13; do ln -sf "$(basename "$l")" "${l%.13}"; done
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
arch=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90)
objs=()
for f in "${cu[@]}"; do
  echo "nvcc-check: $f"
  o="$out/$(basename "$f" .cu).o"
  "$NVCC" -std=c++17 -O2 -Xcompiler -fPIC -Xcompiler -Wall "${arch[@]}" -Icsrc "${inc[@]}" -c "$f" -o "$o"
  objs+=("$o")
done
"$NVCC" -shared "${arch[@]}" -o "$out/liblyricnn_cuda.so" "${objs[@]}" "${lib[@]}" -lcublasLt -lcublas -lcudart
echo "nvcc-check: ok (linked $(basename "$out/liblyricnn_cuda.so"), ${#cu[@]} sources)"
