"""The system-level search (see the package docstring): NSGA-II on the estimates, a local search
from the fastest point, then the refinement of the greedy default and picked points."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from aloha_ir import figures as human
from aloha_ir.console import Progress
from aloha_ir.errors import UsageError
from explore.pareto import non_dominated
from explore.system.estimate import Estimate, estimate_design
from explore.system.refine import Point, refine_design
from explore.system.space import Design, SystemSpace


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
            cache[key] = estimate_design(space, d)
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
            point = refine_design(space, design, estimate, label)
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
