"""The three points to compare (deliverable 2.3.3): the data, a simple model, a learned model --
and what only this compiler has: the learned model as deployed (8- and 4-bit fixed point, and
pruned).

The simple model is a logistic regression (scikit-learn), the learned one an MLP built as nn IR
and trained by the training engine (fairness.learned), the deployed ones its 8- and 4-bit
quantizations run by the bit-exact reference and its threshold-pruned version. Each is trained on a stratified 70% of the data and measured on
the other 30%. The data's measures are taken on the same test rows (their true labels), so that
every model's disparities and the data's are compared on the same bootstrap resamples (the
differential bias), and each compressed model's against the float MLP's (what compression
changed).
"""

from __future__ import annotations

import time

import numpy as np

from fairness import metrics
from fairness.simple import logistic_regression
from frontends.tabular import TEST_FRACTION, Tabular

COMPRESSION_BITS = (8, 4)  # the deployed MLP's post-training quantizations
PRUNE_THRESHOLD = 1.0  # the pruned MLP: weights within 1 sigma of their layer's mean collapse
COMPRESSED = tuple(f"mlp_int{b}" for b in COMPRESSION_BITS) + ("mlp_pruned",)


def analyse(data: Tabular, boot: int = 500, seed: int = 0, learned: bool = True,
            epochs: int = 10, mitigate: tuple[str, ...] = ()) -> dict:
    """The fairness of `data` and of its models (JSON-ready); `learned` False measures the
    logistic regression only; `mitigate` applies those methods (fairness.mitigation) to the
    logistic regression for the first sensitive attribute. Mitigation is always suggested."""
    t0 = time.perf_counter()
    train, test = data.split(TEST_FRACTION, seed)
    on_data = metrics.evaluate(test.y, None, test.sensitive, boot, seed)
    predictions = {"logistic_regression": logistic_regression(train, seed).predict(test.x)}
    if learned:
        from fairness import learned as mlp
        module, value_range = mlp.train_mlp(train, seed, epochs)
        predictions["mlp"] = mlp.predict_float(module, test.x)
        for bits in COMPRESSION_BITS:
            predictions[f"mlp_int{bits}"] = mlp.predict_fixed(
                mlp.deploy(module, train, value_range, seed, bits), test.x)
        predictions["mlp_pruned"] = mlp.predict_float(
            mlp.prune(module, train, value_range, seed, PRUNE_THRESHOLD), test.x)
    models, measured = {}, {}
    for name, p in predictions.items():
        measured[name] = on_model = metrics.evaluate(test.y, p, test.sensitive, boot, seed)
        models[name] = {"accuracy": float(np.mean(p == test.y)),
                        "fairness": metrics.without_samples(on_model),
                        "reduced": metrics.reduced(on_model),
                        "differential": metrics.differential(on_model, on_data)}
    for name in COMPRESSED if learned else ():  # what compression changed: against the float MLP
        models[name]["against_float"] = metrics.compare(measured[name], measured["mlp"])
        models[name]["agreement_with_float"] = float(np.mean(predictions[name] ==
                                                             predictions["mlp"]))
    from fairness import mitigation
    mitigated = mitigation.mitigate(list(mitigate), train, test, next(iter(data.sensitive)),
                                    boot, seed, measured["logistic_regression"],
                                    models["logistic_regression"]["accuracy"]) \
        if mitigate else {}
    return {
        "dataset": data.name, "source": data.source, "label": data.label,
        "positive": data.positive, "sensitive": list(data.sensitive), "samples": len(data),
        "train": len(train), "test": len(test), "features": int(data.x.shape[1]),
        "bootstrap": boot, "seed": seed, "data": metrics.without_samples(on_data),
        "models": models, "suggestions": mitigation.suggest(on_data, models),
        "mitigations": mitigated, "seconds": time.perf_counter() - t0,
    }
