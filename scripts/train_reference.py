#!/usr/bin/env python3
"""Reference implementation of kiln's head trainer (`kiln_runtime::train`) in plain numpy,
float64: the same layers, losses, optimizers and mini-batching, written from the textbook
formulas (and PyTorch's definitions of SGD/momentum, RMSprop and Adam with coupled weight
decay: `g += weight_decay * w`, momentum buffer `v = mu*v + g`, RMSprop `lr*g/(sqrt(s)+eps)`,
Adam with bias-corrected moments), independent of kiln's code.

    train_reference.py case.json   ->  one line per sample on stdout: "loss p0 p1 ..." with the
                                        parameters after that sample's step (updates happen when
                                        a mini-batch is complete)

case.json: {"layers": [[inputs, outputs, act, lo, hi], ...], "loss": [kind, T, alpha],
            "opt": [kind, lr, momentum, alpha, beta1, beta2, eps, weight_decay], "batch": B,
            "params": [...], "samples": [[x..], ...], "classes": [...], "values": [[..]..],
            "teacher": [[..]..]}
act: identity | clamp | tanh | sigmoid; loss kind: ce | mse | distill;
opt kind: sgd | rmsprop | adam.
"""
import json
import sys

import numpy as np


def unflatten(layers, p):
    out, off = [], 0
    for k, m, *_ in layers:
        w = p[off:off + m * k].reshape(m, k)
        off += m * k
        b = p[off:off + m]
        off += m
        out.append((w, b))
    return out


def act(kind, lo, hi, z):
    if kind == "identity":
        return z, np.ones_like(z)
    if kind == "clamp":
        return np.clip(z, lo, hi), ((z > lo) & (z < hi)).astype(np.float64)
    if kind == "tanh":
        a = np.tanh(z)
        return a, 1 - a * a
    a = 1 / (1 + np.exp(-z))
    return a, a * (1 - a)


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def loss_grad(loss, out, cls, values, teacher):
    kind, T, alpha = loss
    n = len(out)
    if kind == "mse":
        e = out - values
        return float((e * e).mean()), 2 * e / n
    p = softmax(out)
    onehot = np.eye(n)[cls]
    ce = float(np.log(np.exp(out - out.max()).sum()) + out.max() - out[cls])
    if kind == "ce":
        return ce, p - onehot
    qs, qt = softmax(out / T), softmax(teacher / T)
    kl = float((qt * (np.log(qt) - np.log(qs))).sum())
    return (1 - alpha) * ce + alpha * T * T * kl, (1 - alpha) * (p - onehot) + alpha * T * (qs - qt)


def sample_grad(layers, p, x, loss, cls, values, teacher):
    wb = unflatten(layers, p)
    inputs, slopes, a = [], [], x
    for (w, b), (_, _, kind, lo, hi) in zip(wb, layers):
        inputs.append(a)
        a, s = act(kind, lo, hi, w @ a + b)
        slopes.append(s)
    value, d = loss_grad(loss, a, cls, values, teacher)
    grads = []
    for (w, _), x_in, s in reversed(list(zip(wb, inputs, slopes))):
        dz = d * s
        grads.append((np.outer(dz, x_in), dz))
        d = w.T @ dz
    flat = np.concatenate([np.concatenate([gw.ravel(), gb]) for gw, gb in reversed(grads)])
    return value, flat


class Optimizer:
    def __init__(self, spec, n):
        self.kind, self.lr, self.mom, self.alpha, self.b1, self.b2, self.eps, self.wd = spec
        self.s1, self.s2, self.t = np.zeros(n), np.zeros(n), 0

    def step(self, p, g):
        self.t += 1
        g = g + self.wd * p
        if self.kind == "sgd":
            if self.mom == 0:
                return p - self.lr * g
            self.s1 = self.mom * self.s1 + g
            return p - self.lr * self.s1
        if self.kind == "rmsprop":
            self.s1 = self.alpha * self.s1 + (1 - self.alpha) * g * g
            return p - self.lr * g / (np.sqrt(self.s1) + self.eps)
        self.s1 = self.b1 * self.s1 + (1 - self.b1) * g
        self.s2 = self.b2 * self.s2 + (1 - self.b2) * g * g
        mhat = self.s1 / (1 - self.b1 ** self.t)
        vhat = self.s2 / (1 - self.b2 ** self.t)
        return p - self.lr * mhat / (np.sqrt(vhat) + self.eps)


def run_numpy(c):
    layers = c["layers"]
    p = np.array(c["params"], np.float64)
    opt = Optimizer(c["opt"], len(p))
    acc, pending, rows = np.zeros_like(p), 0, []
    for i, x in enumerate(c["samples"]):
        value, g = sample_grad(layers, p, np.array(x, np.float64), c["loss"], c["classes"][i],
                               np.array(c["values"][i], np.float64),
                               np.array(c["teacher"][i], np.float64))
        if c["batch"] == 1:
            p = opt.step(p, g)
        else:
            acc += g
            pending += 1
            if pending == c["batch"]:
                p = opt.step(p, acc / pending)
                acc, pending = np.zeros_like(p), 0
        rows.append((value, p.copy()))
    return rows


def main():
    with open(sys.argv[1]) as f:
        c = json.load(f)
    rows = run_numpy(c)
    for value, p in rows:
        print(repr(value), " ".join(repr(float(v)) for v in p))


if __name__ == "__main__":
    main()
