#!/usr/bin/env bash
# The op bench and the parity tests at every CPU level of the build that this CPU runs: csrc/cpu/ is compiled
# once per x86-64 level and LYRICNN_CPU_LEVEL caps the one picked at import (csrc/core/cpu_level.h), so one
# machine runs them all. The default level runs in `make test`; this runs the lower ones.
# Usage: tools/check_cpu_levels.sh [python]   (the venv's python; make test-cpu-levels passes it)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-.venv/bin/python}"
levels=$("$PY" - <<'PYEOF'
import lyricnn
i = lyricnn.build_info()
order = ["x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"]
top = i["cpu_level_supported"]
built = i["cpu_levels"].split(",")
print(" ".join(lv for lv in built if lv in order and top in order and order.index(lv) < order.index(top)))
PYEOF
)
if [ -z "$levels" ]; then
  echo "check_cpu_levels: no level below this CPU's in this build ($("$PY" -c 'import lyricnn; print(lyricnn.build_info()["cpu_dispatch"])')); nothing to run"
  exit 0
fi
for lv in $levels; do
  echo "== LYRICNN_CPU_LEVEL=$lv"
  LYRICNN_CPU_LEVEL=$lv "$PY" -m pytest -q -p no:cacheprovider tests/test_backend_ops.py -k "cpu-f32 and not cpu-copy"
  LYRICNN_CPU_LEVEL=$lv "$PY" -m pytest -q -p no:cacheprovider tests/test_encoder.py tests/test_train_ops.py \
    tests/test_cpu_gemm.py tests/test_lstm.py -k "not cuda"
done
