#!/usr/bin/env bash
# Build every libFuzzer harness csrc/fuzz/fuzz_*.c with ASan+UBSan and run each for a bounded time, then the
# Python-level harness tests/fuzz_python.py (PYTHON=..., default python3) for the same time per target.
# Each harness names the csrc/ files it links on its first line: /* fuzz-sources: a.c b.c */
# Usage: tools/fuzz.sh [seconds-per-harness]   (installs clang + libFuzzer runtime if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
CLANG="${CLANG:-$(command -v clang || command -v clang-14 || true)}"
if [ -z "$CLANG" ] || ! echo 'int LLVMFuzzerTestOneInput(const char*d,unsigned long n){return 0;}' \
      | "$CLANG" -x c - -fsanitize=fuzzer -o /tmp/lnn_fuzz_probe 2>/dev/null; then
  echo "fuzz: installing clang and the libFuzzer runtime (Debian: clang libclang-rt-14-dev)"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang libclang-rt-14-dev >/dev/null
  CLANG="$(command -v clang)"
fi
mkdir -p fuzz-build
shopt -s nullglob
harnesses=(csrc/fuzz/fuzz_*.c)
if [ ${#harnesses[@]} -eq 0 ]; then echo "fuzz: no harnesses"; exit 0; fi
status=0
for h in "${harnesses[@]}"; do
  name="$(basename "$h" .c)"
  srcs="$(head -n1 "$h" | sed -n 's@.*fuzz-sources:\(.*\)\*/.*@\1@p')"
  files=()
  for s in $srcs; do files+=("csrc/$s"); done
  echo "fuzz: building $name (${files[*]})"
  "$CLANG" -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Icsrc -o "fuzz-build/$name" "$h" "${files[@]}" -lm
  corpus="csrc/fuzz/corpus_${name#fuzz_}"
  work="fuzz-build/corpus_${name#fuzz_}"
  mkdir -p "$work"
  [ -d "$corpus" ] && cp -n "$corpus"/* "$work"/ 2>/dev/null || true
  # more seed corpora named on a line "/* fuzz-seeds: corpus_a corpus_b */" among the first three
  for seeds in $(head -n3 "$h" | sed -n 's@.*fuzz-seeds:\(.*\)\*/.*@\1@p'); do
    cp -n "csrc/fuzz/$seeds"/* "$work"/ 2>/dev/null || true
  done
  dict=()
  [ -f "csrc/fuzz/${name#fuzz_}.dict" ] && dict=(-dict="csrc/fuzz/${name#fuzz_}.dict")
  echo "fuzz: running $name for ${secs}s"
  if ! "./fuzz-build/$name" "${dict[@]}" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        "$work" > "fuzz-build/$name.log" 2>&1; then
    echo "fuzz: $name FAILED"; tail -n 60 "fuzz-build/$name.log"; status=1
  else
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "fuzz-build/$name.log" | tail -n1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "fuzz-build/$name.log" | tail -n1)"
    echo "fuzz: $name ok: ${execs:-?} execs, ${rate:-?} execs/s"
  fi
done
# the Python-level harness (tests/fuzz_python.py): every op of the per-op bench and the models' forward and
# train_step on mutated arguments, for the same time per target; needs the built extension (make build)
PY="${PYTHON:-python3}"
if "$PY" -c "import sys; sys.path.insert(0, '.'); import lyricnn._C" 2>/dev/null; then
  echo "fuzz: running tests/fuzz_python.py for ${secs}s per target"
  if ! "$PY" tests/fuzz_python.py --seconds "$secs"; then echo "fuzz: fuzz_python FAILED"; status=1; fi
else
  echo "fuzz: tests/fuzz_python.py skipped: lyricnn is not built for $PY (make build)"
fi
exit $status
