"""`analyze-schedule`: self-timed execution of the mapped CSDF graph (aloha_ir.selftimed).

Two runs: one frame on an empty pipeline gives `latency_s` and each actor's start and end; `frames`
frames back to back, at most `in_flight` unfinished at once (2: NEURAghe's two CE contexts, one running
and one waiting), give the periodic regime: `period_s`, `throughput_fps`, and per processing unit its
busy time per frame and utilisation (busy / period). Firing times are the `exec_times` the `map` pass
wrote (ns); an unmapped graph runs every actor on its own processor with its work as its time, which
is the setting of reference/csdf.md's closed form. Results: a `ScheduleReport`; actors get `start_s`
and `end_s` (latency run) and `order` (the positions of their firings in the one-frame run's start
order: the static order the generated code runs, per unit the subsequence of the actors on it),
channels `buffer` (maximum occupancy in tokens, over the stream and the one-frame run: the generated
code's FIFO sizes).

`ScheduleAnalysis` is the same schedule (default options, IR untouched) as a cached analysis: passes
that need a schedule (analyze-memory, analyze-energy) ask the context's AnalysisManager for it, which
holds analyze-schedule's own report until a pass changes the graph, then computes a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp

from aloha_ir import dataflow, rle, selftimed
from aloha_ir.analysis import (
    CSDF,
    Analysis,
    AnalysisManager,
    RepetitionAnalysis,
    Requires,
    analysis_of,
    manager_of,
)
from aloha_ir.context import record_reports
from aloha_ir.dialects import csdf
from aloha_ir.errors import PassError
from aloha_ir.passmanager import AnalysisPass


@dataclass
class PeUsage:
    unit: str
    kind: str
    busy_s: float  # per frame
    utilisation: float  # busy / period
    actors: list[str] = field(default_factory=list)


@dataclass
class ActorTiming:
    actor: str
    operator: str
    pe: str
    cost_s: float  # per frame
    start_s: float  # in the one-frame run
    end_s: float


@dataclass
class ScheduleReport:
    graph: str
    mapped: bool
    latency_s: float
    period_s: float
    per_pe: dict[str, PeUsage]
    per_actor: dict[str, ActorTiming]
    buffers: dict[str, int]  # channel -> tokens
    peak_tokens_bytes: int  # largest live set of the stream, at the IR's token sizes
    timeline: list[selftimed.Firing] = field(default_factory=list)  # the stream run
    frame_timeline: list[selftimed.Firing] = field(default_factory=list)  # one frame alone

    @property
    def throughput_fps(self) -> float:
        return 1.0 / self.period_s if self.period_s > 0 else float("inf")


def exec_seconds(actor: csdf.ActorOp) -> tuple[list[float], bool]:
    """Per-phase seconds from `exec_times` (ns), or the work as time if the actor is unmapped."""
    mapped = actor.exec_times
    if mapped is not None:
        return [v * 1e-9 for v in rle.expand(mapped)], True
    return [float(v) for v in rle.expand(actor.work_runs)], False


def schedule(graph: csdf.GraphOp, frames: int = 6, in_flight: int = 2, record: bool = False,
             annotate: bool = True, am: AnalysisManager | None = None) -> ScheduleReport:
    """The self-timed schedule of `graph` (its repetition vector from `am`, if given)."""
    phases, edges = graph.dataflow_graph()
    try:
        q = (am or AnalysisManager()).get(RepetitionAnalysis, graph).firings
    except dataflow.DataflowError as e:
        raise PassError(str(e), where=f"csdf.graph @{graph.sym_name.data}") from None
    actors = graph.actors()
    times, unit, mapped_any = {}, {}, False
    for a in actors:
        name = a.sym_name.data
        times[name], mapped = exec_seconds(a)
        mapped_any |= mapped
        unit[name] = a.pe or ""
    delay, tbytes = {}, {}
    for c in graph.channels():
        if c.delay_ns is not None:
            delay[c.sym_name.data] = c.delay_ns * 1e-9
        tbytes[c.sym_name.data] = c.token_bytes  # IR token size; analyze-memory rescales
    order = [a.sym_name.data for a in actors]
    cpu_units = {unit[a.sym_name.data] for a in actors if a.pe_kind == "cpu"}
    common = dict(unit=unit, delay=delay, token_bytes=tbytes, order=order, layer_first=cpu_units)
    try:
        one = selftimed.simulate(phases, edges, times, q, frames=1, record=True, **common)
        stream = selftimed.simulate(phases, edges, times, q, frames=max(1, frames),
                                    in_flight=in_flight, record=record, **common)
    except dataflow.DataflowError as e:
        raise PassError(str(e), where=f"csdf.graph @{graph.sym_name.data}") from None
    n = max(1, frames)
    # a finite run can end inside a transient; no stream is faster than its busiest processor
    period = max(stream.period(), max((b / n for p, b in stream.busy.items()
                                       if not p.startswith("@") or not mapped_any), default=0.0))
    per_pe: dict[str, PeUsage] = {}
    for a in actors:
        name = a.sym_name.data
        if not unit[name]:
            continue
        u = per_pe.setdefault(unit[name], PeUsage(unit[name], a.pe_kind or "",
                                                  stream.busy[unit[name]] / n, 0.0))
        u.actors.append(name)
    for u in per_pe.values():
        u.utilisation = u.busy_s / period if period > 0 else 0.0
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    slots: dict[str, list[int]] = {}
    for i, f in enumerate(one.timeline):  # start order; the simulator records ties causally
        starts.setdefault(f.actor, f.start)
        ends[f.actor] = f.end
        slots.setdefault(f.actor, []).append(i)
    per_actor = {}
    for a in actors:
        name = a.sym_name.data
        per_actor[name] = ActorTiming(name, a.kind.data, unit[name], sum(times[name]) * q[name] /
                                      phases[name], starts.get(name, 0.0), ends.get(name, 0.0))
        if annotate:
            a.start_s = starts.get(name, 0.0)
            a.end_s = ends.get(name, 0.0)
            a.order = slots.get(name, ())
    # a FIFO must hold what either regime needs: the generated program runs each unit's firings
    # in the one-frame order, frame after frame (backends/codegen/ explains why that suffices)
    buffers = {c: max(n, one.max_tokens[c]) for c, n in stream.max_tokens.items()}
    if annotate:
        for c in graph.channels():
            c.buffer = buffers[c.sym_name.data]
        graph.latency_s = one.latency
        graph.period_s = period
    return ScheduleReport(graph.sym_name.data, mapped_any, one.latency, period, per_pe, per_actor,
                          buffers, stream.peak_bytes, stream.timeline, one.timeline)


class ScheduleAnalysis(Analysis):
    """The self-timed schedule of a csdf graph as it is now (default frames and in-flight
    frames, or analyze-schedule's report while the graph is unchanged)."""

    name = "schedule"
    level = CSDF

    @classmethod
    def compute(cls, graph: csdf.GraphOp, am: AnalysisManager) -> ScheduleReport:
        return schedule(graph, annotate=False, am=am)


def schedule_of(ctx, graph: csdf.GraphOp) -> ScheduleReport:
    """The schedule of `graph` from the context's analysis manager (never stale: a pass that does
    not preserve it drops it)."""
    return analysis_of(ctx, ScheduleAnalysis, graph)


@dataclass(frozen=True)
class AnalyzeSchedulePass(AnalysisPass):
    """Self-timed schedule: latency, period/throughput, per-PE utilisation, timeline."""

    name = "analyze-schedule"
    requires = Requires(level=CSDF)
    annotates = frozenset({"csdf.start_s", "csdf.end_s", "csdf.order",  # csdf annotations' keys
                           "csdf.buffer", "csdf.latency_s", "csdf.period_s"})

    frames: int = 6
    in_flight: int = 2
    timeline: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.frames < 1 or self.in_flight < 0:
            raise PassError("analyze-schedule: frames must be >= 1 and in_flight >= 0")
        am = manager_of(ctx)
        reports = {}
        for g in csdf.csdf_graphs(op):
            reports[g.sym_name.data] = report = schedule(g, self.frames, self.in_flight,
                                                         self.timeline, am=am)
            am.record(ScheduleAnalysis, g, report)  # later passes use it, options included
        record_reports(ctx, self.name, reports)
