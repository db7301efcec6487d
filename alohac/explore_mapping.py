"""`alohac explore-mapping`: system-level design-space exploration of one model on one platform.

Searches partitionings and mappings (explore/system/: closed-form estimates, NSGA-II, then the
real pipeline on the best points) and writes OUT/mapping.json (the chosen point, for `alohac
compile --mapping`), OUT/pareto.json and OUT/pareto.csv (every refined point, the front flagged)
and OUT/pareto.png (latency vs energy, processors as colour and marker, the greedy default and the
chosen point marked).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys

from aloha_ir.errors import UsageError


def add_parser(sub, epilog: str) -> None:
    import textwrap
    p = sub.add_parser(
        "explore-mapping", help="search partitionings and mappings of a model on a platform "
                                "(Pareto front of latency, energy, processors)",
        description=textwrap.fill(
                    "Explore how to partition MODEL's actors and map them on PLATFORM's "
                    "processing elements: NSGA-II on closed-form estimates (the map pass's list "
                    "schedule with rows flowing between units), then the real pipeline "
                    "(self-timed schedule, energy, processors, memory) on the greedy default and "
                    "the best estimated points. Writes OUT/mapping.json (the fastest refined "
                    "point that fits the platform's memories, ties by energy: never slower than "
                    "the greedy default when that fits; the fastest of all, with a warning, when "
                    "none fits; apply it with alohac compile --mapping), OUT/pareto.json, "
                    "OUT/pareto.csv and OUT/pareto.png. --json prints one JSON object as the last "
                    "line: greedy, chosen, pareto, evaluations, ...", 79),
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="an .onnx or .mlir file, or zoo:NAME")
    p.add_argument("--target", required=True, metavar="PLATFORM",
                   help="target platform (`alohac list platforms`) or an .arch file")
    p.add_argument("--bits", type=int, choices=(8, 16, 32),
                   help="deployment precision (default: the platform's default data type)")
    p.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,...",
                   help="static shape for a dynamic model input (repeatable)")
    p.add_argument("--budget", type=int, default=1500,
                   help="distinct design points estimated in closed form (default 1500; a few ms "
                        "each on inception_v1)")
    p.add_argument("--refine", type=int, default=8,
                   help="estimated points re-evaluated with the real pipeline, besides the "
                        "greedy default (default 8; about a second each on inception_v1)")
    p.add_argument("--seed", type=int, default=0, help="the search's seed (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output directory")
    p.set_defaults(func=cmd_explore_mapping)


def cmd_explore_mapping(args) -> int:
    from alohac.run import input_shapes
    from aloha_ir.outputs import Staged, check_folder, write_text
    from archdesc.loader import load_platform
    from explore.system.mapping_file import mapping_json, save_mapping
    from explore.system.search import search
    from explore.system.space import SystemSpace
    if args.budget < 1:
        raise UsageError(f"--budget {args.budget}: must be >= 1")
    if args.refine < 0:
        raise UsageError(f"--refine {args.refine}: must be >= 0")
    check_folder(args.output)
    platform = load_platform(args.target)
    space = SystemSpace.load(args.model, platform, args.bits or 0, input_shapes(args.input_shape))
    result = search(space, args.budget, args.refine, args.seed, progress=True)
    data = result.to_json()
    with Staged(args.output, "explore-mapping") as out:
        written = [save_mapping(out.path("mapping.json"), mapping_json(result)),
                   write_text(out.path("pareto.json"), json.dumps(data, indent=1) + "\n"),
                   write_text(out.path("pareto.csv"), pareto_csv(result)),
                   pareto_png(result, out.path("pareto.png"))]
    written = [out.final(w) for w in written]
    for w in written:
        print(f"wrote {w}", file=sys.stderr if args.json else sys.stdout)
    if not result.chosen["fits"]:
        print(f"warning: no refined point fits {result.platform}'s memories; {written[0]} holds "
              "the fastest one, which does not fit (its memory_bytes is in the file)",
              file=sys.stderr)
    elif not result.greedy["fits"]:
        print("warning: the greedy default does not fit in memory; the chosen point does, but "
              "may be slower than greedy", file=sys.stderr)
    if args.json:
        keys = ("model", "platform", "greedy", "chosen", "pareto", "evaluations",
                "refined_count", "seconds", "spearman_latency", "speedup", "seed")
        print(json.dumps({**{k: data[k] for k in keys}, "mapping": written[0]}))
        return 0
    _print_table(result)
    return 0


def _print_table(result) -> None:
    from rich.table import Table

    from aloha_ir.console import console
    from aloha_ir.figures import label, show
    table = Table(title=f"{result.model} on {result.platform}: refined design points "
                        f"({result.evaluations} estimated in {result.estimate_seconds:.1f} s, "
                        f"{len(result.refined)} refined in {result.refine_seconds:.1f} s)")
    keys = ("latency_s", "period_s", "energy_j", "processors", "memory_bytes")
    for col in ("point", *map(label, keys), "estimated latency", "design"):
        table.add_column(col, justify="left" if col in ("point", "design") else "right")
    front = {id(p) for p in result.pareto}
    for p in sorted(result.refined, key=lambda p: (p["latency_s"], p["energy_j"])):
        mark = ("*" if id(p) in front else "") + (" chosen" if p is result.chosen else "")
        cells = [show(k, p[k]) for k in keys]
        if not p["fits"]:
            cells[-1] += " (no fit)"
        table.add_row(f"{p.label}{mark}", *cells, show("latency_s", p.estimate.latency_s),
                      p.design.summary())
    console().print(table)
    g, c = result.greedy, result.chosen
    rho = result.spearman_latency

    def brief(p) -> str:
        return (f"{show('latency_s', p['latency_s'])}, {show('energy_j', p['energy_j'])}, "
                f"{p['processors']} processors")
    console().print(f"greedy {brief(g)}; chosen ({c.label}) {brief(c)} "
                    f"({g['latency_s'] / c['latency_s']:.3f}x faster); * = on the Pareto front; "
                    "estimate vs self-timed latency rank correlation " +
                    ("-" if rho is None else f"{rho:.3f}"))


CSV_COLUMNS = ("label", "on_front", "chosen", "latency_s", "period_s", "energy_j", "processors",
               "memory_bytes", "fits", "est_latency_s", "est_period_s", "est_energy_j",
               "split_actors", "pinned_actors", "units", "operating_point")


def pareto_csv(result) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    front = {id(p) for p in result.pareto}
    for p in result.refined:
        d = p.design
        w.writerow([p.label, int(id(p) in front), int(p is result.chosen), p["latency_s"],
                    p["period_s"], p["energy_j"], p["processors"], p["memory_bytes"],
                    int(bool(p["fits"])), p.estimate.latency_s, p.estimate.period_s,
                    p.estimate.energy_j, sum(1 for _, n in d.plan if n > 1), len(d.pe),
                    " ".join(d.units), d.opp or ""])
    return buf.getvalue()


def pareto_png(result, path: str) -> str:
    """Latency vs energy of the refined points (colour and marker = processors), the estimates
    behind them in grey, the greedy default and the chosen point marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aloha_ir.figures import axis, log_scale, show
    from aloha_ir.outputs import write_bytes
    fig, ax = plt.subplots(figsize=(8, 5.5))
    est = [e for _, e in result.estimates if e.feasible]
    xs = [p["latency_s"] for p in result.refined] + [e.latency_s for e in est]
    ys = [p["energy_j"] for p in result.refined] + [e.energy_j for e in est]
    fx, xlabel = axis("latency_s", xs, "self-timed, one frame")
    fy, ylabel = axis("energy_j", ys)
    ax.scatter([e.latency_s / fx for e in est], [e.energy_j / fy for e in est], s=6,
               color="0.8", label="estimates (closed form)", zorder=1)
    markers = "osD^vP<>X"
    colours = plt.get_cmap("tab10")
    front = {id(p) for p in result.pareto}
    for i, procs in enumerate(sorted({p["processors"] for p in result.refined})):
        pts = [p for p in result.refined if p["processors"] == procs]
        for on, face in ((True, colours(i % 10)), (False, "none")):
            sel = [p for p in pts if (id(p) in front) == on]
            if sel:
                ax.scatter([p["latency_s"] / fx for p in sel],
                           [p["energy_j"] / fy for p in sel], s=55, marker=markers[i % 9],
                           facecolors=face, edgecolors=colours(i % 10), zorder=3,
                           label=f"{procs} processor{'s' if procs > 1 else ''}" +
                           ("" if on else " (dominated)"))
    g, c = result.greedy, result.chosen
    ax.scatter([g["latency_s"] / fx], [g["energy_j"] / fy], s=260, marker="*",
               facecolors="none", edgecolors="black", linewidths=1.4, zorder=4,
               label="greedy default")
    ax.scatter([c["latency_s"] / fx], [c["energy_j"] / fy], s=200, marker="o",
               facecolors="none", edgecolors="red", linewidths=1.6, zorder=4, label="chosen")
    if max(xs) > 3 * min(xs):
        log_scale(ax, "x")
    if max(ys) > 3 * min(ys):
        log_scale(ax, "y")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{result.model} on {result.platform} ({result.greedy['datatype']}): "
                 f"{result.evaluations} estimated, "
                 f"{len(result.refined)} refined, seed {result.seed}\ngreedy "
                 f"{show('latency_s', g['latency_s'])}, chosen ({c.label}) "
                 f"{show('latency_s', c['latency_s'])}", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return write_bytes(path, buf.getvalue())
