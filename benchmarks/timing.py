"""The one timing rule of the benchmarks: median of repeated in-process runs after a warm-up run."""

from __future__ import annotations

import statistics
import time


def report_budgets(over: list[str]) -> int:
    """Say which timings went over their budget and return the exit status, 0: a benchmark
    measures this machine under its current load, it is not a test (`make bench` runs them all)."""
    if over:
        print(f"over budget on this machine now: {', '.join(over)} (timings vary with the load; "
              "rerun on an idle machine before drawing conclusions)")
    else:
        print("every timing within its budget")
    return 0


def median_ms(fn, repeat: int, setup=None) -> float:
    """Median wall time of `fn(setup())` in ms; the first (warm-up) run is not counted and
    `setup` (a fresh input per run) is not timed."""
    times = []
    for i in range(repeat + 1):
        arg = setup() if setup else None
        start = time.perf_counter()
        fn(arg)
        if i:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
