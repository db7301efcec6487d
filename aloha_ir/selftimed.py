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
gives the latency on an empty pipeline. Buffer occupancy counts a token from the start of its
producer's firing (space is reserved) to the end of its consumer's firing (space is released); its
maximum is a sufficient FIFO size for this schedule.

The steady state (`periodic=True`, in_flight >= 1) is found as SDF3's state-space throughput analysis
finds it (Ghamarian et al., ACSD 2006): the execution is deterministic, and with at most `in_flight`
frames unfinished every channel holds a bounded number of tokens, so the state seen at frame
completions -- each actor's progress relative to the frames done, the remaining time of its running
firing, the tokens on each channel and in transit -- takes finitely many values and must recur. From
the first recurrence on the execution repeats itself: the period is the cycle's time over the frames
it completes (exactly, not an average; a cycle may span several frames), and the occupancies seen up
to the recurrence are the maxima of the whole infinite run. Exactness needs exact times: give
integers (ns, or work units), as analyze-schedule does. `frames` then only bounds the work.
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


@dataclass(frozen=True)
class Regime:
    """The periodic regime of a self-timed execution: after `transient_frames` frames (at time
    `start`) the state recurs every `frames` frames and `length` time units."""

    transient_frames: int
    start: float
    frames: int
    length: float
    busy: dict[str, float]  # processor -> busy time within one cycle

    @property
    def period(self) -> float:
        return self.length / self.frames

    def utilisation(self, processor: str) -> float:
        return self.busy.get(processor, 0.0) / self.length if self.length else 0.0


class NoPeriodicRegime(DataflowError):
    """The state did not recur within the frames allowed."""


@dataclass
class Run:
    frame_start: list[float]
    frame_end: list[float]
    busy: dict[str, float]  # processor -> busy seconds over all frames
    max_tokens: dict[str, int]  # channel -> maximum occupancy
    peak_bytes: int  # largest total occupancy of all channels at once
    timeline: list[Firing] = field(default_factory=list)
    regime: Regime | None = None  # found with periodic=True

    @property
    def latency(self) -> float:
        return self.frame_end[0] - self.frame_start[0]

    def period(self) -> float:
        """Seconds between frame completions in the periodic regime: exact when the regime was
        found, else an average over the last two thirds of the run (the latency for one frame)."""
        if self.regime is not None:
            return self.regime.period
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
             layer_first: set[str] | frozenset[str] = frozenset(), record: bool = False,
             periodic: bool = False, capacity: dict[str, int] | None = None,
             static_order: dict[str, list[str]] | None = None, fifo: str = "sdf3") -> Run:
    """Run `frames` iterations self-timed. `firings` is q_i (firings per iteration) per actor.

    With `periodic`, stop at the first recurrence of the state at a frame completion (the module
    docstring says why it recurs: in_flight >= 1, or a strongly connected graph) and return its
    `regime`; `frames` bounds the search (NoPeriodicRegime past it).

    `capacity` bounds channels (by name; others are unbounded), as SDF3 models a FIFO by a
    reverse channel: a firing starts only when each output channel has room for what it produces
    (space is claimed at its start and freed at the end of the consumer's firing).

    `static_order` fixes, per processor it names, the order of one frame's firings (each of its
    actors q_i times), repeated frame after frame, as a thread of the generated program runs
    them: the processor waits for its next firing even when another of its actors could go.

    `fifo` is when a bounded channel's space is claimed and freed: "sdf3" (SDF3's reverse channel,
    above) or "program" (the generated program's FIFOs, backends/templates/aloha_rt.c: a firing
    reads its inputs when it starts, freeing their space, and writes its outputs when it ends,
    waiting with its processor held until every output has room). Occupancy is then counted from
    the write to the read."""
    if fifo not in ("sdf3", "program"):
        raise ValueError(f"fifo must be 'sdf3' or 'program', not {fifo!r}")
    program = fifo == "program"
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
    capacity = capacity or {}
    cap = [capacity.get(e.name) for e in edges]
    bounded_outs = {a: [i for i in outs[a] if cap[i] is not None] for a in actors}
    # a firing that frees space may enable the producer waiting for it
    producers_proc = {a: {proc[edges[i].src] for i in ins[a] if cap[i] is not None}
                      for a in actors}

    static_order = static_order or {}
    for pr, seq in static_order.items():
        want = {a: firings[a] for a in by_proc.get(pr, [])}
        have = {a: seq.count(a) for a in set(seq)}
        if have != want:
            raise ValueError(f"the static order of {pr} must fire each of its actors q times "
                             f"(expected {want}, got {have})")
    position = dict.fromkeys(static_order, 0)
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
    ends = dict.fromkeys(actors, 0.0)  # the end of each running firing
    waiting: dict[str, int] = {}  # fifo="program": firing done, waiting for room -> its phase
    seen: dict[tuple, tuple[int, float, dict[str, float]]] = {}
    regime: Regime | None = None

    def state(t: float) -> tuple:
        """What decides the execution after `t`, relative to `t` and to the frames done."""
        now = (tuple(started[a] - frames_done * firings[a] for a in actors),
               tuple(iters_done[a] - frames_done for a in actors),
               tuple(-2 if a in waiting else ends[a] - t if busy_actor[a] else -1
                     for a in actors),
               tuple(avail),
               tuple(tuple((at - t, n) for at, n in q) for q in arrivals))
        return now + (tuple(occupancy),) if program else now

    def enabled(a: str) -> bool:
        n = started[a]
        if busy_actor[a] or n >= total_firings[a]:
            return False
        frame = n // firings[a]
        if in_flight and frame >= frames_done + in_flight:
            return False
        p = n % phases[a]
        return all(e_cons[i][p] <= avail[i] for i in ins[a]) and \
            (program or room(a, p))

    def room(a: str, p: int) -> bool:
        return all(occupancy[i] + e_prod[i][p] <= cap[i] for i in bounded_outs[a])

    def start(a: str, t: float) -> None:
        nonlocal seq
        n = started[a]
        p = n % phases[a]
        frame = n // firings[a]
        if frame == len(frame_start):
            frame_start.append(t)
        for i in ins[a]:
            avail[i] -= e_cons[i][p]
        if program:  # the reads free the space
            release(ins[a], p)
        else:  # the space is claimed
            claim(outs[a], p)
        dur = exec_times[a][p]
        started[a] = n + 1
        ends[a] = t + dur
        busy_actor[a] = True
        proc_free[proc[a]] = False
        busy_time[proc[a]] += dur
        if record:
            timeline.append(Firing(a, proc[a], frame, p, t, t + dur))
        seq += 1
        heapq.heappush(events, (t + dur, seq, 0, (a, p)))

    def claim(channels: list[int], p: int) -> None:
        nonlocal total_bytes, peak
        for i in channels:
            occupancy[i] += e_prod[i][p]
            total_bytes += e_prod[i][p] * e_bytes[i]
            if occupancy[i] > max_tokens[i]:
                max_tokens[i] = occupancy[i]
        if total_bytes > peak:
            peak = total_bytes

    def release(channels: list[int], p: int) -> None:
        nonlocal total_bytes
        for i in channels:
            occupancy[i] -= e_cons[i][p]
            total_bytes -= e_cons[i][p] * e_bytes[i]

    def finish(a: str, p: int, t: float) -> set[str]:
        """End the firing of `a` (phase `p`) at `t`: its tokens go out; the processors that may
        start something now."""
        nonlocal seq, frames_done
        for i in outs[a]:
            amount = e_prod[i][p]
            d = delay.get(edges[i].name, 0.0)
            if d > 0 and amount:
                arrivals[i].append((t + d, amount))
                seq += 1
                heapq.heappush(events, (t + d, seq, 1, i))
            else:
                avail[i] += amount
        if program:  # the writes claim the space
            claim(outs[a], p)
        else:  # the reads' space is freed
            release(ins[a], p)
        busy_actor[a] = False
        proc_free[proc[a]] = True
        done[a] += 1
        dirty = {proc[a]} | consumers_proc[a] | producers_proc[a]
        if done[a] % firings[a] == 0:
            iters_done[a] += 1
            while frames_done < frames and all(iters_done[x] > frames_done for x in actors):
                frame_end.append(t)
                frames_done += 1
                dirty |= set(by_proc)  # actors held back by in_flight may start now
        return dirty

    def try_start(procs, t: float) -> None:
        for pr in procs:
            if not proc_free[pr]:
                continue
            seq = static_order.get(pr)
            if seq is not None:  # its position is a function of `started`: the state holds it
                nxt = seq[position[pr]]
                if enabled(nxt):
                    start(nxt, t)
                    position[pr] = (position[pr] + 1) % len(seq)
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
    checked = 0
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
            if program and not room(a, p):  # it waits to write, its processor held
                waiting[a] = p
            else:
                dirty |= finish(a, p, t)
        try_start(sorted(dirty), t)
        while waiting:  # the reads that just started may have made room for waiting writes
            ready = [a for a in actors if a in waiting and room(a, waiting[a])]
            if not ready:
                break
            dirty = set()
            for a in ready:
                dirty |= finish(a, waiting.pop(a), t)
            try_start(sorted(dirty), t)
        if periodic and frames_done > checked and frames_done + max(in_flight, 1) <= frames:
            checked = frames_done
            key = state(t)
            first = seen.get(key)
            if first is not None:
                f0, t0, busy0 = first
                regime = Regime(f0, t0, frames_done - f0, t - t0,
                                {p: busy_time[p] - busy0[p] for p in busy_time})
                break
            seen[key] = (frames_done, t, dict(busy_time))
    if frames_done < frames and regime is None:
        stuck = [a for a in actors if done[a] < total_firings[a]]
        raise DataflowError(f"self-timed execution stopped after {frames_done} of {frames} frames; "
                            f"actors waiting: {', '.join(stuck[:5])}", actors=tuple(stuck[:5]))
    if periodic and regime is None:
        raise NoPeriodicRegime(f"no periodic regime within {frames} frames: the state of the "
                               "self-timed execution did not recur (are the times exact integers?)")
    return Run(frame_start, frame_end, busy_time, {e.name: m for e, m in zip(edges, max_tokens)},
               peak, timeline, regime)


@dataclass(frozen=True)
class SteadyState:
    """The periodic regime of a whole graph: its period (time per frame, exact), each processor's
    busy time per frame in it, and -- with frames in flight bounded -- the frames before it and the
    frames of one cycle (the unbounded regime has no common transient: each part settles alone)."""

    period: float
    busy_per_frame: dict[str, float]
    transient_frames: int | None
    cycle_frames: int | None
    max_tokens: dict[str, int]  # channel -> maximum occupancy (bounded regime only)

    def utilisation(self, processor: str) -> float:
        return self.busy_per_frame.get(processor, 0.0) / self.period if self.period else 0.0


def steady_state(phases: dict[str, int], edges: list[Edge], exec_times: dict[str, list[float]],
                 firings: dict[str, int], *, unit: dict[str, str] | None = None,
                 delay: dict[str, float] | None = None, order: list[str] | None = None,
                 in_flight: int = 2, layer_first: set[str] | frozenset[str] = frozenset(),
                 max_frames: int = 10_000) -> SteadyState:
    """The exact periodic regime of the self-timed execution (`simulate` with periodic=True).

    With in_flight >= 1 the whole graph's state recurs. With no bound (0) tokens pile up before
    the slowest part, so the graph is cut into its strongly connected parts, joined where they
    share a processor; each part runs alone with its inputs always there (the unbounded FIFOs of
    SDF3's model), its state recurs, and the graph's period is the slowest part's. A part that a
    shared processor joins across a channel without a cycle back has no bounded state: that is
    refused (NoPeriodicRegime), since its regime depends on how far the producer runs ahead."""
    unit = unit or {}
    order = order or list(phases)
    common = dict(delay=delay, layer_first=layer_first)
    if in_flight >= 1:
        run = simulate(phases, edges, exec_times, firings, unit=unit, order=order,
                       frames=max_frames, in_flight=in_flight, periodic=True, **common)
        r = run.regime
        return SteadyState(r.period, {p: b / r.frames for p, b in r.busy.items()},
                           r.transient_frames, r.frames, run.max_tokens)
    period, busy = 0.0, {}
    for part, cyclic in _parts(order, edges, unit):
        if not cyclic:
            shared = sorted({unit[a] for a in part if unit.get(a)})
            raise NoPeriodicRegime(
                "with no bound on the frames in flight, the actors sharing "
                f"{', '.join(shared)} are not on one cycle: the producers among them run ahead "
                "without bound and no state recurs; bound the frames in flight (in_flight >= 1)",
                actors=tuple(part[:5]))
        members = set(part)
        inner = [e for e in edges if e.src in members and e.dst in members]
        run = simulate({a: phases[a] for a in part}, inner, exec_times,
                       {a: firings[a] for a in part}, unit=unit, order=part, frames=max_frames,
                       periodic=True, **common)
        r = run.regime
        period = max(period, r.period)
        busy.update({p: b / r.frames for p, b in r.busy.items()})
    return SteadyState(period, busy, None, None, {})


def _parts(order: list[str], edges: list[Edge], unit: dict[str, str]
           ) -> list[tuple[list[str], bool]]:
    """The strongly connected components joined where they share a processor, each in `order`
    and whether it is still one strongly connected component."""
    import networkx as nx  # here: 160 ms to import, and only the unbounded regime needs it

    g = nx.DiGraph()
    g.add_nodes_from(order)
    g.add_edges_from((e.src, e.dst) for e in edges)
    joined = nx.Graph()
    joined.add_nodes_from(order)
    for comp in nx.strongly_connected_components(g):
        joined.add_edges_from(nx.utils.pairwise(sorted(comp)))
    by_unit: dict[str, str] = {}
    for a in order:
        if unit.get(a):
            joined.add_edge(a, by_unit.setdefault(unit[a], a))
    rank = {a: i for i, a in enumerate(order)}
    parts = [sorted(c, key=rank.__getitem__) for c in nx.connected_components(joined)]
    parts.sort(key=lambda p: rank[p[0]])
    return [(p, nx.is_strongly_connected(g.subgraph(p))) for p in parts]
