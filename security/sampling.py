"""Which test samples an evaluation attacks: a seeded draw stratified by class (each class in
proportion to its share of the test split), not the first N, whose difficulty depends on how the
split happens to be ordered (the first 100 MNIST test images are easier than the first 1000)."""

from __future__ import annotations

import numpy as np

from aloha_ir.errors import UsageError

SAMPLINGS = ("stratified", "first")


def quotas(counts: np.ndarray, n: int) -> np.ndarray:
    """n split over the classes in proportion to their counts, by largest remainder (ties: the
    smaller class index), never more than a class has."""
    total = int(counts.sum())
    exact = n * counts / total
    q = np.floor(exact).astype(np.int64)
    order = sorted(range(len(counts)), key=lambda c: (-(exact[c] - q[c]), c))
    for c in order[:n - int(q.sum())]:
        q[c] += 1
    return np.minimum(q, counts)


def check_sampling(sampling: str) -> str:
    """`sampling` if it is one of SAMPLINGS, else a UsageError."""
    if sampling not in SAMPLINGS:
        raise UsageError(f"unknown sampling '{sampling}'", where="sampling",
                         hint="use " + " or ".join(SAMPLINGS))
    return sampling


def select_samples(y: np.ndarray, n: int, seed: int, sampling: str = "stratified") -> np.ndarray:
    """Indices (ascending) of n samples of the labels y: all of them when n >= len(y); the first n
    (`first`); or a stratified draw with the seed. Within a class the draw takes a prefix of one
    seeded permutation, so a smaller draw with the same seed is (nearly) a subset of a larger one:
    a fast evaluation looks at samples the slow one also attacks."""
    check_sampling(sampling)
    y = np.asarray(y)
    if n >= len(y):
        return np.arange(len(y))
    if sampling == "first":
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    take = quotas(counts, n)
    picked = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked))
