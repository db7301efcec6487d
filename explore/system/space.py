"""The system-level design space (see the package docstring): a design point and the genome the
search varies, over a model lowered for one platform."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aloha_ir import rle
from aloha_ir.analysis import repetition
from aloha_ir.errors import PassError, UnsupportedError, UsageError
from archdesc.model import Platform
from flows.target import TargetFlow
from passes.map import candidates, predecessors
from passes.partition import SPLITTABLE, auto_plan
from passes.target import ZERO_COST_KINDS, actor_layers, csdf_precision, datatype_of, opp_of


@dataclass(frozen=True)
class Design:
    """One system-level design point (see the package docstring)."""

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


class SystemSpace:
    """A lowered model on a platform and its genome (estimate.py estimates a design of it,
    refine.py runs the target flow on one).

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
        except PassError as e:  # a `bits` that contradicts the model or the platform
            if not bits:
                raise
            raise UsageError(f"bits={bits}: {e.message}", hint=e.hint) from None
        self.layers = actor_layers(module, graph)
        self.order = [a.sym_name.data for a in graph.actors()]
        self.zero = {a.sym_name.data for a in graph.actors() if a.kind.data in ZERO_COST_KINDS}
        self.work = {a.sym_name.data: a.work_runs for a in graph.actors()}
        self.preds = predecessors(graph)
        phases, edges = graph.dataflow_graph()
        q = repetition(phases, edges).firings
        self.flows = [(c.src_name, c.dst_name, rle.total(c.prod_runs) *  # tokens per frame
                       q[c.src_name] // phases[c.src_name])
                      for c in graph.channels() if not c.is_self_loop]
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
                                           f"on {platform.name}", hint="pick another platform")
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


def model_inputs(module) -> dict[str, list[int]]:
    """The nn.input ports of a (not yet lowered) module and their shapes."""
    out = {}
    for op in module.walk():
        if op.name == "nn.input":
            out[op.port.data] = [int(d) for d in op.output.type.get_shape()]
    return out
