#!/usr/bin/env bash
# The GPU check, in one run on a machine with an NVIDIA GPU (the device tool's machines: Python 3.12 with
# torch+CUDA, transformers, numpy and pytest installed; no package registry). It builds the engine with
# the CUDA backend, runs the GPU tests (tests/test_cuda.py: the tensor-core attention of attention_tc.cu
# against the SIMT kernels and float64, with LYRICNN_CUDA_ATTENTION=tc / simt; the cuBLASLt biased
# linears of gemm_lt.cu against cuBLAS and float64, with LYRICNN_CUDA_GEMM=lt / blas) and the per-op bench
# on CUDA, compute-sanitizer memcheck on a subset (the tensor-core attention's dropout cases and two
# cuBLASLt linear shapes included), and the GPU benchmarks (bench/gpu.py, then bench/lora.py and
# bench/lstm.py unless GPU_CHECK_SKIP_EXTRA is set); every log goes to $OUT (default ./gpu-check-out). It
# keeps to a time budget of GPU_CHECK_BUDGET seconds (default 520, under the device tool's 600 s call
# limit), skipping the stages that no longer fit.
#
# What it needs beside the checkout, carried into the machine's working tree (.git/info/exclude them):
#   .whl/    wheels the machine lacks, for Python 3.12: scipy-openblas32 (the build's CPU GEMM library;
#            the image has pandas, torch, transformers, pytest), peft and accelerate (bench/lora.py's peer)
#   .shared/ the lyrics for the benchmark's real-lyrics epoch: a copy of
#            ../shared/data/datasets/song_lyrics_21_artists (read through LYRICNN_SHARED)
# Prepare them here with tools/gpu_check.sh --prepare, then, with the device tool:
#   run(command="bash tools/gpu_check.sh", carry=[".whl", ".shared"], timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--prepare" ]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  grep -qx '/.shared/' .git/info/exclude 2>/dev/null || echo '/.shared/' >> .git/info/exclude
  PY="${PYTHON:-python3}"
  for w in scipy-openblas32 peft accelerate; do  # peft (+ accelerate, its import): bench/lora.py's peer
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux1_x86_64 --platform any -d .whl "$w" || echo "gpu_check --prepare: could not fetch $w"
  done
  mkdir -p .shared/datasets
  cp -r ../shared/data/datasets/song_lyrics_21_artists .shared/datasets/ 2>/dev/null \
    || echo "gpu_check --prepare: no ../shared lyrics; the benchmark leaves the lyrics epoch out"
  du -sh .whl .shared
  exit 0
fi
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
# One time budget for the whole check (the device tool's call limit is 600 s): each stage gets at most its
# own cap and what is left; a stage that would get under 20 s is skipped and said so, so that the summary
# always comes back with what ran.
T0=$(date +%s)
BUDGET="${GPU_CHECK_BUDGET:-520}"
cap() { local left=$(( BUDGET - ($(date +%s) - T0) - 5 )); echo $(( left < $1 ? left : $1 )); }
room() { local c; c=$(cap "$1"); if [ "$c" -lt 20 ]; then log "skipped (time budget): $2"; return 1; fi; }
status=0
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    > "$OUT/pip.log" 2>&1 || log "pip install of the carried wheels failed (see pip.log)"
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
[ -d .shared ] && export LYRICNN_SHARED="$PWD/.shared"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1

log "build (LYRICNN_CUDA=1, CPU GEMMs from scipy-openblas32)"
start=$(date +%s)
if ! LYRICNN_CUDA=1 LYRICNN_BLAS=scipy-openblas32 "$PY" setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
  log "BUILD FAILED"; tail -n 40 "$OUT/build.log" | tee -a "$OUT/summary.txt"; exit 1
fi
log "built in $(( $(date +%s) - start )) s"
"$PY" -c "import lyricnn, json; print(json.dumps(lyricnn.cuda_info(), indent=1)); print(lyricnn.build_info())" \
  2>&1 | tee -a "$OUT/summary.txt"

log "GPU tests and the per-op bench on every backend"
room 300 "GPU tests" && timeout "$(cap 300)" "$PY" -m pytest -q -ra tests/test_cuda.py tests/test_backend_ops.py tests/test_device_paths.py \
  "tests/test_lstm.py::test_cuda_matches_the_cpu" "tests/test_lora.py::test_cuda_matches_the_cpu" \
  --junitxml="$OUT/tests.xml" > "$OUT/tests.log" 2>&1 || status=1
tail -n 25 "$OUT/tests.log" | tee -a "$OUT/summary.txt"

log "compute-sanitizer memcheck on a subset (it has refused the device under gVisor before: see sanitizer.log)"
if ! room 200 "compute-sanitizer"; then
  status=1
elif command -v compute-sanitizer >/dev/null 2>&1; then
  timeout "$(cap 200)" compute-sanitizer --tool memcheck --leak-check full --error-exitcode 3 "$PY" -m pytest -q -x \
    tests/test_backend_ops.py tests/test_cuda.py \
    -k "(test_backend_ops and cuda and (attention or matmul or layernorm or embedding or adam or dropout)) or (attention_tc_matches and p0.25) or (linear_lt_matches and (19x33x45 or 37x768x2304))" \
    > "$OUT/sanitizer.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || status=1
  grep -E "ERROR SUMMARY|LEAK SUMMARY|passed|failed" "$OUT/sanitizer.log" | tail -n 5 | tee -a "$OUT/summary.txt"
else
  log "compute-sanitizer not found"
fi

log "benchmark (bench/gpu.py)"
if room 240 "bench/gpu.py"; then
  timeout "$(cap 240)" "$PY" bench/gpu.py ${GPU_BENCH_ARGS:---steps 10 --songs 1024} > "$OUT/bench.log" 2>&1 || status=1
  tail -n 15 "$OUT/bench.log" | tee -a "$OUT/summary.txt"
fi
if [ -z "${GPU_CHECK_SKIP_EXTRA:-}" ]; then  # the LoRA and LSTM tables of issues 11 and 12 on the GPU
  log "LoRA benchmark on the GPU (bench/lora.py --device cuda: lyricnn LoRA / full vs torch+peft when carried)"
  if room 120 "bench/lora.py"; then
    timeout "$(cap 120)" "$PY" bench/lora.py --device cuda --precision bf16 --songs 48 --steps 3 --reps 2 \
      > "$OUT/bench_lora.log" 2>&1 || status=1
    tail -n 8 "$OUT/bench_lora.log" | tee -a "$OUT/summary.txt"
  fi
  log "LSTM benchmark on the GPU (bench/lstm.py --device cuda: lyricnn vs torch on cuDNN)"
  if room 120 "bench/lstm.py"; then
    timeout "$(cap 120)" "$PY" bench/lstm.py --device cuda --precision fp32 --reps 1 > "$OUT/bench_lstm.log" 2>&1 \
      || status=1
    tail -n 8 "$OUT/bench_lstm.log" | tee -a "$OUT/summary.txt"
  fi
fi
log "done (status $status) in $(( $(date +%s) - T0 )) s"
exit $status
