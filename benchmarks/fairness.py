"""Fairness on Adult, COMPAS and German credit (issue 22): the data, the logistic regression, the
MLP (nn IR, the training engine) and the MLP deployed in 8-bit fixed point, with 95% bootstrap
intervals; seconds per dataset against the budget (60 s on 2 cores), offline.

    python benchmarks/fairness.py [--bootstrap 500] [--epochs 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# this script's folder first on sys.path would make `fairness` this file, not the package
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BUDGET_S = 60.0
DATASETS = [("adult", ["sex", "race"]), ("compas", ["race", "sex"]), ("german", ["sex", "age"])]


def main() -> int:
    from fairness.analysis import analyse
    from frontends.tabular import load_tabular
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    for name, sensitive in DATASETS:
        t0 = time.perf_counter()
        r = analyse(load_tabular(name, sensitive=sensitive), args.bootstrap, 0,
                    epochs=args.epochs)
        seconds = time.perf_counter() - t0
        attr = sensitive[0]
        d = r["data"][attr]["disparities"]
        print(f"\n{name} ({r['samples']:,} rows, {r['features']} features; {attr}): "
              f"{seconds:.1f} s (budget {BUDGET_S:.0f} s: "
              f"{'within' if seconds <= BUDGET_S else 'over budget on this machine now'})")
        print(f"  {'':<20} {'accuracy':>9} {'dp difference':>24} {'eo difference':>24}")
        print(f"  {'data (base rates)':<20} {'':>9} {_ci(d['base_rate_difference']):>24}")
        for model, m in r["models"].items():
            f = m["fairness"][attr]["disparities"]
            print(f"  {model:<20} {m['accuracy']:9.3f} {_ci(f['dp_difference']):>24} "
                  f"{_ci(f['eo_difference']):>24}")
        print(f"  8-bit vs float predictions agree on "
              f"{r['models']['mlp_int8']['agreement_with_float']:.1%} of the test rows; "
              "dp difference change: " +
              r["models"]["mlp_int8"]["against_float"][attr]["dp_difference"]["verdict"])
    return 0


def _ci(e: dict) -> str:
    return f"{e['value']:.3f} [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]"


if __name__ == "__main__":
    sys.exit(main())
