"""The three points to compare (deliverable 2.3.3): the data, a simple model, a learned model.

This part has the data and the simple model, a logistic regression (scikit-learn), trained on a
stratified 70% of the data and measured on the other 30%. The data's measures are taken on the
same test rows (their true labels), so that the model's disparities and the data's are compared
on the same bootstrap resamples (the differential bias).
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


def analyse(data: Tabular, boot: int = 500, seed: int = 0) -> dict:
    """Data and logistic-regression fairness of `data` (JSON-ready, and the raw resamples under
    '_samples' for plots)."""
    t0 = time.perf_counter()
    train, test = data.split(TEST_FRACTION, seed)
    on_data = metrics.evaluate(test.y, None, test.sensitive, boot, seed)
    model = logistic_regression(train, seed)
    p = model.predict(test.x)
    on_model = metrics.evaluate(test.y, p, test.sensitive, boot, seed)
    accuracy = float(np.mean(p == test.y))
    return {
        "dataset": data.name, "source": data.source, "label": data.label,
        "positive": data.positive, "sensitive": list(data.sensitive), "samples": len(data),
        "train": len(train), "test": len(test), "features": int(data.x.shape[1]),
        "bootstrap": boot, "seed": seed,
        "data": metrics.without_samples(on_data),
        "models": {"logistic_regression": {
            "accuracy": accuracy, "fairness": metrics.without_samples(on_model),
            "reduced": metrics.reduced(on_model),
            "differential": metrics.differential(on_model, on_data)}},
        "seconds": time.perf_counter() - t0,
    }
