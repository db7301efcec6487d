"""Which thread of the generated program runs each actor, and each thread's static order.

The generated program runs one thread per processing unit. An actor the mapping placed runs on its
unit's thread; one it leaves unplaced (input, output, gather) joins the thread of the nearest
programmable (cpu) unit -- that of the nearest placed actor, consumers before producers, else the
platform's first cpu unit -- or, on a platform without one, keeps a thread of its own (`@name`).
A thread fires its actors frame after frame in the order of one frame's self-timed schedule
(analyze-schedule's `order`: each firing's position in the one-frame start order).

backends/codegen builds its threads from these; passes/size_buffers.py sizes the FIFOs for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def home_threads(actors: Sequence[str], unit: Mapping[str, str],
                 channels: Iterable[tuple[str, str]], cpu_units: Sequence[str]) -> dict[str, str]:
    """Actor -> the thread that runs it: its unit, its home cpu unit if it is unplaced, or
    `@actor` (unplaced on a platform without a cpu unit). `channels` are the (producer, consumer)
    pairs of the channels between actors, in the graph's order."""
    channels = list(channels)
    near: dict[str, list[str]] = {a: [] for a in actors}
    for src, dst in channels:
        near[src].append(dst)
    for src, dst in channels:
        near[dst].append(src)
    threads = {}
    for a in actors:
        if unit.get(a):
            threads[a] = unit[a]
            continue
        if not cpu_units:
            threads[a] = f"@{a}"
            continue
        seen, frontier, found = {a}, [a], None
        while frontier and found is None:
            nxt = []
            for i in frontier:
                for j in near[i]:
                    if j not in seen:
                        seen.add(j)
                        nxt.append(j)
            found = next((unit[j] for j in nxt if unit.get(j) in cpu_units), None)
            frontier = nxt
        threads[a] = found or cpu_units[0]
    return threads


def static_orders(slots: Mapping[str, Iterable[int]], thread: Mapping[str, str]
                  ) -> dict[str, list[str]]:
    """Thread -> its actors' firings of one frame, in the order of their positions in the one-frame
    start order (`slots`: actor -> the positions of its firings); threads in the order of their
    first firing."""
    at = sorted((s, a) for a, positions in slots.items() for s in positions)
    orders: dict[str, list[str]] = {}
    for _, a in at:
        orders.setdefault(thread[a], []).append(a)
    return orders
