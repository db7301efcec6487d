"""host-cpu's predictions against the generated program measured on this machine, for every zoo
model that builds, then the calibration checked on models it has not seen.

1. Every zoo model (generated_c.bench: compile for host-cpu, build, stream FRAMES or more frames,
   the program timing itself): the measured period beside host-cpu.arch's predicted one, the
   ratio per model and the worst. 0.8..1.25 is the aim.
2. `alohac calibrate`'s fit (flows.calibrate) of host-cpu's rate, call overhead, memory
   bandwidth and hand-over latency to the measured throughputs of half of the models (every other one by size), and
   the ratio on the other half, predicted with the fitted values.

The peer in the same run is the measurement itself. Timings vary with the machine's load: rerun
on an idle machine before drawing conclusions.

    python benchmarks/host_fidelity.py [--models a,b,...] [--frames 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from aloha_ir.console import console as console_for_tables
from rich.table import Table

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from generated_c import bench  # noqa: E402

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

from archdesc.loader import load_platform  # noqa: E402
from frontends.zoo import zoo_names  # noqa: E402

# the parameters a host measurement determines: the f32 rate (conv/dense), a firing's own cost,
# the memory bandwidth (pooling, elementwise, copies), a hand-over between threads (the latency of
# the link between cores: a FIFO write waking the reader)
PARAMS = ("core.ops_per_cycle.f32", "core.call_overhead", "core.memory_bandwidth", "shared.latency")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(n for n in zoo_names()))
    ap.add_argument("--frames", type=int, default=8)
    args = ap.parse_args()
    from aloha_ir.console import Progress
    from flows.calibrate import Measurement, Predictor, calibrate, key
    cores = sum(pe.count for pe in load_platform("host-cpu").pes)
    console = console_for_tables()
    measured, failed = [], []
    with tempfile.TemporaryDirectory() as work:
        names = args.models.split(",")
        with Progress("host fidelity", total=len(names)) as progress:
            for name in names:
                try:
                    r = bench(name, work, args.frames, cores)
                except Exception as e:  # a model that does not build is reported, not fatal
                    failed.append((name, str(e).strip().splitlines()[-1][:120]))
                    progress.step(f"{name}: does not build", advance=1)
                    continue
                if r is None:
                    failed.append((name, "needs ALOHA_DATA"))
                    progress.step(f"{name}: skipped", advance=1)
                    continue
                r["path"] = os.path.join(work, f"{name}.onnx") if name != "mnist-8" else \
                    os.path.join(os.environ["ALOHA_DATA"], "onnx", "mnist-8.onnx")
                measured.append(r)
                progress.step(f"{name}: measured {1e3 * r['period_s']:.3f} ms, predicted "
                              f"{1e3 * r['pred_period_s']:.3f} ms", advance=1)
        # calibrate on every other model by predicted period, check on the rest
        order = sorted(measured, key=lambda r: r["pred_period_s"])
        train, test = order[::2], order[1::2]
        rows = [Measurement(r["path"], fps=1.0 / r["period_s"]) for r in order]
        model = Predictor(rows, "host-cpu")
        free = [p for p in model.parameters() if p.name in PARAMS]
        index = {id(r): i for i, r in enumerate(order)}
        with Progress("calibrate host-cpu", fields="") as progress:
            model.on_evaluation = lambda n: progress.update(status=f"{n} predictions")
            fit = calibrate(model, free, [index[id(r)] for r in train], on_step=progress.step)
            held = model.predict(fit.values, [index[id(r)] for r in test])
    after = {id(r): 1.0 / p.fps for r, p in zip(test, held, strict=True)}
    after.update({id(r): 1.0 / p.fps for r, p in zip(train, fit.predictions, strict=True)})
    t = Table(title="host-cpu: measured period / predicted period (the generated program, "
                    "this machine)")
    for c in ("model", "measured ms", "host-cpu.arch ms", "meas/pred", "calibrated ms",
              "meas/pred ", "in the fit"):
        t.add_column(c, justify="left" if c == "model" else "right")
    for r in order:
        t.add_row(r["model"], f"{1e3 * r['period_s']:.3f}", f"{1e3 * r['pred_period_s']:.3f}",
                  f"{r['period_s'] / r['pred_period_s']:.2f}", f"{1e3 * after[id(r)]:.3f}",
                  f"{r['period_s'] / after[id(r)]:.2f}", "yes" if r in train else "no")
    console.print(t)
    for name, why in failed:
        console.print(f"{name}: not measured ({why})")

    def worst(rs, pred) -> str:
        ratios = [r["period_s"] / pred(r) for r in rs]
        w = max(ratios, key=lambda x: max(x, 1 / x))
        return f"{w:.2f} (range {min(ratios):.2f}..{max(ratios):.2f})"
    console.print(f"host-cpu.arch over {len(order)} models: worst meas/pred "
                  f"{worst(order, lambda r: r['pred_period_s'])}")
    console.print("calibrated on " + ", ".join(r["model"] for r in train) + ": " + ", ".join(
        f"{p.name} {p.show()} -> {p.show(fit.values[key(p)])}" for p in fit.free) +
        ("; not determined: " + ", ".join(p.name for p in fit.fixed) if fit.fixed else ""))
    console.print(f"held out ({', '.join(r['model'] for r in test)}): worst meas/pred "
                  f"{worst(test, lambda r: after[id(r)])}; aim 0.8..1.25")
    return 0


if __name__ == "__main__":
    sys.exit(main())
