"""Mitigation, suggested from the diagnosis and applied on request (deliverable 2.3.3: from
pre-processing to post-processing, with the accuracy/fairness trade-off shown).

- reweigh (pre-processing, Kamiran & Calders 2012): each training row weighted by
  P(group) P(label) / P(group, label), so that group and label are independent in the weighted
  data; the logistic regression is trained again with those sample weights.
- threshold (post-processing, Hardt et al. 2016): fairlearn's ThresholdOptimizer on the fitted
  logistic regression's scores, one threshold per group chosen for demographic parity (it needs
  the sensitive attribute at prediction time, which the report says).

Each is measured like the models (fairness.metrics.evaluate) on the same test rows and
resamples, so before and after compare point for point.
"""

from __future__ import annotations

import numpy as np

from fairness import metrics
from frontends.tabular import Tabular

METHODS = ("reweigh", "threshold")


def suggest(data_result: dict, model_results: dict) -> list[dict]:
    """What the diagnosis calls for, per attribute: the data's base rates differ (an interval
    away from 0) -> reweigh before training; a model adds disparity beyond the data's -> a
    post-processing threshold; neither -> nothing to mitigate."""
    out = []
    for attr, d in data_result.items():
        if " & " in attr:
            continue
        lo = d["disparities"]["base_rate_difference"]["ci95"][0]
        if lo is not None and lo > 0:
            out.append({"attribute": attr, "method": "reweigh", "why": (
                f"the data's base rates differ across {attr} (difference "
                f"{d['disparities']['base_rate_difference']['value']:.3f}, 95% interval above "
                "0): reweigh the training rows so group and label are independent")})
        for name, m in model_results.items():
            v = m["differential"][attr]["dp_difference"]
            if v["verdict"].startswith("amplifies"):
                out.append({"attribute": attr, "method": "threshold", "why": (
                    f"{name} amplifies the data's demographic-parity gap by {v['change']:+.3f}: "
                    "per-group thresholds on its scores (post-processing)")})
                break
    if not out:
        out.append({"attribute": None, "method": None, "why": "no disparity to mitigate: the "
                    "data's base rates and the models' gaps are within noise"})
    return out


def reweighing(train: Tabular, attribute: str) -> np.ndarray:
    """Kamiran & Calders' weights of the training rows for one sensitive attribute."""
    g, y = train.sensitive[attribute], train.y
    w = np.empty(len(y))
    for group in np.unique(g):
        for label in (0, 1):
            cell = (g == group) & (y == label)
            if cell.any():
                w[cell] = (g == group).mean() * (y == label).mean() / cell.mean()
    return w


def apply(method: str, train: Tabular, test: Tabular, attribute: str, seed: int = 0
          ) -> np.ndarray:
    """The mitigated logistic regression's predictions on the test rows."""
    from fairness.simple import logistic_regression
    if method == "reweigh":
        return logistic_regression(train, seed, reweighing(train, attribute)).predict(test.x)
    if method == "threshold":
        from fairlearn.postprocessing import ThresholdOptimizer
        opt = ThresholdOptimizer(estimator=logistic_regression(train, seed),
                                 constraints="demographic_parity", prefit=True,
                                 predict_method="predict_proba")
        # float64: fairlearn writes its interpolated scores into an array of X's type
        opt.fit(train.x.astype(np.float64), train.y, sensitive_features=train.sensitive[attribute])
        return np.asarray(opt.predict(test.x.astype(np.float64),
                                      sensitive_features=test.sensitive[attribute],
                                      random_state=seed), dtype=np.int64)
    raise ValueError(method)


def mitigate(methods: list[str], train: Tabular, test: Tabular, attribute: str, boot: int,
             seed: int, baseline: dict, baseline_accuracy: float) -> dict:
    """Each method's accuracy and fairness against the logistic regression's (`baseline`, its
    evaluate result) on the same resamples."""
    out = {}
    for method in methods:
        p = apply(method, train, test, attribute, seed)
        measured = metrics.evaluate(test.y, p, test.sensitive, boot, seed)
        out[method] = {"attribute": attribute, "accuracy": float(np.mean(p == test.y)),
                       "accuracy_before": baseline_accuracy,
                       "fairness": metrics.without_samples(measured),
                       "against_before": metrics.compare(measured, baseline),
                       "needs_sensitive_at_prediction": method == "threshold"}
    return out
