"""Algorithm-level search: NSGA-II (pymoo, with our variable-length operators), random and grid search
over a genotype space, on the objectives and constraints of one or more scenarios.

Evaluations go through `Evaluations`, which answers a genotype from the run's archive, then from the
SQLite cache (explore/cache.py, keyed by the evaluation settings and the genotype), and only then
submits it to the executor (explore/executor.py: local worker processes or a Dask cluster). The
budget counts distinct design points evaluated in this run, from the cache or not; a point proposed
again is free. Because NSGA-II is seeded and cached answers equal computed ones, a stopped run
started again retraces its steps through the cache and computes only what it had not reached.

The hypervolume is measured after scaling every objective to [0, 1] between the best and worst value
seen among the run's evaluated points (maximised objectives flipped; minimised positive figures on a
log axis, see `scaled`), against the reference point (1.1, ..., 1.1): a front that reaches the ideal
corner approaches 1.1^m.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aloha_ir import events
from aloha_ir.errors import AlohaError, InternalError, UsageError
from explore.objectives import OBJECTIVES, EvalSettings, evaluate_point
from explore.operators import (GenotypeCrossover, GenotypeDuplicates, GenotypeMutation,
                               GenotypeSampling)
from explore.pareto import non_dominated
from explore.scenarios import Scenario, choose
from explore.space import SearchSpace
from frontends.genotype import Gene, Genotype, InvalidGenotype

ALGORITHMS = ("nsga2", "random", "grid")
FAILED_F = 1e18  # objective value of a point whose evaluation failed (worse than any real one)
FAILED_G = 1e6
STALE_GENERATIONS = 25  # NSGA-II stops early when this many generations propose nothing new


@dataclass
class Point:
    genotype: Genotype
    key: str
    order: int
    result: dict | None = None
    error: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def figures(self) -> dict:
        return self.result["objectives"] if self.result else {}

    def to_json(self, objectives: list[str] | None = None) -> dict:
        figs = self.figures
        return {"key": self.key, "genotype": self.genotype.describe(),
                "objectives": {o: figs.get(o) for o in objectives} if objectives else figs,
                "figures": figs, "onnx": self.result.get("onnx") if self.result else None,
                "cached": self.cached, "error": self.error,
                "layers": self.genotype.to_json()["layers"]}


class Evaluations:
    """The run's archive of evaluated points, in front of the cache and the executor."""

    def __init__(self, settings: EvalSettings, *, cache=None, executor=None,
                 on_point: Callable[["Evaluations", Point], None] | None = None):
        self.settings = settings
        # the cache also records the settings behind its context key, for whoever opens the file
        self.context = cache.context(settings.context()) if cache is not None else settings.key()
        self.cache, self.executor, self.on_point = cache, executor, on_point
        self.points: dict[str, Point] = {}
        self.new_evaluations = 0

    def __len__(self) -> int:
        return len(self.points)

    @property
    def failures(self) -> int:
        return sum(1 for p in self.points.values() if not p.ok)

    def evaluate(self, genotypes: list[Genotype]) -> list[Point]:
        keys = [g.key() for g in genotypes]
        todo: dict[str, Genotype] = {}
        for k, g in zip(keys, genotypes):
            if k not in self.points and k not in todo:
                todo[k] = g
        # a point's order is its place in the request, whichever answer comes first
        order = {k: len(self.points) + i for i, k in enumerate(todo)}
        hits = self.cache.get_many(self.context, list(todo)) if self.cache and todo else {}
        for k, result in hits.items():
            if "error" in result:
                self._record(Point(todo.pop(k), k, order[k], None, result["error"], cached=True))
            elif not result.get("onnx") or os.path.exists(result["onnx"]):
                self._record(Point(todo.pop(k), k, order[k], result, cached=True))
            # else its model file is gone: evaluate it again
        if todo:
            self._compute(todo, order)
        return [self.points[k] for k in keys]

    def _compute(self, todo: dict[str, Genotype], order: dict[str, int]) -> None:
        if self.executor is None:
            for k, g in todo.items():
                try:
                    result, error = evaluate_point(self.settings, g.to_json()), None
                except Exception as e:  # a point that fails is a finding, not the run's end
                    result, error = None, e
                self._finish(k, g, order[k], result, error)
            return
        futures = {self.executor.submit(evaluate_point, self.settings, g.to_json()): k
                   for k, g in todo.items()}
        for fut in concurrent.futures.as_completed(futures):
            k = futures[fut]
            try:
                result, error = fut.result(), None
            except Exception as e:
                result, error = None, e
            self._finish(k, todo[k], order[k], result, error)

    def _finish(self, key: str, genotype: Genotype, order: int, result: dict | None,
                error: BaseException | None):
        """Record a computed point. Results are cached, and so are failures that are the
        genotype's own (an ALOHA error: it would fail again); a lost worker or a crash is not."""
        self.new_evaluations += 1
        message = _message(error) if error is not None else None
        if self.cache is not None and (result is not None or isinstance(error, AlohaError) and
                                       not isinstance(error, InternalError)):
            self.cache.put(self.context, key, genotype.to_json(),
                           result if result is not None else {"error": message})
        self._record(Point(genotype, key, order, result, message))

    def _record(self, point: Point) -> None:
        self.points[point.key] = point
        events.emit("design_point", index=len(self.points), **point.to_json())
        if self.on_point:
            self.on_point(self, point)


def _message(e: BaseException) -> str:
    text = getattr(e, "message", None) or str(e) or e.__class__.__name__
    return f"{e.__class__.__name__}: {text}"


# --- objectives as pymoo sees them (all minimised) ------------------------------------------------
def minimised(figures: dict, objectives: list[str]) -> list[float]:
    out = []
    for o in objectives:
        v = figures.get(o)
        if v is None or not math.isfinite(v):
            return [FAILED_F] * len(objectives)
        out.append(-v if OBJECTIVES[o][0] == "max" else v)
    return out


def violations(point: Point, scenario: Scenario, settings: EvalSettings) -> list[float]:
    if not point.ok:
        return [FAILED_G] * n_constraints(scenario, settings)
    g = [c.violation(point.figures) for c in scenario.constraints]
    if settings.needs_target():  # a model that overflows the platform's memories cannot deploy
        g.append(0.0 if point.figures.get("fits", True) else 1.0)
    return g


def n_constraints(scenario: Scenario, settings: EvalSettings) -> int:
    return len(scenario.constraints) + (1 if settings.needs_target() else 0)


def feasible(point: Point, scenario: Scenario, settings: EvalSettings) -> bool:
    return point.ok and all(v <= 0 for v in violations(point, scenario, settings))


def pareto_front(points: list[Point], objectives: list[str], scenario: Scenario,
                 settings: EvalSettings) -> list[Point]:
    """The feasible, mutually non-dominated points, ordered by the first objective."""
    cand = [p for p in points if feasible(p, scenario, settings)]
    rows = [(tuple(float(v) for v in minimised(p.figures, objectives)), p) for p in cand]
    # equal objective vectors (two genotypes, same figures) are kept once: the first evaluated
    front, seen = [], set()
    for f, p in sorted(non_dominated(rows, lambda r: r[0]), key=lambda r: (r[0], r[1].order)):
        if f not in seen:
            seen.add(f)
            front.append(p)
    return front


def bounds_of(points: list[Point], objectives: list[str]) -> dict[str, tuple[float, float]]:
    ok = [p for p in points if p.ok]
    out = {}
    for o in objectives:
        vals = [p.figures[o] for p in ok if p.figures.get(o) is not None and
                math.isfinite(p.figures[o])]
        out[o] = (min(vals), max(vals)) if vals else (0.0, 1.0)
    return out


def scaled(value: float, objective: str, bounds: tuple[float, float]) -> float:
    """0 at the best bound, 1 at the worst. Minimised figures (latency, energy, memory, params,
    MACs) span orders of magnitude, so they are scaled on a log axis when their bounds are
    positive: on a linear axis the few largest networks would squeeze every front into a corner."""
    lo, hi = bounds
    if OBJECTIVES[objective][0] == "max":
        return (hi - value) / ((hi - lo) or 1.0)
    if lo > 0:
        lo, hi, value = math.log(lo), math.log(hi), math.log(max(value, lo))
    return (value - lo) / ((hi - lo) or 1.0)


def hypervolume(front: list[Point], objectives: list[str],
                bounds: dict[str, tuple[float, float]], ref: float = 1.1) -> float:
    """Hypervolume of the front scaled by `bounds` (`scaled`: 0 best, 1 worst per objective)
    against (ref, ..., ref)."""
    from pymoo.indicators.hv import HV
    if not front:
        return 0.0
    rows = [[scaled(p.figures[o], o, bounds[o]) for o in objectives] for p in front]
    return float(HV(ref_point=np.full(len(objectives), ref))(np.array(rows)))


# --- the pymoo problem ----------------------------------------------------------------------------
def _problem(evals: Evaluations, objectives: list[str], scenario: Scenario):
    from pymoo.core.problem import Problem

    class DesignProblem(Problem):
        def __init__(self):
            super().__init__(n_var=1, n_obj=len(objectives),
                             n_ieq_constr=n_constraints(scenario, evals.settings), vtype=object)

        def _evaluate(self, X, out, *args, **kwargs):
            points = evals.evaluate([x[0] for x in X])
            out["F"] = np.array([minimised(p.figures, objectives) if p.ok else
                                 [FAILED_F] * len(objectives) for p in points], dtype=float)
            if self.n_ieq_constr:
                out["G"] = np.array([violations(p, scenario, evals.settings) for p in points],
                                    dtype=float)

    return DesignProblem()


@dataclass
class SearchConfig:
    algorithm: str = "nsga2"
    budget: int = 60
    pop_size: int = 0  # 0: about a fifth of the budget, 8..40
    seed: int = 0
    batch: int = 8  # random and grid search: points submitted at once

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise UsageError(f"unknown algorithm '{self.algorithm}'",
                             hint="algorithms: " + ", ".join(ALGORITHMS))
        if self.budget < 1:
            raise UsageError(f"the budget must be >= 1 evaluation, got {self.budget}")
        if self.pop_size < 0 or self.pop_size == 1:
            raise UsageError(f"the population size must be >= 2, got {self.pop_size}")

    def population(self, budget: int) -> int:
        return self.pop_size or max(2, min(40, max(8, budget // 5), budget))


def run_nsga2(evals: Evaluations, space: SearchSpace, input_shape, objectives: list[str],
              scenario: Scenario, budget: int, config: SearchConfig) -> None:
    """NSGA-II by ask and tell, so the budget is exact: a generation that would pass it is cut."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.evaluator import Evaluator
    from pymoo.core.termination import NoTermination
    problem = _problem(evals, objectives, scenario)
    algo = NSGA2(pop_size=config.population(budget),
                 sampling=GenotypeSampling(space, input_shape),
                 crossover=GenotypeCrossover(space, input_shape),
                 mutation=GenotypeMutation(space, input_shape),
                 eliminate_duplicates=GenotypeDuplicates())
    algo.setup(problem, termination=NoTermination(), seed=config.seed, verbose=False)
    start, stale = len(evals), 0
    while len(evals) - start < budget and stale < STALE_GENERATIONS:
        pop = algo.ask()
        remaining = budget - (len(evals) - start)
        fresh, keep = set(), []
        for i, ind in enumerate(pop):
            k = ind.X[0].key()
            if k in evals.points or k in fresh:
                keep.append(i)
            elif len(fresh) < remaining:
                fresh.add(k)
                keep.append(i)
        if len(keep) < len(pop):
            pop = pop[np.array(keep, dtype=int)]
        before = len(evals)
        Evaluator().eval(problem, pop)
        algo.tell(infills=pop)
        stale = stale + 1 if len(evals) == before else 0


def run_random(evals: Evaluations, space: SearchSpace, input_shape, budget: int,
               config: SearchConfig, rng: np.random.Generator) -> None:
    start, tries = len(evals), 0
    while len(evals) - start < budget and tries < 50 * budget:
        batch, keys = [], set()
        while len(batch) < min(config.batch, budget - (len(evals) - start)) and \
                tries < 50 * budget:
            tries += 1
            g = space.sample(rng, input_shape)
            k = g.key()
            if k not in evals.points and k not in keys:
                keys.add(k)
                batch.append(g)
        evals.evaluate(batch)


def _grid_options(space: SearchSpace, levels: int) -> list[list[list[Gene]]]:
    """Per slot, its options: every count with up to `levels` values of each parameter (lowest,
    middle(s), highest), the same values for every layer of the slot."""
    per_slot = []
    for i, slot in enumerate(space.slots):
        names = list(slot.params)
        choices = [_levels(slot.params[n], levels) for n in names]
        per_slot.append([[Gene(slot.kind, i, tuple(sorted(zip(names, values))))] * n
                         for n in range(slot.count[0], slot.count[1] + 1)
                         for values in itertools.product(*choices)])
    return per_slot


def grid(space: SearchSpace, input_shape, levels: int = 3, limit: int | None = None
         ) -> list[Genotype]:
    """The seeds' grid search (D2.2 section 2.1.1): the product of every slot's options, or
    `limit` of them spread evenly over it (picked by index, so a huge grid is never built);
    invalid points repaired (or skipped when the space rejects them), duplicates removed."""
    per_slot = _grid_options(space, levels)
    total = math.prod(len(o) for o in per_slot)
    picks = range(total) if limit is None or limit >= total else sorted(
        {round(k * (total - 1) / max(1, limit - 1)) for k in range(limit)})
    out, seen = [], set()
    for index in picks:
        combo = []
        for options in reversed(per_slot):  # mixed radix, the last slot varying fastest
            index, digit = divmod(index, len(options))
            combo.append(options[digit])
        try:
            g, _ = space.repair(Genotype(tuple(x for seg in reversed(combo) for x in seg)),
                                input_shape)
        except InvalidGenotype:
            continue
        if g.key() not in seen:
            seen.add(g.key())
            out.append(g)
    return out


def _levels(values: tuple, levels: int) -> list:
    if len(values) <= levels:
        return list(values)
    idx = sorted({round(k * (len(values) - 1) / (levels - 1)) for k in range(levels)})
    return [values[i] for i in idx]


def run_grid(evals: Evaluations, space: SearchSpace, input_shape, budget: int,
             config: SearchConfig) -> None:
    """Evaluate the grid, or `budget` points spread evenly over it."""
    points = grid(space, input_shape, limit=budget)
    for i in range(0, len(points), config.batch):
        evals.evaluate(points[i:i + config.batch])


@dataclass
class ScenarioResult:
    scenario: Scenario
    front: list[Point]
    chosen: Point | None
    hypervolume: float

    def to_json(self, objectives: list[str]) -> dict:
        return {**self.scenario.to_json(), "hypervolume": self.hypervolume,
                "pareto": [p.to_json(objectives) for p in self.front],
                "chosen": self.chosen.to_json(objectives) if self.chosen else None}


@dataclass
class ExploreResult:
    objectives: list[str]
    scenarios: list[ScenarioResult]
    points: list[Point]
    evaluations: int
    new_evaluations: int
    failures: int
    bounds: dict[str, tuple[float, float]]
    seconds: float

    @property
    def main(self) -> ScenarioResult:
        return self.scenarios[0]


def explore(space: SearchSpace, settings: EvalSettings, scenarios: list[Scenario],
            config: SearchConfig, *, cache=None, executor=None,
            on_point: Callable[[Evaluations, Point], None] | None = None) -> ExploreResult:
    """Search the space for each scenario in turn (the budget split evenly; points evaluated for
    one scenario are free for the next), then each scenario's front over everything evaluated."""
    start = time.perf_counter()
    objectives = list(settings.objectives)
    evals = Evaluations(settings, cache=cache, executor=executor, on_point=on_point)
    rng = np.random.default_rng(config.seed)
    shares = [config.budget // len(scenarios) + (1 if i < config.budget % len(scenarios) else 0)
              for i in range(len(scenarios))]
    for scenario, share in zip(scenarios, shares):
        if share < 1:
            continue
        if config.algorithm == "nsga2":
            run_nsga2(evals, space, settings.input_shape, objectives, scenario, share, config)
        elif config.algorithm == "random":
            run_random(evals, space, settings.input_shape, share, config, rng)
        else:
            run_grid(evals, space, settings.input_shape, config.budget, config)
            break  # the grid does not depend on the scenario
    points = list(evals.points.values())
    bounds = bounds_of(points, objectives)
    results = []
    for scenario in scenarios:
        front = pareto_front(points, objectives, scenario, settings)
        chosen = choose(scenario, [p.figures for p in front], list(range(len(front))),
                        objectives)
        results.append(ScenarioResult(scenario, front,
                                      front[chosen] if chosen is not None else None,
                                      hypervolume(front, objectives, bounds)))
    return ExploreResult(objectives, results, points, len(evals), evals.new_evaluations,
                         evals.failures, bounds, time.perf_counter() - start)


__all__ = ["ALGORITHMS", "Evaluations", "ExploreResult", "Point", "ScenarioResult",
           "SearchConfig", "explore", "grid", "hypervolume", "pareto_front"]
