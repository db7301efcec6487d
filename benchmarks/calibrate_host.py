"""Calibrate host-cpu.arch against this machine: run the generated C of a few calibration models
with ALOHA_PROFILE=1 and measure the cpu cost model's two figures: ops_per_cycle, fitted to the
computation times of their convolutions and dense layers, and call_overhead, a firing's own cost
besides computing (windows, FIFO copies, locks; not waiting), per firing over every actor.

The rate is the least-squares fit, on relative error, of compute seconds = 2 * MACs / (rate *
clock). The calibration models are not those benchmarks/generated_c.py checks the predictions
on, so the check stays a check. It prints the fitted figures, the residual spread, and per kernel
kind measured against predicted under the current .arch (where the single-rate model errs).

    python benchmarks/calibrate_host.py [--models digits_cnn,mobilenet_v1,resnet18,squeezenet1_1]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from aloha_ir.console import console as console_for_tables
from rich.table import Table

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

from archdesc.loader import load_platform  # noqa: E402

DEFAULT = "digits_cnn,mobilenet_v1,resnet18,squeezenet1_1"


def profile(model: str, work: str, frames: int) -> list[dict]:
    """Per actor of the generated host program: the manifest entry plus measured firings and
    compute seconds per frame (a stream of `frames` frames)."""
    out = os.path.join(work, model)
    r = subprocess.run([sys.executable, "-m", "alohac.main", "compile", f"zoo:{model}",
                        "--target", "host-cpu", "--emit", "c", "-o", out],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr)
    code = os.path.join(out, "code")
    subprocess.run(["make", "-s", "-C", code], check=True, capture_output=True)
    manifest = json.load(open(os.path.join(code, "network.json")))
    shape = manifest["inputs"][0]["shape"]
    x = np.random.default_rng(0).uniform(0, 1, [frames] + shape[1:])
    x.astype("<f4").tofile(os.path.join(code, "in.bin"))
    r = subprocess.run(["./network", "in.bin", "out.bin"], cwd=code, capture_output=True,
                       text=True, env={**os.environ, "ALOHA_PROFILE": "1"})
    if r.returncode:
        raise RuntimeError(r.stderr)
    rows = [line.split() for line in r.stderr.splitlines() if line.startswith("profile:")]
    actors = manifest["actors"]
    for row in rows:
        a = actors[int(row[2])]
        a["firings"], a["measured_s"], a["overhead_s"] = float(row[4]), float(row[6]), float(row[8])
    return actors


def fit(actors: list[dict], clock: float) -> tuple[float, np.ndarray]:
    """(ops per cycle, relative residuals) over conv and dense actors: the least-squares relative
    fit of compute_s = 2 MACs / (rate clock), i.e. 1/rate = sum(a) / sum(a^2) with
    a = 2 MACs / (clock compute_s)."""
    use = [a for a in actors if a["kernel"] in ("conv", "dense") and a["measured_s"] > 0]
    a = np.array([2.0 * u["work"] / (clock * u["measured_s"]) for u in use])
    inv_rate = a.sum() / (a * a).sum()
    return 1.0 / inv_rate, a * inv_rate - 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=DEFAULT)
    ap.add_argument("--frames", type=int, default=3)
    args = ap.parse_args()
    platform = load_platform("host-cpu")
    pe = platform.pes[0]
    clock = platform.clock(pe)
    console = console_for_tables()
    actors: list[dict] = []
    with tempfile.TemporaryDirectory() as work:
        for model in args.models.split(","):
            console.print(f"[dim]{model}...[/dim]")
            actors += profile(model, work, args.frames)
    rate, resid = fit(actors, clock)
    by_kind: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])
    for a in actors:
        k = by_kind[a["kernel"]]
        k[0] += a["measured_s"]
        k[1] += a["predicted_s"]
        k[2] += 1
    t = Table(title=f"per kernel kind, summed over {args.models} (current host-cpu.arch)")
    for c in ("kernel", "actors", "measured ms", "predicted ms", "meas/pred"):
        t.add_column(c, justify="right")
    for kind, (m, p, n) in sorted(by_kind.items(), key=lambda kv: -kv[1][0]):
        t.add_row(kind, str(n), f"{1e3 * m:.3f}", f"{1e3 * p:.3f}",
                  f"{m / p:.2f}" if p else "-")
    console.print(t)
    console.print(f"fit over {len(resid)} conv/dense actors at {clock / 1e9:.2f} GHz: "
                  f"ops_per_cycle = {rate:.2f}; "
                  f"relative residuals: median |r| {np.median(np.abs(resid)):.2f}, "
                  f"90th percentile {np.percentile(np.abs(resid), 90):.2f}")
    per = np.array([a["overhead_s"] / a["firings"] for a in actors if a["firings"]])
    console.print(f"a firing's own cost besides computing, per actor: median {1e6 * np.median(per):.2f}"
                  f" us, mean {1e6 * per.mean():.2f} us (copies grow with the rows; profiling's "
                  "clock reads included): call_overhead is the median")
    console.print(f"host-cpu.arch has ops_per_cycle = {pe.rate(platform.default_datatype):g}, "
                  f"call_overhead = {1e6 * pe.call_overhead_s:g} us")


if __name__ == "__main__":
    main()
