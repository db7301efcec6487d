"""The three points to compare (deliverable 2.3.3): the data, a simple model, a learned model --
and a fourth that only this compiler has: the learned model as deployed (8-bit fixed point).

The simple model is a logistic regression (scikit-learn), the learned one an MLP built as nn IR
and trained by the training engine (fairness.learned), the deployed one its 8-bit quantization
run by the bit-exact reference. Each is trained on a stratified 70% of the data and measured on
the other 30%. The data's measures are taken on the same test rows (their true labels), so that
every model's disparities and the data's are compared on the same bootstrap resamples (the
differential bias), and the deployed model's against the learned one's (what compression
changed).
"""

from __future__ import annotations

import time

import numpy as np

from fairness import metrics
from frontends.tabular import Tabular

TEST_FRACTION = 0.3


def logistic_regression(train: Tabular, seed: int = 0):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(max_iter=2000, random_state=seed).fit(train.x, train.y)


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
        deployed = mlp.deploy(module, train, value_range, seed)
        predictions["mlp_int8"] = mlp.predict_fixed(deployed, test.x)
    models, measured = {}, {}
    for name, p in predictions.items():
        measured[name] = on_model = metrics.evaluate(test.y, p, test.sensitive, boot, seed)
        models[name] = {"accuracy": float(np.mean(p == test.y)),
                        "fairness": metrics.without_samples(on_model),
                        "reduced": metrics.reduced(on_model),
                        "differential": metrics.differential(on_model, on_data)}
    if learned:  # what deployment changed: the 8-bit model against the float one
        models["mlp_int8"]["against_float"] = metrics.compare(measured["mlp_int8"],
                                                              measured["mlp"])
        models["mlp_int8"]["agreement_with_float"] = float(np.mean(
            predictions["mlp_int8"] == predictions["mlp"]))
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
