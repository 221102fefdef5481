#!/usr/bin/env bash
# Side-by-side latency (1 thread) of kiln, TFLite (XNNPACK and builtin kernels), onnxruntime and
# tract on the MLPerf Tiny models, int8 and f32: build/bench/bench.md and bench.json.
#   scripts/bench.sh                    # 200 timed runs per engine and model, best of 3 rounds
#   scripts/bench.sh --iterations 1 --rounds 1   # smoke run (CI)
#   scripts/bench.sh --cortex-m [--cores m4,m7,m33,m0] [--models kws,vww,ic,ad]
#       # instructions per inference under QEMU, per op, beside TFLite Micro + CMSIS-NN
#       # (scripts/bench_cortex_m.py: build/cortex-m/report.md)
# Runs unchanged on aarch64 Linux (Raspberry Pi 4/5). Set KILN_ASSETS to the MLPerf Tiny assets
# (default ../shared/assets).
set -euo pipefail
cd "$(dirname "$0")/.."
py="$(scripts/venv.sh)"
if [ "${1:-}" = --cortex-m ]; then
  shift
  echo "bench: building kiln (release)" >&2
  cargo build --release -q -p kiln-converter
  exec "$py" scripts/bench_cortex_m.py "$@"
fi
echo "bench: building kiln (release)" >&2
cargo build --release -q -p kiln-converter
exec "$py" scripts/bench.py "$@"
