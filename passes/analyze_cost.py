"""`analyze-cost`: MACs, parameters and activation bytes per block and in total.

Results are attached to the IR (a `cost` dictionary on every block, totals on the nn.graph) and
returned as a typed `CostReport`. `params` is the count as imported (stamped by the frontend before any
transform). `params_deployed` is what a deployment keeps of the IR now: every parameter element,
minus the weights `prune` collapsed (`params_pruned`: zeros once the layer mean is subtracted),
plus the one mean per pruned layer that the correction needs (aloha_ir.cost); `macs_sparse` the
MACs left when pruned weights are skipped. Unpruned, params_pruned is 0, params_deployed the count
of parameter elements and macs_sparse equals macs. Whether a platform exploits them is the target
report's business: the bundled ones do not (flows.report.sparsity).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, ModuleOp

from aloha_ir.analysis import NN_ANY, Requires
from aloha_ir.context import record_reports
from aloha_ir.cost import (activation_bytes, block_macs, block_params, collapse_value,
                           count_params, is_block, pruned_weights, sparse_macs)
from aloha_ir.dialects import nn
from aloha_ir.passmanager import AnalysisPass
from aloha_ir.weights import WeightStore, weights_of


@dataclass
class BlockCost:
    name: str
    op: str
    shape: list[int]
    macs: int
    params: int
    activation_bytes: int
    params_pruned: int = 0
    macs_sparse: int = 0


@dataclass
class CostReport:
    graph: str
    macs: int
    params: int
    params_deployed: int
    activation_bytes: int
    params_pruned: int = 0
    macs_sparse: int = 0
    blocks: list[BlockCost] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _block_name(op, index: int) -> str:
    return nn.block_label(op) or f"{op.name.split('.')[-1]}_{index}"


def analyze_graph(graph: nn.GraphOp, annotate: bool = True, store: WeightStore | None = None
                  ) -> CostReport:
    """Costs of `graph`; pruned weights are counted when the weight `store` is given."""
    blocks = []
    dropped = {}  # per pruned weight tensor (once, if shared): its pruned weights less its mean
    for i, op in enumerate(graph.ops):
        if not is_block(op):
            continue
        pruned = pruned_weights(op, store) if store is not None else 0
        if pruned:
            dropped[op.weight] = pruned - (collapse_value(op) != 0.0)
        b = BlockCost(_block_name(op, i), op.name, list(nn.shape_of(op.results[0])),
                      block_macs(op), block_params(op), activation_bytes(op), pruned,
                      sparse_macs(op, pruned))
        blocks.append(b)
        if annotate:
            figures = {"macs": b.macs, "params": b.params, "activation_bytes": b.activation_bytes}
            if pruned:
                figures.update(params_pruned=pruned, macs_sparse=b.macs_sparse)
            op.attributes["cost"] = DictionaryAttr({k: nn.int_attr(v) for k, v in figures.items()})
    dense = count_params(graph)
    imported = graph.attributes.get("imported_params")
    report = CostReport(
        graph=graph.sym_name.data,
        macs=sum(b.macs for b in blocks),
        params=imported.value.data if isinstance(imported, IntegerAttr) else dense,
        params_deployed=dense - sum(dropped.values()),
        activation_bytes=sum(b.activation_bytes for b in blocks),
        params_pruned=sum(b.params_pruned for b in blocks),
        macs_sparse=sum(b.macs_sparse for b in blocks),
        blocks=blocks)
    if annotate:
        keys = ["macs", "params_deployed", "activation_bytes"]
        keys += ["params_pruned", "macs_sparse"] if report.params_pruned else []
        for key in keys:
            graph.attributes[key] = nn.int_attr(getattr(report, key))
    return report


@dataclass(frozen=True)
class AnalyzeCostPass(AnalysisPass):
    """Count MACs, parameters and activation bytes per block (attributes + a CostReport)."""

    name = "analyze-cost"
    requires = Requires(level=NN_ANY)
    annotates = frozenset({"cost", "macs", "params_deployed", "activation_bytes", "params_pruned",
                           "macs_sparse"})

    annotate: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        store = weights_of(op)
        reports = {g.sym_name.data: analyze_graph(g, self.annotate, store) for g in op.walk()
                   if isinstance(g, nn.GraphOp)}
        record_reports(ctx, self.name, reports)
