"""The generated host program's synchronisation, measured: per model, the threaded program (one
thread per core) beside the static-order one (one thread, no locks), each streaming the same
frames, and the cost of one hand-over between threads that host-cpu.arch's `handover` records and
`alohac compile --runtime auto` weighs.

Per model it prints the seconds a frame of each program (the whole stream's time over its frames:
the medians the programs print hide the frames that waited on a sleeping thread), the cost
model's figures (`one_thread_s`, the actors' predicted seconds summed; `period_s`, the schedule's
period of the threads), the FIFO transfers a frame between threads (`handovers`), and what the
threaded program's FIFOs did a frame (ALOHA_PROFILE=1's sync line: operations, those that waited,
sleeps, lock acquisitions). The hand-over cost is what the threads lose beyond the parallel
speed-up the schedule predicts, per hand-over:

    handover_s = (threads_s - static_s * period_s / one_thread_s) / handovers

and the figure to record is the least over the models (the cost on an otherwise idle machine; a
loaded one only makes threads worse). Run it on a quiet machine (the load average is printed).

    python benchmarks/runtime_sync.py [--models mnist-8,mnist_cnn,lenet5] [--frames 512]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np
from aloha_ir.console import console as console_for_tables
from rich.table import Table

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, HERE)
from generated_c import build, model_file, run_timed  # noqa: E402


def bench(name: str, work: str, frames: int) -> dict | None:
    path = model_file(name, work)
    if path is None:
        return None
    codes = {rt: build(path, os.path.join(work, f"{name}_{rt}"), ["--runtime", rt])[0]
             for rt in ("auto", "threads", "static")}
    manifest = json.load(open(os.path.join(codes["auto"], "network.json")))
    choice = manifest["runtime_choice"]
    scale = 255.0 if name == "mnist-8" else 1.0
    x = (np.random.default_rng(0).uniform(0, 1, [frames] + manifest["inputs"][0]["shape"][1:])
         * scale).astype("<f4")
    seconds, outputs = {}, {}
    for rt in ("threads", "static"):
        x.tofile(os.path.join(codes[rt], "in.bin"))
        timing = run_timed(codes[rt], "stream")
        seconds[rt] = timing["total_s"] / timing["frames"]
        outputs[rt] = np.fromfile(os.path.join(codes[rt], "out.bin"), dtype="<f4")
    # the profile run streams the same frames (the timing it also records costs nothing extra:
    # the program times every frame whatever ALOHA_TIMING says, and only prints it)
    sync = run_timed(codes["threads"], "stream", {"ALOHA_PROFILE": "1"}, line="sync:")
    ideal = seconds["static"] * choice["period_s"] / choice["one_thread_s"]
    return {"model": name, "threads_s": seconds["threads"], "static_s": seconds["static"],
            "one_thread_s": choice["one_thread_s"], "period_s": choice["period_s"],
            "handovers": choice["handovers"], "sync": sync, "auto": choice["runtime"],
            "handover_s": (seconds["threads"] - ideal) / max(1, choice["handovers"]),
            "same": bool(np.array_equal(outputs["threads"], outputs["static"]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="mnist-8,mnist_cnn,lenet5")
    ap.add_argument("--frames", type=int, default=512)
    args = ap.parse_args()
    console = console_for_tables()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.models.split(","):
            console.print(f"[dim]{name}...[/dim]")
            r = bench(name, work, args.frames)
            if r is None:
                console.print(f"{name}: skipped (ALOHA_DATA is not set)")
                continue
            rows.append(r)
    t = Table(title=f"host-cpu: threads against one thread, {args.frames} frames "
                    f"(load average {os.getloadavg()[0]:.2f})")
    for c in ("model", "threads ms", "static ms", "pred 1 thread ms", "pred threads ms",
              "handovers", "fifo ops", "waits", "sleeps", "locks", "handover us", "auto",
              "same output"):
        t.add_column(c, justify="right")
    for r in rows:
        s = r["sync"]
        t.add_row(r["model"], f"{1e3 * r['threads_s']:.3f}", f"{1e3 * r['static_s']:.3f}",
                  f"{1e3 * r['one_thread_s']:.3f}", f"{1e3 * r['period_s']:.3f}",
                  str(r["handovers"]), f"{s['fifo_ops']:.0f}", f"{s['waits']:.1f}",
                  f"{s['sleeps']:.1f}", f"{s['locks']:.1f}", f"{1e6 * r['handover_s']:.2f}",
                  r["auto"], str(r["same"]))
    console.print(t)
    if rows:
        console.print(f"handover (least over the models): "
                      f"{1e6 * min(r['handover_s'] for r in rows):.2f} us")


if __name__ == "__main__":
    main()
