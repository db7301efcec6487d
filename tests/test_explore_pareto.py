"""explore/pareto.py: the one non-dominated filter both searches use, against a hand-written
dominance check."""

import numpy as np

from explore.pareto import non_dominated


def dominates(a, b) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def test_non_dominated_by_hand():
    pts = [(3, 1), (1, 3), (2, 2), (2, 3), (1, 3), (4, 4)]
    # (2, 3) and (4, 4) are dominated; the two equal (1, 3) dominate neither one another
    assert non_dominated(pts, lambda p: p) == [(3, 1), (1, 3), (2, 2), (1, 3)]
    assert non_dominated([], lambda p: p) == []


def test_non_dominated_agrees_with_pairwise_dominance_and_keeps_order():
    rng = np.random.default_rng(0)
    items = [tuple(int(v) for v in rng.integers(0, 6, size=3)) for _ in range(200)]
    expected = [p for p in items if not any(dominates(q, p) for q in items)]
    assert non_dominated(list(enumerate(items)), lambda r: r[1]) == \
        [(i, p) for i, p in enumerate(items) if p in expected]
