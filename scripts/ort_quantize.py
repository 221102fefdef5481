#!/usr/bin/env python3
"""onnxruntime's own static int8 quantization (quantize_static: QDQ, per-channel int8 weights,
int8 activations, min-max calibration) of an ONNX classifier, calibrated on the same .npy data
kiln uses, then evaluated under onnxruntime. Prints one JSON line."""
import json
import os
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process


class Reader(CalibrationDataReader):
    def __init__(self, name, x):
        self.items = iter([{name: x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.items, None)


def main():
    model, calib, xs, ys, out = sys.argv[1:6]
    x_cal = np.load(calib).astype(np.float32)
    name = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).get_inputs()[0].name
    with tempfile.TemporaryDirectory() as d:
        pre = os.path.join(d, "pre.onnx")
        quant_pre_process(model, pre, skip_symbolic_shape=True)
        quantize_static(pre, out, Reader(name, x_cal), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    x = np.load(xs).astype(np.float32)
    y = np.load(ys)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(out, so, providers=["CPUExecutionProvider"])
    t0 = time.perf_counter()
    pred = [int(np.argmax(sess.run(None, {name: x[i:i + 1]})[0])) for i in range(len(x))]
    dt = time.perf_counter() - t0
    print(json.dumps({"accuracy": float(np.mean(np.array(pred) == y)), "samples": len(x),
                      "bytes": os.path.getsize(out), "us_per_inference": dt * 1e6 / len(x)}))


if __name__ == "__main__":
    main()
