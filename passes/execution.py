"""What the passes that execute the network share (quantize, prune): their data, fitted to the
model's declared input, the accuracy they report, and the weight sanity check before any of it.

Torch and the dataset loaders are imported inside the functions (DESIGN.md: only passes that run the
network load them, and only when they run)."""

from __future__ import annotations

import numpy as np
from xdsl.context import Context

from aloha_ir.consts import const_tensor
from aloha_ir.dialects import nn
from aloha_ir.errors import MissingSetting, PassError


def check_finite_weights(graph: nn.GraphOp, store) -> None:
    from aloha_ir.dialects.nn import op_label
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
            raise MissingSetting(f"{who} needs data to run the network on", setting="dataset",
                                 how="set the context's dataset",
                                 otherwise="give the pass data=digits (or mnist:DIR, ...)")
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
    from runtime.torch.train import evaluate
    return float(evaluate(model, dataset).accuracy)


# Skill below which a model counts as untrained: (accuracy - chance) / (1 - chance), the share of
# the way from guessing to perfect (Cohen's kappa against a constant guess); 0.1 flags 0.15 on the
# 10 digits classes (an untrained digits CNN scores 0.15-0.16) and 0.55 on two balanced classes.
MIN_SKILL = 0.1


def near_chance(acc: float | None, dataset,
                train: str = "alohac train MODEL --data DATA -o OUT.onnx") -> str | None:
    """A warning when `acc` on `dataset` is near what guessing gets, the better of 1/classes and
    always answering the most frequent label; None otherwise. `train` is the command suggested
    (the driver knows the model and data)."""
    if acc is None or not len(dataset):
        return None
    majority = float(np.bincount(dataset.y, minlength=dataset.classes).max()) / len(dataset)
    chance = max(1.0 / dataset.classes, majority)
    if chance >= 1.0 or (acc - chance) / (1.0 - chance) >= MIN_SKILL:
        return None
    return (f"the float model's accuracy {acc:.4f} on {dataset.name} is near chance ({chance:.4f} "
            f"for {dataset.classes} classes): it looks untrained, so its quantization or pruning "
            f"means nothing; train it first ({train})")
