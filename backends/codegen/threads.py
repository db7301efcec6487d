"""Thread folding: one thread per processing unit, running its actors in the per-unit static order
of the one-frame self-timed schedule (the start order analyze-schedule records on the actors,
`order`), with the actors the mapping leaves unplaced folded into the thread of the nearest
programmable unit (aloha_ir.threads, whose rule the FIFO sizing of passes/size_buffers.py
shares). The static-order runtime runs the whole frame in one thread (flat_thread)."""

from __future__ import annotations

import itertools

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
