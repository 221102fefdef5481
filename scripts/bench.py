"""Side-by-side latency, 1 thread: kiln (`kiln bench`, in-process), the TFLite interpreter
(LiteRT, with its default XNNPACK delegate and with plain builtin kernels), onnxruntime and tract
(`kiln bench --engine tract`), on the MLPerf Tiny models (int8 and f32) and the digits CNN.

Every engine gets the same input: uniform values in [-1, 1) from a fixed seed, quantized with the
model's input parameters for int8 inputs (tract draws its own from the same generator kiln uses;
latency does not depend on the values). kiln also runs with 2 threads (its layer-splitting
pool; the other engines stay at 1). The digits CNN (ONNX, from `scripts/quickstart.sh`: no
TFLite file) is timed when build/quickstart has it. Writes build/bench/bench.md (table with
ratios), build/bench/bench.json and build/bench/bench.png (bar chart). Every cell is measured
`--rounds` times (default 3; all engines in turn each round) and the lowest median is reported.
`--iterations 1 --rounds 1` is the smoke run CI may afford.

    scripts/bench.sh [--iterations N] [--rounds R]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILN = os.path.join(ROOT, "target", "release", "kiln")

# (name, int8 .tflite, float .tflite, int8 .onnx, float .onnx), relative to the assets dir.
MLPERF = [
    ("keyword spotting", "mlperf-tiny/kws_ref_model.tflite",
     "mlperf-tiny/kws_ref_model_float32_dequant.tflite",
     "onnx/kws_ref_model.onnx", "onnx/kws_ref_model_float32.onnx"),
    ("visual wake words", "mlperf-tiny/vww_96_int8.tflite", "mlperf-tiny/vww_96_float.tflite",
     "onnx/vww_96_int8.onnx", "onnx/vww_96_float.onnx"),
    ("ResNet (image classification)", "mlperf-tiny/pretrainedResnet_quant.tflite",
     "mlperf-tiny/pretrainedResnet.tflite", "onnx/pretrainedResnet_quant.onnx",
     "onnx/pretrainedResnet.onnx"),
    ("anomaly detection", "mlperf-tiny/ad01_int8.tflite", "mlperf-tiny/ad01_fp32.tflite",
     "onnx/ad01_int8.onnx", "onnx/ad01_fp32.onnx"),
]


def median_us(fn, warmup, iterations):
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e6)
    return float(np.median(t))


def make_input(shape, dtype, quant):
    x = np.random.default_rng(7).uniform(-1, 1, size=shape).astype(np.float32)
    if dtype == np.float32:
        return x
    scale, zp = quant
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zp, info.min, info.max).astype(dtype)


def litert(path, x, delegate, warmup, iterations):
    from ai_edge_litert import interpreter as lr
    kw = {"model_path": path, "num_threads": 1}
    if not delegate:
        kw["experimental_op_resolver_type"] = lr.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = lr.Interpreter(**kw)
    it.allocate_tensors()
    idx = it.get_input_details()[0]["index"]

    def run():
        it.set_tensor(idx, x)
        it.invoke()
    return median_us(run, warmup, iterations)


def tflite_input(path):
    from ai_edge_litert import interpreter as lr
    it = lr.Interpreter(model_path=path)
    d = it.get_input_details()[0]
    return tuple(d["shape"]), d["dtype"], tuple(d["quantization"])


def ort(path, x_native, x_float, warmup, iterations):
    import onnxruntime as rt
    so = rt.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    s = rt.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    types = {"tensor(float)": np.float32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8}
    want = types.get(inp.type)
    if want is None:
        return None, f"input type {inp.type}"
    if want == np.float32:
        x = x_float
    elif want == x_native.dtype:
        x = x_native
    else:
        return None, f"input type {inp.type}, the TFLite model's is {x_native.dtype}"
    feed = {inp.name: x.reshape([d if isinstance(d, int) else 1 for d in inp.shape])}
    return median_us(lambda: s.run(None, feed), warmup, iterations), None


def kiln(args, warmup, iterations):
    out = subprocess.run([KILN, "bench", *args, "--json", "--warmup", str(warmup),
                          "--iterations", str(iterations)], capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"
    return json.loads(out.stdout), None


def convert(src, dst):
    out = subprocess.run([KILN, "convert", src, "-o", dst], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"kiln convert {src}: {out.stderr}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", default=os.environ.get("KILN_ASSETS",
                                                      os.path.join(ROOT, "..", "shared", "assets")))
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench"))
    ap.add_argument("--rounds", type=int, default=3,
                    help="measure every cell this many times (all engines in turn each round) "
                         "and report the lowest median: a shared machine's noise bursts slow "
                         "whole cells, never speed them up")
    a = ap.parse_args()
    if not os.path.isfile(os.path.join(a.assets, "MANIFEST.md")):
        raise SystemExit(f"no MLPerf Tiny assets at {a.assets} (set KILN_ASSETS)")
    os.makedirs(a.out, exist_ok=True)
    w, n = (min(a.warmup, a.iterations), a.iterations)
    rounds = [measure(a, w, n) for _ in range(max(1, a.rounds))]
    rows = [merge(same) for same in zip(*rounds)]
    digits = [d for d in (digits_row(a.out, w, n) for _ in range(max(1, a.rounds))) if d]
    if digits:
        rows.append(merge(digits))
    report(a, rows, n, max(1, a.rounds))


def merge(same):
    """One row from the rounds' rows of a model: the lowest of each timing, the per-layer
    table of the round with the lowest kiln time."""
    out = dict(same[0])
    for key, v in same[0].items():
        if isinstance(v, float):
            vals = [r[key] for r in same if isinstance(r.get(key), float)]
            out[key] = min(vals) if vals else None
    for kind in ("int8", "f32"):
        timed = [r for r in same if isinstance(r.get(f"kiln_{kind}"), float)]
        if timed:
            out[f"kiln_{kind}_layers"] = min(timed, key=lambda r: r[f"kiln_{kind}"])[
                f"kiln_{kind}_layers"]
    return out


def measure(a, w, n):
    """One round over the MLPerf Tiny models: every engine, int8 and f32."""
    rows = []
    for name, q_tfl, f_tfl, q_onnx, f_onnx in MLPERF:
        row = {"model": name}
        for kind, tfl, onnx in (("int8", q_tfl, q_onnx), ("f32", f_tfl, f_onnx)):
            tfl, onnx = os.path.join(a.assets, tfl), os.path.join(a.assets, onnx)
            shape, dtype, quant = tflite_input(tfl)
            x = make_input(shape, dtype, quant)
            x_float = make_input(shape, np.float32, None)
            npy = os.path.join(a.out, f"{os.path.basename(tfl)}.input.npy")
            np.save(npy, x)
            kfile = os.path.join(a.out, os.path.basename(tfl) + ".kiln")
            convert(tfl, kfile)
            r, err = kiln([kfile, "-i", npy], w, n)
            row[f"kiln_{kind}"] = r["median_us"] if r else None
            row[f"kiln_{kind}_layers"] = r["layers"] if r else err
            r2, _ = kiln([kfile, "-i", npy, "--threads", "2"], w, n)
            row[f"kiln2_{kind}"] = r2["median_us"] if r2 else None
            row[f"tflite_xnnpack_{kind}"] = litert(tfl, x, True, w, n)
            row[f"tflite_builtin_{kind}"] = litert(tfl, x, False, w, n)
            row[f"ort_{kind}"], row[f"ort_{kind}_note"] = ort(onnx, x, x_float, w, n)
            if kind == "f32":
                t, err = kiln([onnx, "--engine", "tract"], w, n)
                row["tract_f32"] = t["median_us"] if t else None
                row["tract_f32_note"] = err
            print(f"{name} {kind}: kiln {row[f'kiln_{kind}']} µs, XNNPACK "
                  f"{row[f'tflite_xnnpack_{kind}']:.1f} µs", file=sys.stderr)
        rows.append(row)
    return rows


def report(a, rows, n, rounds):
    """Writes bench.md, bench.json and bench.png, and prints the table."""
    def cell(v, ref=None):
        if v is None:
            return "n/a"
        s = f"{v:,.1f}"
        if ref is not None and v > 0:
            s += f" ({ref / v:.2f}×)"
        return s
    versions = {"machine": platform.processor() or platform.machine(),
                "python": platform.python_version(), "numpy": np.__version__}
    try:
        import onnxruntime
        versions["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    try:
        from importlib.metadata import version
        versions["ai-edge-litert"] = version("ai-edge-litert")
    except Exception:
        pass
    versions["kiln"] = subprocess.run([KILN, "--version"], capture_output=True,
                                      text=True).stdout.split()[-1]
    lines = [
        f"# Latency, 1 thread, median of {n} runs, lowest of {rounds} rounds "
        "(µs; in parentheses: kiln's time ÷ that engine's)",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        "| model | kiln int8 | TFLite+XNNPACK int8 | TFLite builtin int8 | onnxruntime int8 "
        "| kiln f32 | TFLite+XNNPACK f32 | TFLite builtin f32 | onnxruntime f32 | tract f32 "
        "| kiln int8, 2 threads | kiln f32, 2 threads |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        k8, kf = r.get("kiln_int8"), r.get("kiln_f32")
        scale = lambda one, two: (f"{two:,.1f} ({one / two:.2f}× faster)"
                                  if one and two else "n/a")
        lines.append(
            f"| {r['model']} | {cell(k8)} | {cell(r.get('tflite_xnnpack_int8'), k8)} | "
            f"{cell(r.get('tflite_builtin_int8'), k8)} | {cell(r.get('ort_int8'), k8)} | "
            f"{cell(kf)} | {cell(r.get('tflite_xnnpack_f32'), kf)} | "
            f"{cell(r.get('tflite_builtin_f32'), kf)} | {cell(r.get('ort_f32'), kf)} | "
            f"{cell(r.get('tract_f32'), kf)} | {scale(k8, r.get('kiln2_int8'))} | "
            f"{scale(kf, r.get('kiln2_f32'))} |")
    notes = [f"- {r['model']}: onnxruntime int8 not run ({r['ort_int8_note']})"
             for r in rows if r.get("ort_int8_note")]
    notes += [f"- {r['model']}: tract f32 not run ({r['tract_f32_note']})"
              for r in rows if r.get("tract_f32_note")]
    if notes:
        lines += ["", *notes]
    md = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "bench.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.out, "bench.json"), "w") as f:
        json.dump({"versions": versions, "iterations": n, "rounds": rounds, "rows": rows}, f,
                  indent=1)
    chart(rows, os.path.join(a.out, "bench.png"), n)
    print(md)


def digits_row(out, w, n):
    """The quickstart's digits CNN: kiln f32 and int8, onnxruntime f32 and int8, tract f32."""
    q = os.path.join(ROOT, "build", "quickstart")
    onnx_f, calib, onnx_q = (os.path.join(q, f) for f in
                             ("digits_cnn.onnx", "calib_x.npy", "digits_cnn_ort_int8.onnx"))
    if not all(os.path.isfile(f) for f in (onnx_f, calib, onnx_q)):
        print("bench: no build/quickstart digits models (run scripts/quickstart.sh); "
              "skipping the digits CNN", file=sys.stderr)
        return None
    row = {"model": "digits CNN (quickstart)"}
    kfile, kiln_q = os.path.join(out, "digits_cnn.kiln"), os.path.join(out, "digits_cnn_int8.kiln")
    convert(onnx_f, kfile)
    qz = subprocess.run([KILN, "quantize", onnx_f, "--calib", calib, "-o", kiln_q],
                        capture_output=True, text=True)
    if qz.returncode != 0:
        raise SystemExit(f"kiln quantize {onnx_f}: {qz.stderr}")
    for kind, f in (("f32", kfile), ("int8", kiln_q)):
        r, err = kiln([f], w, n)
        row[f"kiln_{kind}"] = r["median_us"] if r else None
        row[f"kiln_{kind}_layers"] = r["layers"] if r else err
        r2, _ = kiln([f, "--threads", "2"], w, n)
        row[f"kiln2_{kind}"] = r2["median_us"] if r2 else None
    import onnxruntime as rt
    shape = [d if isinstance(d, int) else 1
             for d in rt.InferenceSession(onnx_f).get_inputs()[0].shape]
    x = np.random.default_rng(7).uniform(-1, 1, size=shape).astype(np.float32)
    row["ort_f32"], row["ort_f32_note"] = ort(onnx_f, x, x, w, n)
    row["ort_int8"], row["ort_int8_note"] = ort(onnx_q, x, x, w, n)
    t, err = kiln([onnx_f, "--engine", "tract"], w, n)
    row["tract_f32"], row["tract_f32_note"] = (t["median_us"] if t else None), err
    return row


def chart(rows, path, n):
    """Bar chart of the medians (log scale), one group per model."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib missing; no bench.png", file=sys.stderr)
        return
    series = [("kiln int8", "kiln_int8"), ("TFLite+XNNPACK int8", "tflite_xnnpack_int8"),
              ("onnxruntime int8", "ort_int8"), ("kiln f32", "kiln_f32"),
              ("TFLite+XNNPACK f32", "tflite_xnnpack_f32"), ("onnxruntime f32", "ort_f32"),
              ("tract f32", "tract_f32")]
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.8 / len(series)
    for j, (label, key) in enumerate(series):
        xs = [i + j * width for i, r in enumerate(rows) if r.get(key)]
        ys = [r[key] for r in rows if r.get(key)]
        ax.bar(xs, ys, width, label=label)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))])
    ax.set_xticklabels([r["model"] for r in rows], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("µs per inference (median, 1 thread; log scale)")
    ax.set_title(f"kiln beside other engines, median of {n} runs")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
