"""analyze-fairness: the group fairness of the nn graph's predictions as a pass, so a pipeline (and
`alohac compile -p`) reports it like any other analysis. Float graphs run in the float executor,
quantized ones in the bit-exact fixed-point reference: the figures are those of the model as it
stands at that point of the pipeline (before or after quantize, prune). It annotates the graph
with `fairness = {attribute, accuracy, dp_difference, eo_difference, dp_ratio, samples}` and
records the full evaluation (fairness.metrics.evaluate, 95% intervals).

    analyze-fairness{data="tabular:adult:sex" bootstrap=200}

Registered through the `aloha.passes` entry point (pyproject.toml): the pass registry lists it
with the project's own passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import DictionaryAttr, ModuleOp, StringAttr

from aloha_ir.analysis import NN_ANY, Requires
from aloha_ir.context import record_reports
from aloha_ir.dialects import nn
from aloha_ir.errors import PassError, UsageError
from aloha_ir.passmanager import AnalysisPass


@dataclass(frozen=True)
class AnalyzeFairnessPass(AnalysisPass):
    """Group fairness of the model's test predictions on tabular data (tabular:NAME:ATTR)."""

    name = "analyze-fairness"
    requires = Requires(level=NN_ANY, data=True)
    annotates = frozenset({"fairness"})

    data: str = ""
    bootstrap: int = 200
    seed: int = 0

    def __post_init__(self):
        if self.data and not self.data.startswith("tabular:"):
            raise PassError(f"analyze-fairness: data={self.data} has no sensitive groups",
                            hint="data=\"tabular:NAME:ATTR\" (adult, compas or german)")
        if self.bootstrap < 0:
            raise PassError("analyze-fairness: bootstrap must be 0 or more")

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        from aloha_ir import fixedpoint as fp
        from aloha_ir.dialects.nn import graph_of
        from fairness import metrics
        graph = graph_of(op)
        test = self._test_split(ctx, graph)
        quantized = any(fp.format_of(o.results[0]) for o in graph.ops
                        if o.results and not isinstance(o, nn.ConstOp))
        from fairness.learned import predict_fixed, predict_float
        p = (predict_fixed if quantized else predict_float)(op, test.x)
        attr, groups = next(iter(test.sensitive.items()))
        result = metrics.evaluate(test.y, p, {attr: groups}, self.bootstrap, self.seed)
        d = result[attr]["disparities"]
        accuracy = float(np.mean(p == test.y))
        graph.attributes["fairness"] = DictionaryAttr({
            "attribute": StringAttr(attr), "accuracy": nn.float_attr(accuracy),
            "dp_difference": nn.float_attr(d["dp_difference"]["value"]),
            "eo_difference": nn.float_attr(d["eo_difference"]["value"]),
            "dp_ratio": nn.float_attr(d["dp_ratio"]["value"]),
            "samples": nn.int_attr(len(test.y))})
        record_reports(ctx, self.name, {graph.sym_name.data: {
            "attribute": attr, "accuracy": accuracy, "quantized": quantized,
            "fairness": metrics.without_samples(result)}})

    def _test_split(self, ctx, graph):
        """The data's test split with the model's input shape (rows are F x 1 x 1 samples; a
        model that takes F features gets them as such), rescaled to its declared range."""
        from frontends.datasets import Splits, load
        splits = load(self.data) if self.data else getattr(ctx, "dataset", None)
        if splits is None or getattr(splits.test, "sensitive", None) is None:
            raise PassError("analyze-fairness needs tabular data with sensitive groups",
                            hint="give the pass data=\"tabular:NAME:ATTR\"")
        inp = next(o for o in graph.ops if isinstance(o, nn.InputOp))
        shape = tuple(nn.shape_of(inp.output)[1:])
        if int(np.prod(shape)) != int(np.prod(splits.test.input_shape)):
            raise PassError(f"the model takes {list(shape)} inputs, the data's rows have "
                            f"{int(np.prod(splits.test.input_shape))} features")
        from dataclasses import replace
        splits = Splits(*(replace(d, x=d.x.reshape(len(d), *shape))
                          for d in (splits.train, splits.val, splits.test)))
        from passes.execution import data_for_model
        try:
            return data_for_model(splits, graph).test
        except UsageError as e:
            raise PassError(f"analyze-fairness: {e.message}", hint=e.hint) from None


# the aloha.passes entry point's mapping (pyproject.toml)
PASSES = {"analyze-fairness": "fairness.analyze_pass:AnalyzeFairnessPass"}
