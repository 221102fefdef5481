#!/usr/bin/env python3
"""Extracts the ONNX backend node conformance cases shipped inside the `onnx` wheel into a folder
of cases that kiln's Rust test runner walks as data:

    <out>/<case>/model.onnx      the case's model, non-float inputs frozen into initializers
    <out>/<case>/input_<k>.npy   float32 inputs
    <out>/<case>/expected_<k>.npy  onnxruntime's outputs on those inputs (the reference)
    <out>/<case>/ops.txt         the ONNX op types the model uses

Only cases whose remaining inputs and outputs are all float32 tensors, and that onnxruntime can
run, are written. Writes <out>/SUMMARY.txt with counts.
"""
import argparse
import os
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


# Ops whose inputs after the first are weights or parameters (Resize's roi/scales/sizes): every
# real model has them as initializers, so they are frozen as such.
WEIGHT_OPS = {"Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization", "PRelu",
              "LayerNormalization", "GroupNormalization", "QLinearConv", "ConvInteger", "Resize",
              "Upsample"}


def load_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def write_kiln_cases(out):
    """Models for kiln's own import-error tests: two ops tract reads but kiln does not map
    (LRN, and Hardmax, which tract expands into two ops of its own), so the importer must name
    both in one error, by their ONNX names."""
    from onnx import TensorProto, helper
    nodes = [
        helper.make_node("LRN", ["x"], ["lrn_out"], name="my_lrn", size=3),
        helper.make_node("Relu", ["lrn_out"], ["relu_out"], name="my_relu"),
        helper.make_node("Hardmax", ["relu_out"], ["y"], name="my_hardmax", axis=-1),
    ]
    g = helper.make_graph(nodes, "unsupported", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, os.path.join(out, "_kiln_unsupported.onnx"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    if not os.path.isdir(root):
        sys.exit(f"no node tests in the onnx wheel at {root} (onnx {onnx.__version__}; pin onnx==1.20.0)")
    cases = sorted(os.listdir(root))
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    written = skipped = 0
    so = ort.SessionOptions()
    so.log_severity_level = 4
    for name in cases:
        d = os.path.join(root, name)
        ds = os.path.join(d, "test_data_set_0")
        if not os.path.isfile(os.path.join(d, "model.onnx")) or not os.path.isdir(ds):
            skipped += 1
            continue
        try:
            model = onnx.load(os.path.join(d, "model.onnx"))
            g = model.graph
            init_names = {i.name for i in g.initializer}
            inputs = [i for i in g.input if i.name not in init_names]
            values = []
            for k in range(len(inputs)):
                p = os.path.join(ds, f"input_{k}.pb")
                if not os.path.isfile(p):
                    raise ValueError("missing input")
                values.append(load_pb(p))
            keep, feeds = [], {}
            weights_op = g.node[0].op_type in WEIGHT_OPS if len(g.node) == 1 else False
            for k, (vi, v) in enumerate(zip(inputs, values)):
                if not vi.type.HasField("tensor_type"):
                    raise ValueError("non-tensor input")
                if v.dtype == np.float32 and not (weights_op and k > 0):
                    keep.append(vi)
                    feeds[vi.name] = v
                else:
                    g.initializer.append(numpy_helper.from_array(v, vi.name))
            if not keep:
                raise ValueError("no float input")
            del g.input[:]
            g.input.extend(keep)
            for o in g.output:
                if not o.type.HasField("tensor_type") or o.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
                    raise ValueError("non-float output")
            sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
            outs = sess.run(None, feeds)
        except Exception:
            skipped += 1
            continue
        out = os.path.join(args.out, name)
        os.makedirs(out)
        onnx.save(model, os.path.join(out, "model.onnx"))
        for k, vi in enumerate(keep):
            np.save(os.path.join(out, f"input_{k}.npy"), feeds[vi.name])
        for k, o in enumerate(outs):
            np.save(os.path.join(out, f"expected_{k}.npy"), np.asarray(o, dtype=np.float32))
        with open(os.path.join(out, "ops.txt"), "w") as f:
            f.write("\n".join(sorted({n.op_type for n in g.node})) + "\n")
        written += 1
    write_kiln_cases(args.out)
    with open(os.path.join(args.out, "SUMMARY.txt"), "w") as f:
        f.write(f"onnx {onnx.__version__} onnxruntime {ort.__version__}\n"
                f"{len(cases)} node cases, {written} float cases written, {skipped} skipped\n")
    print(f"conformance: {len(cases)} ONNX node cases, {written} float cases written to {args.out}, {skipped} skipped")


if __name__ == "__main__":
    main()
