"""`alohac`: the ALOHA compiler driver. Exit codes: see aloha_ir.errors (and `alohac --help`)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from aloha_ir.errors import AlohaError, MissingSetting, UsageError, exit_code_help
from alohac.run import (
    check_opp,
    input_shapes,
    instruments,
    run_passes,
    run_target,
    target_flow,
    user_passes,
)

DEFAULT_PIPELINE = "canonicalize,analyze-cost"
EMIT_KINDS = ("nn", "onnx", "csdf", "sdf3", "json", "dot", "c")
CSDF_KINDS = ("csdf", "sdf3", "json", "dot")
LOWERING = "convert-nn-to-csdf"

EXIT_CODES_HELP = exit_code_help()


def _check_bits(args, module) -> None:
    """--bits against the platform and the model: a quantized model's precision comes from its
    types (a --bits that contradicts them is a usage error), a float one's --bits must be a data
    type the platform has."""
    if not args.bits:
        return
    from aloha_ir.errors import PassError
    from archdesc.loader import load_platform
    from aloha_ir.dialects.nn import graph_of
    from passes.target import datatype_of, nn_precision
    try:
        datatype_of(load_platform(args.target), args.bits, nn_precision(graph_of(module)))
    except PassError as e:
        raise UsageError(f"--bits {args.bits}: {e.message}",
                         hint=(e.hint or "").replace("drop bits", "drop --bits")) from None


def _bits_need_target(args) -> None:
    if args.bits and not args.target:
        raise UsageError("--bits needs --target (it is the deployment precision on a platform)",
                         hint="a quantized model's precision comes from its types; alohac "
                              "quantize changes it")


def _float_note(args, module, report) -> None:
    """Say what a float model bound for a fixed-point platform became (stderr); `report` is the
    --target flow's TargetReport."""
    q = report.report("quantize-for-target")
    if q is not None and q.quantized:
        print(f"note: {q.note()}", file=sys.stderr)
        return
    if q is not None and getattr(args, "data", None):
        print(f"note: --data {args.data} was not used: the model is "
              + ("already quantized" if q.datatype != "f32" else f"deployed in float on "
                 f"{q.platform}"), file=sys.stderr)
    from aloha_ir import fixedpoint as fp
    from aloha_ir.dialects import nn
    from aloha_ir.dialects.nn import graph_of
    mapping = report.mapping
    graph = graph_of(module)
    fixed = any(fp.format_of(op.results[0]) for op in graph.ops
                if op.results and not isinstance(op, nn.ConstOp))
    if not fixed and mapping.datatype != "f32":
        print(f"note: the model is float; figures are for it deployed in {mapping.datatype} on "
              f"{mapping.platform} (no float data type there): `alohac compile` quantizes it "
              "(give --data to calibrate), or quantize it first with `alohac quantize`",
              file=sys.stderr)


def _emit_kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in EMIT_KINDS]
    if bad:
        raise UsageError(f"--emit {','.join(bad)} is not available",
                         hint=f"available: {', '.join(EMIT_KINDS)}")
    return kinds


def _cost_markdown(report, title: str) -> str:
    pruned = report.params_pruned > 0  # what pruning removed, only when it did
    lines = [f"# {title}", "", "| figure | value |", "|---|---:|",
             f"| MACs | {report.macs:,} |", f"| params (as imported) | {report.params:,} |",
             f"| params deployed | {report.params_deployed:,} |",
             *[f"| params pruned | {report.params_pruned:,} |",
               f"| MACs sparse | {report.macs_sparse:,} |"] * pruned,
             f"| activation bytes | {report.activation_bytes:,} |", "",
             "| block | op | output shape | MACs | params | " +
             "params pruned | MACs sparse | " * pruned + "activation bytes |",
             "|---|---|---|---:|---:|" + "---:|---:|" * pruned + "---:|"]
    for b in report.blocks:
        lines.append(f"| {b.name} | {b.op} | {'x'.join(map(str, b.shape))} | {b.macs:,} | "
                     f"{b.params:,} | " + f"{b.params_pruned:,} | {b.macs_sparse:,} | " * pruned +
                     f"{b.activation_bytes:,} |")
    return "\n".join(lines) + "\n"


def _emit_csdf(module, kinds: list[str], out_dir: str, stem: str) -> list[str]:
    """Write the csdf graph as IR text (alone in a module), SDF3 XML, JSON and DOT."""
    from aloha_ir.dialects.csdf import csdf_graphs
    from aloha_ir.textio import print_module
    from aloha_ir.outputs import write_text
    graphs = csdf_graphs(module)
    if not graphs or not any(k in CSDF_KINDS for k in kinds):
        return []
    written = []
    if "csdf" in kinds:
        from xdsl.dialects.builtin import ModuleOp
        alone = ModuleOp([g.clone() for g in graphs])
        written.append(write_text(os.path.join(out_dir, f"{stem}.csdf.mlir"), print_module(alone)))
    for g in graphs:
        suffix = "" if len(graphs) == 1 else f".{g.sym_name.data}"
        if "sdf3" in kinds:
            from backends.csdf.sdf3 import to_sdf3
            written.append(write_text(os.path.join(out_dir, f"{stem}{suffix}.sdf3.xml"),
                                      to_sdf3(g)))
        if "json" in kinds:
            from backends.csdf.jsonform import to_json
            written.append(write_text(os.path.join(out_dir, f"{stem}{suffix}.csdf.json"),
                                      json.dumps(to_json(g), indent=1) + "\n"))
        if "dot" in kinds:
            from backends.csdf.dot import to_dot
            written.append(write_text(os.path.join(out_dir, f"{stem}{suffix}.dot"), to_dot(g)))
    return written


def _csdf_markdown(module) -> str:
    from aloha_ir import rle
    from aloha_ir.analysis import repetition
    from aloha_ir.dialects.csdf import csdf_graphs
    text = ""
    for g in csdf_graphs(module):
        phases, edges = g.dataflow_graph()
        q = repetition(phases, edges).firings
        loops = sum(1 for c in g.channels() if c.is_self_loop)
        text += (f"\n## CSDF graph @{g.sym_name.data}\n\n{len(phases)} actors, "
                 f"{len(edges) - loops} FIFO channels, {loops} reuse self-loops, "
                 f"{sum(q.values()):,} firings per inference.\n\n"
                 "| actor | operator | phases | work (ops) | memory units (B) |\n"
                 "|---|---|---:|---:|---:|\n")
        for a in g.actors():
            text += (f"| {a.sym_name.data} | {a.kind.data} | {a.phase_count} | "
                     f"{rle.total(a.work_runs):,} | {a.memory_bytes():,} |\n")
    return text


def cmd_compile(args) -> int:
    from aloha_ir.outputs import Staged, check_file, check_folder
    from frontends.loader import load_model
    kinds = _emit_kinds(args.emit or ("nn,c" if args.target else "nn"))
    pipeline = args.pipeline
    if args.mapping and not args.target:
        raise UsageError("--mapping needs --target (the platform the mapping was made for)")
    if args.gantt and not args.target:
        raise UsageError("--gantt needs --target (the timeline is the mapped schedule)")
    check_opp(args)
    _bits_need_target(args)
    if args.data and not args.target:
        raise UsageError("--data needs --target (it calibrates a float model the platform "
                         "computes in fixed point)", hint="alohac quantize MODEL --data DATA "
                         "quantizes without a platform")
    if args.buffers and not args.target:
        raise UsageError("--buffers needs --target (the FIFOs are sized for the platform's "
                         "threads)", hint="add --target PLATFORM, or drop --buffers")
    if ("c" in kinds or args.backend) and not args.target:
        raise UsageError("generating code needs --target PLATFORM",
                         hint="e.g. alohac compile MODEL --target host-cpu -o OUT")
    report = None
    if args.target:
        flow = target_flow(args, timeline=bool(args.gantt))
        passes = user_passes(pipeline, DEFAULT_PIPELINE)
    else:
        passes = user_passes(pipeline)
        if any(k in CSDF_KINDS for k in kinds) and all(p.name != LOWERING for p in passes):
            from passes.convert_nn_to_csdf import ConvertNnToCsdfPass
            passes.append(ConvertNnToCsdfPass())
            now = ",".join(str(p.pipeline_pass_spec()) for p in passes)
            print(f"note: --emit {','.join(k for k in kinds if k in CSDF_KINDS)} needs the csdf "
                  f"graph; pipeline is now '{now}'",
                  file=sys.stderr)
    check_folder(args.output)
    if args.gantt:
        check_file(args.gantt)
    module = load_model(args.model, input_shapes(args.input_shape))
    if args.target:
        _check_bits(args, module)
        report = flow.run(module, user=passes, **instruments(args))
        analyses = report.analyses
        _float_note(args, module, report)
    else:
        analyses = run_passes(args, module, passes).analyses
    with Staged(args.output, "compile") as out:
        written = _write_compile(args, out, kinds, module, analyses, report)
    for w in written:
        print(f"wrote {out.final(w)}")
    return 0


def _write_compile(args, out, kinds: list[str], module, analyses: dict, report=None
                   ) -> list[str]:
    """Every output of `compile` into the staging folder `out` (swapped in whole at the end);
    `report` is the --target flow's TargetReport."""
    from aloha_ir.textio import save_module
    from aloha_ir.outputs import write_text
    from frontends.loader import model_stem
    stem = model_stem(args.model)
    written = []
    if "nn" in kinds:
        written += save_module(module, out.path(f"{stem}.mlir"))
    if "onnx" in kinds:
        from backends.onnx.export import save_onnx
        path = out.path(f"{stem}.onnx")
        save_onnx(module, path)
        written.append(path)
    written += _emit_csdf(module, kinds, out.path(), stem)
    if "c" in kinds:
        written += _emit_code(args, module, out_dir=out.path())
    cost = analyses.get("analyze-cost", {})
    if len(cost) == 1:
        from aloha_ir.analysis import report_of
        cost = report_of(analyses, "analyze-cost")
        text = ""
        if report is not None:
            text += report.markdown(f"{stem} on {args.target}") + "\n"
            written.append(write_text(out.path("report.json"), json.dumps(
                {"model": args.model, **report.to_json()}, indent=1) + "\n"))
            if args.gantt:
                written.append(report.gantt(out.place(args.gantt), f"{stem} on {args.target}"))
        text += _cost_markdown(cost, f"{stem}: cost report")
        text += _csdf_markdown(module)
        from aloha_ir import interface
        changed = interface.notes(module)  # what computing in float32 changes at the boundary
        if changed:
            text += "\n## Interface\n\n" + "".join(f"- {n}\n" for n in changed)
        written.append(write_text(out.path("report.md"), text))
    return written


def _emit_code(args, module, out_dir: str) -> list[str]:
    """Generate the platform's code under OUT_DIR/code/ with a code-size report. Code was asked
    for (by --emit c, --backend, or the default --emit with a target), so not writing it is an
    error, never a note: a build script would otherwise run on without a program."""
    from aloha_ir.errors import UnsupportedError
    from alohac.codesize import write_report
    from archdesc.loader import load_platform
    from backends.registry import get_backend, registered
    platform = load_platform(args.target)
    name = args.backend or platform.backend
    if name not in registered() and not args.backend:
        raise UnsupportedError(f"no code generator for {platform.name}: its backend '{name}' is "
                               "not registered", where=args.target,
                               hint="`alohac list backends`; pass --backend NAME, or --emit "
                               "without c to compile without code")
    backend = get_backend(name)(weights=args.weights, runtime=args.runtime)
    code_dir = os.path.join(out_dir, "code")
    try:
        generated = backend.generate(module, platform, code_dir)
    except UnsupportedError as e:
        raise UnsupportedError(f"no code generated: {e.message}", where=e.where or args.model,
                               hint=e.hint or "give --emit without c to compile without code"
                               ) from e
    return [os.path.join(code_dir, f) for f in generated.files] + \
        write_report(code_dir, generated, backend)


def cmd_opt(args) -> int:
    from aloha_ir.outputs import check_file, staged_file
    from aloha_ir.textio import load_module, print_module, save_module
    if args.output:
        check_file(args.output)
    module = load_module(args.file)
    run_passes(args, module, user_passes(args.pipeline))
    if args.output:
        with staged_file(args.output, "opt") as out:  # the IR and its weights, both or neither
            save_module(module, out.path(os.path.basename(args.output)))
    else:
        sys.stdout.write(print_module(module))
    return 0


def cmd_analyze(args) -> int:
    from frontends.loader import load_model
    if args.mapping and not args.target:
        raise UsageError("--mapping needs --target (the platform the mapping was made for)")
    check_opp(args)
    _bits_need_target(args)
    module = load_model(args.model, input_shapes(args.input_shape))
    if args.target:
        _check_bits(args, module)
        return _analyze_target(args, module)
    if args.gantt:
        raise UsageError("--gantt needs --target (the timeline is the mapped schedule)")
    passes = user_passes(args.pipeline)
    if all(p.name != "analyze-cost" for p in passes):
        from passes.analyze_cost import AnalyzeCostPass
        passes.append(AnalyzeCostPass())
    report = run_passes(args, module, passes).report("analyze-cost")
    if args.json:
        data = report.to_json()
        print(json.dumps({"model": args.model, "macs": data["macs"], "params": data["params"],
                          "params_deployed": data["params_deployed"],
                          "params_pruned": data["params_pruned"],
                          "macs_sparse": data["macs_sparse"],
                          "activation_bytes": data["activation_bytes"],
                          "blocks": data["blocks"]}))
        return 0
    from rich.table import Table

    from aloha_ir.console import console
    from aloha_ir.figures import show
    pruned = report.params_pruned > 0  # columns for what pruning removed, only when it did
    table = Table(title=f"{args.model}: cost")
    numeric = ("MACs", "sparse MACs", "parameters", "pruned", "activation bytes")
    for col in ("block", "op", "output", "MACs") + ("sparse MACs",) * pruned + ("parameters",) + \
            ("pruned",) * pruned + ("activation bytes",):
        table.add_column(col, justify="right" if col in numeric else "left")
    for b in report.blocks:
        table.add_row(b.name, b.op, "x".join(map(str, b.shape)), f"{b.macs:,}",
                      *[f"{b.macs_sparse:,}"] * pruned, f"{b.params:,}",
                      *[f"{b.params_pruned:,}"] * pruned, f"{b.activation_bytes:,}")
    console().print(table)
    sparse = f" (sparse {report.macs_sparse:,})" if pruned else ""
    dropped = f"; {report.params_pruned:,} pruned" if pruned else ""
    console().print(f"MACs {report.macs:,}{sparse}   parameters {report.params:,} (deployed "
                    f"{report.params_deployed:,}{dropped})   activations "
                    f"{show('activation_bytes', report.activation_bytes)}")
    return 0


def _analyze_target(args, module) -> int:
    if args.gantt:
        from aloha_ir.outputs import check_file
        check_file(args.gantt)
    report = run_target(args, module, user_passes(args.pipeline, "canonicalize"),
                        timeline=bool(args.gantt), deploy=False)
    _float_note(args, module, report)
    fig = report.to_json()
    if args.gantt:
        path = report.gantt(args.gantt, f"{args.model} on {args.target}")
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps({"model": args.model, **fig}))
        return 0
    from aloha_ir.console import console
    text = report.markdown(f"{args.model} on {args.target}")
    out = console()
    if out.is_terminal:
        from rich.markdown import Markdown
        out.print(Markdown(text))
    else:  # a log gets the Markdown itself: whole tables, one row a line, greppable
        sys.stdout.write(text)
    return 0


def cmd_list(args) -> int:
    if args.what == "passes":
        from aloha_ir.passmanager import default_registry
        from passes.registry import describe_passes
        rows = describe_passes(default_registry())
        if args.json:
            print(json.dumps({p.name: p.to_json() for p in rows}))
            return 0
        width = max(len(p.name) for p in rows)
        for p in rows:
            options = ", ".join(f"{o}: {t}" for o, t in p.options)
            print(f"{p.name:<{width}}  {p.summary}" +
                  (f"  [options: {options}]" if options else "") +
                  f"  [requires: {p.describe_requires()}; preserves: {p.preserves.describe()}]")
    elif args.what == "zoo":
        from frontends.zoo import ALIASES, entries
        rows = [(e, [a for a, n in ALIASES.items() if n == e.name]) for e in entries()]
        if args.json:
            print(json.dumps({f"zoo:{e.name}": {"kind": e.kind, "description": e.description,
                                                "aliases": [f"zoo:{a}" for a in alias]}
                              for e, alias in rows}))
            return 0
        for e, alias in rows:
            print(f"zoo:{e.name:<15} {e.kind:<8} {e.description}" +
                  (f" (alias zoo:{alias[0]})" if alias else ""))
    elif args.what == "platforms":
        from archdesc.loader import load_platform, platform_names
        platforms = [load_platform(n) for n in platform_names()]
        if args.json:
            print(json.dumps({p.name: p.to_json() for p in platforms}))
            return 0
        width = max(len(p.name) for p in platforms)
        for p in platforms:
            units = ", ".join(f"{pe.count} x {pe.name} ({pe.kind})" for pe in p.pes)
            print(f"{p.name:<{width}}  {p.description}  [{units}; backend {p.backend}]")
    else:
        from backends.registry import registered
        backends = registered()
        if args.json:
            print(json.dumps({n: {"default_platform": c.default_platform,
                                  "description": c.description, "class": f"{c.__module__}."
                                  f"{c.__qualname__}"} for n, c in backends.items()}))
            return 0
        width = max(len(n) for n in backends)
        for n, c in backends.items():
            print(f"{n:<{width}}  {c.description}  [default platform {c.default_platform}; "
                  f"{c.__module__}]")
    return 0


def _add_pipeline_options(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("-p", "--pipeline", default=default,
                   help=f"pass pipeline, e.g. 'canonicalize,analyze-cost' (default: {default!r}; "
                        "`alohac list passes`)")
    p.add_argument("--time-passes", action="store_true", help="print a pass timing report")
    p.add_argument("--print-ir-after-all", action="store_true",
                   help="print the IR after every pass (stderr)")
    p.add_argument("--dump-dir", metavar="DIR", help="save the IR (and weights) after every pass")
    p.add_argument("--verify-full", action="store_true",
                   help="after every pass run xDSL's full generic verification, not only the ops' "
                        "shape rules")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="an .onnx or .mlir file, or zoo:NAME")
    p.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,...",
                   help="static shape for a dynamic model input (repeatable)")
    p.add_argument("--target", metavar="PLATFORM",
                   help="target platform: a bundled name (`alohac list platforms`) or an .arch "
                        "file; adds partition, map and the schedule/memory/energy/processors "
                        "analyses to the pipeline")
    p.add_argument("--bits", type=int, choices=(8, 16, 32),
                   help="deployment precision of a float model on the target (needs --target; "
                        "default: the platform's default data type); a quantized model's "
                        "precision comes from its types and a --bits that contradicts them is an "
                        "error")
    p.add_argument("--opp", metavar="NAME", help="operating point of the target (default: its "
                                                 "default_operating_point)")
    p.add_argument("--allow-overflow", action="store_true",
                   help="report a model that does not fit the target's memories instead of "
                        "failing")
    p.add_argument("--gantt", metavar="FILE.png",
                   help="draw the per-unit schedule timeline (needs --target)")


def _add_mapping_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mapping", metavar="FILE.json",
                   help="apply a saved partitioning and mapping (alohac explore-mapping writes "
                        "OUT/mapping.json) instead of the greedy default; needs --target")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written, and every option's default at the end of its help unless the
    text already states it (a flag's False and an unset None are not defaults worth showing)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default == [] or "default" in text
                or default == argparse.SUPPRESS or not action.option_strings
                or text == argparse.SUPPRESS):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("aloha")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alohac", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="ALOHA: compile a DNN (ONNX, or zoo:NAME) into an analysed nn/csdf IR for an "
                    "embedded platform.", epilog=EXIT_CODES_HELP)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"alohac {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("compile", help="import, run a pipeline, write IR/ONNX and a report",
                       description="Import MODEL, run the pipeline, and write the results to OUT.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_options(p)
    _add_mapping_option(p)
    _add_pipeline_options(p, DEFAULT_PIPELINE)
    p.add_argument("--emit", default=None, metavar="KINDS",
                   help="what to write, comma-separated (default: nn, and c with --target): nn = "
                        "NAME.mlir (+ weights NAME.weights.npz), onnx = NAME.onnx, csdf = "
                        "NAME.csdf.mlir, sdf3 = NAME.sdf3.xml (for SDF3's sdf3analysis-csdf), json "
                        "= NAME.csdf.json, dot = NAME.dot (Graphviz), c = the platform's code "
                        "under OUT/code/ (a Makefile builds OUT/code/network; see --backend); "
                        "csdf kinds add convert-nn-to-csdf to the pipeline when it is missing")
    p.add_argument("--backend", metavar="NAME",
                   help="code generator (default: the platform's; `alohac list backends`)")
    p.add_argument("--data", metavar="DATA",
                   help="calibration data (digits, mnist:DIR, ...) when a float model is quantized"
                        " for a platform that computes in fixed point (default: random inputs in "
                        "the model's input range, and a note saying so)")
    p.add_argument("--weights", choices=("file", "embedded"), default="file",
                   help="generated code: weights in code/weights.bin loaded at start (default), "
                        "or compiled in as const arrays with static allocation only (bare metal)")
    p.add_argument("--runtime", choices=("auto", "threads", "static"), default="auto",
                   help="generated code: threads = one thread per processing unit (pthreads); "
                        "static = the frame's firings in one loop in the schedule's order, no "
                        "pthreads or malloc: a microcontroller's runtime (`make TARGET=cortex-m4` "
                        "builds it for a Cortex-M4 under QEMU); auto (default) = static when the "
                        "threads' predicted period, with what their hand-overs cost (the cpu "
                        "units' `handover`), is no shorter than one thread's (network.json's "
                        "runtime_choice says why)")
    p.add_argument("--buffers", choices=("schedule", "minimal"), default=None,
                   help="FIFO capacities (with --target): schedule = the self-timed schedule's "
                        "occupancies (default), minimal = the least the generated program's "
                        "threads need at their best period (the size-buffers pass)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output directory")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("opt", help="run a pipeline on IR text (text in, text out)",
                       description="Parse FILE.mlir (and its .weights.npz), run the pipeline, print "
                                   "the resulting IR.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE.mlir")
    _add_pipeline_options(p, "")
    p.add_argument("-o", "--output", metavar="OUT.mlir", help="write here (with weights) instead "
                                                               "of standard output")
    p.set_defaults(func=cmd_opt)

    p = sub.add_parser("analyze", help="cost figures of a model; with --target: latency, "
                                       "throughput, energy, processors, memory",
                       description="Report MACs, parameters and activation bytes per block and in "
                                   "total. With --target: map the model on the platform and report "
                                   "the seeds' Table 6 columns (latency s, energy J, processors, "
                                   "memory B) plus throughput, GOps/s, per-unit utilisation and a "
                                   "per-actor table. --json prints one JSON object as the last "
                                   "line.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_options(p)
    _add_mapping_option(p)
    _add_pipeline_options(p, "canonicalize")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    p.set_defaults(func=cmd_analyze)

    from alohac.learn import add_parsers
    add_parsers(sub, EXIT_CODES_HELP)
    from alohac.secure import add_parser as add_secure
    add_secure(sub, EXIT_CODES_HELP)
    from alohac.explore import add_parser as add_explore
    add_explore(sub, EXIT_CODES_HELP)
    from alohac.explore_mapping import add_parser as add_explore_mapping
    add_explore_mapping(sub, EXIT_CODES_HELP)
    from alohac.calibrate import add_parser as add_calibrate
    add_calibrate(sub, EXIT_CODES_HELP)
    from alohac.fairness import add_parser as add_fairness
    add_fairness(sub, EXIT_CODES_HELP)

    p = sub.add_parser("compare", help="per-actor SQNR of generated code against the reference",
                       description="Generate MODEL's code for PLATFORM under OUT/code, build its "
                                   "debug variant (every actor dumps what it computes), run it on "
                                   "one input and report each actor's SQNR against the reference "
                                   "of what it computes (its layer's output, a split actor's "
                                   "channel slice, a split kernel's per-job partial sums): the "
                                   "bit-exact fixed-point reference for a quantized model, the "
                                   "torch executor for a float one. Names the first actor below "
                                   "--threshold, which is where to look for a mismatch.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_options(p)
    p.add_argument("--backend", metavar="NAME", help="code generator (default: the platform's)")
    p.add_argument("--input", metavar="IN.bin", help="one input as raw float32 NCHW (default: "
                                                     "uniform random in --range)")
    p.add_argument("--range", type=float, nargs=2, default=(0.0, 1.0), metavar=("LO", "HI"),
                   help="value range of the random input")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input")
    p.add_argument("--threshold", type=float, default=40.0, help="SQNR (dB) below which an "
                                                                 "actor is reported")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output directory")
    p.add_argument("--time-passes", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--print-ir-after-all", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--dump-dir", help=argparse.SUPPRESS)
    p.add_argument("--verify-full", action="store_true", help=argparse.SUPPRESS)
    from alohac.compare import cmd_compare
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("list", help="list passes, zoo models, platforms or backends",
                       description="List what a name on the command line may be. --json prints "
                                   "one JSON object keyed by name.")
    p.add_argument("what", choices=["passes", "zoo", "platforms", "backends"])
    p.add_argument("--json", action="store_true", help="print one JSON object keyed by name")
    p.set_defaults(func=cmd_list)
    _add_plugin_commands(sub)
    for p in [parser, *sub.choices.values()]:
        p.formatter_class = HelpFormatter
    return parser


def _add_plugin_commands(sub) -> None:
    """Subcommands other packages register under the `aloha.commands` entry point (the service's
    `serve`): each names a function (subparsers, exit codes help) that adds its parser. The driver
    does not import them otherwise: they sit above it and may run its commands."""
    from importlib.metadata import entry_points
    for ep in sorted(entry_points(group="aloha.commands"), key=lambda e: e.name):
        if ep.name not in sub.choices:
            ep.load()(sub, EXIT_CODES_HELP)


# a setting a pass may miss (MissingSetting.setting) -> the flag that gives it, its argparse dest
SETTING_FLAGS = {"target": ("give --target PLATFORM", "target"),
                 "dataset": ("give --data DATA", "data"),
                 "allow_overflow": ("pass --allow-overflow to report it anyway", "allow_overflow")}


def setting_in_flags(e: AlohaError, args) -> AlohaError:
    """`e` in the command line's words: a missing setting the command has a flag for names the
    flag (the library's hint names the API's setting)."""
    flag = SETTING_FLAGS.get(getattr(e, "setting", ""))
    if isinstance(e, MissingSetting) and flag and hasattr(args, flag[1]):
        e.hint = e.advice(flag[0])
    return e


def main(argv: list[str] | None = None) -> int:
    from aloha_ir.errors import show_warnings_as_one_line
    show_warnings_as_one_line()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except AlohaError as e:
        if args.debug:
            raise
        print(f"alohac: {e.kind}: {setting_in_flags(e, args).one_line()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        detail = getattr(e, "detail", "")
        print("alohac: interrupted" + (f"; {detail}" if detail else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_went_away()
    except Exception as e:  # a compiler bug: one line unless --debug
        if args.debug:
            raise
        print(f"alohac: internal error: {e.__class__.__name__}: {e} (rerun with --debug for the "
              "traceback)", file=sys.stderr)
        return 1


def _reader_went_away() -> int:
    """The reader of our output closed the pipe (`alohac list passes | head -1`): stop quietly with
    the shell's status for a process ended by SIGPIPE, 128 + 13. Standard output is pointed at
    /dev/null so that the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


if __name__ == "__main__":
    sys.exit(main())
