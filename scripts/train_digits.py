#!/usr/bin/env python3
"""Trains a small CNN on scikit-learn's bundled digits (8x8 grayscale, 10 classes) with plain
numpy, exports it to ONNX the way PyTorch does (NCHW, a Shape/Gather/Unsqueeze/Concat/Reshape
flatten, Gemm), and writes the held-out split for kiln to run.

    conv 3x3 (1 -> 8, pad 1) -> batch norm -> relu -> max pool 2x2 -> flatten -> dense 128 -> 10 -> softmax

Batch norm is trained as in a tutorial (batch statistics while training, running statistics at
inference) and exported as an ONNX BatchNormalization node, which kiln folds into the conv.

Outputs (in --out): digits_cnn.onnx, test_x.npy [N,1,8,8] f32, test_y.npy [N] i64,
calib_x.npy (training images for later calibration), digit_<k>.pgm sample images,
turned_{train,few,test}_{x,y}.npy (the digits turned 90 degrees: the fine-tuning demo's new task;
train: 400 images, few: the first 100 of them).
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

C = 8  # conv channels
EPS = 1e-5


def im2col(x):
    """x [N,1,8,8] -> patches [N, 64, 9] for a 3x3 conv with padding 1."""
    n = x.shape[0]
    xp = np.pad(x[:, 0], ((0, 0), (1, 1), (1, 1)))
    cols = np.empty((n, 8, 8, 9), dtype=x.dtype)
    for ky in range(3):
        for kx in range(3):
            cols[:, :, :, ky * 3 + kx] = xp[:, ky:ky + 8, kx:kx + 8]
    return cols.reshape(n, 64, 9)


class Net:
    def __init__(self, rng):
        self.w1 = rng.normal(0, np.sqrt(2 / 9), (C, 9)).astype(np.float32)
        self.b1 = np.zeros(C, np.float32)
        self.gamma = np.ones(C, np.float32)
        self.beta = np.zeros(C, np.float32)
        self.run_mean = np.zeros(C, np.float32)
        self.run_var = np.ones(C, np.float32)
        self.w2 = rng.normal(0, np.sqrt(2 / (C * 16)), (10, C * 16)).astype(np.float32)
        self.b2 = np.zeros(10, np.float32)

    def params(self):
        return [self.w1, self.b1, self.gamma, self.beta, self.w2, self.b2]

    def forward(self, x, train):
        n = x.shape[0]
        cols = im2col(x)                                # [N,64,9]
        z = cols @ self.w1.T + self.b1                  # [N,64,C]
        if train:
            mu = z.mean(axis=(0, 1))
            var = z.var(axis=(0, 1))
            self.run_mean = 0.9 * self.run_mean + 0.1 * mu
            self.run_var = 0.9 * self.run_var + 0.1 * var
        else:
            mu, var = self.run_mean, self.run_var
        inv = 1.0 / np.sqrt(var + EPS)
        zh = (z - mu) * inv
        bn = zh * self.gamma + self.beta
        r = np.maximum(bn, 0)
        r4 = r.reshape(n, 8, 8, C).transpose(0, 3, 1, 2)  # NCHW [N,C,8,8]
        win = r4.reshape(n, C, 4, 2, 4, 2)
        p = win.max(axis=(3, 5))                         # [N,C,4,4]
        f = p.reshape(n, C * 16)                         # NCHW flatten, as PyTorch's view
        logits = f @ self.w2.T + self.b2
        cache = (cols, z, zh, inv, bn, r4, win, p, f)
        return logits, cache

    def backward(self, x, cache, dlogits):
        n = x.shape[0]
        cols, z, zh, inv, bn, r4, win, p, f = cache
        g_w2 = dlogits.T @ f
        g_b2 = dlogits.sum(0)
        df = dlogits @ self.w2
        dp = df.reshape(n, C, 4, 1, 4, 1)
        mask = (win == p.reshape(n, C, 4, 1, 4, 1))
        dwin = mask * dp / np.maximum(mask.sum(axis=(3, 5), keepdims=True), 1)
        dr4 = dwin.reshape(n, C, 8, 8)
        dr = dr4.transpose(0, 2, 3, 1).reshape(n, 64, C)
        dbn = dr * (bn > 0)
        g_gamma = (dbn * zh).sum(axis=(0, 1))
        g_beta = dbn.sum(axis=(0, 1))
        dzh = dbn * self.gamma
        m = n * 64
        dz = inv / m * (m * dzh - dzh.sum(axis=(0, 1)) - zh * (dzh * zh).sum(axis=(0, 1)))
        g_w1 = np.einsum("npc,npk->ck", dz, cols)
        g_b1 = dz.sum(axis=(0, 1))
        return [g_w1, g_b1, g_gamma, g_beta, g_w2, g_b2]


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def train(net, x, y, epochs, rng, lr=0.01):
    """Adam on cross-entropy, minibatches of 32."""
    m = [np.zeros_like(p) for p in net.params()]
    v = [np.zeros_like(p) for p in net.params()]
    t = 0
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        for s in range(0, len(x), 32):
            idx = order[s:s + 32]
            logits, cache = net.forward(x[idx], train=True)
            probs = softmax(logits)
            d = probs.copy()
            d[np.arange(len(idx)), y[idx]] -= 1
            d /= len(idx)
            grads = net.backward(x[idx], cache, d)
            t += 1
            for i, (p, g) in enumerate(zip(net.params(), grads)):
                m[i] = 0.9 * m[i] + 0.1 * g
                v[i] = 0.999 * v[i] + 0.001 * g * g
                p -= lr * (m[i] / (1 - 0.9 ** t)) / (np.sqrt(v[i] / (1 - 0.999 ** t)) + 1e-8)


def export_onnx(net, path):
    init = [
        numpy_helper.from_array(net.w1.reshape(C, 1, 3, 3), "conv.weight"),
        numpy_helper.from_array(net.b1, "conv.bias"),
        numpy_helper.from_array(net.gamma, "bn.weight"),
        numpy_helper.from_array(net.beta, "bn.bias"),
        numpy_helper.from_array(net.run_mean.astype(np.float32), "bn.running_mean"),
        numpy_helper.from_array(net.run_var.astype(np.float32), "bn.running_var"),
        numpy_helper.from_array(net.w2, "fc.weight"),
        numpy_helper.from_array(net.b2, "fc.bias"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
        numpy_helper.from_array(np.array([0], np.int64), "axes0"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["conv_out"], name="/conv/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("BatchNormalization", ["conv_out", "bn.weight", "bn.bias", "bn.running_mean",
                                                "bn.running_var"], ["bn_out"], name="/bn/BatchNormalization",
                         epsilon=EPS),
        helper.make_node("Relu", ["bn_out"], ["relu_out"], name="/relu/Relu"),
        helper.make_node("MaxPool", ["relu_out"], ["pool_out"], name="/pool/MaxPool",
                         kernel_shape=[2, 2], strides=[2, 2]),
        # x.view(x.size(0), -1), as torch.onnx exports it
        helper.make_node("Shape", ["pool_out"], ["shape"], name="/Shape"),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], name="/Gather", axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch_1d"], name="/Unsqueeze"),
        helper.make_node("Concat", ["batch_1d", "minus_one"], ["new_shape"], name="/Concat", axis=0),
        helper.make_node("Reshape", ["pool_out", "new_shape"], ["flat"], name="/Reshape"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="/fc/Gemm", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="/Softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "digits_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])],
        init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="kiln-quickstart")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def save_pgm(path, img8x8):
    """Writes an 8x8 digit (0..16, ink high) as a 64x64 white-on-black PGM."""
    big = np.kron(img8x8, np.ones((8, 8)))
    px = np.clip(big * 255.0 / 16.0, 0, 255).astype(np.uint8)
    with open(path, "wb") as f:
        f.write(b"P5\n64 64\n255\n" + px.tobytes())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    xtr, xte, ytr, yte, itr, ite = train_test_split(x, y, np.arange(len(x)), test_size=0.25,
                                                    random_state=args.seed, stratify=y)
    rng = np.random.default_rng(args.seed)
    net = Net(rng)
    train(net, xtr, ytr, args.epochs, rng)
    logits, _ = net.forward(xte, train=False)
    acc = float((logits.argmax(1) == yte).mean())
    path = os.path.join(args.out, "digits_cnn.onnx")
    export_onnx(net, path)
    np.save(os.path.join(args.out, "test_x.npy"), xte)
    np.save(os.path.join(args.out, "test_y.npy"), yte)
    np.save(os.path.join(args.out, "calib_x.npy"), xtr[:200])
    # A new task for `kiln finetune`: the same digits turned 90 degrees (a camera mounted
    # sideways). The backbone stays as trained; only the head is adapted, on a few hundred
    # turned training images, and measured on the turned held-out split.
    turn = lambda a: np.ascontiguousarray(np.rot90(a, k=1, axes=(2, 3)))
    np.save(os.path.join(args.out, "turned_train_x.npy"), turn(xtr[:400]))
    np.save(os.path.join(args.out, "turned_train_y.npy"), ytr[:400])
    np.save(os.path.join(args.out, "turned_few_x.npy"), turn(xtr[:100]))
    np.save(os.path.join(args.out, "turned_few_y.npy"), ytr[:100])
    np.save(os.path.join(args.out, "turned_test_x.npy"), turn(xte))
    np.save(os.path.join(args.out, "turned_test_y.npy"), yte)
    for k in range(3):
        save_pgm(os.path.join(args.out, f"digit_{yte[k]}.pgm"), digits.images[ite[k]])
    print(f"trained: {len(xtr)} train / {len(xte)} test images, numpy accuracy {acc * 100:.2f}% -> {path}")


if __name__ == "__main__":
    main()
