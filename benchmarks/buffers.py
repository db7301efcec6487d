"""The generated program's FIFO memory at the schedule's sizes (analyze-schedule's occupancies, what
`alohac compile --target T` allocates by default) and at size-buffers' least capacities (`--buffers
minimal`), as the program allocates it (CodegenView.memory()['buffer_bytes']), with the period of
the program's threads at the minimal sizes against the self-timed period and the search's time.

    python benchmarks/buffers.py [--models lenet5,mnist_cnn,squeezenet]
                                 [--targets host-cpu,neuraghe-losa]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def measure(model: str, target: str) -> dict:
    from aloha_ir.analysis import AnalysisManager
    from aloha_ir.dialects import csdf
    from archdesc.loader import load_platform
    from backends.registry import get_backend
    from flows.target import TargetFlow
    from frontends.loader import load_model
    from passes.size_buffers import program_sizing
    platform = load_platform(target)
    cls = get_backend(platform.backend)
    module = load_model(f"zoo:{model}", {})
    TargetFlow(platform, backend=cls).run(module)  # the schedule's sizes, as by default
    graph = csdf.csdf_graphs(module)[0]
    before = cls().view(module, platform).memory()["buffer_bytes"]
    cpu = [u for u, pe in platform.units() if pe.kind == "cpu"]
    t0 = time.perf_counter()
    sizing = program_sizing(graph, cpu, 2, AnalysisManager())
    seconds = time.perf_counter() - t0
    after = cls(fifo_override=sizing.capacities).view(module, platform).memory()["buffer_bytes"]
    return {"model": model, "target": target, "before": before, "after": after,
            "tokens_before": sum(sizing.schedule[c] for c in sizing.searched),
            "tokens_after": sizing.total, "period_s": sizing.period_s,
            "self_timed_s": sizing.self_timed_period_s, "search_s": seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet5,mnist_cnn,squeezenet")
    ap.add_argument("--targets", default="host-cpu,neuraghe-losa")
    args = ap.parse_args()
    print("| model | target | FIFO bytes, schedule | FIFO bytes, minimal | ratio | tokens between "
          "actors, schedule -> minimal | threads' period / self-timed | search |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for model in args.models.split(","):
        for target in args.targets.split(","):
            r = measure(model, target)
            print(f"| {r['model']} | {r['target']} | {r['before']:,} | {r['after']:,} | "
                  f"{r['after'] / r['before']:.3f} | {r['tokens_before']:,} -> "
                  f"{r['tokens_after']:,} | {r['period_s'] * 1e3:.4f} / "
                  f"{r['self_timed_s'] * 1e3:.4f} ms ({r['period_s'] / r['self_timed_s'] - 1:+.2%})"
                  f" | {r['search_s']:.1f} s |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
