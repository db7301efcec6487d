"""analyze-security: the security evaluation curve of the nn graph (security/evaluate.py) as a pass,
so pipelines and the design-space explorer get it like any other analysis. It annotates the graph
with `security = {curve_average, level, clean_accuracy, attack, norm, eps_max, samples}` and
records the full `SecurityReport`.

    analyze-security{data=digits attack=pgd norm=inf eps="0:0.3:0.05" mode=fast}
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import DictionaryAttr, ModuleOp, StringAttr

from aloha_ir.analysis import NN_ANY, Requires
from aloha_ir.context import record_reports
from aloha_ir.dialects import nn
from aloha_ir.errors import PassError, UsageError
from aloha_ir.passmanager import AnalysisPass
from aloha_ir.weights import weights_of
from passes.execution import check_finite_weights, dataset_for


@dataclass(frozen=True)
class AnalyzeSecurityPass(AnalysisPass):
    """Security evaluation curve (accuracy under attack vs epsilon), its average and level."""

    name = "analyze-security"
    requires = Requires(level=NN_ANY, data=True)
    annotates = frozenset({"security"})

    data: str = ""
    attack: str = "pgd"
    norm: str = "inf"
    eps: str = ""
    samples: int = 0
    mode: str = "fast"
    steps: int = 0
    noise: bool = True
    sanity: bool = True
    input_scale: str = ""
    workers: int = 1
    seed: int = 0

    def __post_init__(self):
        try:
            self.config()
            self.scale()
        except UsageError as e:
            raise PassError(f"analyze-security: {e.message}", hint=e.hint) from None

    def config(self):
        from security.evaluate import SecurityConfig, parse_eps
        return SecurityConfig(attack=self.attack, norm=self.norm,
                              eps=tuple(parse_eps(self.eps)) if self.eps else None,
                              samples=self.samples or None, mode=self.mode,
                              steps=self.steps or None, noise=self.noise, sanity=self.sanity,
                              workers=self.workers, seed=self.seed)

    def scale(self):
        from security.evaluate import parse_range
        return parse_range(self.input_scale)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        from aloha_ir.dialects.nn import graph_of
        from security.evaluate import attack_data, evaluate
        graph = graph_of(op)
        check_finite_weights(graph, weights_of(op))
        splits = dataset_for(ctx, self.data, graph, self.name)
        x01, y, rng = attack_data(graph, splits.test, self.scale())
        report, _ = evaluate(op, x01, y, self.config(), input_range=rng,
                             name=graph.sym_name.data)
        graph.attributes["security"] = DictionaryAttr({
            "curve_average": nn.float_attr(report.curve_average),
            "level": StringAttr(report.level),
            "clean_accuracy": nn.float_attr(report.clean_accuracy),
            "attack": StringAttr(report.attack), "norm": StringAttr(report.norm),
            "eps_max": nn.float_attr(report.eps[-1]), "samples": nn.int_attr(report.samples)})
        record_reports(ctx, self.name, {graph.sym_name.data: report})


PASSES = {"analyze-security": "security.analyze_pass:AnalyzeSecurityPass"}
