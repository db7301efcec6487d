"""Calibration: run the float network on sample inputs and record each block output's `Range`."""

from __future__ import annotations

import torch
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import SSAValue

from aloha_ir.dialects.nn import graph_of
from aloha_ir.weights import weights_of
from quant.formats import Range
from runtime.torch.module import GraphModule


def calibrate(module: ModuleOp, data, samples: int, percentile: float | None,
              batch_size: int = 128) -> dict[SSAValue, Range]:
    """Run the float network on calibration inputs and record every block output's range."""
    graph = graph_of(module)
    m = GraphModule(graph, weights_of(module)).eval()
    stats: dict[SSAValue, Range] = {}
    with torch.no_grad():
        for x, _ in data.head(samples).batches(batch_size):
            for v, t in m.values(torch.from_numpy(x)).items():
                stats.setdefault(v, Range()).update(t.numpy(), percentile)
    return stats
