"""Minimal FIFO capacities that keep a graph's maximal throughput.

Capacity search driven by the exact steady state (aloha_ir.selftimed): a capacity is modelled as
SDF3 models it, a reverse channel (space claimed when the producer starts, freed when the consumer
ends), and the period of the self-timed execution is non-increasing in every capacity. Starting
from capacities that do not limit the throughput, each inter-actor channel in turn gets the smallest
capacity that keeps the period (a binary search; the others keep theirs). Lowering a channel can
only lengthen the period, so one pass leaves no channel that could be lowered alone: the result is
minimal channel by channel (Stuijk et al., DAC 2006, explore all distributions for the global
minimum; on this project's lowered graphs the two agree -- tests/test_buffers.py checks SDF3's
totals). Self-loops (an actor's reuse of its own rows) keep their capacity: the analysis that sized
them (the two overlaps added) is exact for sequential firing, and SDF3's search cannot grow them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aloha_ir import rle
from aloha_ir.dataflow import DataflowError, Edge
from aloha_ir.selftimed import simulate


@dataclass(frozen=True)
class Sizing:
    period: float  # the maximal throughput's period, kept
    capacities: dict[str, int]  # channel -> tokens (self-loops included, unchanged)
    searched: tuple[str, ...]  # the channels whose capacity was minimised


def minimal_capacities(phases: dict[str, int], edges: list[Edge], exec_times: dict[str, list],
                       firings: dict[str, int], start: dict[str, int], *,
                       unit: dict[str, str] | None = None, delay: dict[str, float] | None = None,
                       order: list[str] | None = None, in_flight: int = 0,
                       layer_first: frozenset[str] = frozenset(),
                       max_frames: int = 10_000) -> Sizing:
    """The smallest capacities, channel by channel, whose period equals that of `start` (which
    must bound every channel, so that the state recurs even with no bound on frames in flight)."""
    missing = [e.name for e in edges if e.name not in start]
    if missing:
        raise ValueError(f"no starting capacity for {', '.join(missing[:5])}")

    def period(caps: dict[str, int]) -> float:
        try:
            run = simulate(phases, edges, exec_times, firings, unit=unit, delay=delay,
                           order=order, frames=max_frames, in_flight=in_flight,
                           layer_first=layer_first, periodic=True, capacity=caps)
        except DataflowError:  # deadlock: no throughput at all
            return math.inf
        return run.regime.period

    caps = dict(start)
    target = period(caps)
    searched = []
    for e in edges:
        if e.src == e.dst:
            continue
        searched.append(e.name)
        # a firing must fit: what one phase produces, what one consumes, the initial tokens
        lo = max(max(rle.expand(e.prod)), max(rle.expand(e.cons)), e.initial, 1)
        hi = caps[e.name]
        while lo < hi:
            mid = (lo + hi) // 2
            if period({**caps, e.name: mid}) <= target:
                hi = mid
            else:
                lo = mid + 1
        caps[e.name] = hi
    return Sizing(target, caps, tuple(searched))
