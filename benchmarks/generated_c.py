"""Generated code, measured: per model, generation time, gcc time, code size, the host program's
run time beside onnxruntime's on the same inputs (a ratio), and host-cpu's predicted latency and
period beside the measured ones (the analysis checked on the one platform we can measure), and
the period of the same model deployed in fixed point (--fixed-bits, 16 by default) beside the
float one.

The program times itself: the period is the median time between frames leaving in a stream of
FRAMES inputs or more (ALOHA_TIMING=1), the latency the median time through the pipeline of frames 2.. when each enters
once the previous has left (ALOHA_TIMING=latency: a warm, empty pipeline, which is what the
analysis predicts). Process start and weight loading are not counted. onnxruntime runs the same inputs one by one with
as many intra-op threads as the host-cpu platform has cores (median of the runs).

    python benchmarks/generated_c.py [--models squeezenet,inception_v1,...] [--frames 8]
                                     [--fixed-bits 16|8|0]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from aloha_ir.console import console as console_for_tables
from rich.table import Table

# this file is named like the `backends` package: keep its directory off the import path
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from model_helpers import light_path, randomize_weights, strip_final_softmax  # noqa: E402

from archdesc.loader import load_platform  # noqa: E402

DEFAULT = "mnist-8,mnist_cnn,lenet5,squeezenet,inception_v1,resnet50"


def model_file(name: str, work: str) -> str | None:
    """An ONNX file with real-valued weights: light models get seeded random weights."""
    path = os.path.join(work, f"{name}.onnx")
    if name == "mnist-8":
        data = os.environ.get("ALOHA_DATA")
        return os.path.join(data, "onnx", "mnist-8.onnx") if data else None
    from frontends.zoo import BUILDERS
    if name in BUILDERS:
        from backends.onnx.export import save_onnx
        from frontends.loader import load_model
        save_onnx(load_model(f"zoo:{name}", {}), path)
        onnx.save(strip_final_softmax(onnx.load(path)), path)
        return path
    m = strip_final_softmax(randomize_weights(onnx.load(light_path(name)), seed=0))
    m.ir_version = min(m.ir_version, 10)
    onnx.save(m, path)
    return path


def ort_seconds(path: str, x: np.ndarray, threads: int) -> tuple[float, np.ndarray]:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, opts)
    inits = {t.name for t in onnx.load(path).graph.initializer}
    name = next(i.name for i in sess.get_inputs() if i.name not in inits)
    sess.run(None, {name: x[:1]})
    times, outs = [], []
    for i in range(len(x)):
        t = time.perf_counter()
        outs.append(sess.run(None, {name: x[i:i + 1]})[0].reshape(-1))
        times.append(time.perf_counter() - t)
    return float(np.median(times)), np.stack(outs)


def run_timed(code: str, mode: str, env: dict | None = None,
              line: str = "timing:") -> dict[str, float]:
    """The program's own timing: `stream` streams the frames (the period), `latency` lets each
    frame in once the previous has left (the latency of a warm, empty pipeline). `env` adds
    variables (ALOHA_PROFILE=1: the profile); the figures are those of the last line the program
    writes to stderr starting with `line` (its timing, or e.g. the profile's `sync:`)."""
    r = subprocess.run(["./network", "in.bin", "out.bin"], cwd=code, capture_output=True,
                       text=True, env={**os.environ, **(env or {}),
                                       "ALOHA_TIMING": "1" if mode == "stream" else mode})
    if r.returncode:
        raise RuntimeError(r.stderr)
    found = [ln for ln in r.stderr.splitlines() if ln.startswith(line)]
    if not found:
        raise RuntimeError(f"the program wrote no '{line}' line:\n{r.stderr}")
    return {k: float(v) for k, v in re.findall(r"(\w+) ([0-9.e+-]+)", found[-1])}


def build(path: str, out: str, extra: list[str]) -> tuple[str, float, float]:
    """`alohac compile PATH --target host-cpu --emit c` (+ extra) and the generated Makefile's
    build: the code directory, the generation and the gcc seconds."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "alohac.main", "compile", path, "--target",
                        "host-cpu", "--emit", "c", "-o", out, *extra], capture_output=True,
                       text=True)
    gen = time.perf_counter() - t
    if r.returncode:
        raise RuntimeError(r.stderr)
    code = os.path.join(out, "code")
    t = time.perf_counter()
    r = subprocess.run(["make", "-s", "-C", code], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr)
    return code, gen, time.perf_counter() - t


def bench(name: str, work: str, frames: int, cores: int, fixed_bits: int = 0) -> dict | None:
    path = model_file(name, work)
    if path is None:
        return None
    code, gen, build_s = build(path, os.path.join(work, name), [])
    manifest = json.load(open(os.path.join(code, "network.json")))
    size = json.load(open(os.path.join(code, "code-size.json")))
    text = subprocess.run(["size", os.path.join(code, "network")], capture_output=True,
                          text=True).stdout.splitlines()[-1].split()
    scale = 255.0 if name == "mnist-8" else 1.0
    # at least FRAMES, and enough for about half a second of predicted work: small models get
    # enough samples for the medians
    frames = max(frames, min(512, int(0.5 / max(manifest["period_s"], 1e-6))))
    x = (np.random.default_rng(0).uniform(0, 1, [frames] + manifest["inputs"][0]["shape"][1:])
         * scale).astype(np.float32)
    x.astype("<f4").tofile(os.path.join(code, "in.bin"))
    timing = {mode: run_timed(code, mode) for mode in ("stream", "latency")}
    y = np.fromfile(os.path.join(code, "out.bin"), dtype="<f4").reshape(frames, -1)
    fixed_period_s = None
    if fixed_bits:
        # the same model deployed in fixed point (random-input calibration), the same frames
        qcode, _, _ = build(path, os.path.join(work, f"{name}_q{fixed_bits}"),
                            ["--bits", str(fixed_bits)])
        x.astype("<f4").tofile(os.path.join(qcode, "in.bin"))
        fixed_period_s = run_timed(qcode, "stream")["period_s"]
    ort_s, want = ort_seconds(path, x, cores)
    return {"model": name, "gen_s": gen, "build_s": build_s, "source_bytes": size["source_bytes"],
            "text_bytes": int(text[0]), "weight_bytes": size["memory"]["parameter_bytes"],
            "fifo_bytes": size["memory"]["buffer_bytes"], "threads": size["threads"],
            "latency_s": timing["latency"]["latency_s"],
            "period_s": timing["stream"]["period_s"], "fixed_period_s": fixed_period_s,
            "ort_s": ort_s, "pred_latency_s": manifest["latency_s"],
            "pred_period_s": manifest["period_s"],
            "rel_err": float(np.abs(y - want).max() / np.abs(want).max())}


def mnist_fixed(work: str, targets: list[str], limit: int) -> list[dict]:
    """mnist-8 quantized (PTQ, 16 bit) on each target's generated program over the MNIST test set:
    top-1 agreement with onnxruntime's float model, test accuracy, and exact equality with the
    bit-exact reference on the first 200 images."""
    data = os.environ.get("ALOHA_DATA")
    if not data:
        return []
    from aloha_ir.textio import load_module
    from runtime.reference import reference
    from frontends.datasets import load
    q = os.path.join(work, "mnist8_q16")
    r = subprocess.run([sys.executable, "-m", "alohac.main", "quantize", "zoo:mnist-8", "--data",
                        f"mnist:{os.path.join(data, 'mnist')}", "--bits", "16", "-o", q],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr)
    test = load(f"mnist:{os.path.join(data, 'mnist')}").test.to_range(0.0, 255.0)
    x, labels = test.x[:limit], test.y[:limit]
    _, ort_logits = ort_seconds(os.path.join(data, "onnx", "mnist-8.onnx"), x, 2)
    module = load_module(os.path.join(q, "mnist-8.mlir"))
    n_exact = min(200, len(x))
    exact_ref = reference(module).real(x[:n_exact].astype(np.float64)).reshape(n_exact, -1)
    rows = []
    for target in targets:
        out = os.path.join(work, f"mnist8_{target}")
        r = subprocess.run([sys.executable, "-m", "alohac.main", "compile",
                            os.path.join(q, "mnist-8.mlir"), "--target", target, "--emit", "c",
                            "-o", out], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(r.stderr)
        code = os.path.join(out, "code")
        subprocess.run(["make", "-s", "-C", code], check=True, capture_output=True)
        x.astype("<f4").tofile(os.path.join(code, "in.bin"))
        t = time.perf_counter()
        r = subprocess.run(["./network", "in.bin", "out.bin"], cwd=code, capture_output=True,
                           text=True)
        seconds = time.perf_counter() - t
        if r.returncode:
            raise RuntimeError(r.stderr)
        y = np.fromfile(os.path.join(code, "out.bin"), dtype="<f4").reshape(len(x), -1)
        rows.append({"target": target, "images": len(x),
                     "agreement": float(np.mean(y.argmax(1) == ort_logits.argmax(1))),
                     "accuracy": float(np.mean(y.argmax(1) == labels)),
                     "ort_accuracy": float(np.mean(ort_logits.argmax(1) == labels)),
                     "exact_first_200": bool(np.array_equal(y[:n_exact],
                                                            exact_ref.astype(np.float32))),
                     "seconds": seconds})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=DEFAULT)
    ap.add_argument("--frames", type=int, default=8,
                    help="frames per run at least (small models run more)")
    ap.add_argument("--fixed-bits", type=int, default=16, choices=(0, 8, 16),
                    help="also time each model deployed in this fixed-point precision (0: no)")
    ap.add_argument("--mnist-images", type=int, default=10000,
                    help="MNIST test images for the fixed-point neuraghe/orlando check")
    args = ap.parse_args()
    cores = sum(pe.count for pe in load_platform("host-cpu").pes)
    console = console_for_tables()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.models.split(","):
            console.print(f"[dim]{name}...[/dim]")
            r = bench(name, work, args.frames, cores, args.fixed_bits)
            if r is None:
                console.print(f"{name}: skipped (ALOHA_DATA is not set)")
                continue
            rows.append(r)
        console.print("[dim]mnist-8 fixed point on neuraghe-losa and orlando...[/dim]")
        fixed = (mnist_fixed(work, ["neuraghe-losa", "orlando", "host-cpu"], args.mnist_images)
                 if args.mnist_images > 0 else [])
    t = Table(title=f"host backend: generated C vs onnxruntime ({cores} threads), and host-cpu's "
                    "predictions vs measurement")
    for c in ("model", "gen s", "gcc s", "source KiB", ".text KiB", "weights MiB", "threads",
              "C ms/frame", "ORT ms", "C/ORT", f"fixed {args.fixed_bits}b ms", "fixed/float",
              "latency meas ms", "pred ms", "meas/pred",
              "period meas ms", "pred ms ", "meas/pred ", "max rel err"):
        t.add_column(c, justify="right")
    for r in rows:
        fixed_s = r["fixed_period_s"]
        t.add_row(r["model"], f"{r['gen_s']:.1f}", f"{r['build_s']:.1f}",
                  f"{r['source_bytes'] / 1024:.0f}", f"{r['text_bytes'] / 1024:.0f}",
                  f"{r['weight_bytes'] / 2 ** 20:.2f}", str(r["threads"]),
                  f"{1e3 * r['period_s']:.2f}", f"{1e3 * r['ort_s']:.2f}",
                  f"{r['period_s'] / r['ort_s']:.1f}",
                  "-" if fixed_s is None else f"{1e3 * fixed_s:.2f}",
                  "-" if fixed_s is None else f"{fixed_s / r['period_s']:.2f}",
                  f"{1e3 * r['latency_s']:.2f}",
                  f"{1e3 * r['pred_latency_s']:.2f}",
                  f"{r['latency_s'] / r['pred_latency_s']:.2f}",
                  f"{1e3 * r['period_s']:.2f}", f"{1e3 * r['pred_period_s']:.2f}",
                  f"{r['period_s'] / r['pred_period_s']:.2f}", f"{r['rel_err']:.1e}")
    console.print(t)
    if fixed:
        ft = Table(title="mnist-8 quantized (PTQ 16 bit) over the MNIST test set, generated code "
                         "run here (platform APIs emulated)")
        for c in ("target", "images", "top-1 agrees with ORT float", "accuracy", "ORT float acc",
                  "= reference (first 200)", "run s"):
            ft.add_column(c, justify="right")
        for f in fixed:
            ft.add_row(f["target"], str(f["images"]), f"{100 * f['agreement']:.2f}%",
                       f"{100 * f['accuracy']:.2f}%", f"{100 * f['ort_accuracy']:.2f}%",
                       str(f["exact_first_200"]), f"{f['seconds']:.1f}")
        console.print(ft)
    elif args.mnist_images > 0:
        console.print("mnist-8 fixed point: skipped (ALOHA_DATA is not set)")
    console.print("C ms/frame is the measured period (frames in a stream); C/ORT > 1 means the "
                  "generated C is slower (the goal is <= 2). fixed ms is the period of the same model "
                  "deployed in fixed point (--bits, random-input calibration) on the same frames; "
                  "meas/pred within 0.7-1.3 is the aim (30%).")


if __name__ == "__main__":
    main()
