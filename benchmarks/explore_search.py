"""Design-space exploration benchmark (issue 8's "done when"), four parts:

1. NSGA-II vs random search at the same budget on the analytic objectives (latency, energy, params on
   neuraghe-sabina; space:seed-example at MNIST's 1x28x28; no training), over 5 seeds. Hypervolumes
   use one set of bounds for all runs (every point any run evaluated), so they compare.
2. The proxy's ranking: Spearman correlation between the proxy accuracy (successive halving over
   learning rates, a few epochs on a subset) and full training (all samples, up to 40 epochs with
   early stopping, test accuracy) over 20 genotypes on digits.
3. Runs of 60 evaluations, accuracy vs latency vs energy on neuraghe-sabina: digits, and MNIST from
   $ALOHA_DATA (skipped with a note when unset).
4. System-level mapping search on inception_v1 for neuraghe-arrubiu against the greedy default.

    python benchmarks/explore_search.py [--seeds 5] [--budget 300] [--skip proxy,runs,system] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from explore.objectives import EvalSettings  # noqa: E402
from explore.scenarios import Scenario  # noqa: E402
from explore.search import SearchConfig, bounds_of, explore, hypervolume  # noqa: E402
from explore.space import load_space  # noqa: E402

ANALYTIC = ("latency_s", "energy_j", "params")


def _executor(workers: int):
    if workers == 0:
        return None
    from explore.executor import make_executor
    return make_executor(workers=workers)


def nsga_vs_random(seeds: int, budget: int, workers: int) -> dict:
    space = load_space("space:seed-example")
    settings = EvalSettings((1, 28, 28), 10, ANALYTIC, target="neuraghe-sabina",
                            threads=1)
    runs = {}
    executor = _executor(workers)
    try:
        for algorithm in ("nsga2", "random"):
            for seed in range(seeds):
                t = time.perf_counter()
                r = explore(space, settings, [Scenario("default")],
                            SearchConfig(algorithm, budget, seed=seed), executor=executor)
                runs[(algorithm, seed)] = r
                print(f"  {algorithm:6} seed {seed}: {r.evaluations} evaluations, front "
                      f"{len(r.main.front)}, {time.perf_counter() - t:.1f} s", flush=True)
    finally:
        if executor is not None:
            executor.shutdown()
    bounds = bounds_of([p for r in runs.values() for p in r.points], list(ANALYTIC))
    hv = {a: [hypervolume(runs[(a, s)].main.front, list(ANALYTIC), bounds) for s in range(seeds)]
          for a in ("nsga2", "random")}
    out = {}
    for a, values in hv.items():
        out[a] = {"mean": statistics.mean(values), "std": statistics.stdev(values)
                  if len(values) > 1 else 0.0, "values": values}
    margin = out["nsga2"]["mean"] - out["random"]["mean"]
    out["margin"] = margin
    out["passed"] = margin > max(out["nsga2"]["std"], out["random"]["std"])
    print(f"\nhypervolume over {seeds} seeds at {budget} evaluations (common bounds; ref 1.1^3 = "
          f"{1.1 ** 3:.3f}):")
    for a in ("nsga2", "random"):
        print(f"  {a:6}  mean {out[a]['mean']:.4f}  std {out[a]['std']:.4f}  "
              f"[{', '.join(f'{v:.3f}' for v in out[a]['values'])}]")
    print(f"  NSGA-II - random = {margin:.4f}; the larger std is "
          f"{max(out['nsga2']['std'], out['random']['std']):.4f}: "
          f"{'PASS' if out['passed'] else 'FAIL'} (must exceed it)")
    return out


def proxy_ranking(n: int = 20, seed: int = 0) -> dict:
    """Proxy accuracy vs full-training test accuracy over n genotypes (digits)."""
    from scipy.stats import spearmanr
    from runtime.torch.module import build
    from runtime.torch.train import TrainConfig, evaluate, train
    from explore.objectives import dataset_splits, evaluate_point
    from frontends.genotype import to_module
    from passes.execution import data_for_model
    space = load_space("space:seed-example")
    rng = np.random.default_rng(seed)
    settings = EvalSettings((1, 8, 8), 10, ("accuracy", "params"), data="digits", seed=seed)
    genotypes, seen = [], set()
    while len(genotypes) < n:
        g = space.sample(rng, (1, 8, 8))
        if g.key() not in seen:
            seen.add(g.key())
            genotypes.append(g)
    proxy, full, t_proxy, t_full = [], [], 0.0, 0.0
    for i, g in enumerate(genotypes):
        t = time.perf_counter()
        proxy.append(evaluate_point(settings, g.to_json())["objectives"]["accuracy"])
        t_proxy += time.perf_counter() - t
        t = time.perf_counter()
        module = to_module(g, (1, 8, 8), 10)
        from aloha_ir.dialects.nn import graph_of
        splits = data_for_model(dataset_splits("digits", seed), graph_of(module))
        import torch
        torch.manual_seed(seed)
        model = build(module, logits=True)
        train(model, splits, TrainConfig(epochs=40, patience=6, lr=1e-3, seed=seed,
                                         progress=False))
        full.append(float(evaluate(model, splits.test).accuracy))
        t_full += time.perf_counter() - t
        print(f"  {i + 1:2}/{n} {g.describe():48} proxy {proxy[-1]:.3f}  full {full[-1]:.3f}",
              flush=True)
    rho, p = spearmanr(proxy, full)
    print(f"\nSpearman(proxy, full) over {n} genotypes: rho = {rho:.3f} (p = {p:.2g}); proxy "
          f"{t_proxy / n:.1f} s per genotype, full training {t_full / n:.1f} s "
          f"({t_full / max(t_proxy, 1e-9):.1f}x)")
    return {"spearman": float(rho), "p": float(p), "proxy": proxy, "full": full,
            "proxy_s": t_proxy / n, "full_s": t_full / n}


def accuracy_runs(workers: int, budget: int = 60) -> dict:
    from alohac.main import main
    out = {}
    data = [("digits", "digits")]
    root = os.environ.get("ALOHA_DATA")
    if root and os.path.isdir(os.path.join(root, "mnist")):
        data.append(("mnist", f"mnist:{os.path.join(root, 'mnist')}"))
    else:
        print("  MNIST skipped: ALOHA_DATA is not set (shared/data)")
    for name, spec in data:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            import contextlib
            import io
            import json
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                main(["explore", "space:seed-example", "--target", "neuraghe-sabina", "--data",
                      spec, "--objectives", "accuracy,latency,energy", "--budget", str(budget),
                      "--workers", str(workers), "--json", "-o", tmp])
            summary = json.loads(buf.getvalue().strip().splitlines()[-1])
            dt = time.perf_counter() - t
            front = sorted(summary["pareto"], key=lambda p: p["objectives"]["latency_s"])
            print(f"\n  {name}: {summary['evaluations']} evaluations in {dt:.0f} s, front "
                  f"{len(front)}, hypervolume {summary['hypervolume']:.3f}")
            for p in front:
                o = p["objectives"]
                print(f"    {p['genotype']:52} accuracy {o['accuracy']:.3f}  latency "
                      f"{o['latency_s'] * 1e6:8.1f} us  energy {o['energy_j'] * 1e6:8.1f} uJ")
            acc = [p["objectives"]["accuracy"] for p in front]
            trades = len(front) >= 2 and acc[-1] > acc[0]
            print(f"    trades accuracy against latency: {'yes' if trades else 'NO'} "
                  f"(accuracy {acc[0]:.3f} at the fastest point, {max(acc):.3f} at best)")
            out[name] = {"front": front, "seconds": dt, "trades": trades}
    return out


def system_level() -> dict | None:
    try:
        from benchmarks.explore_system import run
    except ImportError:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        try:
            from explore_system import run
        except ImportError:
            print("  system-level search: benchmarks/explore_system.py is missing")
            return None
    return run()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma-separated: search,proxy,runs,system")
    args = ap.parse_args(argv)
    skip = set(args.skip.split(","))
    if "search" not in skip:
        print(f"== 1. NSGA-II vs random search: {args.budget} analytic evaluations x "
              f"{args.seeds} seeds ==")
        nsga_vs_random(args.seeds, args.budget, args.workers)
    if "proxy" not in skip:
        print("\n== 2. proxy ranking: short training vs full training, 20 genotypes (digits) ==")
        proxy_ranking()
    if "runs" not in skip:
        print("\n== 3. accuracy vs latency vs energy, 60 evaluations on neuraghe-sabina ==")
        accuracy_runs(args.workers)
    if "system" not in skip:
        print("\n== 4. system-level mapping search: inception_v1 on neuraghe-arrubiu ==")
        system_level()
    return 0


if __name__ == "__main__":
    sys.exit(main())
