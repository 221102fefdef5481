#!/usr/bin/env bash
# The figures the README quotes, measured now, with the versions they were measured with:
# writes build/report.md (and prints it). Run scripts/test.sh first: it generates the test data
# (ONNX conformance cases, TFLite op grid, quantized ONNX models) this reads.
set -euo pipefail
cd "$(dirname "$0")/.."
py="$(scripts/venv.sh)"
export KILN_ASSETS="${KILN_ASSETS:-$(cd .. && pwd)/shared/assets}"
for d in conformance tflite_ops onnx_quant; do
  if [ ! -f "build/$d/SUMMARY.txt" ]; then
    echo "report: build/$d is missing: run scripts/test.sh first" >&2
    exit 1
  fi
done
export KILN_CONFORMANCE="$PWD/build/conformance" KILN_TFLITE_OPS="$PWD/build/tflite_ops" KILN_ONNX_QUANT="$PWD/build/onnx_quant"
tract=$(grep -A1 '^name = "tract-onnx"$' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p')
pyv=$("$py" -c 'import numpy, onnx, onnxruntime, ai_edge_litert, sklearn
print(f"numpy {numpy.__version__}, onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}, ai-edge-litert {ai_edge_litert.__version__}, scikit-learn {sklearn.__version__}")')
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
out=build/report.md
{
  echo "# kiln figures, $(date -u +%F)"
  echo
  echo "Measured with $(rustc --version | cut -d' ' -f1-2), tract-onnx $tract, $pyv; CPU: $cpu."
  echo
  echo "## ONNX node conformance (onnx $("$py" -c 'import onnx; print(onnx.__version__)') backend cases)"
  cargo test --release -q -p kiln-tests --test onnx_conformance >/dev/null 2>&1
  head -1 build/conformance/REPORT.txt
  for t in mlperf_float mlperf_int8 tflite_int8_ops onnx_qdq onnx_qoperator mlperf_ptq; do
    echo
    echo "## $t"
    cargo test --release -q -p kiln-tests --test "$t" -- --nocapture 2>&1 |
      sed 's/^\.*//' | grep -v -e '^running' -e '^test ' -e 'test result' -e '^$'
  done
  echo
  echo "## quickstart (digits CNN)"
  scripts/quickstart.sh 2>/dev/null | sed -n '/== summary/,$p' | grep -v '== summary'
} | tee "$out.tmp"
mv "$out.tmp" "$out"
echo "report: wrote $out" >&2
