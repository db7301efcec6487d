"""`analyze-cost`: MACs, parameters and activation bytes per block and in total.

Results are attached to the IR (a `cost` dictionary on every block, totals on the nn.graph) and
returned as a typed `CostReport`. `params` is the count as imported (stamped by the frontend before any
transform), `params_deployed` the count in the IR now.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, ModuleOp
from xdsl.passes import ModulePass

from aloha_ir.context import record_reports
from aloha_ir.cost import activation_bytes, block_macs, block_params, count_params, is_block
from aloha_ir.dialects import nn


@dataclass
class BlockCost:
    name: str
    op: str
    shape: list[int]
    macs: int
    params: int
    activation_bytes: int


@dataclass
class CostReport:
    graph: str
    macs: int
    params: int
    params_deployed: int
    activation_bytes: int
    blocks: list[BlockCost] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _block_name(op, index: int) -> str:
    return nn.block_label(op) or f"{op.name.split('.')[-1]}_{index}"


def analyze_graph(graph: nn.GraphOp, annotate: bool = True) -> CostReport:
    blocks = []
    for i, op in enumerate(graph.ops):
        if not is_block(op):
            continue
        b = BlockCost(_block_name(op, i), op.name, list(nn.shape_of(op.results[0])),
                      block_macs(op), block_params(op), activation_bytes(op))
        blocks.append(b)
        if annotate:
            op.attributes["cost"] = DictionaryAttr({
                "macs": nn.int_attr(b.macs), "params": nn.int_attr(b.params),
                "activation_bytes": nn.int_attr(b.activation_bytes)})
    deployed = count_params(graph)
    imported = graph.attributes.get("imported_params")
    report = CostReport(
        graph=graph.sym_name.data,
        macs=sum(b.macs for b in blocks),
        params=imported.value.data if isinstance(imported, IntegerAttr) else deployed,
        params_deployed=deployed,
        activation_bytes=sum(b.activation_bytes for b in blocks),
        blocks=blocks)
    if annotate:
        for key in ("macs", "params_deployed", "activation_bytes"):
            graph.attributes[key] = nn.int_attr(getattr(report, key))
    return report


@dataclass(frozen=True)
class AnalyzeCostPass(ModulePass):
    """Count MACs, parameters and activation bytes per block (attributes + a CostReport)."""

    name = "analyze-cost"

    annotate: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        reports = [analyze_graph(g, self.annotate) for g in op.walk() if isinstance(g, nn.GraphOp)]
        record_reports(ctx, self.name, reports)
