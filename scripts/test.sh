#!/usr/bin/env bash
# The README's test command: everything CI checks, from a fresh clone.
#   - Python venv with numpy, onnx==1.20.0, onnxruntime, scikit-learn (scripts/venv.sh)
#   - ONNX backend node conformance cases extracted as data (build/conformance)
#   - quantized ONNX models (QOperator, uint8, integer ops) with onnxruntime outputs (build/onnx_quant)
#   - cargo fmt --check, cargo clippy -D warnings
#   - cargo test --release over the workspace (unit, format, conformance, MLPerf Tiny goldens)
#   - the runtime's tests again under AddressSanitizer (nightly flags on the stable toolchain)
#   - the runtime builds for Cortex-M with only `core`
# Set KILN_ASSETS to ../shared/assets (CI does) so the MLPerf Tiny tests must run, not skip.
set -euo pipefail
cd "$(dirname "$0")/.."
py="$(scripts/venv.sh)"
if [ ! -f build/conformance/SUMMARY.txt ] || ! grep -q "onnx 1.20.0" build/conformance/SUMMARY.txt || [ scripts/gen_conformance.py -nt build/conformance/SUMMARY.txt ]; then
  "$py" scripts/gen_conformance.py --out build/conformance
fi
export KILN_CONFORMANCE="$PWD/build/conformance"
if [ ! -f build/tflite_ops/SUMMARY.txt ] || [ scripts/gen_tflite_ops.py -nt build/tflite_ops/SUMMARY.txt ]; then
  "$py" scripts/gen_tflite_ops.py --out build/tflite_ops
fi
export KILN_TFLITE_OPS="$PWD/build/tflite_ops"
if [ ! -f build/onnx_quant/SUMMARY.txt ] || [ scripts/gen_onnx_quant.py -nt build/onnx_quant/SUMMARY.txt ]; then
  "$py" scripts/gen_onnx_quant.py --out build/onnx_quant
fi
export KILN_ONNX_QUANT="$PWD/build/onnx_quant"
# `kiln verify` on .tflite files runs LiteRT's reference kernels in this Python.
export KILN_PYTHON="$py"
if [ -z "${KILN_ASSETS:-}" ] && [ ! -f ../shared/assets/MANIFEST.md ]; then
  echo "NOTE: no ../shared/assets and KILN_ASSETS is unset: the MLPerf Tiny tests (mlperf_float, mlperf_ptq, tflite goldens) will be skipped"
fi
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace
# AddressSanitizer over the runtime's own tests (the reader, the session, every kernel): its
# `unsafe` is SIMD intrinsics only, and this is where an out-of-bounds load would show.
echo "runtime tests under AddressSanitizer (target-asan/)"
RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address" \
  cargo test -q -p kiln-runtime --all-features --target x86_64-unknown-linux-gnu \
  --target-dir target-asan
scripts/check-no-std.sh
