#!/usr/bin/env python3
"""Generates single-op int8 TFLite models over an edge-case grid (odd sizes, padding, strides,
dilation, depth multipliers, zero points at the limits, broadcasting) and runs each through
LiteRT's reference kernels (OpResolverType.BUILTIN_REF, the int8 oracle) to record the expected
output. kiln's Rust test walks the folder and demands bitwise-identical outputs.

    <out>/<case>/model.tflite  input_<k>.npy (int8)  expected_0.npy (int8)  op.txt

The models are written with a small flatbuffers writer against the official TFLite schema
(field ids as in schema.fbs), so no TensorFlow is needed.
"""
import argparse
import os
import shutil

import flatbuffers
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

INT8, INT32 = 9, 2
# builtin codes, (options union type)
CONV, DW, FC, AVG, MAXP, ADD, SUB, MUL, SOFTMAX, RESHAPE, LOGISTIC, TANH, MEAN, CONCAT, TCONV = (
    3, 4, 9, 1, 17, 0, 41, 18, 25, 22, 14, 28, 40, 2, 67)
# element-wise int8 activations: code, options type (0 none)
ACTS = {"relu": (19, 0), "relu6": (21, 0), "relu_n1_to_1": (20, 0), "leaky_relu": (98, 75), "hard_swish": (117, 0)}


class Model:
    def __init__(self):
        self.tensors, self.buffers, self.ops, self.codes = [], [b""], [], []

    def tensor(self, shape, ttype=INT8, data=None, scale=None, zp=None, qdim=0, name=None):
        buf = 0
        if data is not None:
            self.buffers.append(np.ascontiguousarray(data).tobytes())
            buf = len(self.buffers) - 1
        self.tensors.append(dict(shape=list(shape), type=ttype, buffer=buf, name=name or f"t{len(self.tensors)}",
                                 scale=None if scale is None else np.atleast_1d(np.asarray(scale, np.float32)),
                                 zp=None if zp is None else np.atleast_1d(np.asarray(zp, np.int64)), qdim=qdim))
        return len(self.tensors) - 1

    def op(self, code, version, inputs, outputs, opt_type=0, opts=None):
        key = (code, version)
        if key not in self.codes:
            self.codes.append(key)
        self.ops.append(dict(code=self.codes.index(key), inputs=inputs, outputs=outputs, opt_type=opt_type,
                             opts=opts or []))

    def build(self, inputs, outputs):
        b = flatbuffers.Builder(1024)

        def vec(kind, values):
            size = {"i32": 4, "f32": 4, "i64": 8, "u8": 1}[kind]
            b.StartVector(size, len(values), size)
            for v in reversed(list(values)):
                {"i32": b.PrependInt32, "f32": b.PrependFloat32, "i64": b.PrependInt64, "u8": b.PrependUint8}[kind](v)
            return b.EndVector()

        def offsets(offs):
            b.StartVector(4, len(offs), 4)
            for o in reversed(offs):
                b.PrependUOffsetTRelative(o)
            return b.EndVector()

        def table(fields, n):
            # fields: (slot, kind, value); offsets must be created before StartObject
            b.StartObject(n)
            for slot, kind, value in fields:
                if kind == "off":
                    b.PrependUOffsetTRelativeSlot(slot, value, 0)
                elif kind == "i32":
                    b.PrependInt32Slot(slot, value, -999999)
                elif kind == "u32":
                    b.PrependUint32Slot(slot, value, 0xFFFFFFFF)
                elif kind == "i8":
                    b.PrependInt8Slot(slot, value, -128)
                elif kind == "u8":
                    b.PrependUint8Slot(slot, value, 255)
                elif kind == "f32":
                    b.PrependFloat32Slot(slot, value, -1e30)
                elif kind == "bool":
                    b.PrependBoolSlot(slot, value, not value)
            return b.EndObject()

        bufs = []
        for data in self.buffers:
            if data:
                b.StartVector(1, len(data), 16)
                for byte in reversed(data):
                    b.PrependUint8(byte)
                d = b.EndVector()
                bufs.append(table([(0, "off", d)], 1))
            else:
                bufs.append(table([], 1))
        tens = []
        for t in self.tensors:
            name = b.CreateString(t["name"])
            shape = vec("i32", t["shape"])
            q = None
            if t["scale"] is not None:
                sc = vec("f32", t["scale"].tolist())
                zp = vec("i64", t["zp"].tolist())
                q = table([(2, "off", sc), (3, "off", zp), (6, "i32", t["qdim"])], 7)
            fields = [(0, "off", shape), (1, "i8", t["type"]), (2, "u32", t["buffer"]), (3, "off", name)]
            if q is not None:
                fields.append((4, "off", q))
            tens.append(table(fields, 5))
        ops = []
        for o in self.ops:
            ins, outs = vec("i32", o["inputs"]), vec("i32", o["outputs"])
            fields = [(0, "u32", o["code"]), (1, "off", ins), (2, "off", outs)]
            if o["opt_type"]:
                opt = table(o["opts"], 8)
                fields += [(3, "u8", o["opt_type"]), (4, "off", opt)]
            ops.append(table(fields, 5))
        codes = [table([(0, "i8", min(c, 127)), (2, "i32", v), (3, "i32", c)], 4) for c, v in self.codes]
        sg = table([(0, "off", offsets(tens)), (1, "off", vec("i32", inputs)), (2, "off", vec("i32", outputs)),
                    (3, "off", offsets(ops))], 5)
        model = table([(0, "u32", 3), (1, "off", offsets(codes)), (2, "off", offsets([sg])),
                       (4, "off", offsets(bufs))], 5)
        b.Finish(model, file_identifier=b"TFL3")
        return bytes(b.Output())


def qparams(rng, lo, hi):
    scale = max(hi - lo, 1e-3) / 255.0
    zp = int(np.clip(round(-128 - lo / scale), -128, 127))
    return np.float32(scale), zp


def rand_act(rng, shape):
    """A random int8 activation with random quantization (zero points up to the limits)."""
    zp = int(rng.choice([-128, 127, 0, int(rng.integers(-128, 128))]))
    scale = np.float32(rng.uniform(0.005, 0.2))
    x = rng.integers(-128, 128, size=shape).astype(np.int8)
    return x, scale, zp


def out_quant(real_out, rng):
    lo, hi = float(min(real_out.min(), 0)), float(max(real_out.max(), 0))
    return qparams(rng, lo * rng.uniform(0.6, 1.0), hi * rng.uniform(0.6, 1.0))


def deq(x, s, z):
    return (x.astype(np.float64) - z) * s


def conv_ref_float(x, w, b, stride, dil, same, depthwise, mult=1):
    """Rough float conv (NHWC) used only to choose a plausible output scale."""
    n, h, wd, c = x.shape
    kh, kw = w.shape[1], w.shape[2]
    def pads(i, k, s, d):
        ext = (k - 1) * d + 1
        if same:
            o = -(-i // s)
            t = max((o - 1) * s + ext - i, 0)
            return t // 2, o
        return 0, (i - ext) // s + 1
    pt, oh = pads(h, kh, stride, dil)
    pl, ow = pads(wd, kw, stride, dil)
    co = w.shape[3] if depthwise else w.shape[0]
    y = np.zeros((n, oh, ow, co))
    for oy in range(oh):
        for ox in range(ow):
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = oy * stride + ky * dil - pt, ox * stride + kx * dil - pl
                    if 0 <= iy < h and 0 <= ix < wd:
                        v = x[:, iy, ix, :]
                        if depthwise:
                            y[:, oy, ox, :] += np.repeat(v, mult, axis=-1) * w[0, ky, kx, :]
                        else:
                            y[:, oy, ox, :] += v @ w[:, ky, kx, :].T
    return y + b, (oh, ow)


def gen_cases(rng):
    cases = []
    # conv / depthwise grid
    for i in range(40):
        depthwise = i % 3 == 2
        h, w = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        cin = int(rng.choice([1, 3, 4, 8])) if not depthwise else int(rng.choice([1, 3, 5, 8]))
        k = [(1, 1), (3, 3), (3, 1), (1, 3), (2, 2), (5, 3)][i % 6]
        stride, dil = int(rng.choice([1, 1, 2])), int(rng.choice([1, 1, 2]))
        same = bool(i % 2)
        if not same and ((h - ((k[0] - 1) * dil + 1)) < 0 or (w - ((k[1] - 1) * dil + 1)) < 0):
            same = True
        cases.append(("conv" if not depthwise else "depthwise", dict(h=h, w=w, cin=cin, k=k, stride=stride, dil=dil, same=same,
                      cout=int(rng.choice([1, 2, 5, 8, 16])), mult=int(rng.choice([1, 2])), act=int(rng.choice([0, 1, 3])))))
    for i in range(12):
        cases.append(("fc", dict(k=int(rng.choice([1, 7, 16, 33])), m=int(rng.choice([1, 3, 10])), rows=int(rng.choice([1, 2])),
                                 act=int(rng.choice([0, 1])), wzp=0)))
    for i in range(16):
        cases.append(("avgpool" if i % 2 else "maxpool", dict(h=int(rng.integers(1, 10)), w=int(rng.integers(1, 10)),
                      c=int(rng.choice([1, 3, 8])), k=[(1, 1), (2, 2), (3, 3), (2, 3)][i % 4], stride=int(rng.choice([1, 2])),
                      same=bool(i % 3 == 0), act=int(rng.choice([0, 1])))))
    for i in range(12):
        cases.append(([("add"), ("sub")][i % 2], dict(bcast=i % 3 == 0, act=int(rng.choice([0, 1, 3])))))
    for i in range(6):
        cases.append(("softmax", dict(rows=int(rng.choice([1, 3])), depth=int(rng.choice([2, 10, 12, 33])),
                                      beta=float(rng.choice([1.0, 0.5, 2.0])))))
    cases.append(("reshape", {}))
    for i in range(8):
        cases.append((["logistic", "tanh"][i % 2], dict(n=int(rng.choice([1, 7, 64])))))
    for i in range(8):
        cases.append(("mul", dict(bcast=i % 2 == 1, act=int(rng.choice([0, 1])))))
    for i in range(4):
        cases.append(("concat", dict(axis=[3, 1][i % 2])))
    for i in range(8):
        cases.append(("mean", dict(axes=[[1, 2], [1, 2], [3], [1], [2, 1], [0, 3]][i % 6], keep=bool(i % 2),
                                   h=int(rng.integers(1, 9)), w=int(rng.integers(1, 9)))))
    # An int8 constant operand (Keras' BatchNormalization after an activation: MUL and ADD by
    # per-channel constants), broadcast or full-shape, either side.
    for i in range(8):
        cases.append((["mul", "add", "sub", "mul"][i % 4],
                      dict(bcast=i % 3 != 2, act=int(rng.choice([0, 1])), const=1 + (i % 2))))
    # Transposed conv (Keras Conv2DTranspose): SAME and VALID, strides 1-3, kernels smaller
    # and larger than the stride, one to eight channels each side.
    for i in range(16):
        cases.append(("tconv", dict(h=int(rng.integers(1, 6)), w=int(rng.integers(1, 6)), cin=int(rng.choice([1, 3, 4, 8])),
                                    cout=int(rng.choice([1, 2, 5, 8])), k=[(1, 1), (2, 2), (3, 3), (3, 1), (4, 4), (5, 3)][i % 6],
                                    stride=[1, 2, 2, 3][i % 4], same=bool(i % 2), act=int(rng.choice([0, 1])))))
    # int8 activations TFLite computes with its own integer arithmetic (kiln: a 256-entry table of
    # the same arithmetic); every input byte appears.
    for i in range(20):
        kind = list(ACTS)[i % len(ACTS)]
        cases.append((kind, dict(alpha=float(rng.choice([0.01, 0.1, 0.2, 0.3, 0.5])), wide=bool(i % 2))))
    # Resizes (Keras UpSampling2D bilinear, Resizing): up and down, odd sizes, each of TFLite's
    # coordinate conventions (align_corners and half_pixel_centers are exclusive for bilinear).
    for i in range(24):
        mode = ["resize_bilinear", "resize_nearest"][i % 2]
        conv = [(False, False), (True, False), (False, True)][(i // 2) % 3]
        h, w = int(rng.integers(1, 7)), int(rng.integers(1, 7))
        oh = int(rng.choice([1, 2 * h, 3 * h, max(1, h // 2), int(rng.integers(1, 13))]))
        ow = int(rng.choice([1, 2 * w, max(1, w - 1), int(rng.integers(1, 13))]))
        cases.append((mode, dict(h=h, w=w, oh=oh, ow=ow, c=int(rng.choice([1, 3, 8])), align=conv[0], half=conv[1])))
    return cases


def tconv_ref_float(x, w, b, stride, same, oh, ow):
    """Float transposed conv (NHWC, w [O, KH, KW, I]) with TFLite's padding: the plausible output
    range for choosing the output scale."""
    n, h, wd, _ = x.shape
    co, kh, kw, _ = w.shape
    def pad(out, k):
        back = -(-out // stride) if same else (out + stride - k) // stride
        return max((max(back, 1) - 1) * stride + k - out, 0) // 2
    pt, pl = pad(oh, kh), pad(ow, kw)
    y = np.zeros((n, oh, ow, co))
    for iy in range(h):
        for ix in range(wd):
            for ky in range(kh):
                for kx in range(kw):
                    oy, ox = iy * stride + ky - pt, ix * stride + kx - pl
                    if 0 <= oy < oh and 0 <= ox < ow:
                        y[:, oy, ox, :] += x[:, iy, ix, :] @ w[:, ky, kx, :].T
    return y + b


def build_case(kind, p, rng):
    m = Model()
    ins = []
    if kind in ("conv", "depthwise"):
        x, sx, zx = rand_act(rng, (1, p["h"], p["w"], p["cin"]))
        if kind == "conv":
            co = p["cout"]
            wf = rng.normal(0, 0.3, (co, p["k"][0], p["k"][1], p["cin"]))
        else:
            co = p["cin"] * p["mult"]
            wf = rng.normal(0, 0.3, (1, p["k"][0], p["k"][1], co))
        axis = 0 if kind == "conv" else 3
        amax = np.abs(wf).max(axis=tuple(a for a in range(4) if a != axis)) + 1e-6
        ws = (amax / 127).astype(np.float32)
        shape = [1] * 4
        shape[axis] = co
        wq = np.clip(np.round(wf / ws.reshape(shape)), -127, 127).astype(np.int8)
        bf = rng.normal(0, 0.5, co)
        bq = np.round(bf / (sx * ws)).astype(np.int32)
        yf, (oh, ow) = conv_ref_float(deq(x, sx, zx), deq(wq, ws.reshape(shape), 0), bq * sx * ws, p["stride"], p["dil"],
                                      p["same"], kind == "depthwise", p.get("mult", 1))
        if p["act"] == 1:
            yf = np.maximum(yf, 0)
        sy, zy = out_quant(yf, rng)
        xi = m.tensor(x.shape, scale=sx, zp=zx)
        wi = m.tensor(wq.shape, data=wq, scale=ws, zp=np.zeros(co, np.int64), qdim=axis)
        bi = m.tensor([co], INT32, data=bq, scale=sx * ws, zp=np.zeros(co, np.int64))
        yi = m.tensor([1, oh, ow, co], scale=sy, zp=zy)
        pad = 0 if p["same"] else 1
        if kind == "conv":
            opts = [(0, "i8", pad), (1, "i32", p["stride"]), (2, "i32", p["stride"]), (3, "i8", p["act"]),
                    (4, "i32", p["dil"]), (5, "i32", p["dil"])]
            m.op(CONV, 3, [xi, wi, bi], [yi], 1, opts)
        else:
            opts = [(0, "i8", pad), (1, "i32", p["stride"]), (2, "i32", p["stride"]), (3, "i32", p["mult"]),
                    (4, "i8", p["act"]), (5, "i32", p["dil"]), (6, "i32", p["dil"])]
            m.op(DW, 3, [xi, wi, bi], [yi], 2, opts)
        ins = [x]
    elif kind == "fc":
        x, sx, zx = rand_act(rng, (p["rows"], p["k"]))
        wf = rng.normal(0, 0.3, (p["m"], p["k"]))
        ws = np.float32(np.abs(wf).max() / 127 + 1e-6)
        wq = np.clip(np.round(wf / ws), -127, 127).astype(np.int8)
        bq = np.round(rng.normal(0, 0.5, p["m"]) / (sx * ws)).astype(np.int32)
        yf = deq(x, sx, zx) @ (wq * ws).T + bq * sx * ws
        if p["act"]:
            yf = np.maximum(yf, 0)
        sy, zy = out_quant(yf, rng)
        xi = m.tensor(x.shape, scale=sx, zp=zx)
        wi = m.tensor(wq.shape, data=wq, scale=ws, zp=0)
        bi = m.tensor([p["m"]], INT32, data=bq, scale=sx * ws, zp=0)
        yi = m.tensor([p["rows"], p["m"]], scale=sy, zp=zy)
        m.op(FC, 4, [xi, wi, bi], [yi], 8, [(0, "i8", p["act"])])
        ins = [x]
    elif kind in ("avgpool", "maxpool"):
        x, sx, zx = rand_act(rng, (1, p["h"], p["w"], p["c"]))
        kh, kw = p["k"]
        same = p["same"] or kh > p["h"] or kw > p["w"]
        s = p["stride"]
        oh = -(-p["h"] // s) if same else (p["h"] - kh) // s + 1
        ow = -(-p["w"] // s) if same else (p["w"] - kw) // s + 1
        xi = m.tensor(x.shape, scale=sx, zp=zx)
        yi = m.tensor([1, oh, ow, p["c"]], scale=sx, zp=zx)
        opts = [(0, "i8", 0 if same else 1), (1, "i32", s), (2, "i32", s), (3, "i32", kw), (4, "i32", kh), (5, "i8", p["act"])]
        m.op(AVG if kind == "avgpool" else MAXP, 2, [xi], [yi], 5, opts)
        ins = [x]
    elif kind in ("add", "sub"):
        a, sa, za = rand_act(rng, (1, 4, 5, 3))
        b, sb, zb = rand_act(rng, (1, 1, 1, 3) if p["bcast"] else (1, 4, 5, 3))
        yf = deq(a, sa, za) + (deq(b, sb, zb) if kind == "add" else -deq(b, sb, zb))
        if p["act"]:
            yf = np.maximum(yf, 0)
        sy, zy = out_quant(yf, rng)
        ai, bi, ins = const_operands(m, p, a, sa, za, b, sb, zb)
        yi = m.tensor([1, 4, 5, 3], scale=sy, zp=zy)
        m.op(ADD if kind == "add" else SUB, 2 if kind == "add" else 2, [ai, bi], [yi], 11 if kind == "add" else 28,
             [(0, "i8", p["act"])])
    elif kind == "softmax":
        x, sx, zx = rand_act(rng, (p["rows"], p["depth"]))
        xi = m.tensor(x.shape, scale=sx, zp=zx)
        yi = m.tensor(x.shape, scale=1.0 / 256, zp=-128)
        m.op(SOFTMAX, 2, [xi], [yi], 9, [(0, "f32", p["beta"])])
        ins = [x]
    elif kind == "reshape":
        x, sx, zx = rand_act(rng, (1, 2, 3, 4))
        xi = m.tensor(x.shape, scale=sx, zp=zx)
        si = m.tensor([2], INT32, data=np.array([1, 24], np.int32))
        yi = m.tensor([1, 24], scale=sx, zp=zx)
        m.op(RESHAPE, 1, [xi, si], [yi])
        ins = [x]
    elif kind in ("logistic", "tanh"):
        x, sx, zx = rand_act(rng, (1, p["n"]))
        xi = m.tensor(x.shape, scale=sx, zp=zx)
        yi = m.tensor(x.shape, scale=1.0 / 256 if kind == "logistic" else 1.0 / 128, zp=-128 if kind == "logistic" else 0)
        m.op(LOGISTIC if kind == "logistic" else TANH, 2, [xi], [yi])
        ins = [x]
    elif kind == "mul":
        a, sa, za = rand_act(rng, (1, 3, 4, 5))
        b, sb, zb = rand_act(rng, (1, 1, 1, 5) if p["bcast"] else (1, 3, 4, 5))
        yf = deq(a, sa, za) * deq(b, sb, zb)
        if p["act"]:
            yf = np.maximum(yf, 0)
        sy, zy = out_quant(yf, rng)
        ai, bi, ins = const_operands(m, p, a, sa, za, b, sb, zb)
        yi = m.tensor([1, 3, 4, 5], scale=sy, zp=zy)
        m.op(MUL, 2, [ai, bi], [yi], 21, [(0, "i8", p["act"])])
    elif kind == "concat":
        a, s, z = rand_act(rng, (1, 3, 4, 2))
        b = rng.integers(-128, 128, size=(1, 3, 4, 3) if p["axis"] == 3 else (1, 2, 4, 2)).astype(np.int8)
        ai, bi = m.tensor(a.shape, scale=s, zp=z), m.tensor(b.shape, scale=s, zp=z)
        out = list(a.shape)
        out[p["axis"]] += b.shape[p["axis"]]
        yi = m.tensor(out, scale=s, zp=z)
        m.op(CONCAT, 2, [ai, bi], [yi], 10, [(0, "i32", p["axis"]), (1, "i8", 0)])
        ins = [a, b]
    elif kind == "mean":
        x, sx, zx = rand_act(rng, (1, p["h"], p["w"], 5))
        yf = deq(x, sx, zx).mean(axis=tuple(p["axes"]), keepdims=p["keep"])
        sy, zy = out_quant(yf, rng)
        xi = m.tensor(x.shape, scale=sx, zp=zx)
        ai = m.tensor([len(p["axes"])], INT32, data=np.array(p["axes"], np.int32))
        yi = m.tensor(list(yf.shape), scale=sy, zp=zy)
        m.op(MEAN, 2, [xi, ai], [yi], 27, [(0, "bool", p["keep"])])
        ins = [x]
    elif kind == "tconv":
        x, sx, zx = rand_act(rng, (1, p["h"], p["w"], p["cin"]))
        co, (kh, kw), s = p["cout"], p["k"], p["stride"]
        oh = p["h"] * s if p["same"] else (p["h"] - 1) * s + kh
        ow = p["w"] * s if p["same"] else (p["w"] - 1) * s + kw
        wf = rng.normal(0, 0.3, (co, kh, kw, p["cin"]))
        ws = (np.abs(wf).max(axis=(1, 2, 3)) / 127 + 1e-6).astype(np.float32)
        wq = np.clip(np.round(wf / ws.reshape(-1, 1, 1, 1)), -127, 127).astype(np.int8)
        bq = np.round(rng.normal(0, 0.5, co) / (sx * ws)).astype(np.int32)
        yf = tconv_ref_float(deq(x, sx, zx), deq(wq, ws.reshape(-1, 1, 1, 1), 0), bq * sx * ws, s, p["same"], oh, ow)
        if p["act"] == 1:
            yf = np.maximum(yf, 0)
        sy, zy = out_quant(yf, rng)
        xi = m.tensor(x.shape, scale=sx, zp=zx)
        shp = m.tensor([4], INT32, data=np.array([1, oh, ow, co], np.int32))
        wi = m.tensor(wq.shape, data=wq, scale=ws, zp=np.zeros(co, np.int64), qdim=0)
        bi = m.tensor([co], INT32, data=bq, scale=sx * ws, zp=np.zeros(co, np.int64))
        yi = m.tensor([1, oh, ow, co], scale=sy, zp=zy)
        opts = [(0, "i8", 0 if p["same"] else 1), (1, "i32", s), (2, "i32", s), (3, "i8", p["act"])]
        m.op(TCONV, 4, [shp, wi, xi, bi], [yi], 49, opts)
        ins = [x]
    elif kind in ("resize_bilinear", "resize_nearest"):
        x, sx, zx = rand_act(rng, (1, p["h"], p["w"], p["c"]))
        xi = m.tensor(x.shape, scale=sx, zp=zx)
        si = m.tensor([2], INT32, data=np.array([p["oh"], p["ow"]], np.int32))
        yi = m.tensor([1, p["oh"], p["ow"], p["c"]], scale=sx, zp=zx)
        if kind == "resize_bilinear":
            m.op(23, 3, [xi, si], [yi], 15, [(2, "bool", p["align"]), (3, "bool", p["half"])])
        else:
            m.op(97, 3, [xi, si], [yi], 74, [(0, "bool", p["align"]), (1, "bool", p["half"])])
        ins = [x]
    elif kind in ACTS:
        x = np.arange(-128, 128, dtype=np.int8).reshape(1, 16, 16)
        sx = np.float32(rng.uniform(0.01, 0.2) * (4 if p["wide"] else 1))
        zx = int(rng.integers(-128, 128))
        xf = deq(x, sx, zx)
        f = {"relu": lambda v: np.maximum(v, 0), "relu6": lambda v: np.clip(v, 0, 6),
             "relu_n1_to_1": lambda v: np.clip(v, -1, 1), "leaky_relu": lambda v: np.where(v >= 0, v, p["alpha"] * v),
             "hard_swish": lambda v: v * np.clip(v + 3, 0, 6) / 6}[kind]
        sy, zy = out_quant(f(xf), rng)
        if kind == "hard_swish":
            sy = np.float32(max(sy, sx / 128 * 1.01))  # TFLite refuses a finer output scale
        code, opt_type = ACTS[kind]
        xi = m.tensor(x.shape, scale=sx, zp=zx)
        yi = m.tensor(list(x.shape), scale=sy, zp=zy)
        m.op(code, 2 if kind == "leaky_relu" else 1, [xi], [yi], opt_type, [(0, "f32", p["alpha"])] if opt_type else [])
        ins = [x]
    n_in = len(ins)
    inputs = list(range(n_in)) if kind not in ("conv", "depthwise", "fc", "tconv") else [0]
    if kind in ("add", "sub", "mul", "concat") and not p.get("const"):
        inputs = [0, 1]
    return m.build(inputs, [len(m.tensors) - 1]), ins


def const_operands(m, p, a, sa, za, b, sb, zb):
    """The two operands of an element-wise op as model tensors and the inputs to feed: both
    inputs, or with `p["const"]` operand b stored as an int8 constant, as the second input
    (const=1) or the first (const=2)."""
    c = p.get("const", 0)
    ai = m.tensor(a.shape, scale=sa, zp=za)
    if not c:
        return ai, m.tensor(b.shape, scale=sb, zp=zb), [a, b]
    bi = m.tensor(b.shape, data=b, scale=sb, zp=zb)
    return (ai, bi, [a]) if c == 1 else (bi, ai, [a])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    written = 0
    for i, (kind, p) in enumerate(gen_cases(rng)):
        model, ins = build_case(kind, p, rng)
        interp = Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF, num_threads=1)
        interp.allocate_tensors()
        for d, x in zip(interp.get_input_details(), ins):
            interp.set_tensor(d["index"], x)
        interp.invoke()
        y = interp.get_tensor(interp.get_output_details()[0]["index"])
        d = os.path.join(args.out, f"{i:03d}_{kind}")
        os.makedirs(d)
        with open(os.path.join(d, "model.tflite"), "wb") as f:
            f.write(model)
        for k, x in enumerate(ins):
            np.save(os.path.join(d, f"input_{k}.npy"), x)
        np.save(os.path.join(d, "expected_0.npy"), y)
        with open(os.path.join(d, "op.txt"), "w") as f:
            f.write(f"{kind} {p}\n")
        written += 1
    with open(os.path.join(args.out, "SUMMARY.txt"), "w") as f:
        f.write(f"{written} single-op int8 TFLite cases, LiteRT BUILTIN_REF oracle, seed {args.seed}\n")
    print(f"tflite ops: {written} int8 cases written to {args.out}")


if __name__ == "__main__":
    main()
