"""`analyze-schedule`: self-timed execution of the mapped CSDF graph (aloha_ir.selftimed).

Two runs: one frame on an empty pipeline gives `latency_s` and each actor's start and end; frames back
to back, at most `in_flight` unfinished at once (2: NEURAghe's two CE contexts, one running and one
waiting), run until the state recurs, which gives the periodic regime exactly: `period_s` (the cycle's
time over its frames; a cycle may span several frames), `throughput_fps`, the frames before the regime
(`transient_frames`) and in one cycle (`cycle_frames`), and per processing unit its busy time per frame
and utilisation (busy / period) in the regime. No option changes these figures; `max_frames` only
bounds the search. With no bound on frames in flight (`in_flight=0`, the unbounded-FIFO regime of
reference/csdf.md's closed form) the period is that of the slowest strongly connected part.

Times are integers, so the recurrence is exact: the `exec_times` the `map` pass wrote (ns), or for an
unmapped graph every actor on its own processor with its work as its time. Results: a
`ScheduleReport`; actors get `start_s` and `end_s` (latency run) and `order` (the positions of their
firings in the one-frame run's start order: the static order the generated code runs, per unit the
subsequence of the actors on it), channels `buffer` (maximum occupancy in tokens, over the one-frame
run and the stream up to the recurrence, which covers the whole infinite run: the generated code's
FIFO sizes).

`ScheduleAnalysis` is the same schedule (default options, IR untouched) as a cached analysis: passes
that need a schedule (analyze-memory, analyze-energy) ask the context's AnalysisManager for it, which
holds analyze-schedule's own report until a pass changes the graph, then computes a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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
    transient_frames: int | None = None  # frames before the periodic regime (None: unbounded)
    cycle_frames: int | None = None  # frames of one cycle of the regime

    @property
    def throughput_fps(self) -> float:
        return 1.0 / self.period_s if self.period_s > 0 else float("inf")


def exec_ticks(actor: csdf.ActorOp) -> tuple[list[int], bool]:
    """Per-phase times as integers: `exec_times` (ns) if mapped, else the work (its own unit)."""
    mapped = actor.exec_times
    if mapped is not None:
        return list(rle.expand(mapped)), True
    return list(rle.expand(actor.work_runs)), False


MAX_FRAMES = 10_000  # the default bound on the frames simulated to find the periodic regime


@dataclass(frozen=True)
class TimedGraph:
    """A csdf graph as the self-timed simulator takes it: integer times on one clock (ns when
    mapped, work units when not; `scale` converts to seconds), units, link delays, the static
    priority order, the cpu units that run layer-first."""

    phases: dict[str, int]
    edges: list[dataflow.Edge]
    firings: dict[str, int]
    ticks: dict[str, list[int]]
    scale: float
    unit: dict[str, str]
    delay: dict[str, float]
    order: list[str]
    layer_first: frozenset[str]
    token_bytes: dict[str, int]
    mapped: bool

    def options(self) -> dict:
        """The simulator's keyword arguments for this graph's mapping."""
        return dict(unit=self.unit, delay=self.delay, order=self.order,
                    layer_first=self.layer_first)


def timed_graph(graph: csdf.GraphOp, am: AnalysisManager | None = None) -> TimedGraph:
    """`graph` ready to simulate (its repetition vector from `am`, if given)."""
    where = f"csdf.graph @{graph.sym_name.data}"
    phases, edges = graph.dataflow_graph()
    try:
        q = (am or AnalysisManager()).get(RepetitionAnalysis, graph).firings
    except dataflow.DataflowError as e:
        raise PassError(str(e), where=where) from None
    actors = graph.actors()
    ticks, unit, mapped = {}, {}, {}
    for a in actors:
        name = a.sym_name.data
        ticks[name], mapped[name] = exec_ticks(a)
        unit[name] = a.pe or ""
    mapped_any = any(mapped.values())
    # one clock: ns when the graph is mapped (an unmapped actor's work counts as seconds, as before)
    scale = 1e-9 if mapped_any else 1.0
    if mapped_any:
        ticks = {a: t if mapped[a] else [w * 10 ** 9 for w in t] for a, t in ticks.items()}
    delay, tbytes = {}, {}
    for c in graph.channels():
        if c.delay_ns is not None:
            delay[c.sym_name.data] = c.delay_ns if mapped_any else c.delay_ns * 1e-9
        tbytes[c.sym_name.data] = c.token_bytes  # IR token size; analyze-memory rescales
    return TimedGraph(phases, edges, q, ticks, scale, unit, delay,
                      [a.sym_name.data for a in actors],
                      frozenset(unit[a.sym_name.data] for a in actors if a.pe_kind == "cpu"),
                      tbytes, mapped_any)


def schedule(graph: csdf.GraphOp, in_flight: int = 2, record: bool = False, annotate: bool = True,
             am: AnalysisManager | None = None, max_frames: int = MAX_FRAMES) -> ScheduleReport:
    """The self-timed schedule of `graph` (its repetition vector from `am`, if given)."""
    where = f"csdf.graph @{graph.sym_name.data}"
    tg = timed_graph(graph, am)
    phases, edges, q, ticks, scale, unit = tg.phases, tg.edges, tg.firings, tg.ticks, tg.scale, \
        tg.unit
    actors = graph.actors()
    tbytes, mapped_any, common = tg.token_bytes, tg.mapped, tg.options()
    try:
        one = selftimed.simulate(phases, edges, ticks, q, frames=1, record=True,
                                 token_bytes=tbytes, **common)
        if in_flight >= 1:
            stream = selftimed.simulate(phases, edges, ticks, q, frames=max_frames,
                                        in_flight=in_flight, record=record, token_bytes=tbytes,
                                        periodic=True, **common)
            regime = stream.regime
            period, transient, cycle = regime.period, regime.transient_frames, regime.frames
            busy = {p: b / regime.frames for p, b in regime.busy.items()}
            max_tokens, peak = stream.max_tokens, stream.peak_bytes
            timeline = stream.timeline
        else:
            steady = selftimed.steady_state(phases, edges, ticks, q, in_flight=0,
                                            max_frames=max_frames, **common)
            period, transient, cycle, busy = steady.period, None, None, steady.busy_per_frame
            # FIFOs are unbounded in this regime: the sizes are what one frame needs
            max_tokens, peak, timeline = one.max_tokens, one.peak_bytes, one.timeline
    except dataflow.DataflowError as e:
        raise PassError(str(e), where=where) from None
    period *= scale
    per_pe: dict[str, PeUsage] = {}
    for a in actors:
        name = a.sym_name.data
        if not unit[name]:
            continue
        u = per_pe.setdefault(unit[name], PeUsage(unit[name], a.pe_kind or "",
                                                  busy.get(unit[name], 0.0) * scale, 0.0))
        u.actors.append(name)
    for u in per_pe.values():
        u.utilisation = u.busy_s / period if period > 0 else 0.0
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    slots: dict[str, list[int]] = {}
    for i, f in enumerate(one.timeline):  # start order; the simulator records ties causally
        starts.setdefault(f.actor, f.start * scale)
        ends[f.actor] = f.end * scale
        slots.setdefault(f.actor, []).append(i)
    per_actor = {}
    for a in actors:
        name = a.sym_name.data
        per_actor[name] = ActorTiming(name, a.kind.data, unit[name], sum(ticks[name]) * scale *
                                      q[name] / phases[name], starts.get(name, 0.0),
                                      ends.get(name, 0.0))
        if annotate:
            a.start_s = starts.get(name, 0.0)
            a.end_s = ends.get(name, 0.0)
            a.order = slots.get(name, ())
    # a FIFO must hold what either regime needs: the generated program runs each unit's firings
    # in the one-frame order, frame after frame (backends/codegen/ explains why that suffices)
    buffers = {c: max(n, one.max_tokens[c]) for c, n in max_tokens.items()}
    latency = one.latency * scale
    if annotate:
        for c in graph.channels():
            c.buffer = buffers[c.sym_name.data]
        graph.latency_s = latency
        graph.period_s = period
    return ScheduleReport(graph.sym_name.data, mapped_any, latency, period, per_pe, per_actor,
                          buffers, peak, _seconds(timeline, scale), _seconds(one.timeline, scale),
                          transient, cycle)


def _seconds(timeline: list[selftimed.Firing], scale: float) -> list[selftimed.Firing]:
    if scale == 1.0:
        return timeline
    return [replace(f, start=f.start * scale, end=f.end * scale) for f in timeline]


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

    in_flight: int = 2
    timeline: bool = False
    max_frames: int = MAX_FRAMES

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.max_frames < 1 or self.in_flight < 0:
            raise PassError("analyze-schedule: max_frames must be >= 1 and in_flight >= 0")
        am = manager_of(ctx)
        reports = {}
        for g in csdf.csdf_graphs(op):
            reports[g.sym_name.data] = report = schedule(g, self.in_flight, self.timeline, am=am,
                                                         max_frames=self.max_frames)
            am.record(ScheduleAnalysis, g, report)  # later passes use it, options included
        record_reports(ctx, self.name, reports)
