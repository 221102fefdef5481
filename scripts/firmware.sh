#!/usr/bin/env bash
# Builds the Cortex-M keyword-spotting firmware from a clean clone, runs it under QEMU
# (mps2-an386, Cortex-M4F), checks its output bit for bit against the host runtime, counts its
# instructions per inference, does the same for its Cortex-M0+ (thumbv6m) build on mps2-an385,
# prints the size report, runs the on-device fine-tuning firmware (digits head, M4F), and the
# anomaly detector pruned (structured, and unstructured with sparse storage) and quantized to
# fit a BBC micro:bit (Cortex-M0, 256 KiB flash, 16 KiB RAM) on QEMU `microbit`.
# (Every MLPerf Tiny model on every core: scripts/bench.sh --cortex-m.) Needs ../shared/assets
# (or $KILN_ASSETS) for the MLPerf Tiny KWS model.
set -euo pipefail
cd "$(dirname "$0")/.."
assets="${KILN_ASSETS:-$(cd .. && pwd)/shared/assets}"
mode=$(scripts/cross-setup.sh | grep '^mode=' | cut -d= -f2)
cargo build --release -q -p kiln-converter
kiln=$PWD/target/release/kiln
mkdir -p build/firmware
fw=firmware-examples/cortex-m-kws
"$kiln" convert "$assets/mlperf-tiny/kws_ref_model.tflite" -o build/firmware/kws.kiln
"$kiln" export build/firmware/kws.kiln -o "$fw/generated" -i "$assets/golden/kws_ref_model/inputs.npy" --row 0
build() { # target [firmware dir]
  if [ "$mode" = build-std ]; then
    (cd "${2:-$fw}" && RUSTC_BOOTSTRAP=1 cargo build --release -q --target "$1" -Zbuild-std=core)
  else
    (cd "${2:-$fw}" && cargo build --release -q --target "$1")
  fi
}
build thumbv7em-none-eabihf
build thumbv6m-none-eabi
elf="$fw/target/thumbv7em-none-eabihf/release/cortex-m-kws"
elf0="$fw/target/thumbv6m-none-eabi/release/cortex-m-kws"
plugin=build/firmware/libinsncount.so
gcc -O2 -shared -fPIC -o "$plugin" ../shared/tools/qemu-insncount/insncount.c 2>/dev/null || plugin=""
base=(-M mps2-an386 -cpu cortex-m4 -nographic -monitor none -serial none -semihosting-config enable=on,target=native)
# run_counted ELF LABEL QEMU-ARGS...: runs ELF under QEMU with the instruction counter on its
# bench_marker, prints its output (lines prefixed by LABEL unless empty), fails on a non-zero
# exit; leaves the output in $run_out and the instructions between the first two marker calls
# (the first inference) in $run_insns.
run_counted() {
  local elf=$1 label=$2; shift 2
  local args=("$@") marker status
  marker=$(arm-none-eabi-nm "$elf" | awk '$3 == "bench_marker" {print $1}')
  [ -n "$plugin" ] && args+=(-plugin "$plugin,marker=0x$(printf '%x' $((0x$marker & ~1)))")
  set +e
  run_out=$(timeout 300 qemu-system-arm "${args[@]}" -kernel "$elf" 2>&1)
  status=$?
  set -e
  echo "$run_out" | grep -v '^INSN' | sed "s/^/${label:+$label: }/"
  [ $status -eq 0 ] || { echo "firmware: ${label:-Cortex-M4F build} FAILED under QEMU (exit $status)"; exit 1; }
  run_insns=$(echo "$run_out" | awk '$1 == "INSN" && $2 == "marker" && $3 == 0 {a=$4} $1 == "INSN" && $2 == "marker" && $3 == 1 {b=$4} END {if (a != "" && b != "") print b - a}')
}
run_counted "$elf" "" "${base[@]}"
out=$run_out insns=$run_insns
# The Cortex-M0/M0+ build (ARMv6-M: no DSP, the portable kernels) on the M3 board, whose RAM
# holds the 16 KB arena; the same bit-exactness check.
run_counted "$elf0" "cortex-m0 (mps2-an385)" -M mps2-an385 -cpu cortex-m3 -nographic -monitor none -serial none -semihosting-config enable=on,target=native
insns0=$run_insns
# The DSP inner product and the int8 kernels checked on the M4 itself against the portable
# loop and the reference kernels (edge-case grids).
set +e
dsp_out=$(timeout 120 qemu-system-arm "${base[@]}" -kernel "$fw/target/thumbv7em-none-eabihf/release/dsp_check" 2>&1)
dsp_status=$?
set -e
echo "cortex-m4 $dsp_out"
[ $dsp_status -eq 0 ] || { echo "firmware: DSP kernel check FAILED under QEMU (exit $dsp_status)"; exit 1; }
model=$(stat -c %s build/firmware/kws.kiln)
arena=$(grep -o 'ARENA_SIZE: usize = [0-9]*' "$fw/generated/model.rs" | grep -o '[0-9]*$')
stack=$(echo "$out" | grep -o 'stack high-water [0-9]*' | grep -o '[0-9]*$')
read -r text data bss _ < <(arm-none-eabi-size "$elf" | tail -1)
read -r text0 _ < <(arm-none-eabi-size "$elf0" | tail -1)
code=$((text - model))
ram=$((data + bss + stack))
cat <<REPORT
== size report: keyword spotting (MLPerf Tiny int8 DS-CNN), Cortex-M4F
                         kiln        TFLite Micro + CMSIS-NN (shared/tools/qemu-insncount/README.md)
flash (text+rodata)  $(printf '%8d' "$text") B    138,380 B
  model              $(printf '%8d' "$model") B     53,936 B
  code               $(printf '%8d' "$code") B     84,444 B
RAM (data+bss+stack) $(printf '%8d' "$ram") B
  arena              $(printf '%8d' "$arena") B     22,832 B (minimum accepted)
  other static       $(printf '%8d' $((data + bss - arena))) B
  stack high-water   $(printf '%8d' "$stack") B
instructions/inference $(printf '%8s' "${insns:-n/a}")    7,696,404 (CMSIS-NN), 43,040,240 (reference kernels)
Cortex-M0+ (thumbv6m) build: text $text0 B, $(printf '%s' "${insns0:-n/a}") instructions/inference (mps2-an385), bit-exact
(TFLite Micro's speech example is reported at 157.5 KB flash / 63.7 KB RAM.)
REPORT
fail=0
# The NEON kernels: the runtime's optimized-vs-reference kernel tests (int8 and f32), cross-compiled for aarch64
# and run under qemu-aarch64 (bit-exact int8, f32 within the stated bound, over the edge-case grids).
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
  cargo test --release -q -p kiln-runtime --target aarch64-unknown-linux-gnu --target-dir target/cross \
  --lib --test optimized_i8 --test optimized_f32 --test selfcheck 2>&1 | grep -E '^test result' | sed 's/^/aarch64 (NEON) runtime tests: /'
# Raspberry Pi (aarch64 Linux): the same digits classifier built for the host and for the Pi,
# the Pi build run under qemu-aarch64 on rendered digits; outputs must match byte for byte.
if [ ! -f build/quickstart/digits_cnn_int8.kiln ] || [ ! -f build/quickstart/turned_test_x.npy ]; then
  scripts/quickstart.sh >/dev/null
fi
pi=firmware-examples/raspberry-pi-digits
imgs=$(ls build/quickstart/digit_*.pgm)
(cd "$pi" && cargo build --release -q && cargo build --release -q --target aarch64-unknown-linux-gnu)
for m in digits_cnn digits_cnn_int8; do
  host=$("$pi/target/release/raspberry-pi-digits" "build/quickstart/$m.kiln" $imgs)
  arm=$(qemu-aarch64 -L /usr/aarch64-linux-gnu "$pi/target/aarch64-unknown-linux-gnu/release/raspberry-pi-digits" "build/quickstart/$m.kiln" $imgs 2>build/firmware/pi-stderr.txt)
  sed "s/^/pi ($m): /" build/firmware/pi-stderr.txt
  echo "$arm" | sed "s/^/pi ($m): /"
  if [ "$host" != "$arm" ]; then echo "raspberry pi ($m): output differs from the host build"; fail=1; fi
done
echo "raspberry pi: aarch64 build $(stat -c %s "$pi/target/aarch64-unknown-linux-gnu/release/raspberry-pi-digits") B; outputs identical to the host build"
# The MLPerf Tiny models on aarch64 (pi-bench, the same crate): each model's output on a fixed
# input from the aarch64 build under qemu-aarch64 must equal the host build's byte for byte,
# on a CPU with the dot-product extension (QEMU's default `max`: `sdot` kernels, a Raspberry
# Pi 5) and on a Cortex-A72 (a Pi 4: NEON only); instructions per inference counted with the
# qemu-insncount plugin as the difference between runs of 3 and 1 inferences, over 2.
aa=build/firmware/aarch64.md
{
  echo "| model | path | instructions / inference | output |"
  echo "|---|---|---:|---|"
} > "$aa"
for m in kws_ref_model vww_96_int8 pretrainedResnet_quant ad01_int8 \
         kws_ref_model_float32_dequant vww_96_float pretrainedResnet ad01_fp32; do
  [ -f "build/firmware/$m.kiln" ] || "$kiln" convert "$assets/mlperf-tiny/$m.tflite" -o "build/firmware/$m.kiln" > /dev/null
  host=$("$pi/target/release/pi-bench" "build/firmware/$m.kiln" 1 | cut -d' ' -f2)
  for cpu in max cortex-a72; do
    counts=()
    for n in 1 3; do
      out=$(qemu-aarch64 -cpu "$cpu" -L /usr/aarch64-linux-gnu ${plugin:+-plugin "$plugin"} \
        "$pi/target/aarch64-unknown-linux-gnu/release/pi-bench" "build/firmware/$m.kiln" "$n" 2>&1)
      path=$(echo "$out" | awk '$1 != "INSN" {print $1}')
      got=$(echo "$out" | awk '$1 != "INSN" {print $2}')
      counts+=("$(echo "$out" | awk '$1 == "INSN" && $2 == "total" {print $3}')")
      if [ "$got" != "$host" ]; then echo "aarch64 ($m, $cpu, $n runs): output differs from the host build"; fail=1; fi
    done
    per=$([ -n "$plugin" ] && awk -v a="${counts[0]}" -v b="${counts[1]}" 'BEGIN {printf "%d", (b - a) / 2}' || echo n/a)
    echo "| $m | $path ($cpu) | $per | identical to the host |" >> "$aa"
    echo "aarch64: $m on $cpu: kernels $path, $per instructions per inference, output identical to the host build"
  done
done
# On-device fine-tuning (Cortex-M4F, mps2-an386): the int8 digits model's head adapted to
# digits turned 90 degrees, one sample at a time, from samples compiled into the firmware;
# saved to a RAM-backed NOR flash, reloaded after a reset. Its transcript must equal the host's
# run of the same adapt.rs line for line (loss bits and the head's CRC included).
ftw=firmware-examples/cortex-m-finetune
"$kiln" export build/quickstart/digits_cnn_int8.kiln -o "$ftw/generated" > /dev/null
"$(scripts/venv.sh)" - build/quickstart "$ftw/generated" <<'PY'
import sys
import numpy as np
src, dst = sys.argv[1], sys.argv[2]
def records(x, y):
    px = np.rint(x.reshape(len(x), 64) * 16).astype(np.uint8)
    assert np.array_equal(px / 16.0, x.reshape(len(x), 64)), "pixels are not k/16"
    return np.concatenate([px, y.astype(np.uint8)[:, None]], 1).tobytes()
for name, part, n in (("train", "train", 200), ("test", "test", 150)):
    x, y = np.load(f"{src}/turned_{part}_x.npy")[:n], np.load(f"{src}/turned_{part}_y.npy")[:n]
    open(f"{dst}/{name}.bin", "wb").write(records(x, y))
PY
build thumbv7em-none-eabihf "$ftw"
set +e
ft_out=$(timeout 300 qemu-system-arm "${base[@]}" -kernel "$ftw/target/thumbv7em-none-eabihf/release/cortex-m-finetune" 2>&1)
ft_status=$?
set -e
echo "$ft_out" | sed 's/^/finetune (cortex-m4): /'
ft_host=$(cargo run --release -q -p kiln-tests --example finetune_host -- "$ftw/generated")
if [ $ft_status -ne 0 ]; then
  echo "finetune firmware FAILED under QEMU (exit $ft_status)"; fail=1
elif [ "$(echo "$ft_out" | grep '^adapt:')" != "$ft_host" ]; then
  echo "finetune: the device's transcript differs from the host's:"; diff <(echo "$ft_out" | grep '^adapt:') <(echo "$ft_host") || true; fail=1
else
  before=$(echo "$ft_out" | sed -n 's/^adapt: before: held-out accuracy \([0-9]*\)\/.*/\1/p')
  after=$(echo "$ft_out" | sed -n 's/^adapt: done: held-out accuracy \([0-9]*\)\/.*/\1/p')
  echo "finetune: device transcript identical to the host's; held-out $before -> $after of 150; head reloaded after reset"
  [ "$after" -ge $((before + 60)) ] || { echo "finetune: accuracy did not rise by 60 samples"; fail=1; }
fi
# The micro:bit: MLPerf Tiny's anomaly detector (1 MB as float, 279 KB as int8: larger than the
# part's 256 KiB flash), pruned and quantized with int8 inputs and outputs, two ways: half its
# weights removed as whole units (structured; dense kernels), and 80% of them as single weights
# (unstructured; stored sparse, the kernels skip the zeros). Calibrated (pruning refit and int8
# ranges) on the even 5-frame windows of the sample spectrogram, measured on the odd ones: the
# reconstruction error may grow at most 1.5x.
ad=build/firmware/ad
mkdir -p "$ad"
"$(scripts/venv.sh)" - "$assets/mlperf-tiny/samples/ad_normal_id01_spectrogram_f32.npy" "$ad" <<'PY'
import sys
import numpy as np
frames = np.load(sys.argv[1])
w = np.stack([frames[i:i + 5].reshape(640) for i in range(len(frames) - 4)]).astype(np.float32)
np.save(f"{sys.argv[2]}/calib.npy", w[0::2])
np.save(f"{sys.argv[2]}/heldout.npy", w[1::2])
PY
"$kiln" convert "$assets/mlperf-tiny/ad01_fp32.tflite" -o "$ad/ad.kiln" > /dev/null
"$kiln" prune "$ad/ad.kiln" --sparsity 0.5 --calib "$ad/calib.npy" -o "$ad/ad_pruned.kiln" | tail -1 | sed 's/^/microbit: /'
"$kiln" quantize "$ad/ad_pruned.kiln" --calib "$ad/calib.npy" --int8-io -o "$ad/ad_pruned_int8.kiln" 2>/dev/null | tail -1 | sed 's/^/microbit: /'
"$kiln" prune "$ad/ad.kiln" --unstructured --sparsity 0.8 --calib "$ad/calib.npy" -o "$ad/ad_sparse.kiln" | tail -1 | sed 's/^/microbit: /'
"$kiln" quantize "$ad/ad_sparse.kiln" --calib "$ad/calib.npy" --int8-io -o "$ad/ad_sparse_int8.kiln" 2>/dev/null | tail -2 | sed 's/^/microbit: /'
recon=$("$kiln" eval --reconstruction "$ad/ad.kiln" "$ad/ad_pruned_int8.kiln" "$ad/ad_sparse_int8.kiln" -i "$ad/heldout.npy" --json 2>/dev/null)
read -r mse0 mse1 mse2 < <(echo "$recon" | "$(scripts/venv.sh)" -c 'import json,sys; v=json.load(sys.stdin); print(*(m["reconstruction"]["mse"] for m in v))')
echo "microbit: reconstruction MSE on 98 held-out windows: unpruned float $mse0; structured 50% int8 $mse1 ($(awk -v a="$mse1" -v b="$mse0" 'BEGIN {printf "%.3f", a / b}')x); unstructured 80% int8 sparse $mse2 ($(awk -v a="$mse2" -v b="$mse0" 'BEGIN {printf "%.3f", a / b}')x)"
for m in "$mse1" "$mse2"; do
  awk -v a="$m" -v b="$mse0" 'BEGIN {exit !(a <= 1.5 * b)}' || { echo "microbit: reconstruction error grew more than 1.5x"; fail=1; }
done
mbw=firmware-examples/microbit-anomaly
mbelf="$mbw/target/thumbv6m-none-eabi/release/microbit-anomaly"
for variant in pruned sparse; do
  "$kiln" export "$ad/ad_${variant}_int8.kiln" -o "$mbw/generated" -i "$ad/heldout.npy" --count 8 2>/dev/null | sed "s/^/microbit ($variant): /"
  build thumbv6m-none-eabi "$mbw"
  run_counted "$mbelf" "microbit ($variant)" -M microbit -nographic -monitor none -serial none -semihosting-config enable=on,target=native
  read -r mtext mdata mbss _ < <(arm-none-eabi-size "$mbelf" | tail -1)
  mstack=$(echo "$run_out" | grep -o 'stack high-water [0-9]*' | grep -o '[0-9]*$')
  mmodel=$(stat -c %s "$ad/ad_${variant}_int8.kiln")
  mdata_rec=$(( $(stat -c %s "$mbw/generated/input.bin") + $(stat -c %s "$mbw/generated/expected.bin") ))
  echo "microbit ($variant): flash $mtext of 262,144 B (model $mmodel, 8 windows and their outputs $mdata_rec, code $((mtext - mmodel - mdata_rec))); RAM $((mdata + mbss + mstack)) of 16,384 B (statics $((mdata + mbss)), stack high-water $mstack); ${run_insns:-n/a} instructions per window"
  [ $((mdata + mbss + mstack)) -le 16384 ] || { echo "microbit ($variant): RAM exceeds 16 KiB"; fail=1; }
done
[ "$ram" -le $((arena + 8192)) ] || { echo "RAM $ram exceeds arena + 8 KiB"; fail=1; }
# kiln's code (the whole runtime: every op, both int8 weight layouts, the DSP kernels) stays
# below TFLite Micro + CMSIS-NN's for the same model, 84,444 B.
[ "$code" -le 84444 ] || { echo "code $code exceeds TFLite Micro + CMSIS-NN's 84,444 B"; fail=1; }
[ $fail = 0 ] && echo "firmware: OK"
exit $fail
