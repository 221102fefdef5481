"""Small PyTorch models exported to ONNX the two ways PyTorch offers, for the tests of
`kiln convert` on PyTorch files:

* `torch.onnx.export(..., dynamo=False)`: the TorchScript-based exporter (opset 17);
* `torch.onnx.export(..., dynamo=True)`: the torch.export / dynamo exporter (opset 18).

Models (each trained a few steps on seeded random data with the real framework):

* decoder:  Conv2d -> ConvTranspose2d -> nearest Upsample -> bilinear interpolate -> Conv2d
            (ConvTranspose, Resize nearest and linear).
* mobile:   Conv2d + BatchNorm2d -> Hardswish -> depthwise Conv2d -> squeeze-excitation
            (AdaptiveAvgPool2d, Linear, ReLU, Linear, Hardsigmoid) -> cat -> ELU -> PReLU ->
            LeakyReLU -> Linear.
* norm:     Linear -> LayerNorm -> GELU -> Linear over a sequence, mean-pooled.
* lstm, gru: nn.LSTM / nn.GRU (batch_first) -> o[:, -1] -> Linear (LSTM/GRU, Gather).

Each is saved as tests/data/torch/<name>_<exporter>.onnx with inputs.npy and PyTorch's own
outputs (<name>_torch.npy). The committed files are what CI uses: it needs no PyTorch.

    python -m venv /tmp/torch && /tmp/torch/bin/pip install torch onnx==1.20.0 onnxscript
    /tmp/torch/bin/python scripts/gen_torch_models.py --out tests/data/torch
"""
import argparse
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Decoder(nn.Module):
    shape, classes = (2, 8, 8), 3

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(2, 6, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1)
        self.near = nn.Upsample(scale_factor=2, mode="nearest")
        self.out = nn.Conv2d(4, 3, 3, stride=2, padding=1)

    def forward(self, x):
        h = F.relu(self.enc(x))
        h = F.relu(self.up(h))
        h = self.near(h)
        h = F.interpolate(h, size=(12, 12), mode="bilinear", align_corners=False)
        return self.out(h).mean(dim=(2, 3)).softmax(-1)


class Mobile(nn.Module):
    shape, classes = (3, 12, 12), 5

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.se1, self.se2 = nn.Linear(8, 4), nn.Linear(4, 8)
        self.branch = nn.Conv2d(8, 4, 1)
        self.prelu = nn.PReLU(12)
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        h = F.hardswish(self.bn(self.stem(x)))
        d = F.hardswish(self.dw(h))
        s = F.adaptive_avg_pool2d(d, 1).flatten(1)
        s = F.hardsigmoid(self.se2(F.relu(self.se1(s))))
        d = d * s[:, :, None, None]
        h = torch.cat([d, self.branch(h)], dim=1)
        h = F.leaky_relu(self.prelu(F.elu(h)), 0.1)
        return self.fc(h.mean(dim=(2, 3))).softmax(-1)


class Norm(nn.Module):
    shape, classes = (6, 8), 4

    def __init__(self):
        super().__init__()
        self.inp, self.norm, self.out = nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 4)

    def forward(self, x):
        return self.out(F.gelu(self.norm(self.inp(x))).mean(dim=1)).softmax(-1)


class Recurrent(nn.Module):
    shape, classes = (10, 4), 3

    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        o, _ = self.rnn(x)
        return self.fc(o[:, -1]).softmax(-1)


MODELS = {"decoder": Decoder, "mobile": Mobile, "norm": Norm,
          "lstm": lambda: Recurrent(nn.LSTM), "gru": lambda: Recurrent(nn.GRU)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*", default=list(MODELS))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name in a.only:
        torch.manual_seed(7)
        rng = np.random.default_rng(7)
        model = MODELS[name]()
        shape, classes = model.shape, model.classes
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        xt = torch.tensor(rng.standard_normal((64,) + shape), dtype=torch.float32)
        yt = torch.tensor(rng.integers(0, classes, 64))
        model.train()
        for _ in range(30):
            opt.zero_grad()
            loss = F.nll_loss(torch.log(model(xt) + 1e-9), yt)
            loss.backward()
            opt.step()
        model.eval()
        x = rng.standard_normal((8, 1) + shape).astype(np.float32)
        with torch.no_grad():
            y = np.concatenate([model(torch.tensor(x[i])).numpy() for i in range(len(x))])
        sample = (torch.tensor(x[0]),)
        for exporter, dynamo in (("script", False), ("dynamo", True)):
            path = os.path.join(a.out, f"{name}_{exporter}.onnx")
            torch.onnx.export(model, sample, path, dynamo=dynamo, input_names=["x"], output_names=["y"],
                              **({} if dynamo else {"opset_version": 17}))
            # The dynamo exporter may write weights beside the graph: keep one self-contained file.
            import onnx
            m = onnx.load(path, load_external_data=True)
            onnx.save(m, path)
            print(f"{name} ({exporter}): {os.path.getsize(path)} bytes")
        np.save(os.path.join(a.out, f"{name}_inputs.npy"), x)
        np.save(os.path.join(a.out, f"{name}_torch.npy"), y.astype(np.float32))
    for f in os.listdir(a.out):
        if f.endswith(".data"):
            os.remove(os.path.join(a.out, f))
    with open(os.path.join(a.out, "VERSIONS.txt"), "w") as f:
        import onnx
        f.write(f"torch {torch.__version__}, onnx {onnx.__version__}, numpy {np.__version__}\n")


if __name__ == "__main__":
    main()
