"""What the passes that execute the network share (quantize, prune): their data, fitted to the
model's declared input, the accuracy they report, and the weight sanity check before any of it.

Torch and the dataset loaders are imported inside the functions (DESIGN.md: only passes that run the
network load them, and only when they run)."""

from __future__ import annotations

import numpy as np
from xdsl.context import Context

from aloha_ir.consts import const_tensor
from aloha_ir.dialects import nn
from aloha_ir.errors import PassError


def check_finite_weights(graph: nn.GraphOp, store) -> None:
    from backends.reference import op_label
    for i, op in enumerate(graph.ops):
        if isinstance(op, nn.ConstOp):
            values = const_tensor(op, store).materialize()
            if not np.isfinite(values).all():
                user = next(iter(op.output.uses)).operation if op.output.uses else op
                raise PassError(f"{int((~np.isfinite(values)).sum())} weight values are NaN or "
                                "infinite", where=op_label(user, i),
                                hint="the model is broken; retrain or re-export it")


def dataset_for(ctx: Context, spec: str, graph: nn.GraphOp, who: str):
    """The pass's data: its own `data=` option, else the driver's --data; rescaled to the range the
    model's input declares (mnist-8 takes 0..255)."""
    if spec:
        from frontends.datasets import load
        splits = load(spec)
    else:
        splits = getattr(ctx, "dataset", None)
        if splits is None:
            raise PassError(f"{who} needs data to run the network on",
                            hint="give the pass data=digits (or mnist:DIR, ...) or --data")
    return data_for_model(splits, graph)


def data_for_model(splits, graph: nn.GraphOp):
    """The data rescaled to the range the model's input declares (imported models keep their
    interface: mnist-8 takes 0..255), checked against its outputs and input shape."""
    inp = next(op for op in graph.ops if isinstance(op, nn.InputOp))
    if inp.value_range is not None:
        splits = splits.to_range(*nn.floats(inp.value_range))
    n_out = nn.shape_of(graph.ops.last.operands[0])[-1]
    for d in (splits.train, splits.test):
        d.check_fits(n_out, tuple(nn.shape_of(inp.output)[1:]))
    return splits


def accuracy(model, dataset) -> float:
    from backends.torch.train import evaluate
    return float(evaluate(model, dataset).accuracy)
