"""Self-timed execution of a (mapped) CSDF graph: reference/csdf.md's algorithm, event by event.

Every firing starts as soon as its input tokens are there and its processor is free; an actor never
overlaps itself (the 1-token self-loop of the SDF3 export). Actors mapped to one processing unit run
one at a time; among the enabled ones a unit takes the earliest frame, then the earliest actor in the
graph's order (a static order, recorded in the timeline). Units in `layer_first` order the other way
(earliest actor, then frame): a host core that keeps an accelerator fed runs the next frame's
pooling before the last frame's classifier. Unmapped actors each have their own
processor. Tokens produced on a channel with a transfer delay arrive that much later.

Frames: `frames` iterations of the graph are run back to back, at most `in_flight` of them started
and unfinished at once (0 = no bound, the unbounded-FIFO regime of the closed form). One frame alone
gives the latency on an empty pipeline; several give the period of the periodic regime. Buffer
occupancy counts a token from the start of its producer's firing (space is reserved) to the end of
its consumer's firing (space is released); its maximum is a sufficient FIFO size for this schedule.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

from aloha_ir import rle
from aloha_ir.dataflow import DataflowError, Edge


@dataclass
class Firing:
    actor: str
    unit: str
    frame: int
    phase: int
    start: float
    end: float


@dataclass
class Run:
    frame_start: list[float]
    frame_end: list[float]
    busy: dict[str, float]  # processor -> busy seconds over all frames
    max_tokens: dict[str, int]  # channel -> maximum occupancy
    peak_bytes: int  # largest total occupancy of all channels at once
    timeline: list[Firing] = field(default_factory=list)

    @property
    def latency(self) -> float:
        return self.frame_end[0] - self.frame_start[0]

    def period(self) -> float:
        """Seconds between frame completions in the periodic regime (the latency for one frame)."""
        n = len(self.frame_end)
        if n < 3:
            return self.frame_end[-1] - self.frame_start[0] if n == 1 else \
                self.frame_end[1] - self.frame_end[0]
        k = n // 3
        return (self.frame_end[-1] - self.frame_end[k]) / (n - 1 - k)


def simulate(phases: dict[str, int], edges: list[Edge], exec_times: dict[str, list[float]],
             firings: dict[str, int], *, unit: dict[str, str] | None = None,
             delay: dict[str, float] | None = None, token_bytes: dict[str, int] | None = None,
             order: list[str] | None = None, frames: int = 1, in_flight: int = 0,
             layer_first: set[str] | frozenset[str] = frozenset(), record: bool = False) -> Run:
    """Run `frames` iterations self-timed. `firings` is q_i (firings per iteration) per actor."""
    unit = unit or {}
    delay = delay or {}
    token_bytes = token_bytes or {}
    actors = order or list(phases)
    prio = {a: i for i, a in enumerate(actors)}
    proc = {a: (unit.get(a) or f"@{a}") for a in actors}
    by_proc: dict[str, list[str]] = {}
    for a in actors:
        by_proc.setdefault(proc[a], []).append(a)

    e_prod = [rle.expand(e.prod) for e in edges]
    e_cons = [rle.expand(e.cons) for e in edges]
    avail = [e.initial for e in edges]
    occupancy = [e.initial for e in edges]
    max_tokens = list(occupancy)
    e_bytes = [token_bytes.get(e.name, 0) for e in edges]
    total_bytes = sum(o * b for o, b in zip(occupancy, e_bytes))
    peak = total_bytes
    arrivals = [deque() for _ in edges]
    ins: dict[str, list[int]] = {a: [] for a in actors}
    outs: dict[str, list[int]] = {a: [] for a in actors}
    for i, e in enumerate(edges):
        outs[e.src].append(i)
        ins[e.dst].append(i)
    consumers_proc = {a: {proc[edges[i].dst] for i in outs[a]} for a in actors}

    started = dict.fromkeys(actors, 0)
    done = dict.fromkeys(actors, 0)
    busy_actor = dict.fromkeys(actors, False)
    proc_free = dict.fromkeys(by_proc, True)
    busy_time = dict.fromkeys(by_proc, 0.0)
    frame_start: list[float] = []
    frame_end: list[float] = []
    iters_done = dict.fromkeys(actors, 0)
    frames_done = 0
    total_firings = {a: firings[a] * frames for a in actors}
    timeline: list[Firing] = []
    events: list[tuple[float, int, int, object]] = []  # (time, seq, kind 0=end 1=arrival, data)
    seq = 0

    def enabled(a: str) -> bool:
        n = started[a]
        if busy_actor[a] or n >= total_firings[a]:
            return False
        frame = n // firings[a]
        if in_flight and frame >= frames_done + in_flight:
            return False
        p = n % phases[a]
        return all(e_cons[i][p] <= avail[i] for i in ins[a])

    def start(a: str, t: float) -> None:
        nonlocal seq, total_bytes, peak
        n = started[a]
        p = n % phases[a]
        frame = n // firings[a]
        if frame == len(frame_start):
            frame_start.append(t)
        for i in ins[a]:
            avail[i] -= e_cons[i][p]
        for i in outs[a]:
            occupancy[i] += e_prod[i][p]
            total_bytes += e_prod[i][p] * e_bytes[i]
            if occupancy[i] > max_tokens[i]:
                max_tokens[i] = occupancy[i]
        if total_bytes > peak:
            peak = total_bytes
        dur = exec_times[a][p]
        started[a] = n + 1
        busy_actor[a] = True
        proc_free[proc[a]] = False
        busy_time[proc[a]] += dur
        if record:
            timeline.append(Firing(a, proc[a], frame, p, t, t + dur))
        seq += 1
        heapq.heappush(events, (t + dur, seq, 0, (a, p)))

    def try_start(procs, t: float) -> None:
        for pr in procs:
            if not proc_free[pr]:
                continue
            best, key = None, None
            by_layer = pr in layer_first
            for a in by_proc[pr]:
                if enabled(a):
                    f = started[a] // firings[a]
                    k = (prio[a], f) if by_layer else (f, prio[a])
                    if key is None or k < key:
                        best, key = a, k
            if best is not None:
                start(best, t)

    try_start(list(by_proc), 0.0)
    while events:
        t = events[0][0]
        dirty: set[str] = set()
        while events and events[0][0] == t:
            _, _, kind, data = heapq.heappop(events)
            if kind == 1:
                i = data
                _, amount = arrivals[i].popleft()
                avail[i] += amount
                dirty.add(proc[edges[i].dst])
                continue
            a, p = data
            for i in outs[a]:
                amount = e_prod[i][p]
                d = delay.get(edges[i].name, 0.0)
                if d > 0 and amount:
                    arrivals[i].append((t + d, amount))
                    seq += 1
                    heapq.heappush(events, (t + d, seq, 1, i))
                else:
                    avail[i] += amount
            for i in ins[a]:
                occupancy[i] -= e_cons[i][p]
                total_bytes -= e_cons[i][p] * e_bytes[i]
            busy_actor[a] = False
            proc_free[proc[a]] = True
            done[a] += 1
            dirty.add(proc[a])
            dirty |= consumers_proc[a]
            if done[a] % firings[a] == 0:
                iters_done[a] += 1
                while frames_done < frames and all(iters_done[x] > frames_done for x in actors):
                    frame_end.append(t)
                    frames_done += 1
                    dirty |= set(by_proc)  # actors held back by in_flight may start now
        try_start(sorted(dirty), t)
    if frames_done < frames:
        stuck = [a for a in actors if done[a] < total_firings[a]]
        raise DataflowError(f"self-timed execution stopped after {frames_done} of {frames} frames; "
                            f"actors waiting: {', '.join(stuck[:5])}", actors=tuple(stuck[:5]))
    return Run(frame_start, frame_end, busy_time, {e.name: m for e, m in zip(edges, max_tokens)},
               peak, timeline)
