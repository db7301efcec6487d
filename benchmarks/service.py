"""The service's costs, measured against peers in the same run (issue 21):

1. Submission latency with 100 jobs queued: a real `alohac serve` with one worker kept busy, 100
   analyze submissions (cache off, so each is a new queued job) timed from the client; p50/p95
   against the budget (p95 < 50 ms on 2 cores), beside the latency of GET /health (the HTTP
   stack's own floor) in the same run.
2. A job's overhead: the same analyses run (a) in this process by alohac.main.main (imports
   warm: the work alone), (b) as a fresh `alohac` process (what a job would cost without the fork
   server), and (c) through the service (submit, run in a forked worker, result read back); the
   ratios c/a and c/b.

    python benchmarks/service.py [--jobs 100] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time

# this script's folder first on sys.path would make `service` this file, not the package
sys.path[0] = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")

from service_util import BIN, Server  # noqa: E402

BUDGET_P95_S = 0.050
WORK = [("zoo:lenet5", "neuraghe-losa"), ("zoo:lenet5", "host-cpu"), ("zoo:squeezenet",
                                                                      "neuraghe-losa")]


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def submission(server: Server, jobs: int) -> None:
    c = server.client()
    busy = c.submit("security", model="zoo:digits_cnn", samples=1500, steps=100, mode="slow",
                    cache=False)
    health, submit = [], []
    for i in range(jobs):
        t0 = time.perf_counter()
        c.health()
        health.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        c.submit("analyze", model="zoo:lenet5", target="orlando", cache=False)
        submit.append(time.perf_counter() - t0)
    queued = c.health()["jobs"]["queued"]
    p95 = _pct(submit, 0.95)
    print(f"submission with {queued} jobs queued ({jobs} submitted, 1 worker busy):")
    print(f"  POST /jobs   p50 {_pct(submit, 0.5) * 1e3:6.1f} ms   p95 {p95 * 1e3:6.1f} ms   "
          f"(budget p95 < {BUDGET_P95_S * 1e3:.0f} ms: "
          f"{'within' if p95 < BUDGET_P95_S else 'over budget on this machine now'})")
    print(f"  GET /health  p50 {_pct(health, 0.5) * 1e3:6.1f} ms   p95 "
          f"{_pct(health, 0.95) * 1e3:6.1f} ms   (the HTTP stack's floor, same run)")
    print(f"  POST /jobs / GET /health at p50: {_pct(submit, 0.5) / _pct(health, 0.5):.1f}x")
    for job in c.jobs(state="queued", limit=1000):
        c.cancel(job["id"])
    c.cancel(busy["id"])


def in_process(model: str, target: str) -> float:
    from alohac.main import main
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["analyze", model, "--target", target, "--json"])
    assert code == 0
    return time.perf_counter() - t0


def fresh_process(model: str, target: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([os.path.join(BIN, "alohac"), "analyze", model, "--target", target, "--json"],
                   check=True, capture_output=True)
    return time.perf_counter() - t0


def through_service(server: Server, model: str, target: str) -> float:
    c = server.client()
    t0 = time.perf_counter()
    job = c.wait(c.submit("analyze", model=model, target=target, gantt=False, cache=False)["id"],
                 poll=0.01)
    assert job["state"] == "succeeded", job["error"]
    return time.perf_counter() - t0


def overhead(server: Server, repeats: int) -> None:
    print(f"\na job's overhead (analyze, median of {repeats}; in-process = alohac.main.main with "
          "imports warm):")
    print(f"  {'model on target':<30} {'in-process':>11} {'new process':>12} {'service':>9}"
          f" {'service/in-process':>19} {'service/new process':>20}")
    in_process(*WORK[0])  # warm the imports and the zoo cache
    through_service(server, *WORK[0])  # the fork server's first child
    for model, target in WORK:
        a = statistics.median(in_process(model, target) for _ in range(repeats))
        b = statistics.median(fresh_process(model, target) for _ in range(repeats))
        c = statistics.median(through_service(server, model, target) for _ in range(repeats))
        print(f"  {model + ' on ' + target:<30} {a * 1e3:9.0f} ms {b * 1e3:10.0f} ms "
              f"{c * 1e3:7.0f} ms {c / a:18.2f}x {c / b:19.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with Server(os.path.join(tmp, "a"), "--workers", "1") as server:
            submission(server, args.jobs)
        with Server(os.path.join(tmp, "b"), "--workers", "1") as server:
            overhead(server, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
