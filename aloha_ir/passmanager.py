"""The PassManager: pipeline text in, verified IR and typed analysis results out.

    result = PassManager.parse("canonicalize,analyze-cost").run(module)
    result.module, result.report("analyze-cost")      # result.analyses["analyze-cost"]["net"]

Pipeline text is xDSL's (`quantize{bits=8,method=ptq},analyze-cost`); options are the passes' dataclass
fields, and pass names resolve in a `PassRegistry` (xDSL's universe idea: `parse(spec, registry=...)`,
by default the passes installed under the `aloha.passes` entry-point group), so this IR package
imports no pass. Before each pass its declared requirements are checked (`requires`: IR level,
target, data; aloha_ir.analysis), after it the analyses it does not `preserve` are dropped and the IR
is verified (each op's shape rules; xDSL's full generic verification with verify_full=True); a
failure names the pass and the op. Instruments (aloha_ir.instruments: `time_passes`,
`print_ir_after_all`, `dump_dir`, or a caller's own objects) observe the run without touching the
passes.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, ClassVar, TextIO

from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.utils.arg_spec import parse_pipeline
from xdsl.utils.exceptions import ArgSpecParseError, VerifyException

from aloha_ir.analysis import (
    CSDF,
    CSDF_MAPPED,
    NN,
    NN_ANY,
    PRESERVE_ALL,
    PRESERVE_NONE,
    Preserves,
    Requires,
    report_of,
)
from aloha_ir.annotations import annotation_fields
from aloha_ir.context import AlohaContext, make_context
from aloha_ir.errors import (
    AlohaError,
    InternalError,
    IRVerifyError,
    MissingSetting,
    PassError,
    UsageError,
    did_you_mean,
)
from aloha_ir.instruments import DumpIR, PassInstrument, PassTiming, PrintIRAfterAll, TimePasses
from aloha_ir.verify import verify_fast, verify_full

ENTRY_POINT_GROUP = "aloha.passes"


@dataclass(frozen=True)
class AlohaPass(ModulePass):
    """What every pass declares: `requires` (checked before it runs), `preserves` (the analyses
    that survive it) and, for a pass that brings the IR to a level, `provides` (requirement errors
    then say to run it)."""

    requires: ClassVar[Requires] = Requires()
    preserves: ClassVar[Preserves] = PRESERVE_NONE
    provides: ClassVar[str] = ""

    def requirements(self) -> Requires:
        """What this instance needs: `requires`, unless its options change it (override)."""
        return self.requires


@dataclass(frozen=True)
class TransformPass(AlohaPass):
    """A pass that changes the IR: it keeps no analysis unless it says so in `preserves`."""


@dataclass(frozen=True)
class AnalysisPass(AlohaPass):
    """A pass that only computes reports and annotates the IR with them: it keeps every analysis,
    and when a later pass does not keep its results, the PassManager drops its reports and the
    attributes it lists in `annotates` (on the graph and the ops in it), so no stale figure (a FIFO
    size of the previous mapping) stays in the IR either."""

    preserves: ClassVar[Preserves] = PRESERVE_ALL
    annotates: ClassVar[frozenset[str]] = frozenset()


class PassRegistry:
    """Pass names -> "module:Class", imported on demand (listing names imports nothing)."""

    def __init__(self, targets: Mapping[str, str]):
        self.targets = dict(targets)

    def names(self) -> list[str]:
        return sorted(self.targets)

    def pass_class(self, name: str) -> type[ModulePass]:
        try:
            target = self.targets[name]
        except KeyError:
            raise UsageError(f"unknown pass '{name}'",
                             hint=did_you_mean(name, self.names(), "known passes") +
                             " (alohac list passes)") from None
        module, cls = target.split(":")
        return getattr(importlib.import_module(module), cls)

    def provider(self, level: str) -> str | None:
        """The name of a pass that brings the IR to `level` (None if none says so)."""
        for name in self.names():
            if getattr(self.pass_class(name), "provides", "") == level:
                return name
        return None


@functools.cache
def default_registry() -> PassRegistry:
    """Every pass installed under the `aloha.passes` entry points (each names a mapping of pass
    name -> "module:Class"; the bundled passes are one, an out-of-tree platform can add its own)."""
    targets: dict[str, str] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        targets.update(ep.load())
    if not targets:
        raise InternalError(f"no pass is registered under the '{ENTRY_POINT_GROUP}' entry points",
                            hint="the installation is stale: reinstall with pip install -e .")
    return PassRegistry(targets)


@dataclass
class PipelineResult:
    module: ModuleOp
    analyses: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> graph -> report
    timings: list[PassTiming] = field(default_factory=list)

    def report(self, name: str, graph: str | None = None) -> Any:
        """The report `name` of `graph`, or of the only graph it describes."""
        return report_of(self.analyses, name, graph)


def _spec_error(spec: str, e: Exception) -> UsageError:
    return UsageError(f"cannot parse pipeline '{spec}': "
                      f"{str(getattr(e, 'msg', e)).splitlines()[0]}",
                      hint="write name{option=value,...},name2")


def module_graphs(module: ModuleOp) -> dict[str, tuple[str, Any]]:
    """Graph symbol -> ("nn" or "csdf", the graph op), for the module's top-level graphs."""
    from aloha_ir.dialects import csdf, nn
    return {op.sym_name.data: (NN if isinstance(op, nn.GraphOp) else CSDF, op)
            for op in module.ops if isinstance(op, (nn.GraphOp, csdf.GraphOp))}


def check_requirements(p: ModulePass, ctx: AlohaContext, module: ModuleOp,
                       registry: PassRegistry | None = None) -> None:
    """Raise a PassError naming what `p` needs and the pass that provides it, unless the module
    and the context give `p` what it declares (`requirements()`, else `requires`)."""
    from aloha_ir.dialects import csdf, nn
    req: Requires = p.requirements() if hasattr(p, "requirements") else \
        getattr(p, "requires", Requires())

    def provider(level: str) -> str | None:
        return (registry or default_registry()).provider(level)

    def first(level: str) -> str:
        return f"run {provider(level)} first" if provider(level) else \
            "give the pass IR at that level"
    nn_graphs = [op for op in module.ops if isinstance(op, nn.GraphOp)]
    csdf_graphs = [op for op in module.ops if isinstance(op, csdf.GraphOp)]
    if req.level in (NN, NN_ANY) and not nn_graphs:
        raise PassError(f"{p.name} needs an nn graph and the module has none",
                        hint="give it a model (ONNX, zoo:NAME) or nn IR")
    if req.level == NN:
        derived = {g.source_name: g.sym_name.data for g in csdf_graphs
                   if g.source_name is not None}
        for g in nn_graphs:
            if g.sym_name.data in derived:
                raise PassError(
                    f"{p.name} transforms nn graph @{g.sym_name.data}, which was already lowered "
                    f"to csdf graph @{derived[g.sym_name.data]}: the csdf graph would no longer "
                    "match it", hint=f"run {p.name} before {provider(CSDF) or 'the lowering'}: "
                    "the nn passes first, then the lowering, then partition and map")
    if req.level in (CSDF, CSDF_MAPPED) and not csdf_graphs:
        raise PassError(f"{p.name} needs a csdf graph", hint=first(CSDF))
    if req.level == CSDF_MAPPED:
        for g in csdf_graphs:
            if g.platform is None:
                raise PassError(f"{p.name} needs a mapped graph",
                                where=f"csdf.graph @{g.sym_name.data}", hint=first(CSDF_MAPPED))
    if req.target and not getattr(p, "target", "") and getattr(ctx, "target", None) is None:
        raise MissingSetting(f"{p.name} needs a target platform", setting="target",
                             how="set the context's target", otherwise=f"write {p.name}"
                             "{target=NAME}")
    if req.data and not getattr(p, "data", "") and getattr(ctx, "dataset", None) is None:
        raise MissingSetting(f"{p.name} needs data to run the network on", setting="dataset",
                             how="set the context's dataset",
                             otherwise="give the pass data=digits (or mnist:DIR, ...)")


def invalidate(p: ModulePass, ctx: AlohaContext, module: ModuleOp) -> None:
    """Drop the cached analyses, the analysis reports and their IR annotations `p` does not
    preserve."""
    preserved: Preserves = getattr(p, "preserves", PRESERVE_NONE)
    if preserved.everything:
        return
    graphs = module_graphs(module)
    levels = {name: level for name, (level, _) in graphs.items()}
    ctx.am.invalidate(preserved, levels)
    for level, graph in graphs.values():
        if level == CSDF:
            _drop_stale_annotations(graph, lambda analysis, level=level:
                                    not preserved.keeps(analysis, level))
    for name, annotates in ctx.am.reports.items():
        reports = ctx.analyses.get(name)
        if reports is None:
            continue
        for graph in list(reports):
            if graph not in levels or not preserved.keeps(name, levels[graph]):
                del reports[graph]
                if graph in graphs and annotates:
                    _drop_annotations(graphs[graph][1], annotates)
        if not reports:
            del ctx.analyses[name]


def _drop_stale_annotations(graph, stale: Callable[[str], bool]) -> None:
    """Drop the csdf annotations whose analysis (`Annotation.analysis`) is `stale`, on the graph and
    every op in it: also those read from a file, which no report of this pipeline lists."""
    for op in graph.walk():
        if not op.attributes:
            continue
        fields = annotation_fields(type(op))
        for key in [k for k in op.attributes if k in fields]:
            analysis = fields[key].analysis
            if analysis and stale(analysis):
                del op.attributes[key]


def _drop_annotations(graph, names: frozenset[str]) -> None:
    for op in graph.walk():
        for name in names & op.attributes.keys():
            del op.attributes[name]


class PassManager:
    def __init__(self, passes: list[ModulePass], *, verify_each: bool = True,
                 verify_full: bool = False,
                 time_passes: bool = False, print_ir_after_all: bool = False,
                 dump_dir: str | None = None, stream: TextIO | None = None,
                 registry: PassRegistry | None = None,
                 instruments: Sequence[PassInstrument] = ()):
        """`time_passes`, `print_ir_after_all` (both to `stream`, default stderr) and `dump_dir`
        are the driver's instruments; `instruments` adds any others, called in order after them."""
        self.passes = list(passes)
        self.verify_each = verify_each
        self.verify_full = verify_full
        self.registry = registry
        out = stream or sys.stderr
        self.instruments: list[PassInstrument] = [
            *([PrintIRAfterAll(out)] if print_ir_after_all else []),
            *([DumpIR(dump_dir)] if dump_dir else []),
            *([TimePasses(out)] if time_passes else []), *instruments]

    @classmethod
    def parse(cls, pipeline: str, registry: PassRegistry | None = None,
              **options) -> "PassManager":
        """The passes of `pipeline`, looked up in `registry` (default: the installed passes)."""
        registry = registry or default_registry()
        passes = []
        try:
            specs = list(parse_pipeline(pipeline.strip()))
        except ArgSpecParseError as e:
            raise _spec_error(pipeline, e) from None
        for spec in specs:
            pcls = registry.pass_class(spec.name)
            known = [f.name for f in dataclasses.fields(pcls)]
            for option in spec.normalize_parameter_names().parameters:
                if option not in known:
                    raise UsageError(f"pass '{spec.name}' has no option '{option}'",
                                     hint=did_you_mean(option, known, "its options")
                                     if known else "it takes none")
            try:
                passes.append(pcls.from_pass_spec(spec))
            except (ValueError, TypeError, ArgSpecParseError) as e:
                raise UsageError(f"bad options for pass '{spec.name}': "
                                 f"{str(e).splitlines()[0]}",
                                 hint="its options: " + (", ".join(known) or "none")) from None
        return cls(passes, registry=registry, **options)

    def run(self, module: ModuleOp, ctx: AlohaContext | None = None) -> PipelineResult:
        ctx = ctx or make_context()
        ctx.am.bind(module)
        result = PipelineResult(module)
        for instrument in self.instruments:
            instrument.run_before_pipeline(module)
        for index, p in enumerate(self.passes, 1):
            start = time.perf_counter()
            try:
                check_requirements(p, ctx, module, self.registry)
                p.apply(ctx, module)
            except AlohaError as e:
                if not e.where:
                    e.where = f"pass '{p.name}'"
                    e.args = (e.one_line(),)
                raise
            except VerifyException as e:
                raise PassError(str(e).splitlines()[0], where=f"pass '{p.name}'") from None
            except Exception as e:  # a bug in the pass: exit 1, but say which pass
                raise InternalError(f"{e.__class__.__name__}: {e}",
                                    where=f"pass '{p.name}'",
                                    hint="a compiler bug; rerun with --debug for the traceback"
                                    ) from e
            if getattr(p, "preserves", PRESERVE_NONE).everything and p.name in ctx.analyses:
                # an analysis's report (and what it wrote in the IR): dropped when it goes stale
                ctx.am.reports[p.name] = getattr(p, "annotates", frozenset())
            invalidate(p, ctx, module)
            elapsed = time.perf_counter() - start
            result.timings.append(PassTiming(p.name, elapsed))
            if self.verify_each:
                try:
                    (verify_full if self.verify_full else verify_fast)(module)
                except VerifyException as e:
                    raise IRVerifyError(str(e).splitlines()[0],
                                        where=f"IR after pass '{p.name}'",
                                        hint=getattr(e, "hint", "this is a compiler bug; rerun "
                                                     "with --dump-dir")) from None
            for instrument in self.instruments:
                instrument.run_after_pass(p, index, module, elapsed)
        result.analyses = {name: dict(reports) for name, reports in ctx.analyses.items()}
        for instrument in self.instruments:
            instrument.run_after_pipeline(module, result.timings)
        return result
