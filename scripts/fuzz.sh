#!/usr/bin/env bash
# Runs every fuzz target (cargo-fuzz / libFuzzer) for a bounded time on seed corpora the project
# generates itself. Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   FUZZ_SANITIZER=address|none (default none: coverage-guided, no ASan slowdown)
#   FUZZ_JOBS=N parallel targets (default 2)
# A crash stops with a non-zero status; the input lands in fuzz/artifacts/<target>/ and must
# become a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(model_from_bytes session_run differential tflite_import onnx_import input_parsers signed_model)
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked -q
fi
san="${FUZZ_SANITIZER:-none}"
# cargo-fuzz passes -Z flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them. It is set
# only for the fuzz commands (it changes cargo's fingerprints, so the normal build stays cached).
fuzz() { RUSTC_BOOTSTRAP=1 cargo fuzz "$@"; }

# Seed corpora from the project's own artifacts.
corpus=fuzz/corpus
mkdir -p "$corpus"/{model_from_bytes,session_run,differential,tflite_import,onnx_import,input_parsers,signed_model}
if [ ! -f build/quickstart/digits_cnn.kiln ]; then scripts/quickstart.sh >/dev/null; fi
cargo build --release -q -p kiln-converter
kiln=target/release/kiln
# Long op chains (800 and 20,000 ops): validation must stay linear in the op count.
KILN_WRITE_SEEDS="$PWD/$corpus/model_from_bytes" cargo test --release -q -p kiln-runtime --test validation long_chains >/dev/null
for f in build/quickstart/*.kiln; do
  cp "$f" "$corpus/model_from_bytes/"
  { printf '\xff\x7f'; cat "$f"; } > "$corpus/session_run/$(basename "$f")"
done
if [ -d build/tflite_ops ]; then
  for d in build/tflite_ops/*/; do
    n=$(basename "$d")
    cp "$d/model.tflite" "$corpus/tflite_import/$n.tflite"
    "$kiln" convert "$d/model.tflite" -o "$corpus/model_from_bytes/$n.kiln" >/dev/null 2>&1 || true
  done
fi
cp build/quickstart/digits_cnn.onnx "$corpus/onnx_import/"
if [ -d build/onnx_quant ]; then  # QOperator, uint8 and integer-op models (scripts/test.sh)
  for d in build/onnx_quant/*/; do
    [ -f "$d/model.onnx" ] && cp "$d/model.onnx" "$corpus/onnx_import/q_$(basename "$d").onnx"
  done
fi
if [ -d build/conformance ]; then
  for d in $(ls -d build/conformance/test_*/ | head -60); do cp "$d/model.onnx" "$corpus/onnx_import/$(basename "$d").onnx"; done
fi
cp build/quickstart/test_x.npy build/quickstart/digit_*.pgm "$corpus/input_parsers/"
# A throwaway key in a fresh directory (kiln keygen never overwrites an existing key).
keydir=$(mktemp -d)
"$kiln" keygen "$keydir/fuzz-key" >/dev/null
"$kiln" sign build/quickstart/digits_cnn.kiln --key "$keydir/fuzz-key.secret" -o "$corpus/signed_model/digits.signed.kiln" >/dev/null
rm -rf "$keydir"

cd fuzz
fuzz build -s "$san" -O
jobs="${FUZZ_JOBS:-2}"
run() {
  local t=$1
  fuzz run -s "$san" -O "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 \
    > "target/fuzz-$t.log" 2>&1
  local rc=$?
  local execs cov
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "target/fuzz-$t.log" | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' "target/fuzz-$t.log" | tail -1 | grep -o '[0-9]*' || echo 0)
  echo "fuzz $t: ${secs}s, $execs executions ($(( execs / (secs > 0 ? secs : 1) )) exec/s), coverage $cov edges, exit $rc"
  return $rc
}
status=0
pids=()
for t in "${targets[@]}"; do
  run "$t" & pids+=($!)
  if [ ${#pids[@]} -ge "$jobs" ]; then wait "${pids[0]}" || status=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
