#!/usr/bin/env python3
"""Accuracy of an ONNX classifier under onnxruntime on a labelled .npy split (one input at a time,
as kiln runs it). Prints one JSON line: {"accuracy": ..., "samples": ..., "us_per_inference": ...}."""
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    model, xs, ys = sys.argv[1:4]
    save = sys.argv[4] if len(sys.argv) > 4 else None
    x = np.load(xs).astype(np.float32)
    y = np.load(ys)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    preds, outs = [], []
    t0 = time.perf_counter()
    for i in range(len(x)):
        out = sess.run(None, {name: x[i:i + 1]})[0]
        outs.append(out.reshape(-1))
        preds.append(int(np.argmax(out)))
    dt = time.perf_counter() - t0
    if save:
        np.save(save, np.stack(outs).astype(np.float32))
    acc = float(np.mean(np.array(preds) == y))
    print(json.dumps({"accuracy": acc, "samples": len(x), "us_per_inference": dt * 1e6 / len(x)}))


if __name__ == "__main__":
    main()
