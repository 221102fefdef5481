#!/usr/bin/env python3
"""Generates already-quantized ONNX models in the forms real tools emit, with onnxruntime's
outputs on the digits test split, for kiln's import test (tests/tests/onnx_qoperator.rs):

    qop_s8      onnxruntime quantize_static, QOperator format, int8 activations, per-channel
                int8 weights (QLinearConv, com.microsoft QGemm and QLinearSoftmax)
    qop_u8      the same with uint8 activations (onnxruntime's default activation type)
    qdq_u8      quantize_static, QDQ format, uint8 activations
    qlinear_matmul  hand-built: QuantizeLinear (uint8) -> QLinearMatMul (per-column int8
                weights) -> DequantizeLinear, on the flattened digit
    dynamic     quantize_dynamic (DynamicQuantizeLinear, ConvInteger, MatMulInteger): kiln must
                reject it with an error that explains why
    integer_ops hand-built static integer pipeline: QuantizeLinear -> ConvInteger -> Cast -> Mul
                -> Relu -> Flatten -> QuantizeLinear -> MatMulInteger -> Cast -> Mul

uint8 activations with int8 weights are generated with 7-bit weights (onnxruntime's
`reduce_range`): onnxruntime's x86 u8 x s8 kernels (vpmaddubsw) saturate pairs of products in 16
bits otherwise, so its output would not be the exact ONNX semantics kiln is checked against.

Each case is <out>/<name>/model.onnx, inputs.npy (f32), expected.npy (onnxruntime, f32).
The float model is the quickstart's digits CNN, trained here with scripts/train_digits.py.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_dynamic, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

N_TEST = 120


class Reader(CalibrationDataReader):
    def __init__(self, name, x):
        self.items = iter([{name: x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.items, None)


def run_ort(path, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))]).astype(np.float32)


def save_case(out, name, model_path_or_proto, x, float_model=None):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    if isinstance(model_path_or_proto, str):
        os.replace(model_path_or_proto, path)
    else:
        onnx.checker.check_model(model_path_or_proto)
        onnx.save(model_path_or_proto, path)
    np.save(os.path.join(d, "inputs.npy"), x.astype(np.float32))
    y = run_ort(path, x)
    np.save(os.path.join(d, "expected.npy"), y)
    if float_model is not None:
        # The float model the quantized one approximates: a second oracle, which tells which
        # engine is off when kiln and onnxruntime disagree (onnxruntime's uint8 kernels differ
        # between CPUs).
        np.save(os.path.join(d, "expected_float.npy"), run_ort(float_model, x))
    ops = sorted({n.op_type for n in onnx.load(path).graph.node})
    return f"{name}: {', '.join(ops)}"


def qparams(v, dtype):
    """Asymmetric (uint8/int8) parameters covering v."""
    lo, hi = min(float(v.min()), 0.0), max(float(v.max()), 0.0)
    qmin, qmax = (0, 255) if dtype == np.uint8 else (-128, 127)
    scale = (hi - lo) / (qmax - qmin) or 1.0
    zp = int(np.clip(round(qmin - lo / scale), qmin, qmax))
    return np.float32(scale), dtype(zp)


def integer_ops(x_cal):
    """QuantizeLinear -> ConvInteger -> Cast -> Mul -> Relu -> Flatten -> QuantizeLinear ->
    MatMulInteger -> Cast -> Mul, with weights from a seeded generator."""
    rng = np.random.default_rng(7)
    w1 = rng.normal(0, 0.4, (6, 1, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.15, (6 * 6 * 6, 10)).astype(np.float32)
    sx, zx = qparams(x_cal, np.int8)
    sw1 = np.float32(np.abs(w1).max() / 127)
    q1 = np.clip(np.round(w1 / sw1), -127, 127).astype(np.int8)
    h = np.maximum(0, conv_valid(x_cal, w1))
    sh, zh = qparams(h.reshape(len(h), -1), np.uint8)
    sw2 = (np.abs(w2).max(axis=0) / 63).astype(np.float32)  # per column, 7-bit (uint8 input)
    q2 = np.clip(np.round(w2 / sw2), -63, 63).astype(np.int8)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"], name="quant_x"),
        helper.make_node("ConvInteger", ["xq", "w1", "zx"], ["acc1"], name="conv_int"),
        helper.make_node("Cast", ["acc1"], ["acc1f"], to=TensorProto.FLOAT, name="cast1"),
        helper.make_node("Mul", ["acc1f", "s1"], ["h0"], name="rescale1"),
        helper.make_node("Relu", ["h0"], ["h"], name="relu"),
        helper.make_node("Flatten", ["h"], ["hf"], axis=1, name="flatten"),
        helper.make_node("QuantizeLinear", ["hf", "sh", "zh"], ["hq"], name="quant_h"),
        helper.make_node("MatMulInteger", ["hq", "w2", "zh"], ["acc2"], name="matmul_int"),
        helper.make_node("Cast", ["acc2"], ["acc2f"], to=TensorProto.FLOAT, name="cast2"),
        helper.make_node("Mul", ["acc2f", "s2"], ["y"], name="rescale2"),
    ]
    inits = [
        numpy_helper.from_array(np.array(sx, np.float32), "sx"),
        numpy_helper.from_array(np.array(zx, np.int8), "zx"),
        numpy_helper.from_array(q1, "w1"),
        numpy_helper.from_array(np.array(sx * sw1, np.float32), "s1"),
        numpy_helper.from_array(np.array(sh, np.float32), "sh"),
        numpy_helper.from_array(np.array(zh, np.uint8), "zh"),
        numpy_helper.from_array(q2, "w2"),
        numpy_helper.from_array((sh * sw2).astype(np.float32), "s2"),
    ]
    g = helper.make_graph(nodes, "integer_ops",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def conv_valid(x, w):
    n, _, hh, ww = x.shape
    o, _, kh, kw = w.shape
    y = np.zeros((n, o, hh - kh + 1, ww - kw + 1), np.float32)
    for i in range(hh - kh + 1):
        for j in range(ww - kw + 1):
            y[:, :, i, j] = np.einsum("nchw,ochw->no", x[:, :, i:i + kh, j:j + kw], w)
    return y


def qlinear_matmul(x_cal):
    rng = np.random.default_rng(11)
    w = rng.normal(0, 0.2, (64, 10)).astype(np.float32)
    xf = x_cal.reshape(len(x_cal), -1)
    sx, zx = qparams(xf, np.uint8)
    sw = (np.abs(w).max(axis=0) / 63).astype(np.float32)  # 7-bit: see the module docs
    qw = np.clip(np.round(w / sw), -63, 63).astype(np.int8)
    y = (xf @ w)
    sy, zy = qparams(y, np.uint8)  # onnxruntime implements uint8 x int8 -> uint8
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["xf"], name="flatten"),
        helper.make_node("QuantizeLinear", ["xf", "sx", "zx"], ["xq"], name="quant_x"),
        helper.make_node("QLinearMatMul", ["xq", "sx", "zx", "w", "sw", "zw", "sy", "zy"], ["yq"],
                         name="qmatmul"),
        helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["y"], name="dequant_y"),
    ]
    inits = [
        numpy_helper.from_array(np.array([1, 64], np.int64), "shape"),
        numpy_helper.from_array(np.array(sx, np.float32), "sx"),
        numpy_helper.from_array(np.array(zx, np.uint8), "zx"),
        numpy_helper.from_array(qw, "w"),
        numpy_helper.from_array(sw, "sw"),
        numpy_helper.from_array(np.zeros(10, np.int8), "zw"),
        numpy_helper.from_array(np.array(sy, np.float32), "sy"),
        numpy_helper.from_array(np.array(zy, np.uint8), "zy"),
    ]
    g = helper.make_graph(nodes, "qlinear_matmul",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    work = os.path.join(args.out, "_digits")
    if not os.path.exists(os.path.join(work, "digits_cnn.onnx")):
        subprocess.run([sys.executable, os.path.join(here, "train_digits.py"), "--out", work, "--epochs", "10"],
                       check=True, stdout=subprocess.DEVNULL)
    src = os.path.join(work, "digits_cnn.onnx")
    x_cal = np.load(os.path.join(work, "calib_x.npy")).astype(np.float32)[:200]
    x_test = np.load(os.path.join(work, "test_x.npy")).astype(np.float32)[:N_TEST]
    name = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).get_inputs()[0].name
    lines = []
    with tempfile.TemporaryDirectory() as d:
        pre = os.path.join(d, "pre.onnx")
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        for case, fmt, act in [("qop_s8", QuantFormat.QOperator, QuantType.QInt8),
                               ("qop_u8", QuantFormat.QOperator, QuantType.QUInt8),
                               ("qdq_u8", QuantFormat.QDQ, QuantType.QUInt8)]:
            tmp = os.path.join(d, case + ".onnx")
            quantize_static(pre, tmp, Reader(name, x_cal), quant_format=fmt, per_channel=True,
                            activation_type=act, weight_type=QuantType.QInt8,
                            reduce_range=act == QuantType.QUInt8,
                            calibrate_method=CalibrationMethod.MinMax)
            lines.append(save_case(args.out, case, tmp, x_test, float_model=src))
        tmp = os.path.join(d, "dynamic.onnx")
        quantize_dynamic(pre, tmp, weight_type=QuantType.QInt8)
        lines.append(save_case(args.out, "dynamic", tmp, x_test))
    lines.append(save_case(args.out, "qlinear_matmul", qlinear_matmul(x_cal), x_test))
    lines.append(save_case(args.out, "integer_ops", integer_ops(x_cal), x_test))
    with open(os.path.join(args.out, "SUMMARY.txt"), "w") as f:
        f.write(f"onnxruntime {ort.__version__}\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
