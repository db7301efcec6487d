"""`alohac calibrate PLATFORM MEASUREMENTS.csv -o MY.arch`: fit a platform's estimated parameters
to networks measured on the real board, print how well each row is predicted by a fit that has
not seen it, and write an .arch file that extends the platform with the fitted values."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import textwrap
import time

from aloha_ir.errors import InternalError, UsageError, did_you_mean

CSV_HELP = """\
MEASUREMENTS.csv: a header, then one row per measured run:
  model            zoo:NAME or an .onnx file, as alohac takes it        (required)
  bits             8, 16 or 32; empty: the platform's default data type
  operating_point  one of the platform's; empty: its default
  fps | gops_per_s measured throughput over a stream of frames           (one of them)
                   (GOps/s = 2 x MACs x frames/s)
  power_w | gops_per_w  measured board power, optional                   (at most one)
  platform         empty, or PLATFORM itself
example:
  model,bits,gops_per_s,gops_per_w
  zoo:vgg16,16,172.67,17.26
  zoo:resnet18,16,61.91,6.19
"""


def add_parser(sub, epilog: str) -> None:
    p = sub.add_parser(
        "calibrate", help="fit a platform's estimated parameters to measured networks "
                          "(writes an .arch that extends it)",
        description=textwrap.fill(
            "Fit PLATFORM's estimated parameters (the rates, times and powers its .arch labels "
            "[E]) to throughputs and powers measured on the real board, within physical bounds. "
            "Each row is predicted by the whole --target flow (mapping, exact steady state, "
            "energy), so a handful of rows is enough. Prints the fitted values, each row's "
            "prediction before and after, and a leave-one-out table (each row predicted by a "
            "fit without it: what to expect on a network not measured). Writes MY.arch, which "
            "extends PLATFORM with the fitted values and says how they were obtained; use it "
            "as --target MY.arch.", 79) + "\n\n" + CSV_HELP,
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("platform", metavar="PLATFORM",
                   help="the platform measured (`alohac list platforms`) or an .arch file")
    p.add_argument("measurements", metavar="MEASUREMENTS.csv", nargs="?",
                   help="the measured rows (above)")
    p.add_argument("-o", "--output", metavar="MY.arch", help="the .arch file to write")
    p.add_argument("--params", metavar="NAME,...",
                   help="the parameters to fit, e.g. ce.job_overhead,static_power (default: "
                        "every one labelled [E]; `alohac calibrate PLATFORM --params list` "
                        "prints them all)")
    p.add_argument("--name", help="the platform name in MY.arch (default: from its file name)")
    p.add_argument("--no-loo", action="store_true",
                   help="skip the leave-one-out table (one fit per row)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args) -> int:
    from aloha_ir.console import Progress
    from aloha_ir.outputs import check_file, write_text
    from archdesc.loader import is_path, load_platform
    from flows.calibrate import Predictor, calibrate, leave_one_out, read_measurements
    platform = load_platform(args.platform)  # a bad platform fails before the CSV is read
    if args.params == "list":
        return _list_parameters(Predictor([], args.platform).parameters())
    if not args.measurements or not args.output:
        raise UsageError("calibrate needs MEASUREMENTS.csv and -o MY.arch",
                         hint="alohac calibrate PLATFORM MEASUREMENTS.csv -o MY.arch "
                              "(--params list: the parameters alone)")
    check_file(args.output)
    if not args.output.endswith(".arch"):
        raise UsageError(f"-o {args.output}: the output is an .arch file",
                         hint="give a name ending in .arch")
    candidates = _chosen(Predictor([], args.platform).parameters(), args.params)
    rows = read_measurements(args.measurements)
    for r in rows:
        if r.platform and r.platform != args.platform:
            raise UsageError(f"{r.where}: the row was measured on {r.platform}, not "
                             f"{args.platform}", hint="calibrate one platform at a time")
        if r.opp and r.opp not in platform.operating_points:
            raise UsageError(f"{r.where}: {platform.name} has no operating point '{r.opp}'",
                             hint=did_you_mean(r.opp, platform.operating_points, "declared")
                             if platform.operating_points else "it declares none")
    model = Predictor(rows, args.platform)
    start = time.monotonic()
    with Progress("calibrate", fields="") as progress:
        model.on_evaluation = lambda n: progress.update(status=f"{n} predictions")
        progress.step(f"{len(rows)} row(s), {len(candidates)} parameter(s) of "
                      f"{platform.name}")
        bundled = model.predict({})
        fit = calibrate(model, candidates, on_step=progress.step)
        held = [] if args.no_loo or len(rows) < 2 else \
            leave_one_out(model, candidates, on_step=progress.step)
    seconds = time.monotonic() - start
    name = args.name or _platform_name(args.output)
    base = os.path.relpath(os.path.abspath(args.platform),
                           os.path.dirname(os.path.abspath(args.output))) \
        if is_path(args.platform) else args.platform
    summary = _summary(model, fit, held, bundled, seconds, args.output)
    write_text(args.output, _arch_text(args, fit, summary["rows"], base, name))
    _check_written(args.output, rows, fit)
    print(f"wrote {args.output}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(summary))
        return 0
    _print_tables(model, fit, held, bundled, summary, platform.name)
    return 0


def _chosen(every, names: str | None):
    if not names:
        chosen = [p for p in every if p.label == "E"]
        if not chosen:
            raise UsageError("the platform labels no fittable parameter [E]",
                             hint="name them with --params (`--params list` shows them)")
        return chosen
    by_name: dict[str, list] = {}
    for p in every:
        by_name.setdefault(p.name, []).append(p)
    out = []
    for n in (x.strip() for x in names.split(",") if x.strip()):
        if n not in by_name:
            raise UsageError(f"--params: no parameter '{n}'",
                             hint=did_you_mean(n, list(by_name), "fittable") +
                             " (`--params list` shows them)")
        out += by_name[n]
    return out


def _list_parameters(every) -> int:
    from rich.table import Table

    from aloha_ir.console import console
    t = Table(title="fittable parameters (label: hardware.md's source labels; [E] are fitted "
                    "by default)")
    for c in ("parameter", "value", "label", "bounds", "set at"):
        t.add_column(c)
    for p in every:
        lo, hi = p.bounds
        t.add_row(p.name, p.show(), f"[{p.label}]" if p.label else "",
                  f"{p.show(lo)} .. {p.show(hi)}", p.origin)
    console().print(t)
    return 0


def _platform_name(path: str) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    name = re.sub(r"[^A-Za-z0-9_\-]", "-", stem)
    return name if re.match(r"[A-Za-z_]", name) else f"p-{name}"


def _error(pred: float, meas: float) -> str:
    return f"{100 * (pred / meas - 1):+.1f}%"


def _row_figures(model, fit, held, bundled) -> list[dict]:
    out = []
    loo = {h.row: h for h in held}
    for i, r in enumerate(model.rows):
        unit = "fps" if r.fps is not None else "GOps/s"
        got0, want = bundled[i].throughput(r)
        got1, _ = fit.predictions[i].throughput(r)
        d = {"row": r.label(), "where": r.where, "unit": unit, "measured": want,
             "bundled": got0, "fitted": got1,
             "held_out": loo[i].prediction.throughput(r)[0] if i in loo else None}
        pw = fit.predictions[i].power(r)
        if pw is not None:
            d.update(measured_w=pw[1], bundled_w=bundled[i].power(r)[0], fitted_w=pw[0],
                     held_out_w=loo[i].prediction.power(r)[0] if i in loo else None)
        out.append(d)
    return out


def _summary(model, fit, held, bundled, seconds: float, output: str) -> dict:
    from flows.calibrate import key
    rows = _row_figures(model, fit, held, bundled)
    params = [{"name": p.name, "label": p.label, "bundled": p.value,
               "fitted": fit.values.get(key(p), p.value), "unit": p.unit or None,
               "status": "not determined" if p in fit.fixed else
               "at bound" if key(p) in fit.at_bound else "fitted", "set_at": p.origin}
              for p in fit.free + fit.fixed]
    loo = [abs(d["held_out"] / d["measured"] - 1) for d in rows if d["held_out"] is not None]
    return {"output": output, "rows": rows, "parameters": params,
            "worst_fitted_error": max(abs(d["fitted"] / d["measured"] - 1) for d in rows),
            "worst_held_out_error": max(loo) if loo else None,
            "predictions": model.evaluations, "seconds": seconds}


def _print_tables(model, fit, held, bundled, summary: dict, platform: str) -> None:
    from rich.table import Table

    from aloha_ir.console import console
    out = console()
    t = Table(title=f"{platform}: parameters")
    for c in ("parameter", "label", "bundled", "fitted", "change", "status"):
        t.add_column(c, justify="right" if c in ("bundled", "fitted", "change") else "left")
    for p, d in zip(fit.free + fit.fixed, summary["parameters"], strict=True):
        change = f"{100 * (d['fitted'] / p.value - 1):+.1f}%" if p.value else ""
        t.add_row(p.name, f"[{p.label}]" if p.label else "", p.show(), p.show(d["fitted"]),
                  change, d["status"])
    out.print(t)
    t = Table(title="rows: measured and predicted (error = predicted / measured - 1)")
    for c in ("row", "measured", "bundled .arch", "fitted", "left out of the fit"):
        t.add_column(c, justify="left" if c == "row" else "right")
    for d in summary["rows"]:
        meas = d["measured"]
        cells = [f"{meas:.4g} {d['unit']}", f"{d['bundled']:.4g} ({_error(d['bundled'], meas)})",
                 f"{d['fitted']:.4g} ({_error(d['fitted'], meas)})",
                 f"{d['held_out']:.4g} ({_error(d['held_out'], meas)})"
                 if d["held_out"] is not None else "-"]
        t.add_row(d["row"], *cells)
        if "measured_w" in d:
            w = d["measured_w"]
            t.add_row("  power", f"{w:.4g} W", f"{d['bundled_w']:.4g} ({_error(d['bundled_w'], w)})",
                      f"{d['fitted_w']:.4g} ({_error(d['fitted_w'], w)})",
                      f"{d['held_out_w']:.4g} ({_error(d['held_out_w'], w)})"
                      if d["held_out_w"] is not None else "-")
    out.print(t)
    worst = summary["worst_held_out_error"]
    out.print(f"worst throughput error: fitted {100 * summary['worst_fitted_error']:.1f}%"
              + (f", left out of the fit {100 * worst:.1f}%" if worst is not None else "")
              + f" ({summary['predictions']} predictions in {summary['seconds']:.1f} s)")


def _arch_text(args, fit, rows: list[dict], base: str, name: str) -> str:
    from archdesc.loader import resolve
    from archdesc.parameters import extension
    from flows.calibrate import key
    tree, _ = resolve(args.platform)
    header = [f"{name}: {args.platform} calibrated by `alohac calibrate {args.platform} "
              f"{os.path.basename(args.measurements)}` on "
              f"{datetime.date.today().isoformat()}.",
              "[F] = fitted: least squares of log(predicted / measured) over the rows below, each "
              "prediction the whole --target flow,",
              "within physical bounds (archdesc/parameters.py BOUNDS); a parameter no row "
              "depends on keeps its value and is not written.",
              "rows: measured | fitted | left out of the fit (each row predicted by a fit "
              "without it)"]
    for d in rows:
        loo = _error(d["held_out"], d["measured"]) if d["held_out"] is not None else "-"
        header.append(f"  {d['row']}: {d['measured']:.4g} {d['unit']} | "
                      f"{_error(d['fitted'], d['measured'])} | {loo}")
    if fit.fixed:
        header.append("not determined by these rows (kept): " +
                      ", ".join(p.name for p in fit.fixed))
    notes = {p.name: "at its physical bound" for p in fit.free if key(p) in fit.at_bound}
    values = {p.name: fit.values[key(p)] for p in fit.free}
    return extension(tree, base, name, values, notes, header)


def _check_written(path: str, rows, fit) -> None:
    """The written file, loaded as a user will, predicts what the fit predicted."""
    from dataclasses import replace

    from flows.calibrate import Predictor
    again = Predictor([replace(r, platform="") for r in rows], path).predict({})
    for r, a, b in zip(rows, again, fit.predictions, strict=True):
        if abs(a.fps / b.fps - 1) > 1e-6:
            raise InternalError(f"{path} predicts {a.fps:.6g} fps for {r.label()}, the fit "
                                f"{b.fps:.6g}", hint="a compiler bug: the .arch writer lost "
                                                     "a value")
