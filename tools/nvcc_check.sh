#!/usr/bin/env bash
# Compile-check every CUDA source (csrc/cuda/*.cu) with nvcc, without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
cu=(csrc/cuda/*.cu)
if [ ${#cu[@]} -eq 0 ]; then echo "nvcc-check: no CUDA sources in this version"; exit 0; fi
NVCC="${NVCC:-$(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc")}"
if [ ! -x "$NVCC" ]; then echo "nvcc-check: skipped, nvcc not found (set CUDA_HOME)"; exit 0; fi
for f in "${cu[@]}"; do
  echo "nvcc-check: $f"
  "$NVCC" -std=c++17 -arch=sm_90 -Icsrc -c "$f" -o /dev/null
done
echo "nvcc-check: ok"
