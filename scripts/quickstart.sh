#!/usr/bin/env bash
# The README's first command: the main job end to end on a model the project makes itself.
#   train a small CNN on scikit-learn's digits (numpy) -> export ONNX -> kiln convert -> inspect
#   -> kiln quantize (int8 PTQ) -> accuracy of float and int8 from kiln and onnxruntime
#   -> verify against tract -> classify rendered digit images -> kiln finetune: adapt the head
#   to digits turned 90 degrees (float; int8 alone and distilled from the tuned float model)
#   -> kiln prune (30% of the weights as whole channels, refit) and its int8 version, and a
#      sweep of sparsities (table and chart)
#   -> models from other trainers (committed exports): a PyTorch LSTM, a Keras MobileNetV3-style
#   block in full int8, a scikit-learn Normalizer -> MLP pipeline, each checked against its
#   framework's own outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
py="$(scripts/venv.sh)"
out=build/quickstart
echo "== building kiln (release; the first build compiles tract and takes about 15 minutes on 2 cores)"
cargo build --release -p kiln-converter
kiln=target/release/kiln
echo "== training a CNN on scikit-learn's digits with numpy"
"$py" scripts/train_digits.py --out "$out"
echo "== kiln convert"
"$kiln" convert "$out/digits_cnn.onnx" -o "$out/digits_cnn.kiln"
echo "== kiln inspect"
"$kiln" inspect "$out/digits_cnn.kiln"
echo "== kiln quantize (int8, calibrated on 200 training images)"
"$kiln" quantize "$out/digits_cnn.onnx" --calib "$out/calib_x.npy" -o "$out/digits_cnn_int8.kiln"
echo "== kiln eval: float and int8 on the held-out split"
"$kiln" eval "$out/digits_cnn_int8.kiln" -i "$out/test_x.npy" -l "$out/test_y.npy"
"$kiln" eval "$out/digits_cnn.kiln" "$out/digits_cnn_int8.kiln" -i "$out/test_x.npy" -l "$out/test_y.npy"
kiln_json="$("$kiln" eval "$out/digits_cnn.kiln" "$out/digits_cnn_int8.kiln" -i "$out/test_x.npy" -l "$out/test_y.npy" --json)"
echo "== onnxruntime: float, and its own static int8 quantization on the same calibration data"
ort_json="$("$py" scripts/ort_eval.py "$out/digits_cnn.onnx" "$out/test_x.npy" "$out/test_y.npy" "$out/ort_probs.npy")"
"$kiln" run "$out/digits_cnn.kiln" -i "$out/test_x.npy" --top-k 1 --save "$out/kiln_probs.npy" > /dev/null
ortq_json="$("$py" scripts/ort_quantize.py "$out/digits_cnn.onnx" "$out/calib_x.npy" "$out/test_x.npy" "$out/test_y.npy" "$out/digits_cnn_ort_int8.onnx")"
echo "== kiln verify (tract vs kiln, all test images)"
"$kiln" verify "$out/digits_cnn.onnx" --kiln "$out/digits_cnn.kiln" -i "$out/test_x.npy"
echo "== kiln run on rendered digit images (int8 model)"
"$kiln" run "$out/digits_cnn_int8.kiln" -i "$out"/digit_*.pgm --top-k 3
echo "== kiln finetune: the same digits turned 90 degrees (a new task); only the last dense layer adapts"
ft=(--epochs 30 --lr 3e-3 --batch 8 --patience 5)
"$kiln" finetune "$out/digits_cnn.kiln" -i "$out/turned_train_x.npy" -l "$out/turned_train_y.npy" -o "$out/digits_turned.kiln" "${ft[@]}"
echo "== kiln finetune: the int8 model on only 100 turned images, alone and distilled from the float model tuned above"
ft=(--epochs 60 --lr 3e-3 --batch 8 --patience 5)
"$kiln" finetune "$out/digits_cnn_int8.kiln" -i "$out/turned_few_x.npy" -l "$out/turned_few_y.npy" -o "$out/digits_turned_int8.kiln" "${ft[@]}" | tail -2
"$kiln" finetune "$out/digits_cnn_int8.kiln" -i "$out/turned_few_x.npy" -l "$out/turned_few_y.npy" -o "$out/digits_turned_int8_distilled.kiln" --teacher "$out/digits_turned.kiln" "${ft[@]}" | tail -2
echo "== kiln eval: turned held-out images, before and after fine-tuning"
"$kiln" eval "$out/digits_cnn.kiln" "$out/digits_turned.kiln" "$out/digits_turned_int8.kiln" "$out/digits_turned_int8_distilled.kiln" -i "$out/turned_test_x.npy" -l "$out/turned_test_y.npy"
turned_json="$("$kiln" eval "$out/digits_cnn.kiln" "$out/digits_turned.kiln" "$out/digits_turned_int8.kiln" "$out/digits_turned_int8_distilled.kiln" -i "$out/turned_test_x.npy" -l "$out/turned_test_y.npy" --json)"
echo "== kiln prune: 30% of the weights as whole channels, the next layer refit by least squares; then int8"
"$kiln" prune "$out/digits_cnn.onnx" --sparsity 0.3 --calib "$out/calib_x.npy" -o "$out/digits_cnn_pruned.kiln"
"$kiln" quantize "$out/digits_cnn_pruned.kiln" --calib "$out/calib_x.npy" -o "$out/digits_cnn_pruned_int8.kiln" | tail -1
"$kiln" eval "$out/digits_cnn.kiln" "$out/digits_cnn_int8.kiln" "$out/digits_cnn_pruned.kiln" "$out/digits_cnn_pruned_int8.kiln" -i "$out/test_x.npy" -l "$out/test_y.npy"
pruned_json="$("$kiln" eval "$out/digits_cnn.kiln" "$out/digits_cnn_int8.kiln" "$out/digits_cnn_pruned.kiln" "$out/digits_cnn_pruned_int8.kiln" -i "$out/test_x.npy" -l "$out/test_y.npy" --json)"
"$py" - "$pruned_json" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
acc = [m["metrics"]["accuracy"] for m in r]
print(f"pruned: float {acc[0]*100:.2f}% -> {acc[2]*100:.2f}%, int8 {acc[1]*100:.2f}% -> {acc[3]*100:.2f}%")
if acc[0] - acc[2] > 0.02 or acc[1] - acc[3] > 0.02:
    sys.exit("pruning 30% of the weights lost more than 2 accuracy points")
PY
echo "== kiln prune --sweep: accuracy, size, MACs and latency from 10% to 70%, float and int8 (chart: $out/digits_sweep.png)"
"$kiln" prune "$out/digits_cnn.onnx" --sweep 0.1,0.2,0.3,0.4,0.5,0.6,0.7 --calib "$out/calib_x.npy" --eval-input "$out/test_x.npy" --labels "$out/test_y.npy" -o "$out/digits_sweep.png"
echo "== other trainers: PyTorch nn.LSTM (dynamo exporter), Keras MobileNetV3-style block (full int8), scikit-learn Normalizer -> MLPClassifier"
"$kiln" convert tests/data/torch/lstm_dynamo.onnx -o "$out/torch_lstm.kiln"
"$kiln" run "$out/torch_lstm.kiln" -i tests/data/torch/lstm_inputs.npy --save "$out/torch_lstm_out.npy" > /dev/null
"$kiln" convert tests/data/keras/mobile_int8.tflite -o "$out/keras_mobile_int8.kiln"
KILN_PYTHON="$py" "$kiln" verify tests/data/keras/mobile_int8.tflite --kiln "$out/keras_mobile_int8.kiln" -i tests/data/keras/mobile_inputs.npy
"$kiln" convert tests/data/sklearn/mlp_iris_l2.onnx -o "$out/sklearn_iris.kiln"
"$kiln" run "$out/sklearn_iris.kiln" -i tests/data/sklearn/mlp_iris_l2_inputs.npy --save "$out/sklearn_iris_out.npy" > /dev/null
"$py" - "$out" <<'PY'
import sys
import numpy as np
out = sys.argv[1]
for what, got, want in [("PyTorch LSTM", "torch_lstm_out.npy", "tests/data/torch/lstm_torch.npy"),
                        ("scikit-learn pipeline", "sklearn_iris_out.npy", "tests/data/sklearn/mlp_iris_l2_sklearn.npy")]:
    g, w = np.load(f"{out}/{got}").reshape(-1), np.load(want).reshape(-1)
    rel = float(np.max(np.abs(g - w)) / np.max(np.abs(w)))
    print(f"{what}: kiln vs the framework's own outputs: max rel error {rel:.1e} (bound 1e-4)")
    if g.shape != w.shape or rel > 1e-4:
        sys.exit(f"{what}: kiln differs from the framework")
PY
echo "== summary"
"$py" - "$ort_json" "$ortq_json" "$kiln_json" "$out/digits_cnn.onnx" "$turned_json" <<'PY'
import json, os, sys
ort, ortq, kiln = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
turned = [r["metrics"]["accuracy"] for r in json.loads(sys.argv[5])]
kf, kq = kiln
us = lambda r: r["seconds"] * 1e6 / r["metrics"]["samples"]
rows = [
    ("onnxruntime f32", ort["accuracy"], os.path.getsize(sys.argv[4]), ort["us_per_inference"], "-"),
    ("onnxruntime int8", ortq["accuracy"], ortq["bytes"], ortq["us_per_inference"], "-"),
    ("kiln f32", kf["metrics"]["accuracy"], kf["model_bytes"], us(kf), kf["arena_bytes"]),
    ("kiln int8", kq["metrics"]["accuracy"], kq["model_bytes"], us(kq), kq["arena_bytes"]),
]
print(f"{'':18}{'accuracy':>10}{'model bytes':>13}{'us/inference':>14}{'arena bytes':>13}")
for name, acc, size, t, arena in rows:
    print(f"{name:18}{acc*100:>9.2f}%{size:>13}{t:>14.1f}{arena:>13}")
fail = []
import numpy as np
po, pk = np.load(os.path.join(os.path.dirname(sys.argv[4]), "ort_probs.npy")), np.load(os.path.join(os.path.dirname(sys.argv[4]), "kiln_probs.npy"))
rel = float(np.max(np.abs(pk - po)) / np.max(np.abs(po)))
print(f"kiln f32 vs onnxruntime f32 on all {len(po)} test images: max rel error {rel:.2e} (bound 1e-4)")
if rel > 1e-4:
    fail.append("kiln f32 outputs differ from onnxruntime's by more than 1e-4")
if abs(kf["metrics"]["accuracy"] - ort["accuracy"]) > 1e-9:
    fail.append("kiln f32 and onnxruntime f32 disagree on accuracy")
if kf["metrics"]["accuracy"] - kq["metrics"]["accuracy"] > 0.01:
    fail.append("kiln int8 loses more than 1 accuracy point")
if kq["metrics"]["accuracy"] < ortq["accuracy"]:
    fail.append("kiln int8 is less accurate than onnxruntime's static quantization")
print("int8: {:+.2f} points vs float (kiln), {:+.2f} points vs onnxruntime int8".format(
    (kq["metrics"]["accuracy"] - kf["metrics"]["accuracy"]) * 100, (kq["metrics"]["accuracy"] - ortq["accuracy"]) * 100))
print("fine-tuning on turned digits (held-out): {:.2f}% before, {:.2f}% after (float, 400 images); "
      "int8 on 100 images {:.2f}%, distilled from the tuned float model {:.2f}%".format(*(a * 100 for a in turned)))
if turned[1] - turned[0] < 0.5:
    fail.append("fine-tuning the float head did not raise accuracy on the new task by 50 points")
if turned[2] - turned[0] < 0.3:
    fail.append("fine-tuning the int8 head did not raise accuracy on the new task by 30 points")
if fail:
    sys.exit("; ".join(fail))
PY
echo "quickstart: OK"
