#!/usr/bin/env bash
# The README's first command: the main job end to end on a model the project makes itself.
#   train a small CNN on scikit-learn's digits (numpy) -> export ONNX -> kiln convert ->
#   inspect -> accuracy from onnxruntime and kiln -> verify against tract -> classify images.
set -euo pipefail
cd "$(dirname "$0")/.."
py="$(scripts/venv.sh)"
out=build/quickstart
echo "== building kiln (release)"
cargo build --release -q -p kiln-converter
kiln=target/release/kiln
echo "== training a CNN on scikit-learn's digits with numpy"
"$py" scripts/train_digits.py --out "$out"
echo "== kiln convert"
"$kiln" convert "$out/digits_cnn.onnx" -o "$out/digits_cnn.kiln"
echo "== kiln inspect"
"$kiln" inspect "$out/digits_cnn.kiln"
echo "== accuracy on the held-out split"
ort_json="$("$py" scripts/ort_eval.py "$out/digits_cnn.onnx" "$out/test_x.npy" "$out/test_y.npy")"
"$kiln" eval "$out/digits_cnn.kiln" -i "$out/test_x.npy" -l "$out/test_y.npy"
kiln_json="$("$kiln" eval "$out/digits_cnn.kiln" -i "$out/test_x.npy" -l "$out/test_y.npy" --json)"
echo "== kiln verify (tract vs kiln, all test images)"
"$kiln" verify "$out/digits_cnn.onnx" --kiln "$out/digits_cnn.kiln" -i "$out/test_x.npy"
echo "== kiln run on rendered digit images"
"$kiln" run "$out/digits_cnn.kiln" -i "$out"/digit_*.pgm --top-k 3
echo "== summary"
"$py" - "$ort_json" "$kiln_json" "$out/digits_cnn.onnx" "$out/digits_cnn.kiln" <<'PY'
import json, os, sys
ort, kiln = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ka = kiln["metrics"]["accuracy"]
print(f"{'':18}{'accuracy':>10}{'model bytes':>13}{'us/inference':>14}")
print(f"{'onnxruntime f32':18}{ort['accuracy']*100:>9.2f}%{os.path.getsize(sys.argv[3]):>13}{ort['us_per_inference']:>14.1f}")
print(f"{'kiln f32':18}{ka*100:>9.2f}%{os.path.getsize(sys.argv[4]):>13}{kiln['seconds']*1e6/kiln['metrics']['samples']:>14.1f}")
print(f"kiln arena: {kiln['arena_bytes']} bytes")
if abs(ka - ort["accuracy"]) > 1e-9:
    sys.exit("kiln and onnxruntime disagree on accuracy")
PY
echo "quickstart: OK"
