"""Security evaluation, measured.

1. Attack cost: images per second crafting FGSM and PGD-10 (L-inf) against the MNIST CNN, beside
   the same number of forward+backward passes of the model measured in the same run (the attack
   overhead ratio: projection, steps and bookkeeping; aim under 1.3).
2. Fast vs slow evaluation on the MNIST CNN (PGD, L-inf, 0..0.3): wall time of each, the speed-up,
   the difference of the curve averages and the largest pointwise difference at the fast mode's
   epsilons (the seeds: 35 s vs 1845 s with substantially equivalent curves; aim >= 20x, averages
   within 2 points, pointwise within 5).
3. Curves and levels (FGSM, PGD, noise) for the MNIST CNN, mnist-8 and the digits CNN, before and
   after adversarial training (PGD-7, eps 0.2 for MNIST / 0.15 for digits, half of each batch),
   with the curve averages; plots in OUT (default: a temporary directory).

MNIST needs $ALOHA_DATA (../shared/data); without it the MNIST rows are skipped and the digits
CNN stands in for part 1 and 2.

    python benchmarks/security.py [--slow-samples 1000] [--parts 1,2,3] [-o OUT]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch
from aloha_ir.console import console as console_for_tables
from rich.table import Table

# this script's folder first on sys.path would make `security` this file, not the package
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from runtime.torch.attacks import Attack, input_gradient, run_attack  # noqa: E402
from runtime.torch.module import build  # noqa: E402
from runtime.torch.train import TrainConfig, train  # noqa: E402
from frontends.datasets import load  # noqa: E402
from frontends.loader import load_model  # noqa: E402
from security.evaluate import SecurityConfig, evaluate, plot_curves, torch_model  # noqa: E402

console = console_for_tables()


def trained(zoo: str, data: str, epochs: int, augment=None, subset: int = 0):
    """A zoo model trained (or fine-tuned) on `data`; returns (module, splits in [0, 1])."""
    module = load_model(zoo)
    splits = load(data)
    from passes.execution import data_for_model
    from aloha_ir.dialects.nn import graph_of
    model = build(module, logits=True)
    train(model, data_for_model(splits, graph_of(module)),
          TrainConfig(epochs=epochs, progress=False, seed=0, subset=subset), augment=augment)
    model.write_back(module)
    return module, splits.to_range(0.0, 1.0)


def attack_cost(module, x, y, batch: int = 100, repeats: int = 3) -> list[dict]:
    """Images/s for FGSM and PGD-10 against forward+backward passes of the same model."""
    model = torch_model(module, 0.0, 1.0)
    xt, yt = torch.from_numpy(x[:batch]), torch.from_numpy(y[:batch])

    def best(fn):
        fn()  # warm up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)
    passes = best(lambda: [input_gradient(model, xt, yt) for _ in range(10)]) / 10
    rows = []
    for atk, n in ((Attack("fgsm", "inf"), 1), (Attack("pgd", "inf", 10), 10)):
        t = best(lambda: run_attack(model, xt, yt, 0.1, atk, keep_success=False, check=False))
        rows.append({"attack": atk.label, "images_per_s": batch / t,
                     "passes_images_per_s": batch / (n * passes), "overhead": t / (n * passes)})
    t = best(lambda: run_attack(model, xt, yt, 0.1, Attack("pgd", "inf", 10)))
    rows.append({"attack": "PGD-10 + success tracking", "images_per_s": batch / t,
                 "passes_images_per_s": batch / (10 * passes), "overhead": t / (10 * passes)})
    return rows


def fast_vs_slow(module, x, y, slow_samples: int, workers: int) -> dict:
    out = {}
    for mode, samples in (("fast", None), ("slow", slow_samples)):
        t = time.perf_counter()
        rep, _ = evaluate(module, x, y, SecurityConfig(mode=mode, samples=samples,
                                                       workers=workers, noise=False,
                                                       sanity=False),
                          input_range=(0.0, 1.0), name=f"mnist_cnn ({mode})")
        out[mode] = (rep, time.perf_counter() - t)
    fast, slow = out["fast"][0], out["slow"][0]
    # the fast machinery (6 points, warm-started PGD-10) on the slow run's samples: what the mode
    # itself costs in accuracy, apart from which samples it looks at
    same, _ = evaluate(module, x, y, SecurityConfig(mode="fast", samples=slow.samples,
                                                    workers=workers, noise=False, sanity=False),
                       input_range=(0.0, 1.0))

    def gaps(f):
        at = {round(e, 9): a for e, a in zip(slow.eps, slow.accuracy)}
        common = [(a, at[round(e, 9)]) for e, a in zip(f.eps, f.accuracy) if round(e, 9) in at]
        return abs(f.curve_average - slow.curve_average), max(abs(a - b) for a, b in common), \
            len(common)
    avg_diff, max_point, points = gaps(fast)
    same_avg, same_point, _ = gaps(same)
    return {"fast": fast, "slow": slow, "fast_s": out["fast"][1], "slow_s": out["slow"][1],
            "speedup": out["slow"][1] / out["fast"][1], "avg_diff": avg_diff,
            "max_point_diff": max_point, "points": points, "same_samples": same,
            "same_avg_diff": same_avg, "same_max_point_diff": same_point}


def curves(name: str, module, x, y, rng, out: str, samples: int) -> list:
    reps = []
    for attack in ("fgsm", "pgd"):
        rep, _ = evaluate(module, x, y, SecurityConfig(attack=attack, samples=samples),
                          input_range=rng, name=f"{name} {attack}")
        reps.append(rep)
    plot_curves(reps, os.path.join(out, f"{name}.png"), title=f"{name}: FGSM and PGD-10")
    return reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slow-samples", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=500, help="samples for the part-3 curves")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--parts", default="1,2,3")
    ap.add_argument("-o", "--output")
    args = ap.parse_args()
    parts = {int(p) for p in args.parts.split(",")}
    torch.manual_seed(0)
    data = os.environ.get("ALOHA_DATA")
    mnist = f"mnist:{os.path.join(data, 'mnist')}" if data else None
    out = args.output or tempfile.mkdtemp(prefix="aloha-security-")
    os.makedirs(out, exist_ok=True)
    zoo, spec, epochs = ("zoo:mnist_cnn", mnist, 3) if mnist else ("zoo:digits_cnn", "digits", 15)
    label = zoo[4:]
    t = time.perf_counter()
    module, splits = trained(zoo, spec, epochs)
    console.print(f"[dim]{label} trained on {spec} in {time.perf_counter() - t:.0f} s[/dim]")
    x, y = splits.test.x, splits.test.y

    if 1 in parts:
        table = Table(title=f"attack cost on {label} (batches of 100, {torch.get_num_threads()} "
                            "torch threads): crafting vs the same number of forward+backward passes")
        for c in ("attack", "images/s", "fwd+bwd images/s", "overhead ratio"):
            table.add_column(c, justify="right")
        for r in attack_cost(module, x, y):
            table.add_row(r["attack"], f"{r['images_per_s']:.0f}",
                          f"{r['passes_images_per_s']:.0f}", f"{r['overhead']:.2f}")
        console.print(table)

    if 2 in parts:
        fs = fast_vs_slow(module, x, y, args.slow_samples, args.workers)
        plot_curves([fs["fast"], fs["slow"]], os.path.join(out, "fast_vs_slow.png"),
                    title=f"{label}: fast vs slow evaluation (PGD, L-inf)")
        table = Table(title=f"fast vs slow on {label} (workers {args.workers})")
        for c in ("mode", "samples", "points", "steps", "seconds", "curve average"):
            table.add_column(c, justify="right")
        for mode in ("fast", "slow"):
            r = fs[mode]
            table.add_row(mode, str(r.samples), str(len(r.eps)), str(r.steps),
                          f"{fs[mode + '_s']:.1f}", f"{r.curve_average:.4f}")
        console.print(table)
        console.print(f"speed-up {fs['speedup']:.1f}x (aim >= 20); curve averages differ by "
                      f"{100 * fs['avg_diff']:.2f} points (aim <= 2); largest difference at the "
                      f"fast mode's {fs['points']} epsilons {100 * fs['max_point_diff']:.2f} "
                      "points (aim <= 5)")
        same = fs["same_samples"]
        console.print(f"the fast mode on the slow run's {same.samples} samples: averages differ "
                      f"by {100 * fs['same_avg_diff']:.2f} points, pointwise at most "
                      f"{100 * fs['same_max_point_diff']:.2f}; clean accuracy of the first "
                      f"{fs['fast'].samples} samples {fs['fast'].clean_accuracy:.3f}, of "
                      f"{same.samples} {same.clean_accuracy:.3f} (what remains is which samples "
                      "the fast mode looks at)")

    if 3 in parts:
        from runtime.torch.attacks import AdversarialAugment
        from security.evaluate import model_range
        from aloha_ir.dialects.nn import graph_of
        runs = []
        if mnist:
            runs.append(("mnist_cnn", "zoo:mnist_cnn", mnist, 3, 0.2, module))
            runs.append(("mnist-8", "zoo:mnist-8", mnist, 2, 0.2, None))
        runs.append(("digits_cnn", "zoo:digits_cnn", "digits", 15, 0.15,
                     None if mnist else module))
        table = Table(title="security evaluation curves (L-inf 0..0.3, fast mode) before and "
                            "after adversarial training")
        for c in ("model", "clean", "FGSM avg", "PGD avg", "level", "uniform noise at 0.3",
                  "after: clean", "FGSM avg", "PGD avg", "level", "warnings"):
            table.add_column(c, justify="right")
        for name, zoo_name, spec, ep, eps, base in runs:
            if base is None:
                if zoo_name == "zoo:mnist-8":  # imported with weights: evaluated as it is
                    base = load_model(zoo_name)
                else:
                    base, _ = trained(zoo_name, spec, ep)
            test = load(spec).test
            rng = model_range(graph_of(base), None, test.value_range)
            tx, ty = test.to_range(0.0, 1.0).x, test.y
            before = curves(name, base, tx, ty, rng, out, args.samples)
            lo, hi = rng
            aug = AdversarialAugment(Attack("pgd", "inf", 7, random_start=True), eps, lo=lo,
                                     hi=hi)
            robust = load_model(zoo_name)  # mnist-8: its own weights, fine-tuned
            model = build(robust, logits=True)
            from passes.execution import data_for_model
            train(model, data_for_model(load(spec), graph_of(robust)),
                  TrainConfig(epochs=ep, progress=False, seed=0), augment=aug)
            model.write_back(robust)
            after = curves(name + "_adv", robust, tx, ty, rng, out, args.samples)
            plot_curves([before[1], after[1]], os.path.join(out, f"{name}_before_after.png"),
                        title=f"{name}: PGD-10 before and after adversarial training")
            warn = sum(len(r.warnings) for r in before + after)
            table.add_row(name, f"{before[1].clean_accuracy:.3f}",
                          f"{before[0].curve_average:.3f}", f"{before[1].curve_average:.3f}",
                          before[1].level, f"{before[1].noise['uniform'][-1]:.3f}",
                          f"{after[1].clean_accuracy:.3f}", f"{after[0].curve_average:.3f}",
                          f"{after[1].curve_average:.3f}", after[1].level, str(warn))
        console.print(table)
    console.print(f"plots in {out}")


if __name__ == "__main__":
    main()
