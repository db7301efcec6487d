"""`align-to-arch`: round layer widths to the target's channel granularity (the seeds' VGG16-over/under).

NEURAghe's CE pads input maps to multiples of 3 x N_COL and output maps to multiples of N_ROW, so a
64-map layer on LOSA wastes an eighth of the engine. This pass changes the network instead: every
convolution width that can change is rounded `up` (over-sized layers: more work in about the same
time) or `down` (under-sized: less work, some accuracy lost) to a multiple of the granularity, by
default lcm over the target's conv engines of (grid rows, input maps per column x grid columns).

Widths move together, as aloha_ir.channels defines: values joined by channel-wise ops (activations
but softmax, pooling, batch norm, spatial padding, element-wise add/mul, resize) share one width, and
network inputs and outputs, concatenations, reshapes and grouped convolutions pin it. Weights follow: new output channels and input
columns of blob weights are zeros (so `up` keeps the function of the original network until it is
retrained), seeded random weights stay seeded random of the new shape, splats stay splats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import SSAValue

from aloha_ir.analysis import NN, Requires
from aloha_ir.channels import WidthGroups, prefix_plan, retarget_channels
from aloha_ir.context import record_reports
from aloha_ir.dialects import nn
from aloha_ir.errors import PassError
from aloha_ir.passmanager import TransformPass
from passes.target import platform_of


def granularity(platform) -> int:
    g = 1
    for pe in platform.pes:
        if pe.kind == "conv-engine":
            per_col = max(1, pe.multipliers // 9)
            g = math.lcm(g, pe.grid[0], per_col * pe.grid[1])
    return g


def _round(c: int, multiple: int, direction: str) -> int:
    if direction == "up":
        return -(-c // multiple) * multiple
    return max(multiple, c // multiple * multiple)


def plan_widths(graph: nn.GraphOp, multiple: int, direction: str) -> dict[SSAValue, int]:
    """New channel count for every value whose width changes (by group, as the docstring says)."""
    groups = WidthGroups(graph)
    widths: dict[SSAValue, int] = {}
    for v in groups.values:
        if groups.movable(v):
            c = nn.shape_of(v)[1]
            new = _round(c, multiple, direction)
            if new != c:
                widths[v] = new
    return widths


def align_graph(module, graph: nn.GraphOp, multiple: int, direction: str) -> dict[str, tuple]:
    widths = plan_widths(graph, multiple, direction)
    changed = {nn.block_label(v.owner) or v.owner.name: (nn.shape_of(v)[1], w)
               for v, w in widths.items() if isinstance(v.owner, nn.ConvOp)}
    plan = {v: prefix_plan(nn.shape_of(v)[1], w) for v, w in widths.items()}
    retarget_channels(module, graph, plan, "aligned")
    return changed


@dataclass(frozen=True)
class AlignToArchPass(TransformPass):
    """Round conv widths to the target's channel granularity (direction=up|down)."""

    name = "align-to-arch"
    requires = Requires(level=NN, target=True)

    target: str = ""
    direction: str = "up"
    multiple: int = 0

    def requirements(self) -> Requires:
        """A target for its channel granularity, unless `multiple` gives one."""
        return Requires(level=NN, target=not self.multiple)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.direction not in ("up", "down"):
            raise PassError(f"align-to-arch: direction must be up or down, got '{self.direction}'")
        multiple = self.multiple or granularity(platform_of(ctx, self.target, self.name))
        if multiple < 1:
            raise PassError("align-to-arch: multiple must be >= 1")
        changed = {g.sym_name.data: align_graph(op, g, multiple, self.direction)
                   for g in op.ops if isinstance(g, nn.GraphOp)}
        record_reports(ctx, self.name, changed)
