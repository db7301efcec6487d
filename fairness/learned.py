"""The learned model and the deployed one: an MLP built as nn IR, trained by the training engine,
then quantized by the quantize pass and run by the bit-exact fixed-point reference (the
executor the generated C matches), so the fairness of what this compiler deploys is measured,
not the float model's.

The MLP: features -> 32 -> 16 -> 2, ReLU, softmax (a zoo-style graph: it can be quantized,
pruned, mapped and compiled like any other). Trained with Adam (batches of 256, at most
a seeded subset of TRAIN_ROWS rows) of 90% of the training rows, the best of `epochs` on the other 10%
kept. Compressed as a deployment would: 8- and 4-bit post-training quantization calibrated on the
training rows, and threshold pruning.
"""

from __future__ import annotations

import numpy as np

from frontends.tabular import Tabular

HIDDEN = (32, 16)
# the rows the MLP trains on at most (a seeded subset): Adult's 28,000 took 13 s an epoch on a
# loaded 2-core machine
TRAIN_ROWS = 8192


def _dataset(t: Tabular, value_range: tuple[float, float], name: str):
    from frontends.datasets import Dataset, Normalization
    return Dataset(name, t.x, t.y, 2, Normalization(value_range), source=t.name)


def splits_of(train: Tabular, seed: int, value_range: tuple[float, float]):
    """The training engine's splits: 90% / 10% of the training rows (the test rows are never
    seen); the test split is the validation part again (the engine reports on it)."""
    from frontends.datasets import Splits
    fit, val = train.split(0.1, seed)
    val_ds = _dataset(val, value_range, "val")
    return Splits(_dataset(fit, value_range, "train"), val_ds, val_ds)


def build_mlp(features: int, value_range: tuple[float, float], seed: int = 0):
    """The untrained MLP as a module holding one nn.graph (seeded weights)."""
    from frontends.onnx.importer import import_model
    from frontends.zoo import NetBuilder
    b = NetBuilder("fairness_mlp", (1, features), seed=seed)
    x = "input"
    for width in HIDDEN:
        x = b.relu(b.dense(x, width))
    return import_model(b.model(b.softmax(b.dense(x, 2)), value_range=value_range),
                        "fairness-mlp")


def train_mlp(train: Tabular, seed: int = 0, epochs: int = 15):
    """The trained MLP module and the value range its input declares."""
    from runtime.torch.module import build
    from runtime.torch.train import TrainConfig
    from runtime.torch.train import train as fit
    lo, hi = float(train.x.min()), float(train.x.max())
    value_range = (min(lo, -1.0), max(hi, 1.0))
    module = build_mlp(train.x.shape[1], value_range, seed)
    model = build(module, logits=True)
    fit(model, splits_of(train, seed, value_range),
        TrainConfig(epochs=epochs, batch_size=256, lr=3e-3, seed=seed, patience=4,
                    subset=TRAIN_ROWS, progress=False, label="fairness: train"))
    model.write_back(module)
    return module, value_range


def predict_float(module, x: np.ndarray) -> np.ndarray:
    import torch

    from runtime.torch.module import build
    model = build(module).eval()
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x, np.float32))).argmax(1).numpy()


def deploy(module, train: Tabular, value_range, seed: int = 0, bits: int = 8):
    """A quantized copy of `module`: `bits`-bit post-training quantization calibrated on the
    training rows."""
    from aloha_ir.context import make_context
    from aloha_ir.weights import clone_with_weights
    from passes.quantize import QuantizePass
    deployed = clone_with_weights(module)
    ctx = make_context()
    ctx.dataset = splits_of(train, seed, value_range)
    QuantizePass(method="ptq", bits=bits, abits=bits, samples=1024, seed=seed).apply(ctx,
                                                                                    deployed)
    return deployed


def prune(module, train: Tabular, value_range, seed: int = 0, threshold: float = 1.0):
    """A pruned copy of `module`: in every dense layer the weights within `threshold` standard
    deviations of the layer mean collapse to the mean (the prune pass's threshold method, no
    fine-tuning), kept in float."""
    from aloha_ir.context import make_context
    from aloha_ir.weights import clone_with_weights
    from passes.prune import PrunePass
    pruned = clone_with_weights(module)
    ctx = make_context()
    ctx.dataset = splits_of(train, seed, value_range)
    PrunePass(method="threshold", threshold=threshold, seed=seed).apply(ctx, pruned)
    return pruned


def predict_fixed(deployed, x: np.ndarray) -> np.ndarray:
    """Predictions of the bit-exact fixed-point reference (the generated C's arithmetic)."""
    from runtime.reference import reference
    q, _fmt = reference(deployed).run(np.asarray(x, np.float64))[0]
    return np.asarray(q).reshape(len(x), -1).argmax(1)
