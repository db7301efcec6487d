"""Thread folding: one thread per processing unit, running its actors in the per-unit static order
of the one-frame self-timed schedule (the start order analyze-schedule records on the actors,
`order`), with the actors the mapping leaves unplaced folded into the thread of the nearest
programmable unit (aloha_ir.threads, whose rule the FIFO sizing of passes/size_buffers.py
shares). The static-order runtime runs the whole frame in one thread (flat_thread), and
choose_runtime says which of the two a program gets when the user leaves it to alohac (`--runtime
auto`): the threads only when what they save beats what their hand-overs cost."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace

from aloha_ir import rle
from aloha_ir.dataflow import DataflowError, Edge
from aloha_ir.selftimed import simulate
from aloha_ir.threads import home_threads, static_orders
from backends.codegen.view import ActorView, FifoView, ThreadView


def unit_threads(graph, actors: list[ActorView], fifos: list[FifoView], index: dict[str, int],
                 platform) -> list[ThreadView]:
    """One thread per processing unit, running its actors in the one-frame schedule's order.

    The actors the mapping leaves unplaced (input, output, gather) join the thread of the nearest
    programmable unit: a thread of their own each would put more threads than cores on the
    machine, and every hand-over between them would cost a sleep and a wake-up. Folding keeps the
    program deadlock-free: the one-frame timeline, in start order, is one sequential execution of
    the graph (a firing starts after those whose tokens it reads and whose space it reuses) that
    holds no more tokens than the timed schedule, and every thread's order is a subsequence of it.
    """
    cpu = [u for u, pe in platform.units() if pe.kind == "cpu"]
    thread = home_threads([a.name for a in actors], {a.name: a.unit for a in actors},
                          [(f.src, f.dst) for f in fifos if not f.self_loop], cpu)
    # analyze-schedule's record; the verifier checked it is complete
    orders = static_orders({op.sym_name.data: op.order for op in graph.actors()}, thread)
    threads = []
    for unit, seq in orders.items():
        runs = [(index[a], len(list(g))) for a, g in itertools.groupby(seq)]
        label = unit if not unit.startswith("@") else seq[0]
        threads.append(ThreadView(len(threads), label, unit, runs))
    return threads


def flat_thread(graph, index: dict[str, int]) -> list[ThreadView]:
    """The static-order runtime's one thread: every firing of the frame in the one-frame
    schedule's start order (analyze-schedule's `order`). That order is one sequential execution of
    the graph (a firing starts after those whose tokens it reads) holding no more tokens than the
    timed schedule, which analyze-schedule's FIFO sizes cover; each frame ends with the FIFOs as it
    began, so frame after frame in this order never blocks."""
    seq = static_orders({op.sym_name.data: op.order for op in graph.actors()},
                        {op.sym_name.data: "static" for op in graph.actors()})["static"]
    runs = [(index[a], len(list(g))) for a, g in itertools.groupby(seq)]
    return [ThreadView(0, "static", "", runs)]


@dataclass(frozen=True)
class RuntimeChoice:
    """Why `runtime="auto"` chose the runtime it did (network.json's `runtime_choice`).

    One thread takes `one_thread_s` a frame (the actors' predicted seconds, summed: analyze-cost's
    figures, call overheads included). The threads take the schedule's `period_s` plus, for every
    FIFO transfer between two threads (`handovers` a frame), the platform's `handover_s`: what
    passing tokens to another thread costs the generated program beyond the copy, its sleeps and
    wake-ups amortised (a cpu unit's `handover` in the .arch, measured by
    benchmarks/runtime_sync.py). The schedule itself does not count it: it is the runtime's cost,
    not the platform's links'. The one thread also needs the FIFO sizes to hold its order (sizes
    from size-buffers are the threads' least, which the one thread's order may overflow)."""

    runtime: str
    one_thread_s: float
    period_s: float
    handovers: int
    handover_s: float
    fits_one_thread: bool

    @property
    def threads_s(self) -> float:
        """The threads' predicted seconds a frame, hand-overs included."""
        return self.period_s + self.handovers * self.handover_s

    def manifest(self) -> dict:
        return {**asdict(self), "threads_s": self.threads_s}


def handovers(actors: list[ActorView], threads: list[ThreadView]) -> int:
    """FIFO transfers a frame between two threads: each firing that writes tokens to a FIFO whose
    consumer runs on another thread, and each that reads new rows from one whose producer does."""
    thread = {a: t.index for t in threads for a, _ in t.order}
    src = {f: a.index for a in actors for f in a.outs}
    count = 0
    for a in actors:
        for p in a.ins:
            producer = actors[src[p.fifo]]
            if thread[producer.index] != thread[a.index]:
                count += sum(1 for rows in p.new if rows > 0)
                count += sum(1 for tokens in producer.prod if tokens > 0)
    return count


def one_thread_fits(actors: list[ActorView], fifos: list[FifoView], order: list[tuple[int, int]]
                    ) -> bool:
    """Whether the FIFO capacities hold the one thread's order (`order`: (actor, firings) runs of a
    frame), two frames of it from empty FIFOs: every read finds its tokens, every write its room,
    as the static-order runtime's aloha_fifo_read/write require. The program's FIFOs (reuse
    self-loops included, at the view's rates and capacities) are simulated with every actor on one
    processor in that order (aloha_ir.selftimed, fifo="program", as size-buffers sizes them)."""
    ends: dict[int, list] = {}  # fifo -> [producer, tokens per phase, consumer, tokens per phase]
    for a in actors:
        for f in a.outs:
            ends.setdefault(f, [None] * 4)[:2] = a.name, a.prod
        for p in a.ins:
            ends.setdefault(p.fifo, [None] * 4)[2:] = a.name, [n * p.row_tokens for n in p.new]
            if p.reuse >= 0:
                ends[p.reuse] = [a.name, [n * p.row_tokens for n in p.reuse_out],
                                 a.name, [n * p.row_tokens for n in p.reuse_in]]
    edges = [Edge(fifos[f].name, src, dst, rle.encode(out), rle.encode(into))
             for f, (src, out, dst, into) in ends.items()]
    phases = {a.name: a.phases for a in actors}
    try:
        simulate(phases, edges, {a: [1] * n for a, n in phases.items()}, phases,
                 unit=dict.fromkeys(phases, "thread"), frames=2,
                 static_order={"thread": [actors[i].name for i, n in order for _ in range(n)]},
                 capacity={fifos[f].name: fifos[f].capacity for f in ends}, fifo="program")
    except DataflowError:  # a read or a write that never happens: the one thread would stop
        return False
    return True


def choose_runtime(actors: list[ActorView], fifos: list[FifoView], threads: list[ThreadView],
                   flat: list[ThreadView], period_s: float, handover_s: float) -> RuntimeChoice:
    """`static` when one thread is predicted no slower than the threads with their hand-overs
    and the FIFOs hold its order, else `threads` (RuntimeChoice says why). A platform that gives
    no hand-over cost (`handover_s` 0: not measured) keeps the threads its mapping asks for."""
    choice = RuntimeChoice("threads", sum(a.cost_s for a in actors), period_s,
                           handovers(actors, threads), handover_s,
                           one_thread_fits(actors, fifos, flat[0].order))
    if handover_s > 0 and choice.fits_one_thread and choice.one_thread_s <= choice.threads_s:
        return replace(choice, runtime="static")
    return choice
