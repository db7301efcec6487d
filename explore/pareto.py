"""Pareto fronts, shared by the algorithm-level search (explore/search.py) and the system-level
one (explore/system/search.py): pymoo's non-dominated sorting, every objective minimised."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def non_dominated(items: Sequence[T], key: Callable[[T], Sequence[float]]) -> list[T]:
    """The items no other item dominates (minimising every component of key(item)), in their
    order; items with equal keys dominate neither one another, so all of them stay."""
    if not items:
        return []
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
    F = np.array([tuple(key(i)) for i in items], dtype=float)
    front = NonDominatedSorting().do(F, only_non_dominated_front=True)
    return [items[i] for i in sorted(int(i) for i in front)]
