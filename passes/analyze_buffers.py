"""`analyze-buffers`: the smallest FIFO capacities that keep the schedule's throughput, and the
storage/throughput trade-off below them (aloha_ir.buffers; SDF3's buffer sizing on the same model).

The throughput kept is analyze-schedule's: the exact periodic regime with the same frames in flight
(`in_flight`, 2 by default) on the mapping as it is. Capacities are searched for the channels between
actors; an actor's reuse self-loop keeps the size analyze-schedule gives it (the two overlaps added,
exact for sequential firing). Bytes are the deployed storage of each channel (analyze-memory's
`deployed_memory`: the data type the graph is mapped at, each tensor in its own storage type).

`pareto=true` adds the trade-off points: from the least capacities that do not deadlock, each the
smallest total that makes the period shorter, up to the maximal throughput; `budget_bytes=N` picks
the fastest point whose FIFOs fit in N bytes (it implies the trade-off).

These are the self-timed execution's capacities (SDF3's model), not the generated program's: a
unit's thread runs its actors in a static order and the C runtime's FIFOs free space at the read
and claim it at the write, which this search does not model, so a program with these capacities
may deadlock (tests/test_size_buffers.py has a graph where it does). The program's own least
capacities are size-buffers' (passes/size_buffers.py: the same CapacitySearch under the threads'
static orders and the runtime's FIFO semantics), which `alohac compile --buffers minimal` uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp

from aloha_ir import buffers
from aloha_ir.analysis import CSDF, Requires, manager_of
from aloha_ir.context import record_reports
from aloha_ir.dataflow import DataflowError
from aloha_ir.dialects import csdf
from aloha_ir.errors import PassError
from aloha_ir.passmanager import AnalysisPass
from passes.analyze_memory import deployed_memory
from passes.analyze_schedule import MAX_FRAMES, schedule, timed_graph

@dataclass
class SizingPoint:
    fifo_tokens: int  # between actors
    fifo_bytes: int  # all channels, deployed
    period_s: float
    capacities: dict[str, int]  # channel -> tokens

@dataclass
class BuffersReport:
    graph: str
    period_s: float  # analyze-schedule's, kept by `minimal`
    schedule: SizingPoint  # analyze-schedule's capacities
    minimal: SizingPoint  # the least that keep its period
    tradeoff: list[SizingPoint] = field(default_factory=list)  # pareto=true
    budget_bytes: int | None = None
    tradeoff_complete: bool | None = None  # False: explored up to a bound (aloha_ir.buffers)
    within_budget: SizingPoint | None = None  # the fastest point that fits the budget

    def to_json(self) -> dict:
        def point(p: SizingPoint | None):
            return None if p is None else {"fifo_tokens": p.fifo_tokens,
                                           "fifo_bytes": p.fifo_bytes, "period_s": p.period_s}
        return {"period_s": self.period_s, "schedule": point(self.schedule),
                "minimal": {**point(self.minimal), "capacities": self.minimal.capacities},
                "tradeoff": [point(p) for p in self.tradeoff],
                "tradeoff_complete": self.tradeoff_complete,
                "budget_bytes": self.budget_bytes, "within_budget": point(self.within_budget)}

def analyze(module: ModuleOp, graph: csdf.GraphOp, am, in_flight: int, pareto: bool,
            budget_bytes: int | None, max_frames: int) -> BuffersReport:
    where = f"csdf.graph @{graph.sym_name.data}"
    tg = timed_graph(graph, am)
    start = schedule(graph, in_flight, annotate=False, am=am, max_frames=max_frames).buffers
    inter = {e.name for e in tg.edges if e.src != e.dst}
    datatype = graph.datatype or "f32"
    has_source = csdf.source_graph(module, graph) is not None

    def sized(caps: dict[str, int], period: float) -> SizingPoint:
        if has_source:
            per_channel = deployed_memory(module, graph, datatype, caps)[1]
        else:  # a csdf graph alone: the IR's token sizes
            per_channel = {c: caps[c] * tg.token_bytes[c] for c in caps}
        return SizingPoint(sum(caps[c] for c in inter), sum(per_channel.values()),
                           period * tg.scale, dict(caps))

    try:  # one search: the trade-off reuses the runs of the minimal sizes
        search = buffers.CapacitySearch(tg.phases, tg.edges, tg.ticks, tg.firings, start,
                                        in_flight=in_flight, max_frames=max_frames,
                                        **tg.options())
        minimal = search.minimal()
        curve = search.tradeoff() if pareto or budget_bytes is not None else None
    except DataflowError as e:
        raise PassError(str(e), where=where) from None
    report = BuffersReport(graph.sym_name.data, minimal.period * tg.scale,
                           sized(start, minimal.period), sized(minimal.capacities, minimal.period),
                           [sized(p.capacities, p.period) for p in curve.points] if curve else [],
                           budget_bytes, curve.complete if curve else None)
    if budget_bytes is not None:
        fits = [p for p in report.tradeoff if p.fifo_bytes <= budget_bytes]
        report.within_budget = min(fits, key=lambda p: (p.period_s, p.fifo_bytes)) if fits else None
    return report

@dataclass(frozen=True)
class AnalyzeBuffersPass(AnalysisPass):
    """Least FIFO capacities at the schedule's throughput; the storage/throughput trade-off."""

    name = "analyze-buffers"
    requires = Requires(level=CSDF)

    in_flight: int = 2
    pareto: bool = False
    budget_bytes: int = -1  # -1: no budget
    max_frames: int = MAX_FRAMES

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.in_flight < 0 or self.max_frames < 1 or self.budget_bytes < -1:
            raise PassError("analyze-buffers: in_flight must be >= 0, max_frames >= 1 and "
                            "budget_bytes >= 0 (or -1: none)")
        am = manager_of(ctx)
        budget = None if self.budget_bytes == -1 else self.budget_bytes
        reports = {g.sym_name.data: analyze(op, g, am, self.in_flight, self.pareto, budget,
                                            self.max_frames)
                   for g in csdf.csdf_graphs(op)}
        record_reports(ctx, self.name, reports)
