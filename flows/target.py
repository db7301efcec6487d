"""The compile-for-a-target flow, as data: which passes run, in which order, with which options.

    flow = TargetFlow(load_platform("neuraghe-losa"), bits=8)
    report = flow.run(module)                 # a TargetReport: .to_json(), .markdown(title)
    flow.passes(user=PassManager.parse("canonicalize,map{strategy=fastest}").passes)

The stages (FINN's build steps, hls4ml's flows): canonicalize, the passes the backend the module is
bound for contributes (`Backend.extra_passes`: quantize-for-target, so a float model bound for a
fixed-point platform is generated in the data type the report predicts), analyze-cost,
convert-nn-to-csdf, partition, map, analyze-schedule, size-buffers (with buffers="minimal": the
generated program's least FIFO capacities instead of the schedule's), -memory, -energy,
-processors. A `Placement` (what the system-level search decides, what a mapping file records)
fixes partition and map.

A user's passes (the driver's `-p`, as pass objects) are merged, never text: each target stage the
user leaves out goes where the flow has it, so it runs after what it depends on
(`convert-nn-to-csdf,analyze-processors` gets partition, map, ... in between; the report needs every
analysis); an analysis of the csdf graph the user adds (`analyze-buffers`) runs after the flow's
transforms of it (else `map` would drop its report), and the user's other passes keep their place. A user who names a stage keeps their
options (`map{strategy=fastest}` is not overridden). One who names `map` has chosen the mapping:
partition, an optional transform, is then theirs to name too (`map{assign=...}` names the actors of
the graph as they left it); one who names `quantize` has chosen the formats (no
quantize-for-target).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from xdsl.passes import ModulePass

from aloha_ir.errors import MappingMismatch, PlacementError, UsageError
from archdesc.model import Platform
from flows.report import TargetReport

if TYPE_CHECKING:
    from backends.api import Backend


@dataclass(frozen=True)
class Placement:
    """A fixed partitioning and mapping: `parts` splits exactly those actors (the auto rule off),
    `assign` pins actors (as partition names them) to a unit or PE, `units` limits the units the
    greedy rule may use (empty: all). `source` is the mapping file it came from and `model` the
    model that file was made for ("" when the search built it): an assignment that does not fit
    the graph is then the file's fault (MappingMismatch, exit 3), not the compiler's."""

    parts: tuple[tuple[str, int], ...] = ()
    assign: tuple[tuple[str, str], ...] = ()
    units: tuple[str, ...] = ()
    source: str = ""
    model: str = ""


def _refreshed(passes: list[ModulePass], stages: list[ModulePass]) -> list[ModulePass]:
    """`passes` with each of the flow's analyses run again right after the last transform that
    left its last run stale (a user's analyze-schedule before their second map): the report
    describes the IR the pipeline leaves. The user's options of that analysis are kept."""
    from aloha_ir.analysis import NN, NN_ANY, PRESERVE_NONE
    out = list(passes)
    for stage in reversed(stages):  # inserted at one place, they keep the flow's order
        runs = [i for i, p in enumerate(passes) if p.name == stage.name]
        if not runs or not getattr(stage, "preserves", PRESERVE_NONE).everything:
            continue  # not run, or a transform (nothing to refresh)
        level = "nn" if stage.requirements().level in (NN, NN_ANY) else "csdf"
        stale = [i for i in range(runs[-1] + 1, len(passes))
                 if not getattr(passes[i], "preserves", PRESERVE_NONE).keeps(stage.name, level)]
        if stale:
            at = next(k for k, p in enumerate(out) if p is passes[stale[-1]]) + 1
            out.insert(at, passes[runs[-1]])
    return out


@dataclass(frozen=True)
class TargetFlow:
    """Compile for `platform` (see the module docstring): `bits` the deployment precision of a
    float model (0: the platform's default data type), `opp` the operating point ("": the
    platform's default), `placement` a fixed partition and mapping (None: the auto partition and
    the greedy rule), `allow_overflow` reports a model too large for the memories instead of
    failing, `timeline` records every firing (for a Gantt chart), `backend` the code generator the
    module is bound for (its extra_passes join the flow; None: figures only) and `data` the
    calibration data those passes may use. `buffers` sizes the FIFOs: "schedule" (analyze-schedule's
    occupancies) or "minimal" (size-buffers: the least capacities the generated program's threads
    need at their best period; a user who names size-buffers gets it with their options)."""

    # the stages a placement decides
    PLACED: ClassVar[frozenset[str]] = frozenset({"partition", "map"})

    platform: Platform
    bits: int = 0
    opp: str = ""
    placement: Placement | None = None
    allow_overflow: bool = False
    timeline: bool = False
    backend: type[Backend] | None = None
    data: str = ""
    buffers: str = "schedule"

    BUFFERS: ClassVar[tuple[str, ...]] = ("schedule", "minimal")

    def __post_init__(self):
        if self.buffers not in self.BUFFERS:
            raise UsageError(f"unknown FIFO sizing '{self.buffers}'", where="buffers",
                             hint="one of: " + ", ".join(self.BUFFERS))

    def stages(self) -> list[ModulePass]:
        """The flow's own passes, in order."""
        return self._stages(self.buffers == "minimal")

    def _stages(self, sized: bool) -> list[ModulePass]:
        from passes.analyze_cost import AnalyzeCostPass
        from passes.analyze_energy import AnalyzeEnergyPass
        from passes.analyze_memory import AnalyzeMemoryPass
        from passes.analyze_processors import AnalyzeProcessorsPass
        from passes.analyze_schedule import AnalyzeSchedulePass
        from passes.canonicalize import CanonicalizePass
        from passes.convert_nn_to_csdf import ConvertNnToCsdfPass
        from passes.map import MapPass
        from passes.partition import PartitionPass
        from passes.size_buffers import SizeBuffersPass
        p = self.placement
        if p is None:
            partition = PartitionPass(bits=self.bits, opp=self.opp)
            mapping = MapPass(bits=self.bits, opp=self.opp)
        else:
            partition = PartitionPass.parts(dict(p.parts), bits=self.bits, opp=self.opp)
            mapping = MapPass.pinned(dict(p.assign), p.units, bits=self.bits, opp=self.opp)
        deployed = self.backend.extra_passes(self) if self.backend is not None else []
        return [CanonicalizePass(), *deployed, AnalyzeCostPass(), ConvertNnToCsdfPass(),
                partition, mapping, AnalyzeSchedulePass(timeline=self.timeline),
                *([SizeBuffersPass()] if sized else []),
                AnalyzeMemoryPass(allow_overflow=self.allow_overflow), AnalyzeEnergyPass(),
                AnalyzeProcessorsPass()]

    def passes(self, user: Sequence[ModulePass] = ()) -> list[ModulePass]:
        """The flow's stages merged with the user's passes (see the module docstring)."""
        named = {p.name for p in user}
        stages = self._stages(self.buffers == "minimal" or "size-buffers" in named)
        if not user:
            return stages
        if self.placement is not None and named & self.PLACED:
            raise UsageError("the flow's placement decides partition and map; the user's passes "
                             "name them too", hint="drop partition and map from `user`, or give "
                             "the flow no placement")
        skip = named | ({"partition"} if "map" in named else set()) | \
            ({"quantize-for-target"} if "quantize" in named else set())
        order = {p.name: i for i, p in enumerate(stages)}
        out: list[ModulePass] = []
        done = 0
        for p in user:
            k = order.get(p.name)
            if k is None and _reads_the_dataflow_graph(p):
                k = max((order[n] + 1 for n in self.TRANSFORMED if n in order), default=None)
            if k is not None and k > done:
                out += [s for s in stages[done:k] if s.name not in skip]
                done = k
            out.append(p)
        return _refreshed(out + [s for s in stages[done:] if s.name not in skip], stages)

    # the stages that change the csdf graph: an analysis of it the user adds runs after them,
    # or the first of them would drop its report (it preserves no csdf analysis)
    TRANSFORMED: ClassVar[tuple[str, ...]] = ("convert-nn-to-csdf", "partition", "map")

    def context(self, quiet: bool = False):
        """A context with the platform as the target; `quiet` collects the passes' warnings in
        its `diagnostics` instead of printing them (a search that evaluates many candidates)."""
        from aloha_ir.context import make_context
        ctx = make_context()
        ctx.target = self.platform
        ctx.diagnostics.quiet = quiet
        return ctx

    def run(self, module, ctx=None, user: Sequence[ModulePass] = (), **instruments
            ) -> TargetReport:
        """Run `passes(user)` on `module` (in place) and report; `instruments` are the
        PassManager's (time_passes, print_ir_after_all, dump_dir, verify_full)."""
        from aloha_ir.passmanager import PassManager
        ctx = ctx if ctx is not None else self.context()
        try:
            result = PassManager(self.passes(user), **instruments).run(module, ctx)
        except PlacementError as e:
            p = self.placement
            if p is None or not p.source:
                raise
            raise MappingMismatch(f"does not fit {p.model or 'the model'}: {e.message}",
                                  where=p.source, hint=(f"{e.hint}; " if e.hint else "") +
                                  "make a mapping for this model with alohac explore-mapping"
                                  ) from None
        return TargetReport.from_analyses(result.analyses)


def _reads_the_dataflow_graph(p: ModulePass) -> bool:
    """An analysis of the csdf graph (not a transform): the flow runs it after its own transforms."""
    from aloha_ir.analysis import CSDF, CSDF_MAPPED, Requires
    from aloha_ir.passmanager import AnalysisPass
    if not isinstance(p, AnalysisPass):
        return False
    req = p.requirements() if hasattr(p, "requirements") else getattr(p, "requires", Requires())
    return req.level in (CSDF, CSDF_MAPPED)
