#!/usr/bin/env bash
# The GPU check, in one run on a machine with an NVIDIA GPU (the device tool's machines: Python 3.12 with
# torch+CUDA, transformers, numpy and pytest installed; no package registry), within one time budget
# (GPU_CHECK_BUDGET seconds, default 520, under the device tool's 600 s call limit). Stages, each capped and
# skipped with a line when the budget no longer holds it:
#   1. build (cap 150 s): the engine with the CUDA backend for this GPU's architecture only (nvidia-smi's
#      compute capability, else LYRICNN_CUDA_ARCHS=native), nvcc in parallel;
#   2. GPU tests (caps 150 s + 120 s): tests/test_cuda.py (the tensor-core attention vs the SIMT kernels and float64,
#      the cuBLASLt linears vs cuBLAS, fp16 with loss scaling, the fused optimizer step, the fully masked
#      sequence's backward, end-to-end parity with the CPU engine), every op of tests/test_backend_ops.py on
#      the CUDA backend in f32, bf16 and f16, the device-argument tests, loss scaling, and the LoRA and LSTM
#      models against the CPU engine;
#   3. the benchmark (cap 200 s): bench/gpu.py, each row printed as measured: torch eager, lyricnn bf16 with
#      the built-in defaults, with the tensor-core attention + cuBLASLt (the path meant to ship), with the
#      newer switches, fp16, and torch.compile only if the budget left holds its compilation;
#   4. compute-sanitizer memcheck on a subset (cap 120 s; it has refused the device under gVisor before);
#   5. bench/lora.py and bench/lstm.py on the GPU (cap 60 s each; GPU_CHECK_SKIP_EXTRA=1 leaves them out);
#   6. the summary: which build-time switches the tests allow flipping (ATTENTION_DEFAULT, GEMM_DEFAULT,
#      FUSED_OPT_DEFAULT in csrc/cuda/, CUDA_VERIFIED in lyricnn/_device.py), each with the tests behind it.
# Results: at most 8 files in $OUT (default ./gpu-check-out): summary.txt, build.log, tests.log, tests.xml,
# ops.xml, bench.log, sanitizer.log, extra.log.
#
# What it needs beside the checkout, carried into the machine's working tree (both are in .gitignore):
#   .whl/    wheels the machine lacks, for Python 3.12: scipy-openblas32 (the build's CPU GEMM library;
#            the image has pandas, torch, transformers, pytest), peft and accelerate (bench/lora.py's peer)
#   .shared/ the lyrics for the benchmark's real-lyrics epoch: a copy of
#            ../shared/data/datasets/song_lyrics_21_artists (read through LYRICNN_SHARED)
# Prepare them here with `bash tools/gpu_check.sh --prepare` (under 64 MiB together), then, with the device tool:
#   run(command="bash tools/gpu_check.sh", carry=[".whl", ".shared"], timeout_s=580)
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ "${1:-}" = "--prepare" ]; then
  for d in .whl .shared; do  # .gitignore'd, so never committed (and carried only when named in carry=)
    git check-ignore -q "$d/" || { echo "gpu_check --prepare: $d/ is not git-ignored (see .gitignore)"; exit 1; }
  done
  for w in scipy-openblas32 peft accelerate; do  # peft (+ accelerate, its import): bench/lora.py's peer
    ls .whl/"${w//-/_}"-*.whl >/dev/null 2>&1 && continue
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux1_x86_64 --platform any -d .whl "$w" || echo "gpu_check --prepare: could not fetch $w"
  done
  mkdir -p .shared/datasets
  cp -r ../shared/data/datasets/song_lyrics_21_artists .shared/datasets/ 2>/dev/null \
    || echo "gpu_check --prepare: no ../shared lyrics; the benchmark leaves the lyrics epoch out"
  du -sh .whl .shared
  total=$(du -sm -c .whl .shared | tail -n 1 | cut -f1)
  [ "$total" -lt 64 ] || { echo "gpu_check --prepare: .whl + .shared are $total MiB, over the 64 MiB a run carries"; exit 1; }
  bash -n "$0" && echo "gpu_check --prepare: ready ($total MiB to carry)"
  exit 0
fi
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
S="$OUT/summary.txt"
log() { echo "== $*" | tee -a "$S"; }
T0=$(date +%s)
BUDGET="${GPU_CHECK_BUDGET:-520}"
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
# a stage's limit: its own cap, or what is left minus a reserve for the summary
cap() { local l=$(( $(left) - 10 )); echo $(( l < $1 ? l : $1 )); }
room() { if [ "$(cap "$1")" -lt "${3:-20}" ]; then log "skipped (time budget, $(left) s left): $2"; return 1; fi; }
status=0

nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader > "$OUT/build.log" 2>&1
log "GPU: $(head -n 1 "$OUT/build.log")"
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')
export LYRICNN_CUDA_ARCHS="${LYRICNN_CUDA_ARCHS:-${cc:-native}}"
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >> "$OUT/build.log" 2>&1 || log "pip install of the carried wheels failed (see build.log)"
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
[ -d .shared ] && export LYRICNN_SHARED="$PWD/.shared"

log "1. build (LYRICNN_CUDA=1, LYRICNN_CUDA_ARCHS=$LYRICNN_CUDA_ARCHS, CPU GEMMs from scipy-openblas32)"
start=$(date +%s)
if ! timeout "$(cap 150)" env LYRICNN_CUDA=1 LYRICNN_BLAS=scipy-openblas32 "$PY" setup.py build_ext --inplace \
    -j "$(nproc)" >> "$OUT/build.log" 2>&1; then
  log "BUILD FAILED"; tail -n 40 "$OUT/build.log" | tee -a "$S"; exit 1
fi
log "built in $(( $(date +%s) - start )) s"
"$PY" -c "import lyricnn, json; print(json.dumps(lyricnn.cuda_info())); print(lyricnn.build_info())" 2>&1 | tee -a "$S"

# two pytest runs, each with its own junit file, so a run cut short by its cap loses only its own results
log "2a. GPU tests: the models and the switches (tests.xml)"
if room 150 "the GPU model tests"; then
  timeout "$(cap 150)" "$PY" -m pytest -q -ra -p no:cacheprovider tests/test_cuda.py tests/test_device_paths.py \
    tests/test_loss_scaling.py tests/test_cuda_numerics.py "tests/test_lstm.py::test_cuda_matches_the_cpu" \
    "tests/test_lora.py::test_cuda_matches_the_cpu" --junitxml="$OUT/tests.xml" > "$OUT/tests.log" 2>&1 || status=1
  tail -n 20 "$OUT/tests.log" | tee -a "$S"
else
  status=1
fi
log "2b. GPU tests: every op of the CUDA backend in f32, bf16, f16 (ops.xml)"
if room 120 "the per-op tests"; then
  timeout "$(cap 120)" "$PY" -m pytest -q -ra -p no:cacheprovider tests/test_backend_ops.py -k "not cpu" \
    --junitxml="$OUT/ops.xml" >> "$OUT/tests.log" 2>&1 || status=1
  tail -n 12 "$OUT/tests.log" | tee -a "$S"
else
  status=1
fi

log "3. benchmark (bench/gpu.py)"
if room 200 "bench/gpu.py" 40; then
  b=$(cap 200)
  timeout "$b" "$PY" bench/gpu.py --budget $(( b - 10 )) ${GPU_BENCH_ARGS:---steps 10 --songs 1024} \
    > "$OUT/bench.log" 2>&1 || status=1
  grep -E "^GPU|^\||skipped|FAILED|Error|done in" "$OUT/bench.log" | tail -n 30 | tee -a "$S"
fi

log "4. compute-sanitizer memcheck on a subset"
if ! command -v compute-sanitizer >/dev/null 2>&1; then
  log "compute-sanitizer not found"
elif room 120 "compute-sanitizer" 40; then
  # memcheck without --leak-check: at a pytest process's exit, torch's caching allocator and the tests' cached
  # backends still hold device memory, which the leak check would count as errors that say nothing of the kernels
  timeout "$(cap 120)" compute-sanitizer --tool memcheck --error-exitcode 3 "$PY" -m pytest -q -x \
    -p no:cacheprovider tests/test_backend_ops.py tests/test_cuda.py \
    -k "(test_backend_ops and cuda and bf16 and (forward_vs_reference or backward_vs_reference or fully_masked or sorted_embedding or unscale or skips)) or (attention_tc_matches and p0.25 and padded) or (linear_lt_matches and 19x33x45) or (attention_dropout_bits and padded and tc) or (fold_layernorm and 300x768 and bf16)" \
    > "$OUT/sanitizer.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || status=1
  grep -E "ERROR SUMMARY|LEAK SUMMARY|passed|failed|rror" "$OUT/sanitizer.log" | tail -n 5 | tee -a "$S"
  [ $rc -eq 124 ] && log "compute-sanitizer stopped at its time cap (not a finding)"
fi

if [ -z "${GPU_CHECK_SKIP_EXTRA:-}" ]; then  # the LoRA and LSTM tables of issues 11 and 12 on the GPU
  log "5. LoRA and LSTM benchmarks on the GPU (extra.log)"
  if room 60 "bench/lora.py" 30; then
    timeout "$(cap 60)" "$PY" bench/lora.py --device cuda --precision bf16 --songs 48 --steps 3 --reps 2 \
      >> "$OUT/extra.log" 2>&1 || status=1
  fi
  if room 60 "bench/lstm.py" 30; then
    timeout "$(cap 60)" "$PY" bench/lstm.py --device cuda --precision fp32 --reps 1 >> "$OUT/extra.log" 2>&1 || status=1
  fi
  [ -f "$OUT/extra.log" ] && grep -E "^\|" "$OUT/extra.log" | tail -n 12 | tee -a "$S"
fi

log "6. the switches the tests allow flipping"
"$PY" tools/gpu_verdict.py "$OUT/tests.xml" "$OUT/ops.xml" --sanitizer "$OUT/sanitizer.log" 2>&1 | tee -a "$S"
log "done (status $status) in $(( $(date +%s) - T0 )) s"
exit $status
