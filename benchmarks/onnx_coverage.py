"""Every ONNX backend test case through ALOHA in three checked stages (tests/onnx_backend.py): import
(the imported module run in float), round trip (our ONNX export run by onnxruntime) and generated C
(`alohac compile --target host-cpu --emit c`, the program built and run), each against the case's
expected outputs. Prints the counts per stage and outcome (passed, warned -- the numbers the import
warned of, a double input computed in float32 --, refused per reason, wrong, crashed, skipped) and
the warned, wrong and crashed cases; exits 1 when a case is wrong (silently) or crashed.

`--write-claims` writes frontends/onnx/claimed_cases.txt: every case whose import passes or warned,
with the stages it passes or that warned (tests/test_onnx_backend.py holds them to it); it needs every stage, so not with
--only or --no-c.

    python benchmarks/onnx_coverage.py [--only SUBSTRING] [--no-c] [--target PLATFORM]
                                       [--list refused|skipped] [--write-claims]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
import time

# the runner it shares with tests/test_onnx_backend.py lives in tests/
sys.path[0] = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")

from onnx_backend import (OUTCOMES, STAGES, Outcome, cases, reason, run_case,  # noqa: E402
                          write_claims)


def report(outcomes: dict[str, dict[str, Outcome]], listed: str | None = None) -> None:
    """The counts per stage (refusals and skips by reason), then every warned, wrong and crashed
    case (and the `listed` ones)."""
    for stage in STAGES:
        got = {name: o[stage] for name, o in outcomes.items() if stage in o}
        if not got:
            continue
        counts = collections.Counter(o.result for o in got.values())
        print(f"\n{stage}: {len(got)} cases, " + ", ".join(
            f"{counts[k]} {k}" for k in OUTCOMES))
        whys = collections.Counter(
            f"{o.result}: {reason(o.why) if o.result == 'refused' else o.why[:100]}"
            for o in got.values() if o.result in ("refused", "skipped"))
        for why, n in whys.most_common():
            print(f"  {n:5d}  {why}")
    for kind in ("warned", "wrong", "crashed", *([listed] if listed else [])):
        bad = [(name, stage, o[stage].why) for name, o in sorted(outcomes.items())
               for stage in STAGES if stage in o and o[stage].result == kind]
        print(f"\n{kind}: {len(bad)}")
        for name, stage, why in bad:
            print(f"  {stage:10s} {name}: {' '.join(why.split())[:240]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="run the cases whose name contains this")
    ap.add_argument("--no-c", action="store_true", help="import and round trip only")
    ap.add_argument("--target", default="host-cpu", help="the C stage's platform (another than "
                    "host-cpu: compile only, the program is not run)")
    ap.add_argument("--list", choices=("refused", "skipped"), help="also print those cases")
    ap.add_argument("--write-claims", action="store_true",
                    help="write frontends/onnx/claimed_cases.txt from this run")
    args = ap.parse_args()
    if args.write_claims and (args.only or args.no_c or args.target != "host-cpu"):
        ap.error("--write-claims needs every case and every stage on host-cpu (no --only, "
                 "--no-c or --target)")
    stages = STAGES[:2] if args.no_c else STAGES
    import onnxruntime
    onnxruntime.set_default_logger_severity(3)  # its shape-merge warnings: the counts tell
    outcomes: dict[str, dict[str, Outcome]] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, c in enumerate(cases(args.only)):
            work = os.path.join(tmp, str(i))
            os.mkdir(work)
            outcomes[c.name] = run_case(c, stages, work, args.target)
            shutil.rmtree(work)
    report(outcomes, args.list)
    print(f"\n{len(outcomes)} cases in {time.perf_counter() - start:.0f} s")
    if args.write_claims:
        n = write_claims(outcomes)
        print(f"claims: {n} cases written to frontends/onnx/claimed_cases.txt")
    bad = any(o.result in ("wrong", "crashed") for got in outcomes.values() for o in got.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
