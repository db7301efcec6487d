"""Run-length encoded integer sequences: CSDF rates stay `6 x 18`, never a list of a million entries.

A sequence is a tuple of (count, value) runs with count >= 1 and no two neighbouring runs of equal
value (the canonical form `encode` returns). Totals, lengths and phase lookups work on the runs.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate

Runs = tuple[tuple[int, int], ...]


def encode(values: Iterable[int]) -> Runs:
    runs: list[list[int]] = []
    for v in values:
        if runs and runs[-1][1] == v:
            runs[-1][0] += 1
        else:
            runs.append([1, int(v)])
    return tuple((c, v) for c, v in runs)


def normalize(runs: Iterable[tuple[int, int]]) -> Runs:
    """Merge neighbouring equal runs and drop empty ones (count must not be negative)."""
    out: list[list[int]] = []
    for c, v in runs:
        if c < 0:
            raise ValueError(f"a run count must be >= 1, got {c}")
        if c == 0:
            continue
        if out and out[-1][1] == v:
            out[-1][0] += c
        else:
            out.append([c, v])
    return tuple((c, v) for c, v in out)


def expand(runs: Runs) -> list[int]:
    out: list[int] = []
    for c, v in runs:
        out.extend([v] * c)
    return out


def length(runs: Runs) -> int:
    return sum(c for c, _ in runs)


def total(runs: Runs) -> int:
    return sum(c * v for c, v in runs)


def flat(runs: Runs) -> tuple[int, ...]:
    """(c0, v0, c1, v1, ...): the storage form of the IR's i64 arrays."""
    return tuple(x for run in runs for x in run)


def unflat(values: Sequence[int]) -> Runs:
    if len(values) % 2:
        raise ValueError("a run-length sequence needs (count, value) pairs")
    return tuple((values[i], values[i + 1]) for i in range(0, len(values), 2))


class Indexed:
    """Phase lookup on runs in O(log runs), for simulations that step phase by phase."""

    __slots__ = ("ends", "values")

    def __init__(self, runs: Runs):
        self.ends = list(accumulate(c for c, _ in runs))
        self.values = [v for _, v in runs]

    def __getitem__(self, phase: int) -> int:
        return self.values[bisect_right(self.ends, phase)]


def text(runs: Runs) -> str:
    """`6 x 18, 1 x 0`: the IR's printed form."""
    return ", ".join(f"{c} x {v}" for c, v in runs)


def sdf3(runs: Runs) -> str:
    """SDF3's rate syntax: plain values, run-length `N*v` for repeats."""
    return ",".join(str(v) if c == 1 else f"{c}*{v}" for c, v in runs)
