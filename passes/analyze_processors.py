"""`analyze-processors`: processing units used, and the DARTS-style processor count for comparison.

`processors` counts the units the mapping uses. The seeds' metric (DARTS, strictly periodic
scheduling, reference/csdf.md) is also given: with C_i an actor's longest firing and q_i its firings
per iteration, alpha = lcm(q) x ceil(max_i q_i C_i / lcm(q)), U_i = q_i C_i / alpha, and
`darts_processors` = ceil(sum_i U_i). Times are integer nanoseconds (work units when unmapped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp

from aloha_ir import dataflow
from aloha_ir.analysis import CSDF, Requires, repetition
from aloha_ir.context import record_reports
from aloha_ir.dialects import csdf
from aloha_ir.passmanager import AnalysisPass


@dataclass
class ProcessorsReport:
    graph: str
    processors: int
    units: list[str]
    darts_processors: int
    total_utilisation: float
    utilisation: dict[str, float] = field(default_factory=dict)  # actor -> U_i


def strictly_periodic(phases: dict[str, int], edges: list[dataflow.Edge],
                      wcet: dict[str, int]) -> tuple[int, dict[str, float]]:
    """(alpha, U_i) of DARTS' strictly periodic schedule; wcet = longest firing per actor."""
    q = repetition(phases, edges).firings
    lcm = math.lcm(*q.values()) if q else 1
    alpha = lcm * max(1, math.ceil(max((q[a] * wcet[a] for a in q), default=0) / lcm))
    return alpha, {a: q[a] * wcet[a] / alpha for a in q}


def analyze(graph: csdf.GraphOp) -> ProcessorsReport:
    phases, edges = graph.dataflow_graph()
    wcet, units = {}, set()
    for a in graph.actors():
        runs = a.exec_times or a.work_runs
        wcet[a.sym_name.data] = max((v for _, v in runs), default=0)
        if a.pe:
            units.add(a.pe)
    _, u = strictly_periodic(phases, edges, wcet)
    total = sum(u.values())
    used = len(units) if units else len([a for a in wcet if wcet[a] > 0])
    report = ProcessorsReport(graph.sym_name.data, used, sorted(units), math.ceil(total - 1e-9),
                              total, u)
    graph.processors = report.processors
    return report


@dataclass(frozen=True)
class AnalyzeProcessorsPass(AnalysisPass):
    """Units used by the mapping, and DARTS' ceil(total utilisation) for comparison."""

    name = "analyze-processors"
    requires = Requires(level=CSDF)
    annotates = frozenset({"csdf.processors"})  # csdf annotations' keys

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        reports = {g.sym_name.data: analyze(g) for g in csdf.csdf_graphs(op)}
        record_reports(ctx, self.name, reports)
