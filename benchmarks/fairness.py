"""Fairness on Adult, COMPAS and German credit (issue 22): the data, the logistic regression, the
MLP (nn IR, the training engine) and the MLP compressed (8- and 4-bit fixed point, pruned), with
95% bootstrap intervals; what compression changed; on Adult (sex) each mitigation's change in
accuracy and demographic-parity difference; seconds per dataset against the budget (60 s on 2
cores), offline.

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
    from fairness.analysis import COMPRESSED, analyse
    from fairness.mitigation import METHODS
    from frontends.tabular import load_tabular
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    for name, sensitive in DATASETS:
        t0 = time.perf_counter()
        r = analyse(load_tabular(name, sensitive=sensitive), args.bootstrap, 0,
                    epochs=args.epochs, mitigate=METHODS if name == "adult" else ())
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
        print("  compression (against the float MLP, same resamples):")
        for model in COMPRESSED:
            m = r["models"][model]
            change = m["against_float"][attr]["dp_difference"]
            print(f"    {model:<12} predictions agree {m['agreement_with_float']:6.1%}, accuracy "
                  f"{m['accuracy'] - r['models']['mlp']['accuracy']:+.3f}, dp difference "
                  f"{change['change']:+.3f} [{change['ci95'][0]:+.3f}, {change['ci95'][1]:+.3f}]"
                  f": {change['verdict']}")
        if name == "adult":  # each mitigation on Adult with sex as the sensitive attribute
            print("  mitigations (logistic regression, sex):")
            for method, m in r["mitigations"].items():
                change = m["against_before"][attr]["dp_difference"]
                print(f"    {method:<10} accuracy {m['accuracy_before']:.3f} -> "
                      f"{m['accuracy']:.3f} ({m['accuracy'] - m['accuracy_before']:+.3f}), dp "
                      f"difference {change['change']:+.3f} [{change['ci95'][0]:+.3f}, "
                      f"{change['ci95'][1]:+.3f}]: {change['verdict']}")
    return 0


def _ci(e: dict) -> str:
    return f"{e['value']:.3f} [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]"


if __name__ == "__main__":
    sys.exit(main())
