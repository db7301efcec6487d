"""`alohac explore`: architecture-aware search over a genotype space (explore/), with its outputs.

Writes to OUT: pareto.json (every scenario's front, its chosen point and the run's counts),
pareto.csv (the main front), evaluations.csv (every point evaluated), pareto.png, pareto/*.onnx
(the model of every front point: proxy-trained when accuracy or security is an objective),
scenarios/NAME.json and NAME.onnx (each scenario's chosen point), and the cache (explore.sqlite by
default) that lets a stopped run resume.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
import time

from aloha_ir.errors import UsageError

SPACE_HELP = """\
SPACE is a YAML/TOML file or a bundled space: space:seed-example (the seeds' genotype: 2..5
convolutions of 5..20 maps, a pooling, 1..5 dense layers of 10..20 neurons), space:vgg-like (1..5
groups of 2..3 conv3x3 and a max pool, then 1..2 dense layers), space:tabular-mlp (1..3 dense
layers of 4..64 neurons, for --data tabular:NAME:ATTR). A space file:

    name: my-space
    input: [1, 28, 28]            # C, H, W (the --data shape wins)
    classes: 10
    invalid: repair               # or reject
    layers:
      - dataI
      - {type: Convolution, count: [2, 5], maps: [5, 20], kernel: {choices: [3, 5]}}
      - {type: Pooling, mode: max, kernel: 2, stride: 2}
      - {type: DenseBlock, count: [1, 5], neurons: [10, 20]}
      - dataO
    scenarios:                    # optional operating modes, each with its own front and choice
      - {name: fast, constraints: ["latency<=0.2ms"], choose: "max:accuracy"}
      - {name: frugal, constraints: ["energy<=0.1mJ", "accuracy>=0.8"], choose: knee}

Objectives: accuracy (proxy training: successive halving over learning rates), security (fast
PGD curve average), latency, energy, memory, processors (the target analyses), params, macs,
dp_difference (alias fairness) and eo_difference (the proxy's test predictions across the first
sensitive attribute of --data tabular:NAME:ATTR).
Constraints: FIGURE<=VALUE or FIGURE>=VALUE with units (latency<=2ms, memory<=1MiB,
accuracy>=0.9); they stay constraints in the search, never penalties.
"""


def add_parser(sub, epilog: str) -> None:
    from alohac.learn import DATA_HELP
    p = sub.add_parser(
        "explore", help="design-space exploration: NSGA-II/random/grid search over a genotype "
                        "space, Pareto fronts per scenario",
        description="Search SPACE for networks that trade the objectives on --target, and write "
                    "each scenario's Pareto front, its chosen point and their ONNX models to OUT. "
                    "Evaluations are cached (--cache): a stopped run started again resumes, and "
                    "points seen before are free.\n\n" + SPACE_HELP,
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("space", metavar="SPACE", help="a .yaml/.toml space file or space:NAME")
    p.add_argument("--target", metavar="PLATFORM", help="platform for latency/energy/memory/"
                                                        "processors (`alohac list platforms`)")
    p.add_argument("--bits", type=int, choices=(8, 16, 32), help="deployment precision for the "
                                                                 "target's cost model")
    p.add_argument("--data", metavar="DATA", help=DATA_HELP + "; needed for accuracy/security, "
                                                              "and gives the input shape")
    p.add_argument("--objectives", default="accuracy,latency,energy",
                   help="comma-separated (default: accuracy,latency,energy)")
    p.add_argument("--constraint", action="append", default=[], metavar="EXPR",
                   help="FIGURE<=VALUE or >=, repeatable; applies to every scenario")
    p.add_argument("--scenarios", metavar="FILE.yaml", help="a YAML list of scenarios (else the "
                                                            "space's own, else one 'default')")
    p.add_argument("--choose", default="knee", help="the default scenario's rule: knee, "
                                                    "max:FIGURE or min:FIGURE (default knee)")
    p.add_argument("--algorithm", default="nsga2", choices=("nsga2", "random", "grid"),
                   help="nsga2: evolutionary search; random: uniform samples; grid: every "
                        "combination in order, up to the budget")
    p.add_argument("--budget", type=int, default=60, help="design points to evaluate (cached "
                                                          "ones included; default 60)")
    p.add_argument("--pop-size", type=int, default=0, help="NSGA-II population (default: about "
                                                           "budget/5, 8..40)")
    p.add_argument("--seed", type=int, default=0, help="the search's seed (default: 0)")
    p.add_argument("--eval-seed", type=int, default=0,
                   help="seed of the data split and the proxy's initial weights (part of the "
                        "cache's key, unlike --seed)")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default "
                                                             "1; 0 evaluates in this process)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="a Dask scheduler: evaluate on "
                                                                  "its cluster")
    p.add_argument("--cache", metavar="FILE", help="SQLite cache of evaluations (default "
                                                   "OUT/explore.sqlite); models live beside it")
    p.add_argument("--proxy-epochs", type=int, default=16,
                   help="successive-halving budget in epochs over all learning rates (default 16)")
    p.add_argument("--proxy-subset", type=int, default=1024,
                   help="training samples of the proxy (default 1024; 0 = all)")
    p.add_argument("--lrs", default="3e-3,1e-3,3e-4,1e-4", help="learning rates the halving "
                                                                 "picks from")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output directory")
    p.set_defaults(func=cmd_explore)


def _settings(args, space, objectives, scenarios, models_dir):
    from explore.objectives import TARGET_FIGURES, TRAINED, EvalSettings
    from explore.space import resolve_io
    constrained = sorted({c.figure for s in scenarios for c in s.constraints})
    wanted = set(objectives) | set(constrained)
    if wanted & set(TARGET_FIGURES) and not args.target:
        raise UsageError(", ".join(sorted(wanted & set(TARGET_FIGURES))) +
                         " (objectives or constraints) need --target PLATFORM")
    if wanted & set(TRAINED) and not args.data:
        raise UsageError(", ".join(sorted(wanted & set(TRAINED))) +
                         " (objectives or constraints) need --data (e.g. --data digits)")
    if args.bits and not args.target:
        raise UsageError("--bits sets the target's precision: it needs --target")
    data_shape = classes = None
    if args.data:
        from explore.objectives import dataset_splits
        train = dataset_splits(args.data, args.eval_seed).train
        data_shape, classes = train.input_shape, train.classes
    shape, classes = resolve_io(space, data_shape, classes)
    try:
        lrs = tuple(float(x) for x in args.lrs.split(",") if x.strip())
    except ValueError:
        lrs = ()
    if not lrs or min(lrs) <= 0 or len(set(lrs)) != len(lrs):
        raise UsageError(f"--lrs '{args.lrs}' must be distinct positive numbers, comma-separated")
    if args.proxy_epochs < 1 or args.proxy_subset < 0:
        raise UsageError("--proxy-epochs must be >= 1 and --proxy-subset >= 0")
    if args.target:
        from archdesc.loader import load_platform
        load_platform(args.target)  # a bad name fails now, not in every worker
    cores = os.cpu_count() or 1
    # a Dask worker sets its own threads; local workers share this machine's cores
    threads = 0 if args.scheduler else max(1, cores // max(1, args.workers))
    return EvalSettings(tuple(shape), classes, tuple(objectives), target=args.target,
                        bits=args.bits or 0, data=args.data, lrs=lrs,
                        proxy_epochs=args.proxy_epochs, proxy_subset=args.proxy_subset,
                        seed=args.eval_seed, figures=tuple(constrained), models_dir=models_dir,
                        threads=threads)


def _check_options(args) -> None:
    """Options that would otherwise be silently ignored, and numbers out of range."""
    if not 0 <= args.seed < 2 ** 32 or not 0 <= args.eval_seed < 2 ** 32:
        raise UsageError("--seed and --eval-seed must be in [0, 2**32)")
    if args.pop_size and args.algorithm != "nsga2":
        raise UsageError(f"--pop-size applies to nsga2, not {args.algorithm}")
    if args.scheduler and args.workers is not None:
        raise UsageError("--workers counts local processes; with --scheduler the cluster's "
                         "workers evaluate", hint="drop one of them")
    if args.workers is not None and args.workers < 0:
        raise UsageError("--workers must be >= 0")
    if args.workers is None and not args.scheduler:
        args.workers = 1  # the documented default; None only means "not given" (vs --scheduler)


def _scenarios(args, space, objectives):
    from explore.scenarios import Scenario, check_choose, parse_constraint, parse_scenarios
    common = tuple(parse_constraint(c) for c in args.constraint)
    if args.scenarios:
        import yaml
        try:
            with open(args.scenarios) as f:
                entries = yaml.safe_load(f)
        except OSError as e:
            raise UsageError(f"cannot read --scenarios: {e.strerror or e}",
                             where=args.scenarios) from None
        except yaml.YAMLError as e:
            raise UsageError(f"--scenarios is not valid YAML: {e}", where=args.scenarios) from None
        if isinstance(entries, dict):
            entries = entries.get("scenarios")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise UsageError("--scenarios must hold a list of {name, constraints, choose}",
                             where=args.scenarios)
        scenarios = parse_scenarios(entries, objectives, args.scenarios)
    elif space.scenarios:
        scenarios = parse_scenarios(space.scenarios, objectives, f"{space.source}: scenarios")
    else:
        scenarios = [Scenario("default", (), check_choose(args.choose, objectives))]
    if args.choose != "knee" and (args.scenarios or space.scenarios):
        raise UsageError("--choose is the default scenario's rule; the scenarios given have "
                         "their own (`choose:` in each)")
    return [Scenario(s.name, common + s.constraints, s.choose, s.description)
            for s in scenarios]


def _executor(args):
    if args.scheduler:
        from explore.executor import make_executor
        return make_executor(scheduler=args.scheduler)
    if args.workers == 0:
        return None
    from explore.executor import make_executor
    return make_executor(workers=args.workers)


class _Progress:
    """One line per evaluated point: its figures, the main scenario's front size and
    hypervolume (above a bar on a terminal)."""

    def __init__(self, total: int, objectives, scenario):
        from aloha_ir.console import Progress
        self.objectives, self.scenario, self.last, self.status = objectives, scenario, 0.0, ""
        self.bar = Progress("explore", total=total)

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

    def __call__(self, evals, point) -> None:
        from aloha_ir.figures import label, show
        now = time.monotonic()
        if now - self.last > 0.5 or len(evals) >= (self.bar.total or 0):
            from explore.search import bounds_of, hypervolume, pareto_front
            self.last = now
            points = list(evals.points.values())
            front = pareto_front(points, self.objectives, self.scenario, evals.settings)
            hv = hypervolume(front, self.objectives, bounds_of(points, self.objectives))
            self.status = f"front {len(front)}, hypervolume {hv:.3f}"
        what = ", ".join(f"{label(o)} {show(o, point.figures.get(o))}" for o in self.objectives
                         ) if point.ok else f"failed: {point.error}"
        self.bar.step(f"point {len(evals)}/{self.bar.total}" + (" (cached)" if point.cached
                                                                   else "") +
                      f": {what}; {self.status}", completed=len(evals))


# the explorer's parameters, as its errors name them (`where`) -> this command's flags
PARAMETER_FLAGS = {"scheduler": "--scheduler", "workers": "--workers",
                   "objectives": "--objectives", "proxy_epochs": "--proxy-epochs"}


def cmd_explore(args) -> int:
    """`alohac explore`; an error about one of the explorer's parameters names its flag."""
    from alohac.run import in_flags
    with in_flags(PARAMETER_FLAGS):
        return _explore(args)


def _explore(args) -> int:
    from aloha_ir.errors import Interrupted, PassError
    from aloha_ir.outputs import check_file, check_folder
    from explore.objectives import parse_objectives
    from explore.search import SearchConfig, explore
    from explore.space import load_space
    _check_options(args)
    space = load_space(args.space)
    objectives = parse_objectives(args.objectives)
    scenarios = _scenarios(args, space, objectives)
    config = SearchConfig(args.algorithm, args.budget, args.pop_size, args.seed,
                          batch=max(8, 2 * (args.workers or 1)))
    out = args.output
    check_folder(out)
    cache_path = args.cache or os.path.join(out, "explore.sqlite")
    if args.cache:
        check_file(cache_path)
    models_dir = os.path.join(os.path.dirname(os.path.abspath(cache_path)), "models")
    settings = _settings(args, space, objectives, scenarios, models_dir)
    from explore.cache import EvaluationCache
    log = sys.stderr if args.json else sys.stdout
    executor = _executor(args)
    try:
        with EvaluationCache(cache_path) as cache, \
                _Progress(args.budget, objectives, scenarios[0]) as progress:
            context = cache.context(settings.context())
            if cache.count(context):  # a resumed run, or a new one over points seen before
                print(f"{cache.count(context)} points from the cache {cache_path} (evaluated "
                      "before with these settings: not again)", file=sys.stderr)
            try:
                result = explore(space, settings, scenarios, config, cache=cache,
                                 executor=executor, on_point=progress)
            except KeyboardInterrupt:
                if executor is not None:
                    executor.terminate()  # now: a running point would take minutes
                raise Interrupted(f"{cache.count(context)} points cached in {cache_path}; run "
                                  "the same command again to resume from them") from None
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    if result.evaluations and result.failures == result.evaluations:
        first = next(p for p in result.points if not p.ok)
        raise PassError(f"all {result.evaluations} evaluations failed; the first: {first.error}",
                        hint="run with --workers 0 --debug to see where")
    args.cache = cache_path
    written = write_outputs(result, space, settings, args, out)
    for w in written:
        print(f"wrote {w}", file=log)
    summary = summary_json(result, args, space, cache_path)
    if args.json:
        print(json.dumps(summary))
    else:
        _print_front(result)
        print(f"{result.evaluations} evaluations ({result.new_evaluations} new, "
              f"{result.evaluations - result.new_evaluations} from the cache, "
              f"{result.failures} failed) in {result.seconds:.1f} s; hypervolume "
              f"{result.main.hypervolume:.4f}")
    _fail_on_empty_fronts(result, out)
    return 0


def _fail_on_empty_fronts(result, out: str) -> None:
    """A scenario whose front is empty is a failed search, not a success with nothing in it: say
    which constraint kept the closest point out, after the outputs are written."""
    from aloha_ir.errors import NoFeasiblePointError
    from aloha_ir.figures import show
    empty = [s for s in result.scenarios if not s.front]
    if not empty:
        return
    ok = [p for p in result.points if p.ok]
    parts = []
    for s in empty:
        cons = s.scenario.constraints
        text = f"scenario '{s.scenario.name}' ({', '.join(c.text for c in cons)})"
        if ok and cons:
            near = min(ok, key=lambda p: max(c.violation(p.figures) for c in cons))
            text += "; closest: " + ", ".join(
                f"{c.figure} {show(c.figure, near.figures.get(c.figure))}" for c in cons)
        parts.append(text)
    raise NoFeasiblePointError(
        f"no point of the {len(result.points)} evaluated meets the constraints of " +
        "; ".join(parts), where=out,
        hint="relax the constraints or widen the space; evaluations.csv has every point")


def summary_json(result, args, space, cache_path: str) -> dict:
    objs = result.objectives
    main = result.main
    return {"space": space.name, "target": args.target, "data": args.data,
            "algorithm": args.algorithm, "objectives": objs,
            "pareto": [p.to_json(objs) for p in main.front],
            "chosen": main.chosen.to_json(objs) if main.chosen else None,
            "scenarios": {s.scenario.name: s.to_json(objs) for s in result.scenarios},
            "evaluations": result.evaluations, "new_evaluations": result.new_evaluations,
            "failures": result.failures, "hypervolume": main.hypervolume,
            "empty_scenarios": [s.scenario.name for s in result.scenarios if not s.front],
            "hypervolume_bounds": {k: list(v) for k, v in result.bounds.items()},
            "cache": cache_path, "seconds": result.seconds, "output": args.output}


def write_outputs(result, space, settings, args, out: str) -> list[str]:
    """Every output staged and swapped in whole (aloha_ir/outputs.py), so an interrupted write
    leaves the previous outputs as they were; the cache and its models are not among them."""
    from aloha_ir.outputs import Staged, write_text
    objs = result.objectives
    fronts = {id(p) for s in result.scenarios for p in s.front}
    with Staged(out, "explore", log=sys.stderr) as staged:
        written = []
        os.makedirs(staged.path("pareto"))
        for p in result.points:
            if id(p) in fronts and p.result and p.result.get("onnx"):
                name = f"{p.key[:16]}.onnx"
                shutil.copyfile(p.result["onnx"], staged.path("pareto", name))
                written.append(staged.path("pareto", name))
                p.result = {**p.result, "onnx": os.path.join(out, "pareto", name)}
        for s in result.scenarios:
            written.append(write_text(staged.path("scenarios", f"{s.scenario.name}.json"),
                                      json.dumps(s.to_json(objs), indent=1) + "\n"))
            if s.chosen and s.chosen.result.get("onnx"):
                written.append(staged.path("scenarios", f"{s.scenario.name}.onnx"))
                shutil.copyfile(staged.path("pareto", os.path.basename(s.chosen.result["onnx"])),
                                written[-1])
        written.append(write_text(staged.path("pareto.json"), json.dumps(
            {"space": space.to_json(), "settings": settings.context(),
             **summary_json(result, args, space, args.cache)}, indent=1) + "\n"))
        written.append(_csv(staged.path("pareto.csv"), result.main.front, objs))
        written.append(_csv(staged.path("evaluations.csv"),
                            sorted(result.points, key=lambda p: p.order), objs))
        written.append(plot(result, staged.path("pareto.png"),
                            plot_title(space, settings, args, result)))
    return [staged.final(w) for w in written]


def _csv(path: str, points, objectives) -> str:
    from aloha_ir.outputs import write_text
    extra = ["params", "macs", "latency_s", "energy_j", "memory_bytes", "processors",
             "accuracy", "test_accuracy", "security"]
    cols = list(dict.fromkeys(objectives + [e for e in extra if e not in objectives]))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["key", "genotype"] + cols + ["cached", "error", "onnx"])
    for p in points:
        w.writerow([p.key[:16], p.genotype.describe()] + [p.figures.get(c, "") for c in cols]
                   + [int(p.cached), p.error or "", (p.result or {}).get("onnx") or ""])
    return write_text(path, buf.getvalue())


def plot(result, path: str, title: str) -> str:
    """One panel per objective beyond the first, against the first: every evaluated point, each
    scenario's front (a step line) and its chosen point (a star); axes in words and units."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aloha_ir.figures import axis, log_scale
    from explore.objectives import OBJECTIVES
    objs = result.objectives
    y = "accuracy" if "accuracy" in objs else objs[0]
    xs = [o for o in objs if o != y]
    fig, axes = plt.subplots(1, len(xs), figsize=(5.2 * len(xs), 4.4), squeeze=False)
    ok = [p for p in result.points if p.ok]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fy, ylabel = axis(y, [p.figures[y] for p in ok])
    for ax, x in zip(axes[0], xs):
        fx, xlabel = axis(x, [p.figures[x] for p in ok])

        def at(points):
            return [p.figures[x] / fx for p in points], [p.figures[y] / fy for p in points]
        ax.scatter(*at(ok), s=12, c="0.75", label="evaluated")
        for k, s in enumerate(result.scenarios):
            c = colours[k % len(colours)]
            ax.plot(*at(sorted(s.front, key=lambda p: p.figures[x])), "o-", ms=4, color=c,
                    label=f"front: {s.scenario.name}" if len(result.scenarios) > 1 else "front")
            if s.chosen:
                ax.scatter(*at([s.chosen]), marker="*", s=180, color=c, edgecolors="k", zorder=5,
                           label=f"chosen: {s.scenario.name}")
        positive = all(p.figures[x] > 0 for p in ok)
        if OBJECTIVES[x][0] == "min" and positive and ok:
            log_scale(ax, "x")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    from aloha_ir.outputs import write_bytes
    return write_bytes(path, buf.getvalue())


def plot_title(space, settings, args, result) -> str:
    """What the plot shows and under which settings, so two runs' plots can be told apart."""
    target = settings.target or "no target"
    if settings.target and settings.bits:
        target += f" at {settings.bits} bits"
    what = [f"{space.name} on {target}", f"{args.algorithm}, {result.evaluations} points, "
            f"seed {args.seed}"]
    if settings.data:
        what.append(f"data {settings.data}")
    constraints = sorted({c.text for s in result.scenarios for c in s.scenario.constraints})
    if constraints:
        what.append("constraints " + ", ".join(constraints))
    return "; ".join(what)


def _print_front(result) -> None:
    from rich.table import Table

    from aloha_ir.console import console
    from aloha_ir.figures import label, show
    objs = result.objectives
    for s in result.scenarios:
        table = Table(title=f"scenario {s.scenario.name}: Pareto front "
                            f"({', '.join(c.text for c in s.scenario.constraints) or 'no constraints'}"
                            f"; choose {s.scenario.choose})")
        table.add_column("")
        table.add_column("genotype")
        for o in objs:
            table.add_column(label(o), justify="right")
        for p in s.front:
            mark = "*" if p is s.chosen else ""
            table.add_row(mark, p.genotype.describe(), *[show(o, p.figures[o]) for o in objs])
        if not s.front:
            table.add_row("", "(empty: no evaluated point meets the constraints)",
                          *["" for _ in objs])
        console().print(table)
