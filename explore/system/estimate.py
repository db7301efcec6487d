"""The closed-form estimate of a design point (see the package docstring): the `map` pass's own
placement (passes.map.place_actor) replayed on the actor DAG the partition plan would give, the
row-pipelined latency, and analyze-energy's own formula."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from aloha_ir.errors import PassError
from explore.system.space import Design, SystemSpace
from passes.analyze_energy import SpanEnergy, span_energy, transfer_energy_j
from passes.map import ListSchedule, link_of, place_actor
from passes.partition import channel_bounds
from passes.target import slice_layer


@dataclass
class Estimate:
    latency_s: float
    period_s: float
    energy_j: float
    processors: int
    assignment: dict[str, str] = field(default_factory=dict)  # actor -> unit
    makespan_s: float = 0.0  # the list schedule's (whole actors, no row pipelining)
    feasible: bool = True
    why: str = ""

    def to_json(self) -> dict:
        return {"latency_s": self.latency_s, "period_s": self.period_s,
                "energy_j": self.energy_j, "processors": self.processors}


def estimate_design(space: SystemSpace, design: Design) -> Estimate:
    """The map pass's list schedule of the partitioned graph, replayed on a task list."""
    plan = dict(design.plan)
    # a pin names an actor before partition: it applies to each part (as the refinement's)
    pins = {part: pe for a, pe in design.pe
            for part in ([f"{a}_p{k}" for k in range(plan[a])] if plan.get(a, 1) > 1 else [a])}
    allowed = set(design.units)
    allowed = None if len(allowed) == len(space.platform.units()) else allowed
    sched = ListSchedule(space.platform)
    gather = {a: f"{a}_gather" for a, n in plan.items() if n > 1}
    tasks: list[tuple[str, float, int, list]] = []  # (actor, seconds, firings, producers)

    def options(layer):
        return space.options(layer, design.opp)

    def place(name, layer, preds) -> None:
        for p in place_actor(sched, name, layer, preds, options, pins, allowed):
            tasks.append((p.actor, p.cost.seconds, layer.firings,
                          [(name, 0)] if p.merges else preds))
    try:
        for name in space.order:
            preds = [(gather.get(p, p), b) for p, b in space.preds.get(name, [])]
            if name in space.zero:
                sched.skip(name, preds)
                tasks.append((name, 0.0, 1, preds))
                continue
            layer = space.layers[name]
            parts = plan.get(name, 1)
            if parts <= 1:
                place(name, layer, preds)
                continue
            subs = []
            for k, (lo, hi) in enumerate(channel_bounds(layer.cout, parts)):
                work = sum(c * (v * (hi - lo) // layer.cout) for c, v in space.work[name])
                sub = f"{name}_p{k}"
                place(sub, slice_layer(layer, lo, hi, work), preds)
                subs.append(sub)
            sched.skip(gather[name], [(s, 0) for s in subs])
            tasks.append((gather[name], 0.0, 1, [(s, 0) for s in subs]))
    except PassError as e:
        return Estimate(math.inf, math.inf, math.inf, 0, feasible=False, why=e.message)
    period = max(sched.load.values(), default=0.0)
    energy = design_energy(space, design, sched.unit, period, sched.load).energy_j
    assignment = {a: u for a, u in sched.unit.items() if u}
    return Estimate(pipelined_latency(tasks, sched.unit), period, energy,
                    len(set(assignment.values())), assignment, sched.makespan_s)


def design_energy(space: SystemSpace, design: Design, unit: dict[str, str], period_s: float,
                  busy_s: dict[str, float]) -> SpanEnergy:
    """analyze-energy's energy per frame of `design` with each actor on `unit[actor]` (as `map`
    names them), the stream's period and each unit's busy seconds: the link transfers counted on
    the graph `map` would leave (a split producer writes to its gather, no link; a merged one
    sends from its merge)."""
    plan = dict(design.plan)
    transfers = []  # (link, tokens)
    merged = set()

    def move(a: str, b: str, tokens: int) -> None:
        transfers.append((link_of(space.platform, space.pe_of, unit.get(a, ""), unit.get(b, "")),
                          tokens))
    for src, dst, tokens in space.flows:
        if plan.get(src, 1) > 1:
            continue
        sender = src
        if f"{src}_merge" in unit:
            sender = f"{src}_merge"
            if src not in merged:  # the engine's partial outputs to the merge
                merged.add(src)
                move(src, sender, tokens)
        for d in [f"{dst}_p{k}" for k in range(plan[dst])] if plan.get(dst, 1) > 1 else [dst]:
            move(sender, d, tokens)
    return span_energy(space.platform, design.opp, period_s, busy_s,
                       transfer_energy_j(transfers, space.datatype))


def pipelined_latency(tasks, unit: dict[str, str]) -> float:
    """One frame's latency with rows flowing between units: an actor starts when its producers'
    first rows are out and its unit has finished the actors placed on it before; it ends no
    sooner than its own seconds after that, nor than one of its rows after its producers end."""
    first: dict[str, float] = {}  # when an actor's first row is out
    end: dict[str, float] = {}
    free: dict[str, float] = {}  # when a unit is done with what it was given so far
    for name, seconds, firings, preds in tasks:
        ready = max((first[p] for p, _ in preds), default=0.0)
        done = max((end[p] for p, _ in preds), default=0.0)
        u = unit.get(name, "")
        if not u:  # a gather or the input: a view, no work
            first[name], end[name] = ready, done
            continue
        start = max(ready, free.get(u, 0.0))
        row = seconds / max(1, firings)
        first[name] = start + row
        end[name] = free[u] = max(start + seconds, done + row)
    return max(end.values(), default=0.0)
