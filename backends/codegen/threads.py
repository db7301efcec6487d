"""Thread folding: one thread per processing unit, running its actors in the per-unit static order
of the one-frame self-timed schedule, with the actors the mapping leaves unplaced folded into the
thread of the nearest programmable unit."""

from __future__ import annotations

import itertools

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
    from passes.analyze_schedule import schedule
    report = schedule(graph, record=True, annotate=False)
    home = _homes(actors, fifos, index, platform)
    order: dict[str, list[int]] = {}
    for f in report.frame_timeline:  # start order; the simulator records ties causally
        a = index[f.actor]
        order.setdefault(actors[a].unit or home.get(a, f.unit), []).append(a)
    threads = []
    for unit, seq in order.items():
        runs = [(a, len(list(g))) for a, g in itertools.groupby(seq)]
        label = unit if not unit.startswith("@") else actors[seq[0]].name
        threads.append(ThreadView(len(threads), label, unit, runs))
    return threads


def _homes(actors: list[ActorView], fifos: list[FifoView], index: dict[str, int],
           platform) -> dict[int, str]:
    """Unplaced actor -> the programmable (cpu) unit it runs on: that of the nearest placed actor,
    consumers before producers, else the platform's first cpu unit (none: it keeps a thread)."""
    cpu = [u for u, pe in platform.units() if pe.kind == "cpu"]
    if not cpu:
        return {}
    near: dict[int, list[int]] = {a.index: [] for a in actors}
    for f in fifos:
        if not f.self_loop:
            near[index[f.src]].append(index[f.dst])
    for f in fifos:
        if not f.self_loop:
            near[index[f.dst]].append(index[f.src])
    homes = {}
    for a in actors:
        if a.unit:
            continue
        seen, frontier, found = {a.index}, [a.index], None
        while frontier and found is None:
            nxt = []
            for i in frontier:
                for j in near[i]:
                    if j not in seen:
                        seen.add(j)
                        nxt.append(j)
            found = next((actors[j].unit for j in nxt if actors[j].unit in cpu), None)
            frontier = nxt
        homes[a.index] = found or cpu[0]
    return homes
