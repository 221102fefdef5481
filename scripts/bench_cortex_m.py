#!/usr/bin/env python3
"""Instructions per inference of the MLPerf Tiny int8 models on Cortex-M cores under QEMU.

Run through `scripts/bench.sh --cortex-m [--cores m4,m7,m33,m0] [--models kws,vww,ic,ad]`.

For every model: `kiln convert` the .tflite, fill the input from TFLite Micro's LCG (the input
`../shared/tools/qemu-insncount/README.md` used for its figures), `kiln export` it with the host
runtime's output. For every core: build `firmware-examples/cortex-m-bench` for it, run it under
QEMU with the instruction-count plugin, read the whole-model count (between two `bench_marker`
calls) and the per-op counts (`bench_op` after every op), check the firmware's output equals the
host's bit for bit, and read flash, arena and stack high-water. Writes build/cortex-m/report.md
and report.json; exits non-zero if any firmware's output differs from the host's or it fails.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FW = ROOT / "firmware-examples" / "cortex-m-bench"

MODELS = {  # short name -> (file stem under mlperf-tiny, title)
    "kws": ("kws_ref_model", "keyword spotting"),
    "vww": ("vww_96_int8", "visual wake words"),
    "ic": ("pretrainedResnet_quant", "image classification (ResNet)"),
    "ad": ("ad01_int8", "anomaly detection"),
}

CORES = {  # name -> (rust target, target-cpu, QEMU machine, QEMU cpu, memory map)
    "m4": ("thumbv7em-none-eabihf", "cortex-m4", "mps2-an386", "cortex-m4", "mps2-an386"),
    "m7": ("thumbv7em-none-eabihf", "cortex-m7", "mps2-an500", "cortex-m7", "mps2-an500"),
    "m33": ("thumbv8m.main-none-eabihf", "cortex-m33", "mps2-an505", "cortex-m33", "mps2-an505"),
    # Cortex-M0/M0+ code (ARMv6-M) run on the Cortex-M3 board: QEMU's only ARMv6-M machine,
    # `microbit`, has 16 KiB of RAM.
    "m0": ("thumbv6m-none-eabi", "cortex-m0", "mps2-an385", "cortex-m3", "mps2-an385"),
}


def log(msg):
    print(f"bench-cortex-m: {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"bench-cortex-m: {' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r.stdout


def lcg_input(n):
    """TFLite Micro's benchmark input: x = x*1664525 + 1013904223 from 0x12345678, advanced
    once per byte, the byte being the top 8 bits of x, as int8."""
    out = np.empty(n, dtype=np.int8)
    x = 0x12345678
    for i in range(n):
        x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
        out[i] = np.int8(np.uint8(x >> 24).view(np.int8))
    return out


def tflm_figures(tools):
    """TFLite Micro + CMSIS-NN's totals, arenas and flash (README table) and per-op counts."""
    text = (tools / "README.md").read_text()
    fig = {}
    for stem, _ in MODELS.values():
        m = re.search(r"\(`" + re.escape(stem) + r"`\) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) B \| ([\d,]+) B \(model ([\d,]+)\)", text)
        if not m:
            sys.exit(f"bench-cortex-m: {tools / 'README.md'}: no TFLite Micro row for {stem}")
        n = [int(g.replace(",", "")) for g in m.groups()]
        per_op = []
        tsv = tools / "tflm-per-op" / f"{stem}.cmsis_nn.tsv"
        for line in tsv.read_text().splitlines():
            f = line.split("\t")
            if len(f) == 3 and f[0] != "tail":
                per_op.append((f[1], int(f[2])))
        fig[stem] = {"cmsis_nn": n[0], "reference": n[1], "arena": n[2], "flash": n[3],
                     "model": n[4], "per_op": per_op}
    return fig


def inspect_ops(kiln, path):
    """(kind, params, MACs) per op from `kiln inspect`."""
    ops = []
    for line in run([kiln, "inspect", path]).splitlines():
        m = re.match(r"\s*(\d+)\s+(\w+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(.*?)\s+(\d+)\s+(\d+)\s+\S+$", line)
        if m and int(m.group(1)) == len(ops):
            ops.append({"kind": m.group(2), "params": m.group(6).strip(), "macs": int(m.group(7))})
    return ops


def build(core, gen, build_std, board=None, features=None, tag=None):
    """Builds the bench firmware for `core` with the model exported to `gen`; `board` overrides
    the core's memory map, `features` lists the firmware's features (the kernel grid, the
    stack-overflow test)."""
    target, cpu, _, _, default_board = CORES[core]
    board = board or default_board
    env = dict(os.environ, KILN_FW_MODEL=str(gen), KILN_FW_BOARD=board)
    env["CARGO_TARGET_" + target.upper().replace("-", "_").replace(".", "_") + "_RUSTFLAGS"] = \
        f"-C target-cpu={cpu}"
    tdir = f"target/{tag or core}"
    cmd = ["cargo", "build", "--release", "-q", "--target", target, "--target-dir", tdir]
    if features:
        cmd += ["--features", features]
    if build_std:
        env["RUSTC_BOOTSTRAP"] = "1"
        cmd.append("-Zbuild-std=core")
    run(cmd, cwd=FW, env=env)
    return FW / tdir / target / "release" / "cortex-m-bench"


def symbol(elf, name):
    for line in run(["arm-none-eabi-nm", elf]).splitlines():
        f = line.split()
        if len(f) == 3 and f[2] == name:
            return int(f[0], 16) & ~1
    sys.exit(f"bench-cortex-m: {elf}: no symbol {name}")


def qemu(core, elf, machine=None, plugin=None, timeout=900):
    """Runs `elf` under QEMU on `core`'s board (or `machine`), with the instruction-count
    plugin's markers when `plugin` is given; returns the completed process."""
    _, _, default_machine, cpu, _ = CORES[core]
    machine = machine or default_machine
    cpu_args = [] if machine == "microbit" else ["-cpu", cpu]
    cmd = ["timeout", str(timeout), "qemu-system-arm", "-M", machine, *cpu_args, "-nographic",
           "-monitor", "none", "-serial", "none", "-semihosting-config", "enable=on,target=native"]
    if plugin:
        cmd += ["-plugin", f"{plugin},marker={symbol(elf, 'bench_marker'):#x},op={symbol(elf, 'bench_op'):#x}"]
    return subprocess.run(cmd + ["-kernel", str(elf)], capture_output=True, text=True)


def measure(core, elf, plugin, n_ops, machine=None):
    r = qemu(core, elf, machine, plugin)
    out = r.stdout + r.stderr
    markers = [int(m) for m in re.findall(r"^INSN marker \d+ (\d+)$", r.stderr, re.M)]
    ops = [int(m) for m in re.findall(r"^INSN op \d+ (\d+)$", r.stderr, re.M)]
    res = {"status": r.returncode, "log": "\n".join(l for l in out.splitlines() if not l.startswith("INSN"))}
    res["pass"] = r.returncode == 0 and "bit-exact with the host runtime: PASS" in out
    if len(markers) == 3 and len(ops) == n_ops:
        res["insns"] = markers[1] - markers[0]
        prev = markers[2]
        res["per_op"] = []
        for c in ops:
            res["per_op"].append(c - prev)
            prev = c
    m = re.search(r"stack high-water (\d+) bytes", out)
    res["stack"] = int(m.group(1)) if m else None
    size = run(["arm-none-eabi-size", elf]).splitlines()[-1].split()
    res["text"], res["data"], res["bss"] = int(size[0]), int(size[1]), int(size[2])
    return res


def fmt(n):
    return f"{n:,}" if isinstance(n, int) else "n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", default="m4,m7,m33,m0")
    ap.add_argument("--models", default="kws,vww,ic,ad")
    ap.add_argument("--out", default="build/cortex-m")
    ap.add_argument("--no-microbit", dest="microbit", action="store_false",
                    help="skip the micro:bit digits CNN and the stack-guard checks")
    a = ap.parse_args()
    cores = a.cores.split(",")
    models = a.models.split(",")
    for c in cores:
        if c not in CORES:
            sys.exit(f"bench-cortex-m: unknown core {c!r} (one of {', '.join(CORES)})")
    for m in models:
        if m not in MODELS:
            sys.exit(f"bench-cortex-m: unknown model {m!r} (one of {', '.join(MODELS)})")
    assets = Path(os.environ.get("KILN_ASSETS", ROOT.parent / "shared" / "assets"))
    tools = ROOT.parent / "shared" / "tools" / "qemu-insncount"
    out = ROOT / a.out
    out.mkdir(parents=True, exist_ok=True)
    setup = run([ROOT / "scripts" / "cross-setup.sh"])
    build_std = "mode=build-std" in setup
    kiln = ROOT / "target" / "release" / "kiln"
    plugin = out / "libinsncount.so"
    run(["gcc", "-O2", "-shared", "-fPIC", "-o", plugin, tools / "insncount.c"])
    tflm = tflm_figures(tools)

    results = {}
    failed = []
    grids = {}
    for mi, name in enumerate(models, 1):
        stem, title = MODELS[name]
        src = assets / "mlperf-tiny" / f"{stem}.tflite"
        kfile = out / f"{stem}.kiln"
        run([kiln, "convert", src, "-o", kfile])
        ops = inspect_ops(kiln, kfile)
        m = re.search(r"^input .* i8\[([\dx]+)\]", run([kiln, "inspect", kfile]), re.M)
        if not m:
            sys.exit(f"bench-cortex-m: {kfile}: expected one int8 input")
        shape = [int(d) for d in m.group(1).split("x")]
        inp = out / f"{stem}.input.npy"
        np.save(inp, lcg_input(int(np.prod(shape))).reshape(shape))
        gen = out / stem
        run([kiln, "export", kfile, "-o", gen, "-i", inp])
        model_len = kfile.stat().st_size
        results[name] = {"model": stem, "title": title, "model_bytes": model_len, "ops": ops, "cores": {}}
        for core in cores:
            if core not in grids:
                # The int8 kernels against the reference on this core (edge-case grid), once.
                log(f"{core}: kernel grid build and run")
                elf = build(core, gen, build_std, features="grid", tag=f"grid-{core}")
                g = measure(core, elf, plugin, len(ops))
                m = re.search(r"kernel grid \((.*?)\): (\d+) cases, 0 wrong", g["log"])
                grids[core] = (m.group(1), int(m.group(2))) if m and g["pass"] else None
                if grids[core] is None:
                    failed.append(f"kernel grid on {core}")
                    print(g["log"], file=sys.stderr)
                log(f"{core}: kernel grid " + (f"({grids[core][0]}): {grids[core][1]} cases, 0 wrong"
                                               if grids[core] else "FAILED"))
            t0 = time.time()
            log(f"[{mi}/{len(models)}] {title}: {core} build")
            elf = build(core, gen, build_std)
            log(f"[{mi}/{len(models)}] {title}: {core} run under QEMU {CORES[core][2]}")
            r = measure(core, elf, plugin, len(ops))
            r["code"] = r["text"] - model_len
            results[name]["cores"][core] = r
            if not r["pass"] or "insns" not in r:
                failed.append(f"{title} on {core}")
                print(r["log"], file=sys.stderr)
            log(f"[{mi}/{len(models)}] {title}: {core}: {fmt(r.get('insns'))} instructions, "
                f"{'bit-exact' if r['pass'] else 'FAILED'} ({time.time() - t0:.0f} s)")

    # The digits CNN (int8) on a BBC micro:bit: Cortex-M0, 256 KiB flash, 16 KiB RAM, its real
    # memory map; no kernel grid (its buffers need more RAM than the part has).
    micro = None
    if a.microbit:
        digits = ROOT / "build" / "quickstart" / "digits_cnn_int8.kiln"
        if not digits.exists():
            log("micro:bit: building the quickstart's digits CNN (scripts/quickstart.sh)")
            run([ROOT / "scripts" / "quickstart.sh"])
        gen = out / "digits"
        run([kiln, "export", digits, "-o", gen, "-i", ROOT / "build" / "quickstart" / "digit_2.pgm"])
        ops = inspect_ops(kiln, digits)
        log("micro:bit: digits CNN build (thumbv6m, 256 KiB flash / 16 KiB RAM)")
        elf = build("m0", gen, build_std, board="microbit", tag="microbit")
        log("micro:bit: run under QEMU microbit")
        micro = measure("m0", elf, plugin, len(ops), machine="microbit")
        micro["ops"] = ops
        micro["model_bytes"] = digits.stat().st_size
        micro["arena"] = int(re.search(r"ARENA_SIZE: usize = (\d+)", (gen / "model.rs").read_text()).group(1))
        if not micro["pass"] or "insns" not in micro:
            failed.append("digits CNN on the micro:bit")
            print(micro["log"], file=sys.stderr)
        log(f"micro:bit: {fmt(micro.get('insns'))} instructions, {'bit-exact' if micro['pass'] else 'FAILED'}")

    # The stack guard: firmware that overflows its stack on purpose must fault (flip-link puts
    # the stack below the statics; QEMU reports the lockup), never run on over the statics.
    guard = []
    if a.microbit:
        gen = out / "digits"
        for core, board, machine in [("m4", "mps2-an386", None), ("m0", "microbit", "microbit")]:
            elf = build(core, gen, build_std, board=board, features="overflow", tag=f"overflow-{board}")
            r = qemu(core, elf, machine, timeout=60)
            text = r.stdout + r.stderr
            faulted = r.returncode != 0 and "Lockup" in text and "not caught" not in text
            guard.append((board, faulted, r.returncode))
            log(f"stack guard on {board}: {'overflow faulted' if faulted else 'NOT CAUGHT'} (QEMU exit {r.returncode})")
            if not faulted:
                failed.append(f"stack guard on {board}")
                print(text, file=sys.stderr)

    lines = ["# kiln on Cortex-M: instructions per inference (QEMU, exact counts)", "",
             "MLPerf Tiny int8 models, TFLite Micro's LCG input; TFLite Micro + CMSIS-NN figures from "
             "`shared/tools/qemu-insncount/README.md` (Cortex-M4F, same input). Ratio = kiln ÷ TFLite Micro "
             "+ CMSIS-NN. Flash = code + model; kiln's code is the whole firmware minus the model (the runtime "
             "with every op, the per-op report over semihosting).", ""]
    lines.append("| model | core | kiln instructions | TFLM + CMSIS-NN (M4) | ratio | kiln arena | TFLM arena | "
                 "kiln flash (code + model) | TFLM flash | stack high-water | output |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, res in results.items():
        f = tflm[res["model"]]
        arena = None
        gen_rs = (out / res["model"] / "model.rs").read_text()
        am = re.search(r"ARENA_SIZE: usize = (\d+)", gen_rs)
        arena = int(am.group(1)) if am else None
        for core, r in res["cores"].items():
            insns = r.get("insns")
            ratio = f"{insns / f['cmsis_nn']:.2f}×" if insns else "n/a"
            lines.append(f"| {res['title']} | {core} | {fmt(insns)} | {fmt(f['cmsis_nn'])} | {ratio} | "
                         f"{fmt(arena)} | {fmt(f['arena'])} | {fmt(r['text'])} ({fmt(r['code'])} + "
                         f"{fmt(res['model_bytes'])}) | {fmt(f['flash'])} ({fmt(f['flash'] - f['model'])} + "
                         f"{fmt(f['model'])}) | {fmt(r['stack'])} | {'bit-exact' if r['pass'] else 'FAILED'} |")
    if grids:
        lines += ["", "Kernel grid (`kernels::selfcheck`, against the reference kernels) on each core: " +
                  "; ".join(f"{c} ({g[0]}) {g[1]} cases, 0 wrong" if g else f"{c} FAILED"
                            for c, g in grids.items()) + "."]
    for name, res in results.items():
        f = tflm[res["model"]]
        cs = [c for c in res["cores"] if "per_op" in res["cores"][c]]
        if not cs:
            continue
        same = len(f["per_op"]) == len(res["ops"])
        lines += ["", f"## {res['title']}: per op", "",
                  "Instructions from the end of the previous op to the end of this one. "
                  + ("TFLite Micro's column is its op of the same index (CMSIS-NN kernels, M4)."
                     if same else "TFLite Micro runs a different op list here; its per-op figures are in "
                     f"`tflm-per-op/{res['model']}.cmsis_nn.tsv`."), ""]
        head = "| # | op | params | MACs | " + " | ".join(f"{c} instructions | {c} per MAC" for c in cs)
        head += " | TFLM + CMSIS-NN | ratio (m4) |" if same and "m4" in cs else " |"
        lines.append(head)
        lines.append("|" + "---|" * (4 + 2 * len(cs) + (2 if same and "m4" in cs else 0)))
        for i, op in enumerate(res["ops"]):
            row = f"| {i} | {op['kind']} | {op['params']} | {fmt(op['macs'])} |"
            for c in cs:
                n = res["cores"][c]["per_op"][i]
                row += f" {fmt(n)} | {n / op['macs']:.2f} |" if op["macs"] else f" {fmt(n)} | |"
            if same and "m4" in cs:
                t = f["per_op"][i][1]
                row += f" {fmt(t)} | {res['cores']['m4']['per_op'][i] / t:.2f}× |"
            lines.append(row)
    if micro:
        ram = micro["data"] + micro["bss"] + (micro["stack"] or 0)
        lines += ["", "## BBC micro:bit (Cortex-M0, QEMU `microbit`, 256 KiB flash, 16 KiB RAM)", "",
                  "| model | instructions | flash (code + model) | RAM: statics + stack high-water (of 16,384) | arena | output |",
                  "|---|---:|---:|---:|---:|---|",
                  f"| digits CNN (int8) | {fmt(micro.get('insns'))} | {fmt(micro['text'])} "
                  f"({fmt(micro['text'] - micro['model_bytes'])} + {fmt(micro['model_bytes'])}) | "
                  f"{fmt(ram)} ({fmt(micro['data'] + micro['bss'])} + {fmt(micro['stack'])}) | "
                  f"{fmt(micro['arena'])} | {'bit-exact' if micro['pass'] else 'FAILED'} |"]
    if guard:
        lines += ["", "## Stack guard", "",
                  "Firmware linked with flip-link (stack below the statics) that overflows its stack on purpose:", ""]
        for board, ok, code in guard:
            lines.append(f"- {board}: {'faults (QEMU reports the lockup and aborts)' if ok else 'NOT CAUGHT'}")
    report = "\n".join(lines) + "\n"
    (out / "report.md").write_text(report)
    (out / "report.json").write_text(json.dumps({"models": results, "microbit": micro,
                                                  "stack_guard": guard, "grid": grids}, indent=1))
    print(report)
    if failed:
        sys.exit("bench-cortex-m: FAILED: " + ", ".join(failed))


if __name__ == "__main__":
    main()
