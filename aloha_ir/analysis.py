"""Analyses computed on demand, cached per (analysis, graph), dropped when a pass does not keep them.

MLIR's AnalysisManager and TVM's PassInfo.required, at this project's scale:

    am.get(RepetitionAnalysis, graph)      # computed once per graph, then served from the cache

A pass declares what it needs before it runs (`requires`: the IR level, a target platform, data) and
which analyses survive it (`preserves`); the PassManager checks the first and, after the pass, drops
every cached analysis and analysis report the pass did not preserve, so a later pass never reads a
result computed on IR that has changed since. Analyses and reports are keyed by the symbol of the
graph they describe (an nn.graph or a csdf.graph); `Preserves` can keep all analyses of one IR level,
which is how a pass that only rewrites the csdf graph (`map`) keeps the nn graph's cost report.

This module knows no dialect: an analysis receives its graph and reads it through the graph's own
methods, so the csdf dialect's verifier can share the repetition vector defined here.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

from aloha_ir import dataflow
from aloha_ir.errors import UnsupportedError, UsageError

# IR levels a pass can require (Requires.level)
NN = "nn"  # an nn graph not lowered yet: a transform of it would leave its csdf graph stale
NN_ANY = "nn-any"  # an nn graph, lowered or not (an analysis of it)
CSDF = "csdf"  # a csdf graph
CSDF_MAPPED = "csdf-mapped"  # a csdf graph `map` placed on a platform
LEVELS = (NN, NN_ANY, CSDF, CSDF_MAPPED)
LEVEL_TEXT = {NN: "an nn graph not lowered yet", NN_ANY: "an nn graph", CSDF: "a csdf graph",
              CSDF_MAPPED: "a mapped csdf graph"}


@dataclass(frozen=True)
class Requires:
    """What a pass needs before it runs: an IR `level` (one of LEVELS, "" for none), a target
    platform (its own `target` option or the context's), data (its `data` option or the
    context's)."""

    level: str = ""
    target: bool = False
    data: bool = False

    def __post_init__(self):
        if self.level and self.level not in LEVELS:
            raise ValueError(f"unknown IR level '{self.level}' (known: {', '.join(LEVELS)})")

    def describe(self) -> str:
        parts = [LEVEL_TEXT.get(self.level, "")] + \
            ["a target" if self.target else "", "data" if self.data else ""]
        return ", ".join(p for p in parts if p) or "nothing"


@dataclass(frozen=True)
class Preserves:
    """The analyses a pass keeps: all of them, or those of graphs at some IR levels ("nn",
    "csdf"), or some by name (an Analysis subclass's `name`, or an analysis pass's report name)."""

    everything: bool = False
    levels: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()

    def keeps(self, name: str, level: str) -> bool:
        return self.everything or level in self.levels or name in self.names

    def describe(self) -> str:
        if self.everything:
            return "all"
        parts = [f"analyses of {lv} graphs" for lv in sorted(self.levels)] + sorted(self.names)
        return ", ".join(parts) or "none"


PRESERVE_ALL = Preserves(everything=True)
PRESERVE_NONE = Preserves()


def preserves_level(*levels: str) -> Preserves:
    """Keep every analysis of the graphs at `levels` ("nn": a pass that leaves the nn graph be)."""
    return Preserves(levels=frozenset(levels))


class Analysis:
    """One analysis of one graph. Subclasses set `name` and `level` ("nn" or "csdf", the kind of
    graph analysed) and implement `compute`, which may ask the manager for other analyses."""

    name: ClassVar[str]
    level: ClassVar[str]

    @classmethod
    def compute(cls, graph, am: "AnalysisManager") -> Any:
        raise NotImplementedError(f"{cls.__name__} does not define compute")


def graph_symbol(graph) -> str:
    return graph.sym_name.data


class AnalysisManager:
    """Analysis results cached per (analysis class, graph symbol) for one module.

    The cache is valid while the module changes only through passes run by a PassManager (which
    calls `invalidate` after each); `computed` counts computations per analysis name."""

    def __init__(self) -> None:
        self._cache: dict[tuple[type[Analysis], str], Any] = {}
        self.computed: dict[str, int] = {}
        self._module: weakref.ref | None = None  # the module served (not kept alive)
        # analysis passes' report names -> the IR attributes they write (invalidated too)
        self.reports: dict[str, frozenset[str]] = {}

    def get(self, analysis: type[Analysis], graph) -> Any:
        key = (analysis, graph_symbol(graph))
        if key not in self._cache:
            self._cache[key] = analysis.compute(graph, self)
            self.computed[analysis.name] = self.computed.get(analysis.name, 0) + 1
        return self._cache[key]

    def cached(self, analysis: type[Analysis], graph) -> Any | None:
        """The cached result, or None (nothing is computed)."""
        return self._cache.get((analysis, graph_symbol(graph)))

    def record(self, analysis: type[Analysis], graph, result: Any) -> None:
        """Cache a result a pass computed itself (analyze-schedule with its own options)."""
        self._cache[(analysis, graph_symbol(graph))] = result

    def bind(self, module) -> None:
        """Serve `module` from now on: a different module (a clone) starts with an empty cache."""
        if self._module is None or self._module() is not module:
            self._cache.clear()
            self._module = weakref.ref(module)

    def invalidate(self, preserved: Preserves, levels: dict[str, str]) -> None:
        """Drop what `preserved` does not keep; `levels` maps each graph symbol of the module to
        its IR level (a graph that is gone drops everything about it)."""
        for analysis, graph in list(self._cache):
            level = levels.get(graph)
            if level is None or not preserved.keeps(analysis.name, level):
                del self._cache[(analysis, graph)]


def manager_of(ctx) -> AnalysisManager:
    """The context's analysis manager, or a fresh one that caches nothing beyond the call (a pass
    applied directly to a plain xDSL Context)."""
    am = getattr(ctx, "am", None)
    return am if isinstance(am, AnalysisManager) else AnalysisManager()


def analysis_of(ctx, analysis: type[Analysis], graph) -> Any:
    """`analysis` of `graph` from the context's manager (see manager_of)."""
    return manager_of(ctx).get(analysis, graph)


@dataclass(frozen=True)
class Repetition:
    """The repetition vector of a consistent, live CSDF graph: r_i phase cycles of actor i per
    graph iteration, q_i = P_i x r_i firings."""

    repetition: dict[str, int]
    firings: dict[str, int]


def repetition(phases: dict[str, int], edges: Iterable[dataflow.Edge]) -> Repetition:
    """The repetition vector of (phases, edges), after checking consistency and liveness (raises
    dataflow.DataflowError). Cached by content: the verifier asks after every pass, and a graph
    whose rates a pass did not touch is not solved again."""
    return _repetition(tuple(phases.items()), tuple(edges))


@functools.lru_cache(maxsize=32)
def _repetition(phases: tuple[tuple[str, int], ...], edges: tuple[dataflow.Edge, ...]
                ) -> Repetition:
    p, e = dict(phases), list(edges)
    r = dataflow.repetition_vector(p, e)
    dataflow.check_live(p, e, r)
    return Repetition(r, dataflow.firings(p, r))


class RepetitionAnalysis(Analysis):
    """The repetition vector of a csdf graph (consistency and liveness checked)."""

    name = "repetition"
    level = CSDF

    @classmethod
    def compute(cls, graph, am: AnalysisManager) -> Repetition:
        return repetition(*graph.dataflow_graph())


def report_of(analyses: dict[str, dict[str, Any]], name: str, graph: str | None = None) -> Any:
    """The report `name` of `graph` (a graph symbol), or of the only graph it describes, the usual
    single-graph case (several graphs: an UnsupportedError asking for one). No such report: a
    UsageError (the pipeline lacks the pass, or a later pass changed the IR it described)."""
    reports = analyses.get(name)
    if not reports or (graph is not None and graph not in reports):
        raise UsageError(f"the pipeline leaves no {name} report" +
                         (f" of @{graph}" if graph is not None else ""),
                         hint=f"run {name} after the last pass that changes the IR (a transform "
                              "drops the analyses it does not preserve: alohac list passes)")
    if graph is not None:
        return reports[graph]
    if len(reports) != 1:
        raise UnsupportedError(f"{name} describes {len(reports)} graphs "
                               f"({', '.join('@' + g for g in sorted(reports))})",
                               hint="this reports on a module with one graph")
    return next(iter(reports.values()))
