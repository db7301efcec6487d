"""The exploration's executors, measured: what one worker costs to start and what one task costs
on top of its own work, beside ProcessPoolExecutor (spawn context, the same worker count).

1. Start: from constructing the executor to the first result of a trivial task (one worker:
   the spawn latency), and to one result from every worker (all of them up).
2. Per-task overhead: N trivial tasks (operator.neg) submitted at once on a warm pool, wall time
   per task; the same through map_unordered; and with a 1 MB argument. LocalExecutor gives a
   worker one task at a time (so a death names its task), ProcessPoolExecutor queues ahead, so
   expect it to win on trivial tasks; an evaluation takes seconds, so what matters is that the
   overhead stays far below a millisecond.
3. The in-process SerialExecutor and a Dask LocalCluster (2 one-thread workers) for reference.

    python benchmarks/explore_exec.py [--tasks 4000] [--workers 2] [--no-dask]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import operator
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from explore.executor import (LocalExecutor, SerialExecutor, make_executor,  # noqa: E402
                              map_unordered)


def _pid(_=None) -> int:
    time.sleep(0.05)  # long enough that one worker cannot take every task
    return os.getpid()


def startup(make, workers: int) -> tuple[float, float]:
    """(s to the first result, s until every worker has answered) for a fresh executor."""
    start = time.perf_counter()
    ex = make(workers)
    try:
        ex.submit(operator.neg, 1).result()
        first = time.perf_counter() - start
        seen: set[int] = set()
        while len(seen) < workers:
            seen.update(f.result() for f in [ex.submit(_pid) for _ in range(2 * workers)])
        return first, time.perf_counter() - start
    finally:
        ex.shutdown()


def per_task(ex, n: int, arg=1, via_map: bool = False) -> float:
    """Wall time per task (µs) of n tasks submitted at once on a warm executor."""
    for f in [ex.submit(operator.neg, 1) for _ in range(20)]:  # warm
        f.result()
    start = time.perf_counter()
    if via_map:
        for _ in map_unordered(ex, operator.is_not, [arg] * n):
            pass
    else:
        for f in [ex.submit(operator.is_not, arg, None) for _ in range(n)]:
            f.result()
    return (time.perf_counter() - start) / n * 1e6


def median(fn, repeat: int = 3) -> float:
    return statistics.median(fn() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-dask", action="store_true")
    args = parser.parse_args()
    n, w = args.tasks, args.workers
    spawn = mp.get_context("spawn")

    def pool(k):
        return cf.ProcessPoolExecutor(k, mp_context=spawn)

    print(f"{os.cpu_count()} cores, {w} workers, {n} tasks; medians of 3 runs\n")
    print("1. start (s)                  first result   every worker up")
    local1 = [startup(LocalExecutor, 1) for _ in range(3)]
    pool1 = [startup(pool, 1) for _ in range(3)]
    localw = [startup(LocalExecutor, w) for _ in range(3)]
    poolw = [startup(pool, w) for _ in range(3)]
    rows = {"LocalExecutor, 1 worker": local1, "ProcessPool, 1 worker": pool1,
            f"LocalExecutor, {w} workers": localw, f"ProcessPool, {w} workers": poolw}
    for name, runs in rows.items():
        print(f"   {name:<27}{statistics.median(r[0] for r in runs):>10.3f}"
              f"{statistics.median(r[1] for r in runs):>18.3f}")
    ratio = statistics.median(r[0] for r in local1) / statistics.median(r[0] for r in pool1)
    print(f"   spawn per worker, LocalExecutor / ProcessPool: {ratio:.2f}x\n")

    mb = b"x" * (1 << 20)
    print("2. per-task wall time (µs)    LocalExecutor   ProcessPool   ratio")
    with LocalExecutor(w) as local, pool(w) as procs:
        cases = [("trivial, submit", lambda ex: per_task(ex, n)),
                 ("trivial, map_unordered", lambda ex: per_task(ex, n, via_map=True)),
                 ("1 MB argument", lambda ex: per_task(ex, max(n // 20, 50), arg=mb))]
        for name, fn in cases:
            a = median(lambda: fn(local))
            b = median(lambda: fn(procs))
            print(f"   {name:<27}{a:>12.1f}{b:>14.1f}{a / b:>8.2f}x")

    print("\n3. reference (µs per trivial task)")
    serial = median(lambda: per_task(SerialExecutor(), n))
    print(f"   SerialExecutor (in-process)  {serial:>10.1f}")
    if not args.no_dask:
        import logging

        from distributed import LocalCluster
        logging.getLogger("distributed").setLevel(logging.ERROR)
        start = time.perf_counter()
        cluster = LocalCluster(n_workers=w, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        up = time.perf_counter() - start
        try:
            with make_executor(scheduler=cluster.scheduler_address) as ex:
                dask = median(lambda: per_task(ex, max(n // 4, 100)))
        finally:
            cluster.close()
        print(f"   Dask LocalCluster            {dask:>10.1f}   (cluster up in {up:.2f} s)")


if __name__ == "__main__":
    main()
