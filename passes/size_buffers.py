"""`size-buffers`: give every FIFO between actors the least capacity the generated program needs.

The program's execution is modelled as it runs (aloha_ir.selftimed with `static_order` and
fifo="program"): one thread per processing unit, the unplaced actors folded into their home cpu
unit's thread (aloha_ir.threads, the rule backends/codegen uses), each thread firing its actors
frame after frame in the one-frame schedule's order (analyze-schedule's `order`), and FIFOs with
the C runtime's semantics (a firing frees its inputs' space when it reads them, at its start, and
claims its outputs' space when it writes them, at its end, waiting with its thread held until they
have room). The threads' best period is that of this execution with no bound on the FIFOs (with
`in_flight` frames in flight at most, as analyze-schedule runs; with in_flight=0, where nothing else
bounds the stream, the period at analyze-schedule's capacities); aloha_ir.buffers.CapacitySearch
then lowers each channel in turn to its least capacity that keeps that period. Every smaller
capacity of a channel, the others as sized, deadlocks or lengthens the period.

Why the sizes are safe on the real machine: the program is a Kahn network with blocking reads and
writes, so whether it completes does not depend on timing; the modelled execution, each firing's
reads and writes as one step, is one of its executions (the C runtime reads the ports and writes
the outputs one after the other, which only lets a thread go on earlier); it runs frame after frame
for ever (its state recurs), so every run of the program completes.

The period kept is the threads' own best: usually analyze-schedule's self-timed period, but a
static order can be slower (a thread waits for its next firing while another actor of it could
go) or, on a shared unit, faster; `ProgramSizing` gives both. Reuse self-loops keep
analyze-schedule's capacities (the two overlaps added, exact for sequential firing).

Options: `in_flight` (2: analyze-schedule's default regime; 0: no bound, the capacities alone
bound the frames in flight), `max_frames` (bounds the search for the periodic regime), `target`
(the platform, when the graph is not mapped and the context has none: its cpu units are the
unplaced actors' homes). The pass writes `csdf.buffer` on every channel; it keeps analyze-schedule's
report (its `buffers` stay the schedule's own sizes) and drops analyze-memory's, which weighs the
FIFOs.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp

from aloha_ir import buffers, rle
from aloha_ir.analysis import CSDF, NN, AnalysisManager, Preserves, Requires, manager_of
from aloha_ir.context import AlohaContext
from aloha_ir.dataflow import DataflowError
from aloha_ir.dialects import csdf
from aloha_ir.errors import PassError
from aloha_ir.passmanager import TransformPass
from aloha_ir.selftimed import simulate
from aloha_ir.threads import home_threads, static_orders
from passes.analyze_schedule import MAX_FRAMES, schedule, timed_graph
from passes.target import mapped_platform, platform_of


@dataclass(frozen=True)
class ProgramSizing:
    """The generated program's least FIFO capacities at its threads' best period."""

    capacities: dict[str, int]  # channel -> tokens (reuse self-loops: analyze-schedule's)
    schedule: dict[str, int]  # analyze-schedule's capacities (what the program used before)
    searched: tuple[str, ...]  # the channels between actors
    period_s: float  # the threads' period at `capacities` (their best; see the module docstring)
    self_timed_period_s: float  # analyze-schedule's, for the same frames in flight
    threads: dict[str, list[str]]  # thread -> its actors' firings of one frame, in order

    @property
    def total(self) -> int:
        """Tokens of the channels between actors."""
        return sum(self.capacities[c] for c in self.searched)

    @property
    def keeps_self_timed_period(self) -> bool:
        return self.period_s <= self.self_timed_period_s * (1 + 1e-12)


def program_sizing(graph: csdf.GraphOp, cpu_units: list[str], in_flight: int = 2,
                   am: AnalysisManager | None = None,
                   max_frames: int = MAX_FRAMES) -> ProgramSizing:
    """The least capacities with which the program's threads (see the module docstring) neither
    deadlock nor run slower than they can; raises DataflowError when no periodic regime is found
    within `max_frames`."""
    tg = timed_graph(graph, am)
    sched = schedule(graph, in_flight, annotate=False, am=am, max_frames=max_frames)
    inter = [e for e in tg.edges if e.src != e.dst]
    thread = home_threads(tg.order, tg.unit, [(e.src, e.dst) for e in inter], cpu_units)
    slots: dict[str, list[int]] = {}
    for i, f in enumerate(sched.frame_timeline):  # analyze-schedule's `order`
        slots.setdefault(f.actor, []).append(i)
    orders = static_orders(slots, thread)
    options = dict(unit=thread, delay=tg.delay, order=tg.order, static_order=orders,
                   fifo="program")
    loops = {e.name: sched.buffers[e.name] for e in tg.edges if e.src == e.dst}
    if in_flight >= 1:  # the frames in flight bound the tokens: run unbounded, keep the maxima
        free = simulate(tg.phases, tg.edges, tg.ticks, tg.firings, frames=max_frames,
                        in_flight=in_flight, periodic=True, capacity=loops, **options)
        start = {**loops, **{e.name: max(free.max_tokens[e.name], *rle.expand(e.prod),
                                         *rle.expand(e.cons), e.initial, 1) for e in inter}}
    else:  # the schedule's capacities bound the stream (the program completes with them)
        start = dict(sched.buffers)
    search = buffers.CapacitySearch(tg.phases, tg.edges, tg.ticks, tg.firings, start,
                                    in_flight=in_flight, max_frames=max_frames, **options)
    best = search.minimal()
    return ProgramSizing(best.capacities, dict(sched.buffers), best.searched,
                         best.period * tg.scale, sched.period_s, orders)


def cpu_units_of(ctx, graph: csdf.GraphOp, target: str, pass_name: str) -> list[str]:
    """The cpu units of the platform `graph` runs on (mapped, the pass's target or the
    context's); none without a platform (every unplaced actor then keeps a thread)."""
    if graph.platform is not None:
        platform = mapped_platform(ctx, graph, target, pass_name)
    elif target or (isinstance(ctx, AlohaContext) and ctx.target is not None):
        platform = platform_of(ctx, target, pass_name)
    else:
        return []
    return [u for u, pe in platform.units() if pe.kind == "cpu"]


@dataclass(frozen=True)
class SizeBuffersPass(TransformPass):
    """Least FIFO capacities under the generated program's threads (csdf.buffer)."""

    name = "size-buffers"
    requires = Requires(level=CSDF)
    # the capacities change nothing the schedule, the repetition vector or the trade-off
    # analysis computed; what weighs the FIFOs (analyze-memory, -energy) is dropped
    preserves = Preserves(levels=frozenset({NN}),
                          names=frozenset({"repetition", "schedule", "analyze-repetition",
                                           "analyze-schedule", "analyze-buffers"}))

    in_flight: int = 2
    max_frames: int = MAX_FRAMES
    target: str = ""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.in_flight < 0 or self.max_frames < 1:
            raise PassError("size-buffers: in_flight must be >= 0 and max_frames >= 1")
        am = manager_of(ctx)
        for g in csdf.csdf_graphs(op):
            cpu = cpu_units_of(ctx, g, self.target, self.name)
            try:
                sizing = program_sizing(g, cpu, self.in_flight, am, self.max_frames)
            except DataflowError as e:
                raise PassError(f"size-buffers: {e}", where=f"csdf.graph @{g.sym_name.data}",
                                hint="raise max_frames, or compile with the schedule's "
                                     "capacities (--buffers schedule)") from None
            for c in g.channels():
                c.buffer = sizing.capacities[c.sym_name.data]
