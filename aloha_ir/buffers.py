"""FIFO capacities against throughput: the smallest capacities that keep the maximal throughput, and
the storage/throughput trade-off below them.

A capacity is modelled as SDF3 models it, a reverse channel (space claimed when the producer starts,
freed when the consumer ends), and the period is the exact steady state of the self-timed execution
(aloha_ir.selftimed), which is non-increasing in every capacity. Hence a binary search finds, for one
channel with the others fixed, the smallest capacity that keeps the period (or keeps it finite, or
makes it shorter).

- `CapacitySearch.minimal`: from capacities that do not limit the throughput, each inter-actor channel in
  turn gets the smallest capacity that keeps the period. Lowering a channel can only lengthen the
  period, so one pass leaves no channel that could be lowered alone.
- `CapacitySearch.tradeoff`: the Pareto points (total capacity, period) from the smallest deadlock-free capacities
  up to the maximal throughput. Distributions are explored in order of total size, as in Stuijk,
  Geilen and Basten (DAC 2006); a distribution's successors raise one channel by the least that
  shortens the period (their storage dependencies, found by search rather than by tracing the
  critical cycle), so a point reached only by raising two channels that each alone change nothing
  would be missed. On this project's graphs the result equals SDF3's (tests/test_buffers.py).

Self-loops (an actor's reuse of its own rows) keep their capacity: the analysis that sized them (the
two overlaps added) is exact for sequential firing, and SDF3's search cannot grow them either.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass

from aloha_ir import rle
from aloha_ir.dataflow import DataflowError, Edge
from aloha_ir.selftimed import simulate


@dataclass(frozen=True)
class Sizing:
    period: float  # the period these capacities give
    capacities: dict[str, int]  # channel -> tokens (self-loops included, unchanged)
    searched: tuple[str, ...]  # the inter-actor channels, whose capacities were searched

    @property
    def total(self) -> int:
        """Tokens of the searched channels."""
        return sum(self.capacities[c] for c in self.searched)


@dataclass(frozen=True)
class TradeoffPoint:
    total: int  # tokens of the inter-actor channels
    period: float
    capacities: dict[str, int]


@dataclass(frozen=True)
class Tradeoff:
    points: list[TradeoffPoint]  # smallest total first; the last has the maximal throughput
    complete: bool  # False: the search stopped at `max_simulations` runs; between the last
    # point it reached and the maximal-throughput end (appended) there may be more points


class CapacitySearch:
    """Capacity searches on one graph and its mapping, sharing their runs: the exact period under
    given capacities, memoised (`minimal` and `tradeoff` ask for many of the same ones).

    `start` must bound every channel, so that the state recurs even with no bound on frames in
    flight; `simulate_options` are `simulate`'s (unit, delay, order, layer_first, static_order:
    with a static order, the capacities the generated program's threads need)."""

    def __init__(self, phases: dict[str, int], edges: list[Edge], exec_times: dict[str, list],
                 firings: dict[str, int], start: dict[str, int], *, in_flight: int = 0,
                 max_frames: int = 10_000, **simulate_options):
        missing = [e.name for e in edges if e.name not in start]
        if missing:
            raise ValueError(f"no starting capacity for {', '.join(missing[:5])}")
        self.args = (phases, edges, exec_times, firings)
        self.options = dict(simulate_options, in_flight=in_flight, frames=max_frames)
        self.start = dict(start)
        self.channels = [e for e in edges if e.src != e.dst]
        self.memo: dict[tuple, float] = {}
        self.target = self(self.start)  # the throughput to keep
        if math.isinf(self.target):
            raise DataflowError("the starting capacities deadlock the graph")

    def __call__(self, caps: dict[str, int]) -> float:
        key = tuple(sorted(caps.items()))
        if key not in self.memo:
            try:
                run = simulate(*self.args, periodic=True, capacity=caps, **self.options)
                self.memo[key] = run.regime.period
            except DataflowError:  # deadlock: no throughput at all
                self.memo[key] = math.inf
        return self.memo[key]

    def least(self, caps: dict[str, int], e: Edge, lo: int, hi: int,
              good: Callable[[float], bool]) -> int | None:
        """The smallest capacity of `e` in [lo, hi] whose period is `good` (None: not even hi).
        Galloping up from `lo` first: most channels need little more than their floor, so this
        takes a few simulations where a plain bisection of [lo, hi] takes log2(hi - lo)."""
        if lo > hi or not good(self({**caps, e.name: hi})):
            return None
        step = 1
        while lo < hi:
            probe = min(lo + step - 1, hi)
            if good(self({**caps, e.name: probe})):
                hi = probe
                break
            lo, step = probe + 1, 2 * step
        while lo < hi:
            mid = (lo + hi) // 2
            if good(self({**caps, e.name: mid})):
                hi = mid
            else:
                lo = mid + 1
        return hi

    def shrink(self, good: Callable[[float], bool]) -> dict[str, int]:
        """From `start`, each inter-actor channel in turn at its least capacity whose period is
        `good`."""
        caps = dict(self.start)
        for e in self.channels:
            # a firing must fit: what one phase produces, what one consumes, the initial tokens
            floor = max(max(rle.expand(e.prod)), max(rle.expand(e.cons)), e.initial, 1)
            caps[e.name] = self.least(caps, e, floor, caps[e.name], good)
        return caps

    def minimal(self) -> Sizing:
        """The smallest capacities, channel by channel, that keep the period of `start`."""
        return Sizing(self.target, self.shrink(lambda p: p <= self.target),
                      tuple(e.name for e in self.channels))

    def tradeoff(self, max_simulations: int = 2_000) -> Tradeoff:
        """The storage/throughput Pareto points, smallest total first, from the least
        deadlock-free capacities to the period of `start` (see the module docstring for the
        search), until the search has made `max_simulations` runs of the execution, `minimal`'s
        included (a mapped graph with many channels has many small steps, each found by a few
        runs)."""
        names = [e.name for e in self.channels]
        first = self.shrink(lambda p: p < math.inf)
        key = tuple(first[n] for n in names)
        queue, seen, points = [(sum(key), key)], {key}, []
        while queue and len(self.memo) < max_simulations:
            total, key = heapq.heappop(queue)
            caps = {**self.start, **dict(zip(names, key))}
            period = self(caps)
            if not points or period < points[-1].period:  # else a smaller one is as fast
                points.append(TradeoffPoint(total, period, caps))
                if period <= self.target:
                    break
            for i, e in enumerate(self.channels):
                raised = self.least(caps, e, key[i] + 1, self.start[e.name],
                                    lambda p, period=period: p < period)
                if raised is not None:
                    nxt = key[:i] + (raised,) + key[i + 1:]
                    if nxt not in seen:
                        seen.add(nxt)
                        heapq.heappush(queue, (sum(nxt), nxt))
        complete = bool(points) and points[-1].period <= self.target
        if not complete:  # the maximal-throughput end, from the channel-by-channel search
            end = self.minimal()
            points.append(TradeoffPoint(end.total, self.target, end.capacities))
        return Tradeoff(points, complete)
