"""Constraints and scenarios: operating modes, each a constraint set with a rule to pick its point.

A constraint is `FIGURE OP VALUE[UNIT]` with OP `<=` or `>=`: `latency<=2ms`, `memory<=1.5MiB`,
`energy<=0.4mJ`, `accuracy>=0.9`, `params<=20000`. It stays a constraint in the search (pymoo's
inequality constraints: a feasible point beats an infeasible one, infeasible points are compared by
how far they violate), never a penalty folded into an objective. A scenario (the seeds' scenario-
based exploration, D2.2 section 2.1.3) has a name, constraints, and `choose`: `knee` (default: the
front point nearest the ideal point after scaling every objective to [0, 1]), or `max:FIGURE` /
`min:FIGURE` (ties broken by the knee distance).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from aloha_ir.errors import UsageError
from explore.objectives import OBJECTIVES, objective_name

UNITS = {
    "latency_s": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9},
    "energy_j": {"j": 1.0, "mj": 1e-3, "uj": 1e-6, "µj": 1e-6, "nj": 1e-9},
    "memory_bytes": {"b": 1.0, "kb": 1e3, "mb": 1e6, "kib": 1024.0, "mib": 1024.0 ** 2,
                     "gib": 1024.0 ** 3},
    "accuracy": {"%": 0.01}, "security": {"%": 0.01},
    "params": {"k": 1e3, "m": 1e6}, "macs": {"k": 1e3, "m": 1e6, "g": 1e9},
}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*([A-Za-zµ%]*)\s*$")


@dataclass(frozen=True)
class Constraint:
    figure: str
    op: str  # "<=" or ">="
    bound: float
    text: str

    def violation(self, figures: dict) -> float:
        """<= 0 when satisfied; otherwise how far off, relative to the bound."""
        value = figures.get(self.figure)
        if value is None or not math.isfinite(value):
            return 1e6
        scale = abs(self.bound) or 1.0
        return ((value - self.bound) if self.op == "<=" else (self.bound - value)) / scale

    def to_json(self) -> dict:
        return {"figure": self.figure, "op": self.op, "bound": self.bound, "text": self.text}


def parse_constraint(text: str) -> Constraint:
    m = _CONSTRAINT.match(text)
    if not m:
        raise UsageError(f"constraint '{text}' must be FIGURE<=VALUE or FIGURE>=VALUE",
                         hint="e.g. latency<=2ms, memory<=1MiB, accuracy>=0.9")
    figure = objective_name(m.group(1))
    try:
        value = float(m.group(3))
    except ValueError:
        raise UsageError(f"constraint '{text}': '{m.group(3)}' is not a number") from None
    unit = m.group(4)
    if unit:
        units = UNITS.get(figure, {})
        factor = units.get(unit.lower()) if unit.lower() in units else units.get(unit)
        if factor is None:
            raise UsageError(f"constraint '{text}': unit '{unit}' does not apply to {figure}",
                             hint="units: " + (", ".join(units) or "none (a plain number)"))
        value *= factor
    if not math.isfinite(value):
        raise UsageError(f"constraint '{text}': the bound must be finite")
    return Constraint(figure, m.group(2), value, text.strip())


@dataclass(frozen=True)
class Scenario:
    name: str
    constraints: tuple[Constraint, ...] = ()
    choose: str = "knee"
    description: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "description": self.description, "choose": self.choose,
                "constraints": [c.text for c in self.constraints]}


def check_choose(rule: str, objectives: list[str]) -> str:
    if rule == "knee":
        return rule
    direction, _, figure = rule.partition(":")
    if direction not in ("max", "min") or not figure:
        raise UsageError(f"choose '{rule}' must be knee, max:FIGURE or min:FIGURE")
    figure = objective_name(figure)
    if figure not in objectives:
        raise UsageError(f"choose '{rule}': {figure} is not one of the objectives "
                         f"({', '.join(objectives)})")
    return f"{direction}:{figure}"


_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def parse_scenarios(entries, objectives: list[str], where: str = "scenarios"
                    ) -> list[Scenario]:
    """Scenarios from a space file's `scenarios` list: {name, constraints: [...], choose}."""
    out, seen = [], set()
    for i, e in enumerate(entries):
        at = f"{where}[{i}]"
        unknown = set(e) - {"name", "constraints", "choose", "description"}
        if unknown:
            raise UsageError(f"{at}: unknown key(s) {', '.join(sorted(map(str, unknown)))}",
                             hint="keys: name, description, constraints, choose")
        name = str(e.get("name", ""))
        if not _NAME.match(name) or name in seen:
            raise UsageError(f"{at}: name {name!r} must be unique, 1-64 letters, digits, '_-.'")
        seen.add(name)
        cons = e.get("constraints") or []
        if isinstance(cons, str):
            cons = [cons]
        if not isinstance(cons, list):
            raise UsageError(f"{at}: constraints must be a list of 'FIGURE<=VALUE' strings")
        out.append(Scenario(name, tuple(parse_constraint(str(c)) for c in cons),
                            check_choose(str(e.get("choose", "knee")), objectives),
                            str(e.get("description", ""))))
    return out


def choose(scenario: Scenario, points: list[dict], front: list[int], objectives: list[str]
           ) -> int | None:
    """The scenario's point among `front` (indices into points' `objectives` dicts)."""
    if not front:
        return None
    knee = knee_distances([points[i] for i in front], objectives)
    if scenario.choose == "knee":
        return front[min(range(len(front)), key=lambda k: (knee[k], k))]
    direction, figure = scenario.choose.split(":")
    sign = -1.0 if direction == "max" else 1.0
    return front[min(range(len(front)), key=lambda k: (
        sign * points[front[k]][figure], knee[k], k))]


def knee_distances(points: list[dict], objectives: list[str]) -> list[float]:
    """Euclidean distance to the ideal point with every objective scaled to [0, 1] over `points`
    (0 = best), maximised objectives flipped."""
    dist = [0.0] * len(points)
    for o in objectives:
        values = [p[o] for p in points]
        lo, hi = min(values), max(values)
        span = hi - lo or 1.0
        for k, v in enumerate(values):
            bad = (hi - v) / span if OBJECTIVES[o][0] == "max" else (v - lo) / span
            dist[k] += bad * bad
    return [math.sqrt(d) for d in dist]
