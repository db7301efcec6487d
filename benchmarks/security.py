"""Security evaluation, measured.

1. Attack cost: images per second crafting FGSM and PGD-10 (L-inf) against the MNIST CNN, beside
   the same number of forward+backward passes of the model measured in the same run (the attack
   overhead ratio: projection, steps and bookkeeping; aim under 1.3).
2. Fast vs slow evaluation on the MNIST CNN (PGD, L-inf, 0..0.3): wall time of each, the speed-up
   in wall time and in the model's forward+backward passes (from the reports' metrics: the figure
   the machine's load does not change), the difference of the curve averages and the largest
   pointwise difference at the fast mode's epsilons (the seeds: 35 s vs 1845 s with substantially
   equivalent curves; aim >= 20x, averages within 2 points, pointwise within 5). Measured with the
   stratified samples (defaults, 2 workers, MNIST from shared/data trained on its 6309 images, a
   machine loaded 3x over): fast 100 samples 12.9 s, slow 1000 samples 1237.7 s: 96x in wall time,
   58x in passes (10,600 against 616,000); curve averages 0.3730 and 0.3766 (0.36 points apart),
   at most 3.80 points apart at the fast mode's 6 epsilons. The fast machinery on the slow run's
   1000 samples: 0.39 points on average, at most 1.20 pointwise, so what remains is sampling:
   100 samples carry a binomial standard error of up to 5 points per epsilon (on the digits CNN,
   200 other seeds' draws of 100 of the 359 slow samples met the pointwise aim 75% of the time,
   the average aim 92%). Before the stratified draw (the first 100 images): 37x, 3.1 and 8.2.
3. Curves and levels (FGSM, PGD, noise) for the MNIST CNN, mnist-8 and the digits CNN, before and
   after adversarial training (PGD-7, eps 0.2 for MNIST / 0.15 for digits, half of each batch),
   with the curve averages; plots in OUT (default: a temporary directory).
4. Minimum-norm curves on the MNIST CNN, same samples: the 20-point L-inf (0..0.3) and L2 (0..3)
   curves from one FMN run (slow mode: FMN-50 with its PGD-20 check at the grid epsilon below each
   sample's distance) against 20 per-epsilon PGD runs, and FMN's robust accuracy against PGD-100
   with 5 random restarts at every epsilon (aim: never more than 1 point above; the samples FMN
   leaves robust that the reference fools are counted per epsilon). The times, and FMN's share
   of each (aim <= 1/5 of ours): ours as the slow mode runs them (PGD-20 from the clean input:
   the curve FMN replaces, same code, same process, the comparator the aim refers to); ART's
   SecurityCurve (`pip install -e .[bench]`) at max_iter 20, the same number of steps; and, on
   `--fmn-costly-samples` of the samples, per sample, ours at PGD-100 and ART at its defaults
   (max_iter 100), five times the steps of either. The reference costs more than the rest
   together: `--reference-cache DIR` keeps it between runs. The plot goes to
   OUT/security-fmn.png (the README's docs/security-fmn.png: `--fmn-plot docs/security-fmn.png`).

MNIST needs $ALOHA_DATA (../shared/data); without it the MNIST rows are skipped and the digits
CNN stands in for part 1 and 2.

    python benchmarks/security.py [--slow-samples 1000] [--parts 1,2,3,4] [-o OUT]
        [--fmn-samples 200] [--fmn-costly-samples 25] [--reference-cache DIR]
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
from security.evaluate import (SecurityConfig, epsilon_axes, evaluate, plot_curves,  # noqa: E402
                               torch_model)

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
            "passes": {mode: passes_of(out[mode][0]) for mode in out},
            "max_point_diff": max_point, "points": points, "same_samples": same,
            "same_avg_diff": same_avg, "same_max_point_diff": same_point}


def passes_of(rep) -> float:
    """The model's forward+backward passes over a whole evaluation (its metrics)."""
    return rep.samples * sum(m["forward_per_sample"] + m["backward_per_sample"]
                             for m in rep.metrics)


def curves(name: str, module, x, y, rng, out: str, samples: int) -> list:
    reps = []
    for attack in ("fgsm", "pgd"):
        rep, _ = evaluate(module, x, y, SecurityConfig(attack=attack, samples=samples),
                          input_range=rng, name=f"{name} {attack}")
        reps.append(rep)
    plot_curves(reps, os.path.join(out, f"{name}.png"), title=f"{name}: FGSM and PGD-10")
    return reps


def _reference_key(module, x, y, eps, norm: str, steps: int, restarts: int, seed: int) -> str:
    """What the PGD-100 x 5 reference depends on: the weights, the samples, the grid, the attack."""
    import hashlib
    h = hashlib.sha256()
    for name, value in sorted(torch_model(module, 0.0, 1.0).state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().contiguous().numpy().tobytes())
    h.update(x.tobytes())
    h.update(y.tobytes())
    h.update(repr(([float(e) for e in eps], norm, steps, restarts, seed)).encode())
    return h.hexdigest()[:20]


def pgd_restarts(module, x, y, eps: list[float], norm: str, steps: int = 100,
                 restarts: int = 5, seed: int = 0, cache: str | None = None):
    """Per epsilon and sample, whether PGD-`steps` with `restarts` random starts leaves the sample
    classified correctly (robust only when every restart fails): a bool array [eps, samples], and
    the seconds it took. With `cache` (a folder) the array is kept under a hash of everything it
    depends on (weights, samples, grid, attack, seed) and reused by a later run: the reference
    costs more than everything else in part 4 together."""
    import numpy as np
    path = None
    if cache:
        os.makedirs(cache, exist_ok=True)
        key = _reference_key(module, x, y, eps, norm, steps, restarts, seed)
        path = os.path.join(cache, f"pgd{steps}x{restarts}-{key}.npz")
        if os.path.exists(path):
            saved = np.load(path)
            return saved["robust"], float(saved["seconds"])
    t = time.perf_counter()
    model = torch_model(module, 0.0, 1.0)
    gen = torch.Generator().manual_seed(seed)
    atk = Attack("pgd", norm, steps, random_start=True)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    out = np.zeros((len(eps), len(x)), bool)
    for j, e in enumerate(eps):
        robust = torch.ones(len(x), dtype=torch.bool)
        for _ in range(restarts if e > 0 else 1):
            for s in range(0, len(x), 100):
                alive = torch.nonzero(robust[s:s + 100]).squeeze(1) + s
                if len(alive):
                    r = run_attack(model, xt[alive], yt[alive], e, atk, generator=gen)
                    robust[alive] = r.correct
        out[j] = robust.numpy()
    seconds = time.perf_counter() - t
    if path:
        np.savez(path, robust=out, seconds=seconds)
    return out, seconds


def art_curve(module, x, y, eps: list[float], norm: str, max_iter: int | None = None):
    """ART's SecurityCurve on the same model and samples: (accuracies, seconds), or None when
    adversarial-robustness-toolbox is not installed. ART's PGD runs at its own defaults (step 0.1,
    absolute; max_iter 100) unless `max_iter` is given."""
    try:
        from art.estimators.classification import PyTorchClassifier
        from art.evaluations.security_curve import SecurityCurve
    except ImportError:
        return None
    import numpy as np
    model = torch_model(module, 0.0, 1.0)
    with torch.no_grad():
        classes = model(torch.from_numpy(x[:1])).shape[1]
    clf = PyTorchClassifier(model, torch.nn.CrossEntropyLoss(), x.shape[1:], classes,
                            clip_values=(0.0, 1.0), device_type="cpu")
    extra = {} if max_iter is None else {"max_iter": max_iter}
    t = time.perf_counter()
    _, accuracy, _ = SecurityCurve([float(e) for e in eps]).evaluate(
        clf, x, np.eye(classes)[y], norm=np.inf if norm == "inf" else 2, batch_size=100,
        verbose=False, **extra)
    return [float(a) for a in accuracy], time.perf_counter() - t


def fmn_vs_pgd(module, x, y, samples: int, seed: int = 0,
               norms: tuple[str, ...] = ("inf", "2"), costly_samples: int = 0,
               cache: str | None = None) -> list[dict]:
    """Part 4, per norm: the curves, times and gaps on `samples` samples; the comparators that
    cost 100 steps per epsilon (ours at PGD-100, ART at its defaults) on the first
    `costly_samples` of them, compared per sample."""
    from security.sampling import select_samples
    import numpy as np
    idx = select_samples(y, samples, seed)
    xs, ys = x[idx], y[idx]
    rows = []
    for norm in norms:
        stop = {"inf": 0.3, "2": 3.0}[norm]
        eps = tuple(float(e) for e in np.linspace(stop / 20, stop, 20))  # 20 points above 0
        common = dict(norm=norm, eps=eps, mode="slow", noise=False, sanity=False, seed=seed)
        t = time.perf_counter()
        fmn, _ = evaluate(module, xs, ys, SecurityConfig(attack="fmn", **common),
                          input_range=(0.0, 1.0), name="FMN")
        fmn_s = time.perf_counter() - t
        t = time.perf_counter()
        pgd, _ = evaluate(module, xs, ys, SecurityConfig(attack="pgd", **common),
                          input_range=(0.0, 1.0), name="PGD")
        pgd_s = time.perf_counter() - t
        art = art_curve(module, xs, ys, list(eps), norm, max_iter=20)
        robust, ref_s = pgd_restarts(module, xs, ys, list(eps), norm, seed=seed, cache=cache)
        ref = [float(v) for v in robust.mean(1)]
        row = {"norm": norm, "eps": list(eps), "fmn": fmn, "fmn_s": fmn_s, "pgd": pgd,
               "pgd_s": pgd_s, "art": art, "reference": ref, "reference_s": ref_s,
               "gaps": [a - r for a, r in zip(fmn.accuracy, ref)]}
        row["above"] = max(row["gaps"])
        # per epsilon, the samples FMN leaves robust that the reference fools
        d = np.array(fmn.distances)
        row["missed"] = [int(((d > e) & ~robust[j]).sum()) for j, e in enumerate(eps)]
        if costly_samples:
            k = min(costly_samples, len(xs))
            sub = select_samples(ys, k, seed)
            t = time.perf_counter()
            evaluate(module, xs[sub], ys[sub], SecurityConfig(attack="pgd", steps=100, **common),
                     input_range=(0.0, 1.0))
            row["pgd100_s_per_sample"] = (time.perf_counter() - t) / k
            art100 = art_curve(module, xs[sub], ys[sub], list(eps), norm)
            row["art100_s_per_sample"] = art100[1] / k if art100 else None
            row["costly_samples"] = k
        rows.append(row)
    return rows


def plot_fmn(rows: list[dict], path: str, label: str) -> str:
    """FMN's curve beside PGD-20's and the PGD-100 x 5 reference, one panel per norm."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(rows), figsize=(5.2 * len(rows), 3.9), squeeze=False)
    for ax, r in zip(axes[0], rows):
        f = r["fmn"]
        check = f.pgd_check["attack"]
        ax.plot(r["eps"], f.accuracy, "-o", ms=3, color="C0",
                label=f"FMN-{f.steps}" + (f" + {check} check" if check else "") +
                f", one run ({r['fmn_s']:.0f} s)")
        ax.plot(r["eps"], r["pgd"].accuracy, "--s", ms=3, color="C1",
                label=f"PGD-{r['pgd'].steps} per epsilon ({r['pgd_s']:.0f} s)")
        ax.plot(r["eps"], r["reference"], ":", color="k",
                label=f"PGD-100, 5 random restarts ({r['reference_s']:.0f} s)")
        if r["art"]:
            ax.plot(r["eps"], r["art"][0], "-.", color="C2",
                    label=f"ART SecurityCurve, max_iter 20 ({r['art'][1]:.0f} s)")
        if f.median_distance is not None and f.median_distance < r["eps"][-1]:
            ax.axvline(f.median_distance, color="C0", alpha=0.4, lw=1)
            ax.annotate(f"median distance {f.median_distance:.3g}", (f.median_distance, 0.52),
                        fontsize=7, color="C0")
        norm = epsilon_axes(ax, r["norm"], "robust accuracy")
        ax.legend(fontsize=7, loc="upper right")
        ax.set_title(f"{label}, {f.samples} samples, {norm}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slow-samples", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=500, help="samples for the part-3 curves")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--parts", default="1,2,3,4")
    ap.add_argument("--fmn-samples", type=int, default=200, help="samples for part 4")
    ap.add_argument("--fmn-plot", help="part 4's plot (default: OUT/security-fmn.png)")
    ap.add_argument("--fmn-norms", default="inf,2", help="part 4's norms")
    ap.add_argument("--fmn-costly-samples", type=int, default=25,
                    help="part 4: samples for the 100-step comparators (0: skip them)")
    ap.add_argument("--reference-cache", help="part 4: a folder keeping the PGD-100 x 5 "
                    "reference between runs (keyed by weights, samples and grid)")
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
        for c in ("mode", "samples", "points", "steps", "seconds", "fwd+bwd passes",
                  "curve average"):
            table.add_column(c, justify="right")
        for mode in ("fast", "slow"):
            r = fs[mode]
            table.add_row(mode, str(r.samples), str(len(r.eps)), str(r.steps),
                          f"{fs[mode + '_s']:.1f}", f"{fs['passes'][mode]:.0f}",
                          f"{r.curve_average:.4f}")
        console.print(table)
        console.print(f"speed-up {fs['speedup']:.1f}x in wall time, "
                      f"{fs['passes']['slow'] / fs['passes']['fast']:.1f}x in passes (aim >= "
                      "20); curve averages differ by "
                      f"{100 * fs['avg_diff']:.2f} points (aim <= 2); largest difference at the "
                      f"fast mode's {fs['points']} epsilons {100 * fs['max_point_diff']:.2f} "
                      "points (aim <= 5)")
        same = fs["same_samples"]
        console.print(f"the fast mode on the slow run's {same.samples} samples: averages differ "
                      f"by {100 * fs['same_avg_diff']:.2f} points, pointwise at most "
                      f"{100 * fs['same_max_point_diff']:.2f}; clean accuracy of the fast "
                      f"mode's {fs['fast'].samples} samples {fs['fast'].clean_accuracy:.3f}, of "
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
    if 4 in parts:
        rows = fmn_vs_pgd(module, x, y, args.fmn_samples,
                          norms=tuple(args.fmn_norms.split(",")),
                          costly_samples=args.fmn_costly_samples, cache=args.reference_cache)

        def passes(rep):  # the model's passes per sample over the whole curve: load-independent
            return (f"{sum(m['forward_per_sample'] for m in rep.metrics):.0f}+"
                    f"{sum(m['backward_per_sample'] for m in rep.metrics):.0f}")
        n = rows[0]["fmn"].samples
        table = Table(title=f"minimum-norm curves on {label}: one FMN run vs 20 per-epsilon "
                            f"PGD runs, {n} samples")
        for c in ("norm", "FMN s", "PGD-20 x 20 s", "FMN share", "FMN fwd+bwd/sample",
                  "PGD-20 fwd+bwd/sample", "ART (max_iter 20) s", "FMN share of ART",
                  "PGD check lowered", "median distance", "max FMN - PGD-100x5 (points)"):
            table.add_column(c, justify="right")
        for r in rows:
            art = r["art"]
            table.add_row(r["norm"], f"{r['fmn_s']:.1f}", f"{r['pgd_s']:.1f}",
                          f"{r['fmn_s'] / r['pgd_s']:.3f}", passes(r["fmn"]), passes(r["pgd"]),
                          f"{art[1]:.1f}" if art else "not installed",
                          f"{r['fmn_s'] / art[1]:.3f}" if art else "-",
                          str(r["fmn"].pgd_check["samples"]),
                          f"{r['fmn'].median_distance:.4g}", f"{100 * r['above']:.1f}")
        console.print(table)
        if args.fmn_costly_samples:
            table = Table(title="the comparators at 100 steps per epsilon (ours PGD-100, ART at "
                                f"its defaults) on {rows[0]['costly_samples']} of the samples: "
                                "seconds per sample")
            for c in ("norm", "FMN", "PGD-100 x 20", "FMN share", "ART (defaults)",
                      "FMN share of ART"):
                table.add_column(c, justify="right")
            for r in rows:
                fmn_ps, art_ps = r["fmn_s"] / n, r["art100_s_per_sample"]
                table.add_row(r["norm"], f"{fmn_ps:.3f}", f"{r['pgd100_s_per_sample']:.3f}",
                              f"{fmn_ps / r['pgd100_s_per_sample']:.3f}",
                              f"{art_ps:.3f}" if art_ps else "not installed",
                              f"{fmn_ps / art_ps:.3f}" if art_ps else "-")
            console.print(table)
        for r in rows:
            console.print(f"L{r['norm']} eps " + " ".join(f"{e:.3g}" for e in r["eps"]))
            for name, acc in (("FMN", r["fmn"].accuracy), ("PGD-20", r["pgd"].accuracy),
                              ("PGD-100x5", r["reference"])) + \
                    ((("ART-20", r["art"][0]),) if r["art"] else ()):
                console.print(f"  {name:<10}" + " ".join(f"{a:.3f}" for a in acc))
            console.print("  FMN - ref " + " ".join(f"{100 * g:+.1f}" for g in r["gaps"]))
            console.print("  missed    " + " ".join(f"{v:d}" for v in r["missed"])
                          + f"  (samples FMN leaves robust that PGD-100 x 5 fools; the "
                          f"reference took {r['reference_s']:.0f} s)")
        if rows[0]["art"] is None:
            console.print("[dim]ART not installed (pip install -e .[bench]): its column is "
                          "skipped[/dim]")
        console.print("aims: FMN share <= 0.2 of the PGD-20 x 20 runs; FMN never more than 1 "
                      "point above PGD-100 x 5")
        path = plot_fmn(rows, args.fmn_plot or os.path.join(out, "security-fmn.png"), label)
        console.print(f"wrote {path}")
    console.print(f"plots in {out}")


if __name__ == "__main__":
    main()
