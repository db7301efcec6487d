"""The simple model of the comparison: a logistic regression (scikit-learn)."""

from __future__ import annotations

from frontends.tabular import Tabular


def logistic_regression(train: Tabular, seed: int = 0, sample_weight=None):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(max_iter=2000, random_state=seed).fit(
        train.x, train.y, sample_weight=sample_weight)
