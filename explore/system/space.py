"""System-level design-space exploration: how to partition and map one network on one platform.

The paper's system-level DSE (section 3.2.6) explores partitionings of the DNN actors into
sub-actors and mappings of them on the processing elements, coarse models first (AOW finds the
sweet spots) and a precise simulation to refine them (Sesame fine-tunes and verifies). Here:

- a design point (`Design`) is a partition plan (parts per splittable conv/dense actor, 1 = whole),
  a PE per actor (`ce` or `arm`: the actor, or all its parts, run there; none = the greedy rule's
  choice among all PEs), an allocation (the units the greedy rule may use: fewer processors) and an
  operating point when the platform declares several;
- the coarse model (`SystemSpace.estimate`, a few ms on inception_v1 against ~1 s for the real
  pipeline) replays the `map` pass's own list scheduling (passes.map.ListSchedule) on the actor
  DAG the plan would give, without building IR, so a point's estimated assignment is the one `map`
  makes (tests check it). Then: latency = `pipelined_latency` (rows flow between units: an actor
  starts when its producers' first rows are out; the list schedule's own makespan, whole actors
  one after another, misranks the best points: measured in tests and the benchmark); period = the
  busiest unit's seconds per frame (no stream is faster); energy = analyze-energy's formula over
  that period plus the link transfers; processors = units used;
- the search is NSGA-II (pymoo) on an integer genome, minimising the three estimates, with the
  greedy default (auto partition, no pins, all units) seeded into the first population; the last
  quarter of the budget is a first-improvement local search from its fastest estimated point;
- the refinement (`SystemSpace.refine`) runs the real pipeline (partition, map with the
  assignment, analyze-schedule, -memory, -energy, -processors) on the best `refine` estimated
  points: the self-timed latency and the stream's period and energy. The Pareto front, the greedy
  baseline and the chosen point are refined figures. The chosen point is the fastest refined point
  (ties by energy, then processors) among those that fit the platform's memories, and the fastest
  of all refined points when none fits (its `fits` is then false). The greedy point is refined too,
  so the chosen point is never slower than greedy *when greedy fits*; when greedy does not fit but
  another point does, the fitting point is chosen even if it is slower.

A mapping file (`aloha-mapping/1`, JSON) records the chosen point: the plan and every actor's unit
as the refined `map` assigned them (and the units the greedy rule may use), so `alohac compile
--mapping` reproduces its figures exactly; also whether it `fits` and the model's input shapes it
was made for (`inputs`, checked by load_mapping).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from aloha_ir import rle
from aloha_ir import figures as human
from aloha_ir.analysis import repetition
from aloha_ir.console import Progress
from aloha_ir.errors import InputFileError, PassError, UnsupportedError, UsageError
from archdesc import costmodel
from archdesc.model import DATATYPE_BITS, Platform
from flows.target import Placement, TargetFlow
from passes.map import ListSchedule, candidates, kernel_extent, restrict
from passes.partition import SPLITTABLE, auto_plan, channel_bounds
from passes.target import (ZERO_COST_KINDS, actor_layers, csdf_precision, datatype_of, opp_of,
                           slice_layer)

MAPPING_FORMAT = "aloha-mapping/1"


@dataclass(frozen=True)
class Design:
    """One system-level design point (see the module docstring)."""

    plan: tuple[tuple[str, int], ...]  # every splittable actor -> parts (1 = not split)
    pe: tuple[tuple[str, str], ...]  # pinned actors -> PE name (the others: the greedy rule)
    units: tuple[str, ...]  # units the greedy rule may use
    opp: str | None = None

    def to_json(self) -> dict:
        return {"partition": dict(self.plan), "pe": dict(self.pe), "units": list(self.units),
                "operating_point": self.opp}

    def summary(self) -> str:
        split = sum(1 for _, n in self.plan if n > 1)
        return (f"{split} split, {len(self.pe)} pinned, {len(self.units)} units" +
                (f", opp {self.opp}" if self.opp else ""))


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


@dataclass
class Point:
    """A refined design point: its estimate and the real pipeline's figures."""

    design: Design
    estimate: Estimate
    figures: dict  # latency_s, period_s, energy_j, processors, memory_bytes, fits, ...
    assignment: dict[str, str]  # actor -> unit, as map assigned them (zero-cost actors left out)
    label: str = ""

    def __getitem__(self, key: str):
        return self.figures[key]

    def to_json(self) -> dict:
        return {"label": self.label, **{k: self.figures[k] for k in FIGURE_KEYS},
                "estimate": self.estimate.to_json(), "design": self.design.to_json()}


FIGURE_KEYS = ("latency_s", "period_s", "throughput_fps", "energy_j", "processors",
               "memory_bytes", "fits")


class SystemSpace:
    """A lowered model on a platform: the genome, the closed-form estimate and the refinement.

    Build it with `SystemSpace.load(model, platform)`: the module lowered by the target flow's
    first stages (canonicalize, analyze-cost, convert-nn-to-csdf) is what the estimate reads;
    every refinement runs the whole target flow on a copy of the module as loaded."""

    def __init__(self, module, cost, platform: Platform, model: str = "", bits: int = 0,
                 inputs: dict[str, list[int]] | None = None, *, source):
        from aloha_ir.dialects import csdf
        graphs = csdf.csdf_graphs(module)
        if len(graphs) != 1:
            raise UsageError(f"system-level exploration maps one csdf graph; {model or 'the model'}"
                             f" has {len(graphs)}")
        graph = graphs[0]
        self.module, self.cost, self.platform, self.model = module, cost, platform, model
        self.source = source  # the nn module before the flow (each refinement runs on a clone)
        self.bits = bits
        self.inputs = inputs  # the model's input shapes (port -> dims), as loaded
        try:
            self.datatype = datatype_of(platform, bits, csdf_precision(graph))
        except PassError as e:  # a --bits that contradicts the model or the platform
            if not bits:
                raise
            raise UsageError(f"--bits {bits}: {e.message}",
                             hint=(e.hint or "").replace("drop bits", "drop --bits")) from None
        self.layers = actor_layers(module, graph)
        self.order = [a.sym_name.data for a in graph.actors()]
        self.zero = {a.sym_name.data for a in graph.actors() if a.kind.data in ZERO_COST_KINDS}
        self.work = {a.sym_name.data: a.work_runs for a in graph.actors()}
        self.preds: dict[str, list[tuple[str, int]]] = {}
        phases, edges = graph.dataflow_graph()
        q = repetition(phases, edges).firings
        self.flows: list[tuple[str, str, int]] = []  # (producer, consumer, tokens per frame)
        for c in graph.channels():
            if not c.is_self_loop:
                self.preds.setdefault(c.dst_name, []).append(
                    (c.src_name, rle.total(c.prod_runs) * c.token_bytes))
                self.flows.append((c.src_name, c.dst_name, rle.total(c.prod_runs) *
                                   q[c.src_name] // phases[c.src_name]))
        self.pe_of = {u: p.name for u, p in platform.units()}
        self.opps: tuple[str | None, ...] = tuple(platform.operating_points) or (None,)
        self.default_opp = opp_of(platform, "")
        self._options: dict = {}
        # which PEs can run each actor (at the default operating point: a point changes clocks)
        self.pes_of: dict[str, tuple[str, ...]] = {}
        for name in self.order:
            if name not in self.zero:
                able = tuple(dict.fromkeys(o[1] for o in self.options(self.layers[name],
                                                                      self.default_opp)))
                if not able:
                    raise UnsupportedError(f"actor @{name} ({self.layers[name].op}) cannot run "
                                           f"on {platform.name}", hint="pick another --target")
                self.pes_of[name] = able
        self.auto = auto_plan(graph, self.layers, platform, bits, self.default_opp or "")
        self.levels: dict[str, tuple[int, ...]] = {}
        for name, layer in self.layers.items():
            if layer.op not in SPLITTABLE or layer.group > 1 or layer.cout < 2 or name in self.zero:
                continue
            counts = [self.platform.pe(p).count for p in self.pes_of[name]]
            wanted = {1, self.auto.get(name, 1), sum(counts), *counts}
            self.levels[name] = tuple(sorted(min(n, layer.cout) for n in wanted))
            self.levels[name] = tuple(dict.fromkeys(self.levels[name]))
        self.choosers = [n for n in self.order if len(self.pes_of.get(n, ())) > 1]
        required = {ps[0] for ps in self.pes_of.values() if len(ps) == 1}
        self.alloc = [(pe.name, 1 if pe.name in required else 0, pe.count) for pe in platform.pes]
        self.bounds = ([len(self.levels[n]) - 1 for n in self.levels] +
                       [len(self.pes_of[n]) for n in self.choosers] +
                       [hi - lo for _, lo, hi in self.alloc] + [len(self.opps) - 1])

    @classmethod
    def load(cls, model: str, platform: Platform, bits: int = 0,
             input_shapes: dict | None = None) -> "SystemSpace":
        from aloha_ir.context import make_context
        from aloha_ir.passmanager import PassManager
        from aloha_ir.weights import clone_with_weights
        from frontends.loader import load_model
        module = load_model(model, input_shapes or {})
        inputs = model_inputs(module)
        source = clone_with_weights(module)
        ctx = make_context()
        ctx.target = platform
        flow = TargetFlow(platform, bits)
        stages = flow.stages()
        lowering = next(i for i, p in enumerate(stages) if p.name == "convert-nn-to-csdf")
        res = PassManager(stages[:lowering + 1]).run(module, ctx)
        return cls(module, res.report("analyze-cost"), platform, model, bits, inputs,
                   source=source)

    # -- the genome: plan levels, PE choices (0 = the greedy rule), units per PE, operating point
    def decode(self, x) -> Design:
        x = [int(v) for v in x]
        i = 0
        plan = []
        for name, levels in self.levels.items():
            plan.append((name, levels[min(x[i], len(levels) - 1)]))
            i += 1
        picks = []
        for name in self.choosers:
            if x[i]:
                picks.append((name, self.pes_of[name][x[i] - 1]))
            i += 1
        units = []
        kept = set()
        for pe, lo, _ in self.alloc:
            n = lo + x[i]
            i += 1
            units += self.platform.pe(pe).units()[:n]
            if n:
                kept.add(pe)
        opp = self.opps[x[i]]
        # a pin to a PE with no unit left is dropped: the greedy rule places that actor
        return Design(tuple(plan), tuple((a, p) for a, p in picks if p in kept), tuple(units), opp)

    def encode(self, design: Design) -> np.ndarray:
        plan, pins = dict(design.plan), dict(design.pe)
        x = [self.levels[n].index(plan.get(n, 1)) for n in self.levels]
        x += [self.pes_of[n].index(pins[n]) + 1 if n in pins else 0 for n in self.choosers]
        x += [sum(1 for u in design.units if u in self.platform.pe(pe).units()) - lo
              for pe, lo, _ in self.alloc]
        x.append(self.opps.index(design.opp))
        return np.array(x, dtype=int)

    def greedy_design(self) -> Design:
        """What `alohac compile --target` does: auto partition, the greedy rule, every unit."""
        return Design(tuple((n, self.auto.get(n, 1)) for n in self.levels), (),
                      tuple(u for u, _ in self.platform.units()), self.default_opp)

    def options(self, layer, opp):
        key = (layer, opp)
        if key not in self._options:
            self._options[key] = candidates(self.platform, layer, self.datatype, opp)
        return self._options[key]

    # -- the closed-form estimate
    def estimate(self, design: Design) -> Estimate:
        """The map pass's list schedule of the partitioned graph, replayed on a task list."""
        plan, pins = dict(design.plan), dict(design.pe)
        allowed = set(design.units)
        allowed = None if len(allowed) == len(self.platform.units()) else allowed
        sched = ListSchedule(self.platform)
        gather = {a: f"{a}_gather" for a, n in plan.items() if n > 1}
        tasks: list[tuple[str, float, int, list]] = []  # (actor, seconds, firings, producers)
        try:
            for name in self.order:
                preds = [(gather.get(p, p), b) for p, b in self.preds.get(name, [])]
                if name in self.zero:
                    sched.skip(name, preds)
                    tasks.append((name, 0.0, 1, preds))
                    continue
                layer = self.layers[name]
                parts = plan.get(name, 1)
                if parts <= 1:
                    self._place(sched, tasks, name, layer, preds, pins.get(name), allowed,
                                design.opp)
                    continue
                subs = []
                for k, (lo, hi) in enumerate(channel_bounds(layer.cout, parts)):
                    work = sum(c * (v * (hi - lo) // layer.cout) for c, v in self.work[name])
                    sub = f"{name}_p{k}"
                    self._place(sched, tasks, sub, slice_layer(layer, lo, hi, work), preds,
                                pins.get(name), allowed, design.opp)
                    subs.append(sub)
                sched.skip(gather[name], [(s, 0) for s in subs])
                tasks.append((gather[name], 0.0, 1, [(s, 0) for s in subs]))
        except PassError as e:
            return Estimate(math.inf, math.inf, math.inf, 0, feasible=False, why=e.message)
        period = max(sched.load.values(), default=0.0)
        energy = self.platform.static_w * period
        for unit, pe in self.platform.units():
            active, idle = self.platform.power(pe, design.opp)
            busy = sched.load.get(unit, 0.0)
            energy += active * busy + idle * max(0.0, period - busy)
        energy += self._transfer_j(plan, sched.unit)
        assignment = {a: u for a, u in sched.unit.items() if u}
        return Estimate(pipelined_latency(tasks, sched.unit), period, energy,
                        len(set(assignment.values())), assignment, sched.makespan_s)

    def _transfer_j(self, plan: dict[str, int], unit: dict[str, str]) -> float:
        """Link energy per frame as analyze-energy counts it on the graph `map` would leave: a
        split producer writes to its gather (no link), a merged one sends from its merge."""
        out = 0.0
        nbytes = DATATYPE_BITS[self.datatype] // 8
        merged = set()

        def cost(a: str, b: str, tokens: int) -> float:
            ua, ub = unit.get(a, ""), unit.get(b, "")
            if not ua or not ub or ua == ub:
                return 0.0
            link = self.platform.link_between(self.pe_of[ua], self.pe_of[ub])
            return tokens * nbytes * link.energy_per_byte_j if link else 0.0
        for src, dst, tokens in self.flows:
            if plan.get(src, 1) > 1:
                continue
            sender = src
            if f"{src}_merge" in unit:
                sender = f"{src}_merge"
                if src not in merged:  # the engine's partial outputs to the merge
                    merged.add(src)
                    out += cost(src, sender, tokens)
            for d in [f"{dst}_p{k}" for k in range(plan[dst])] if plan.get(dst, 1) > 1 else [dst]:
                out += cost(sender, d, tokens)
        return out

    def _place(self, sched: ListSchedule, tasks, name, layer, preds, pin, allowed, opp) -> None:
        options = restrict(self.options(layer, opp), name, pin, allowed, self.platform, "")
        unit, pe_name, c = sched.place(name, options, preds)
        tasks.append((name, c.seconds, layer.firings, preds))
        pe = self.platform.pe(pe_name)
        rule = costmodel.native_kernel(pe, kernel_extent(layer)) \
            if pe.kind == "conv-engine" else None
        if rule is not None and rule.merge_on:
            mlayer = costmodel.merge_layer(layer, rule.jobs)
            m_opts = [o for o in self.options(mlayer, opp) if o[1] == rule.merge_on]
            m_opts = restrict(m_opts, f"{name}_merge", None, allowed, self.platform, "")
            _, _, mc = sched.place(f"{name}_merge", m_opts, [(name, 0)], transfers=False)
            tasks.append((f"{name}_merge", mc.seconds, layer.firings, [(name, 0)]))

    # -- the refinement: the real pipeline
    def flow(self, design: Design) -> TargetFlow:
        """The target flow that realises `design` (what `alohac analyze --target` runs, with
        the design's partition plan, pins and units, reporting a design that overflows)."""
        from aloha_ir.context import make_context
        from passes.partition import PartitionPass
        # a pin names an actor before partition: it applies to each part partition makes of it
        ctx = make_context()
        ctx.target = self.platform
        PartitionPass.parts(dict(design.plan), bits=self.bits, opp=design.opp or "").apply(
            ctx, self.module.clone())
        subs = ctx.report("partition")
        assign = tuple((s, pe) for a, pe in design.pe for s in subs.get(a, [a]))
        units = () if len(design.units) == len(self.platform.units()) else design.units
        return TargetFlow(self.platform, self.bits, design.opp or "",
                          Placement(design.plan, assign, units), allow_overflow=True)

    def refine(self, design: Design, estimate: Estimate | None = None, label: str = "") -> Point:
        from aloha_ir.weights import clone_with_weights
        # analyze-memory{allow_overflow} prints a warning for a design that overflows (recorded
        # here as fits = false) and has no option to keep quiet; passes/ is not this module's
        with contextlib.redirect_stderr(io.StringIO()):
            report = self.flow(design).run(clone_with_weights(self.source))
        assignment = {a: u for a, u in report.mapping.assignment.items() if u}
        return Point(design, estimate or self.estimate(design), report.to_json(), assignment,
                     label)


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


# -- Pareto fronts ---------------------------------------------------------------------------------

def dominates(a, b) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated(items: list, key) -> list:
    """The items no other item dominates (minimising every component of key(item))."""
    vals = [tuple(key(i)) for i in items]
    return [it for it, v in zip(items, vals)
            if not any(dominates(w, v) for w in vals if w != v)]


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rank correlation (ties get their mean rank); None under 3 points or when one
    side is constant."""
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None

    def ranks(v):
        v = np.asarray(v, dtype=float)
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for x in np.unique(v):  # ties: their mean rank
            same = v == x
            r[same] = r[same].mean()
        return r
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


# -- the search -----------------------------------------------------------------------------------

@dataclass
class SearchResult:
    model: str
    platform: str
    greedy: Point
    chosen: Point
    pareto: list[Point]
    refined: list[Point]
    estimates: list[tuple[Design, Estimate]]
    evaluations: int  # distinct designs estimated
    seconds: float
    estimate_seconds: float
    refine_seconds: float
    seed: int
    spearman_latency: float | None  # estimate vs self-timed latency over the refined points
    inputs: dict | None = None  # the model's input shapes (port -> dims)

    def to_json(self) -> dict:
        return {"model": self.model, "platform": self.platform,
                "greedy": self.greedy.to_json(), "chosen": self.chosen.to_json(),
                "pareto": [p.to_json() for p in self.pareto],
                "refined": [p.to_json() for p in self.refined],
                "evaluations": self.evaluations, "refined_count": len(self.refined),
                "seconds": self.seconds, "estimate_seconds": self.estimate_seconds,
                "refine_seconds": self.refine_seconds, "seed": self.seed,
                "spearman_latency": self.spearman_latency,
                "speedup": self.greedy["latency_s"] / self.chosen["latency_s"]}


def _objectives(e: Estimate) -> tuple[float, float, float]:
    return (e.latency_s, e.energy_j, float(e.processors))


def _rounded(values) -> tuple:
    return tuple(float(f"{v:.4g}") for v in values)


def _effect(d: Design, e: Estimate) -> tuple:
    """What the real pipeline sees of a design: two designs with one effect refine alike."""
    return (tuple(sorted((a, n) for a, n in d.plan if n > 1)), tuple(sorted(e.assignment.items())),
            d.opp)


def _pick_to_refine(evaluated: list[tuple[Design, Estimate]], k: int, *skip: tuple
                    ) -> list[tuple]:
    """k estimated points of distinct effect and estimate (not the `skip` keys'): the fastest,
    the fastest per processor count, then the estimated front by latency, then the rest by
    latency (the estimate can misrank close points)."""
    ok = [(d, e) for d, e in evaluated if e.feasible]
    by_latency = sorted(ok, key=lambda p: (p[1].latency_s, p[1].energy_j))
    front = non_dominated(by_latency, lambda p: _objectives(p[1]))
    picked: dict[tuple, tuple] = {}
    seen = set(skip)

    def take(p) -> None:
        # estimates equal to 4 digits count as one point (the two CEs swapped, a pin the rule
        # agreed with): the estimate is not finer than that
        keys = (_effect(*p), _rounded(_objectives(p[1])))
        if not seen.intersection(keys) and len(picked) < k:
            picked[keys[0]] = p
        seen.update(keys)
    if by_latency:
        take(by_latency[0])
    for procs in sorted({e.processors for _, e in front}):
        take(next(p for p in front if p[1].processors == procs))
    for p in front[:max(0, k // 2)] + by_latency:
        take(p)
    return list(picked.values())


def _polish(x: np.ndarray, upper: np.ndarray, evaluate, budget_left, rng) -> None:
    """First-improvement local search on (estimated latency, energy) from `x`, one gene at a
    time, until a pass over every gene finds nothing or `budget_left()` is 0."""
    x = x.copy()
    best = evaluate(x)
    improved = True
    while improved and budget_left() > 0:
        improved = False
        for i in rng.permutation(len(x)):
            for v in rng.permutation(int(upper[i]) + 1):
                if v == x[i] or budget_left() <= 0:
                    continue
                y = x.copy()
                y[i] = v
                e = evaluate(y)
                faster = e.latency_s < best.latency_s - 1e-12
                leaner = e.latency_s <= best.latency_s and e.energy_j < best.energy_j - 1e-12
                if e.feasible and (faster or leaner):
                    x, best, improved = y, e, True
                    break


def search(space: SystemSpace, budget: int = 1500, refine: int = 8, seed: int = 0,
           pop_size: int | None = None, polish: float = 0.25, progress: bool = False
           ) -> SearchResult:
    """NSGA-II over `space` on the estimates, then a local search from its fastest point (the
    last `polish` share of the `budget` distinct designs estimated); then the real pipeline on
    the greedy default and `refine` picked points. The chosen point: the fastest refined point
    that fits in memory (so greedy's latency or better when greedy fits), else the fastest of all.
    Deterministic for a seed."""
    if budget < 1 or refine < 0:
        raise UsageError("the search needs budget >= 1 and refine >= 0")
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.mutation import Mutation
    from pymoo.core.evaluator import Evaluator
    from pymoo.core.problem import Problem
    from pymoo.problems.static import StaticProblem
    from pymoo.operators.crossover.ux import UniformCrossover

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    upper = np.array(space.bounds, dtype=int)
    n_var = len(upper)
    cache: dict[tuple, Estimate] = {}
    designs: dict[tuple, Design] = {}

    class Reset(Mutation):
        """Each gene redrawn uniformly with probability 1/n (at least one per child)."""

        def _do(self, problem, X, *args, random_state=None, **kwargs):
            X = np.array(X, dtype=float)
            for row in X:
                hit = random_state.random(n_var) < 1.0 / max(1, n_var)
                hit[random_state.integers(n_var)] = True
                row[hit] = np.floor(random_state.random(hit.sum()) * (upper[hit] + 1))
            return X

    greedy_design = space.greedy_design()
    x0 = space.encode(greedy_design)
    pop_size = min(budget, pop_size or int(max(8, min(48, budget // 6))))
    # the greedy point first; deliberate starts: other operating points, nothing split, fewer
    # units (the processors axis); then the greedy point lightly mutated, and random points
    seeds = {tuple(x0): x0}
    for variant in _variants(space, x0):
        seeds.setdefault(tuple(variant), variant)
    tries = 0
    while len(seeds) < pop_size and tries < 50 * pop_size:  # a tiny space has few points
        tries += 1
        if tries % 2:
            x = x0.copy()
            hit = rng.random(n_var) < 3.0 / max(1, n_var)
            x[hit] = np.floor(rng.random(hit.sum()) * (upper[hit] + 1)).astype(int)
        else:
            x = np.floor(rng.random(n_var) * (upper + 1)).astype(int)
        seeds.setdefault(tuple(x), x)
    X0 = np.array(list(seeds.values())[:pop_size])

    def evaluate(x) -> Estimate:
        key = tuple(int(v) for v in x)
        if key not in cache:
            d = space.decode(key)
            designs[key] = d
            cache[key] = space.estimate(d)
        return cache[key]

    problem = Problem(n_var=n_var, n_obj=3, n_ieq_constr=1, xl=np.zeros(n_var), xu=upper,
                      vtype=int)
    algorithm = NSGA2(pop_size=len(X0), sampling=X0.astype(float),
                      crossover=UniformCrossover(prob=0.9), mutation=Reset(),
                      eliminate_duplicates=True)
    algorithm.setup(problem, termination=("n_gen", 10 ** 6), seed=seed, verbose=False)
    with Progress("explore-mapping", total=budget, enabled=progress) as bar:
        stale = 0
        global_budget = budget - int(polish * budget)
        for x in X0:
            evaluate(x)
        while len(X0) > 1 and len(cache) < global_budget and stale < 5:
            pop = algorithm.ask()
            X = np.clip(np.rint(pop.get("X")), 0, upper).astype(int)
            before = len(cache)
            ests = [evaluate(x) for x in X]
            pop.set("X", X.astype(float))
            F = np.array([_objectives(e) if e.feasible else (1e9, 1e9, 1e9) for e in ests])
            G = np.array([[0.0 if e.feasible else 1.0] for e in ests])
            Evaluator().eval(StaticProblem(problem, F=F, G=G), pop)
            algorithm.tell(infills=pop)
            stale = stale + 1 if len(cache) == before else 0
            bar.step(_estimated(cache, budget), completed=min(budget, len(cache)))
        # then the fastest estimated point improved one gene at a time
        fastest = min((k for k in cache if cache[k].feasible), default=tuple(x0),
                      key=lambda k: (cache[k].latency_s, cache[k].energy_j))

        def left() -> int:
            bar.update(completed=min(budget, len(cache)))
            return budget - len(cache)
        _polish(np.array(fastest), upper, evaluate, left, rng)
        bar.step(_estimated(cache, budget) + " after polishing the fastest",
                 completed=min(budget, len(cache)))
        estimate_s = time.perf_counter() - start
        evaluated = [(designs[k], e) for k, e in cache.items()]
        picks = _pick_to_refine(evaluated, refine, _effect(greedy_design, evaluate(x0)),
                                _rounded(_objectives(evaluate(x0))))
        refined: list[Point] = []

        def refine_one(design: Design, estimate: Estimate, label: str) -> Point:
            point = space.refine(design, estimate, label)
            refined.append(point)
            bar.step(f"refined {len(refined)}/{1 + len(picks)} ({label}): " +
                     ", ".join(f"{human.label(k)} {human.show(k, point[k])}" for k in
                               ("latency_s", "energy_j", "processors", "memory_bytes")) +
                     ("" if point["fits"] else " (does not fit)"), completed=len(refined),
                     total=1 + len(picks))
            return point
        greedy = refine_one(greedy_design, evaluate(x0), "greedy")
        for i, (d, e) in enumerate(picks):
            refine_one(d, e, f"p{i}")
    refine_s = time.perf_counter() - start - estimate_s
    # fastest among the points that fit (greedy is one of them when it fits); none fits: all
    fitting = [p for p in refined if p["fits"]] or refined
    pareto = non_dominated(fitting, lambda p: (p["latency_s"], p["energy_j"], p["processors"]))
    pareto.sort(key=lambda p: (p["latency_s"], p["energy_j"], p["processors"]))
    chosen = min(fitting, key=lambda p: (p["latency_s"], p["energy_j"], p["processors"]))
    rho = spearman([p.estimate.latency_s for p in refined], [p["latency_s"] for p in refined])
    return SearchResult(space.model, space.platform.name, greedy, chosen, pareto, refined,
                        evaluated, len(cache), time.perf_counter() - start, estimate_s, refine_s,
                        seed, rho, space.inputs)


def _variants(space: SystemSpace, x0: np.ndarray) -> list[np.ndarray]:
    """The greedy genome at every other operating point, with nothing split, and with one unit of
    each PE kept."""
    out = []
    for i in range(len(space.opps)):
        if i != x0[-1]:
            other = x0.copy()
            other[-1] = i
            out.append(other)
    nothing = x0.copy()
    nothing[:len(space.levels)] = 0
    out.append(nothing)
    base = len(space.levels) + len(space.choosers)
    fewer = x0.copy()
    for j, (_, lo, hi) in enumerate(space.alloc):
        fewer[base + j] = max(0, min(hi, 1) - lo)
    out.append(fewer)
    return out


def _estimated(cache: dict, budget: int) -> str:
    """A progress line of the closed-form stage: points so far and the best latency found."""
    feasible = [e for e in cache.values() if e.feasible]
    best = min((e.latency_s for e in feasible), default=None)
    return (f"estimated {min(budget, len(cache))}/{budget} design points, fastest "
            f"{human.show('latency_s', best)}")


# -- mapping files --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mapping:
    """A saved mapping: what `alohac compile --mapping` applies."""

    model: str
    platform: str
    bits: int
    opp: str | None
    partition: dict[str, int]
    assignment: dict[str, str]
    predicted: dict
    units: tuple[str, ...] = ()  # the units the greedy rule may use (empty: all)
    inputs: dict | None = None  # the model's input shapes it was made for (None: not recorded)
    fits: bool | None = None

    def placement(self, source: str = "") -> Placement:
        """What the target flow applies: the plan, every actor's unit, the units the greedy
        rule may use; `source` is the file it was read from (its errors then name it)."""
        return Placement(tuple(self.partition.items()), tuple(self.assignment.items()),
                         self.units, source, self.model)


def model_inputs(module) -> dict[str, list[int]]:
    """The nn.input ports of a (not yet lowered) module and their shapes."""
    out = {}
    for op in module.walk():
        if op.name == "nn.input":
            out[op.port.data] = [int(d) for d in op.output.type.get_shape()]
    return out


def mapping_json(result: SearchResult, point: Point | None = None) -> dict:
    point = point or result.chosen
    fig = point.figures
    return {
        "format": MAPPING_FORMAT, "model": result.model, "platform": result.platform,
        "datatype": fig["datatype"], "bits": DATATYPE_BITS[fig["datatype"]],
        "operating_point": point.design.opp, "partition": dict(point.design.plan),
        "assignment": point.assignment, "units": list(point.design.units),
        "pe": dict(point.design.pe), "fits": bool(fig["fits"]),
        "inputs": result.inputs,
        "predicted": {k: fig[k] for k in FIGURE_KEYS},
        "estimate": point.estimate.to_json(),
        "greedy": {k: result.greedy[k] for k in FIGURE_KEYS},
        "search": {"seed": result.seed, "evaluations": result.evaluations,
                   "refined": len(result.refined)},
    }


def save_mapping(path: str, data: dict) -> str:
    from aloha_ir.textio import write_text
    return write_text(path, json.dumps(data, indent=1) + "\n")


def load_mapping(path: str, platform: str | None = None, model: str | None = None,
                 inputs: dict | None = None) -> Mapping:
    """Read and check a mapping file; `platform`/`model` are what it will be applied to, and
    `inputs` that model's input shapes (model_inputs of the loaded module; None: not checked)."""
    from frontends.loader import model_stem
    if not os.path.exists(path):
        raise InputFileError("no such mapping file", where=path,
                             hint="make one with alohac explore-mapping MODEL --target T -o OUT")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputFileError(f"not a JSON mapping file ({e})", where=path) from None
    except RecursionError:
        raise InputFileError("not a mapping file (JSON nested too deeply)", where=path) from None
    if not isinstance(data, dict) or data.get("format") != MAPPING_FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputFileError(f"not an {MAPPING_FORMAT} file (format {got!r})", where=path,
                             hint="alohac explore-mapping writes OUT/mapping.json")
    checks = {"model": str, "platform": str, "partition": dict, "assignment": dict,
              "bits": int}
    for key, kind in checks.items():
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise InputFileError(f"'{key}' must be a {kind.__name__}", where=path)
    opp = data.get("operating_point")
    if opp is not None and not isinstance(opp, str):
        raise InputFileError("'operating_point' must be a string or null", where=path)
    if data["bits"] not in DATATYPE_BITS.values():
        raise InputFileError(f"'bits' {data['bits']} is not one of "
                             f"{sorted(DATATYPE_BITS.values())}", where=path)
    bad = [f"{a}: {n!r}" for a, n in data["partition"].items()
           if not isinstance(n, int) or isinstance(n, bool) or n < 1]
    bad += [f"{a}: {u!r}" for a, u in data["assignment"].items() if not isinstance(u, str) or not u]
    if bad:
        raise InputFileError(f"bad entries: {', '.join(bad[:3])}", where=path,
                             hint="partition: ACTOR -> parts >= 1; assignment: ACTOR -> unit")
    if any(c in a for a in [*data["partition"], *data["assignment"]] for c in ';:"'):
        raise InputFileError("actor names cannot hold ';', ':' or '\"'", where=path)
    units = data.get("units", [])
    if not isinstance(units, list) or not all(isinstance(u, str) and u and "," not in u
                                              and '"' not in u for u in units):
        raise InputFileError("'units' must be a list of unit names", where=path)
    recorded = data.get("inputs")
    if recorded is not None and not (
            isinstance(recorded, dict) and all(
                isinstance(d, list) and all(isinstance(n, int) and not isinstance(n, bool)
                                            for n in d) for d in recorded.values())):
        raise InputFileError("'inputs' must map input names to shapes (lists of ints)",
                             where=path)
    predicted = data.get("predicted")
    if predicted is not None and not (isinstance(predicted, dict) and all(
            v is None or isinstance(v, (int, float)) for v in predicted.values())):
        raise InputFileError("'predicted' must map figure names to numbers", where=path,
                             hint="alohac explore-mapping writes it; or leave it out")
    fits = data.get("fits")
    if fits is not None and not isinstance(fits, bool):
        raise InputFileError("'fits' must be true or false", where=path)
    if platform is not None and data["platform"] != platform:
        raise InputFileError(f"the mapping is for {data['platform']}, not {platform}",
                             where=path, hint=f"explore again with --target {platform}")
    if model is not None and model_stem(data["model"]) != model_stem(model):
        raise InputFileError(f"the mapping is for {data['model']}, not {model}", where=path,
                             hint=f"explore again: alohac explore-mapping {model} ...")
    if inputs is not None and recorded is not None:
        got = {k: [int(n) for n in v] for k, v in inputs.items()}
        if got != recorded:
            def shapes(d):
                return ", ".join(f"{k}={','.join(map(str, v))}" for k, v in sorted(d.items()))
            raise InputFileError(f"the mapping was made for input shapes {shapes(recorded)}, "
                                 f"not {shapes(got)}", where=path,
                                 hint="pass the same --input-shape, or explore again with "
                                      "these shapes")
    return Mapping(data["model"], data["platform"], data["bits"], opp, dict(data["partition"]),
                   dict(data["assignment"]), dict(data.get("predicted") or {}), tuple(units),
                   recorded, fits)
