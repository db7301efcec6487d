"""System-level search (explore/system/) against the greedy default mapping: inception_v1 on
neuraghe-arrubiu by default.

Prints the greedy default's and the found (chosen) point's self-timed latency, energy per frame and
processors, the search's time (closed-form estimates, then the real pipeline on the refined
points), and how the closed-form estimate ranks the refined points against the self-timed latency
(Spearman), beside the plain list schedule's makespan for comparison. Issue 8's bar: the found
mapping is at least as fast as greedy (exit code 1 otherwise).

    python benchmarks/explore_system.py [--model zoo:NAME] [--target T] [--budget N] [--refine K]
                                        [--seed S] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from archdesc.loader import load_platform
from explore.system.search import search, spearman
from explore.system.space import SystemSpace

FIGURES = ("latency_s", "period_s", "energy_j", "processors", "memory_bytes")


def run(model: str = "zoo:inception_v1", target: str = "neuraghe-arrubiu", budget: int = 1500,
        seed: int = 0, refine: int = 8, progress: bool = False) -> dict:
    """One search; the figures of the greedy default and of the found point, times, and the
    estimate's rank agreement with the self-timed latency over the refined points."""
    start = time.perf_counter()
    space = SystemSpace.load(model, load_platform(target))
    load_s = time.perf_counter() - start
    r = search(space, budget=budget, refine=refine, seed=seed, progress=progress)
    real = [p["latency_s"] for p in r.refined]
    est = [p.estimate.latency_s for p in r.refined]
    return {
        "model": model, "target": target, "budget": budget, "seed": seed, "refine": refine,
        "evaluations": r.evaluations, "refined": len(r.refined),
        "greedy": {k: r.greedy[k] for k in FIGURES},
        "found": {k: r.chosen[k] for k in FIGURES},
        "at_least_as_fast": r.chosen["latency_s"] <= r.greedy["latency_s"],
        "speedup": r.greedy["latency_s"] / r.chosen["latency_s"],
        "energy_ratio": r.chosen["energy_j"] / r.greedy["energy_j"],
        "pareto": [{k: p[k] for k in ("latency_s", "energy_j", "processors")} for p in r.pareto],
        "load_seconds": load_s, "search_seconds": r.seconds,
        "estimate_seconds": r.estimate_seconds, "refine_seconds": r.refine_seconds,
        "spearman_latency": spearman(est, real),
        "spearman_makespan": spearman([p.estimate.makespan_s for p in r.refined], real),
        "estimate_error": sum(abs(e - x) / x for e, x in zip(est, real)) / len(real),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="zoo:inception_v1")
    ap.add_argument("--target", default="neuraghe-arrubiu")
    ap.add_argument("--budget", type=int, default=1500)
    ap.add_argument("--refine", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = ap.parse_args()
    res = run(args.model, args.target, args.budget, args.seed, args.refine,
              progress=not args.json)
    if args.json:
        print(json.dumps(res))
        return 0 if res["at_least_as_fast"] else 1
    from aloha_ir.console import console as console_for_tables
    from rich.table import Table
    console = console_for_tables()
    table = Table(title=f"{args.model} on {args.target}: system-level search (budget "
                        f"{args.budget}, refine {args.refine}, seed {args.seed})")
    for col in ("mapping", "latency ms", "period ms", "energy mJ/frame", "processors",
                "memory MB"):
        table.add_column(col, justify="left" if col == "mapping" else "right")
    for name in ("greedy", "found"):
        f = res[name]
        table.add_row(name, f"{f['latency_s'] * 1e3:.3f}", f"{f['period_s'] * 1e3:.3f}",
                      f"{f['energy_j'] * 1e3:.2f}", str(f["processors"]),
                      f"{f['memory_bytes'] / 1e6:.1f}")
    console.print(table)

    def rho(x):
        return "-" if x is None else f"{x:.3f}"
    console.print(
        f"found/greedy: {res['speedup']:.4f}x faster, energy x{res['energy_ratio']:.4f}; "
        f"{'at least as fast as' if res['at_least_as_fast'] else 'SLOWER than'} greedy\n"
        f"search {res['search_seconds']:.1f} s: {res['evaluations']} designs estimated in "
        f"{res['estimate_seconds']:.1f} s, {res['refined']} refined in "
        f"{res['refine_seconds']:.1f} s (model load and lowering {res['load_seconds']:.1f} s)\n"
        f"estimate vs self-timed latency over the refined points: Spearman "
        f"{rho(res['spearman_latency'])} (list-schedule makespan: "
        f"{rho(res['spearman_makespan'])}), mean relative error "
        f"{100 * res['estimate_error']:.1f}%\n"
        f"Pareto front (latency ms, energy mJ, processors): " + ", ".join(
            f"({p['latency_s'] * 1e3:.2f}, {p['energy_j'] * 1e3:.1f}, {p['processors']})"
            for p in res["pareto"]))
    return 0 if res["at_least_as_fast"] else 1


if __name__ == "__main__":
    sys.exit(main())
