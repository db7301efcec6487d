"""`alohac secure`'s defence options: --reject (the reject option under the adaptive attack, with
its trade-off plot), --recommend (prospective actions from the figures and flags) and --apply
(carry out the first applicable one, write the new model, evaluate it again, before/after)."""

from __future__ import annotations

import argparse
import sys

from aloha_ir.errors import UsageError


def _thresholds(text: str) -> list[float]:
    from security.reject import parse_thresholds
    try:
        return parse_thresholds(text)
    except UsageError as e:  # argparse names the flag
        raise argparse.ArgumentTypeError(f"{e.message} ({e.hint})" if e.hint else e.message) \
            from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def add_arguments(p) -> None:
    p.add_argument("--reject", metavar="T1,T2,...", type=_thresholds,
                   help="evaluate a reject option at these confidence thresholds (and 0, none): "
                        "accuracy with rejection at epsilon 0 counts correct-and-accepted, at "
                        "epsilon > 0 also the rejected adversarial inputs (secml's accounting), "
                        "under an attack that knows the threshold and one that does not; writes "
                        "OUT/reject.png (curves and the accuracy/rejection trade-off)")
    p.add_argument("--recommend", action="store_true",
                   help="recommend measures (stronger evaluation, adversarial training, "
                        "input-gradient penalty, rejection, more bits) from the figures and "
                        "flags, each with its reason (console and security.json; with "
                        "--deployed, of the deployed model against the float one, in "
                        "deployed.json)")
    p.add_argument("--apply", action="store_true",
                   help="carry out the first recommendation the tool can (implies --recommend): "
                        "fine-tune with the training engine, evaluate again, or (--deployed "
                        "BITS) quantize MODEL again with more bits; write OUT/applied.mlir and "
                        "OUT/applied.png, report before/after")
    p.add_argument("--apply-epochs", type=_positive, default=5,
                   help="fine-tuning epochs of --apply (default 5)")


def run(args, module, report, x01, y, config, input_range, out, result: dict) -> list[str]:
    """The defence options on an evaluation just made (`report` on samples x01, y): adds
    `reject`, `recommendations` and `applied` to `result`, prints what it found, returns the
    files written (staged in `out`)."""
    from security.evaluate import plot_curves
    con = sys.stderr if args.json else sys.stdout
    written: list[str] = []
    reject = None
    if args.reject:
        from security.reject import evaluate_reject, plot_reject
        rep = evaluate_reject(module, x01, y, args.reject, config, input_range=input_range)
        reject = result["reject"] = rep.to_json()
        written.append(plot_reject(rep, out.path("reject.png"),
                                   f"{args.model} on {args.data}: reject option"))
        print("reject option (accuracy with rejection; adaptive attack, threshold-unaware "
              "attack in brackets):", file=con)
        at0 = rep.eps.index(0.0) if 0.0 in rep.eps else 0
        for c in rep.curves:
            print(f"  t {c.threshold:<5g} clean {c.accuracy[at0]:.3f} (rejects "
                  f"{100 * c.rejected[at0]:.1f}%), curve average {c.curve_average:.3f} "
                  f"({c.naive_curve_average:.3f})", file=con)
    if not (args.recommend or args.apply):
        return written
    from security.recommend import apply, describe_change, recommend, top_applicable
    recs = recommend(result, reject=reject)
    result["recommendations"] = [r.to_json() for r in recs]
    print("recommendations:", file=con)
    for k, r in enumerate(recs, 1):
        print(f"  {k}. {r.describe()}{'' if r.applicable else ' [not applied by --apply]'}",
              file=con)
    if not args.apply:
        return written
    rec = top_applicable(recs)
    if rec is None:
        print("apply: no recommendation the tool can carry out", file=con)
        result["applied"] = None
        return written
    splits = None
    if rec.measure != "stronger_evaluation":
        from aloha_ir.dialects.nn import graph_of
        from frontends.datasets import load
        from passes.execution import data_for_model
        splits = data_for_model(load(args.data, seed=args.seed), graph_of(module))
    applied = apply(rec, module, report, x01, y, config, input_range=input_range, splits=splits,
                    epochs=args.apply_epochs, seed=args.seed, progress=not args.json)
    result["applied"] = applied.to_json()
    if applied.module is not None:
        from aloha_ir.textio import save_module
        written += save_module(applied.module, out.path("applied.mlir"))
    written.append(plot_curves([applied.before, applied.after], out.path("applied.png"),
                               f"{args.model}: before and after {rec.measure.replace('_', ' ')}"))
    print(f"applied {describe_change(applied)}", file=con)
    return written


def run_deployed(args, float_module, deployed_module, report, quantized_here: bool, x01, y,
                 config, input_range, out, result: dict) -> list[str]:
    """--recommend and --apply with --deployed: the measures for the deployed model, judged
    against the float one (more bits when its curve average is lower by more than 2 points);
    --apply carries out the first the tool can, every curve the program's. Adds
    `recommendations` and `applied` to `result` (deployed.json); returns the files written."""
    if not (args.recommend or args.apply):
        return []
    from security.deployed import narrowest_bits
    from security.evaluate import plot_curves
    from security.recommend import apply, describe_change, recommend, top_applicable
    con = sys.stderr if args.json else sys.stdout
    fr, dr = report.float_report, report.deployed_report
    bits = int(args.deployed) if quantized_here else narrowest_bits(deployed_module)
    recs = recommend(dr.to_json(), float_result=fr.to_json(), bits=bits,
                     requantize=quantized_here)
    result["recommendations"] = [r.to_json() for r in recs]
    print(f"recommendations (the deployed model, {report.precision}):", file=con)
    for k, r in enumerate(recs, 1):
        print(f"  {k}. {r.describe()}{'' if r.applicable else ' [not applied by --apply]'}",
              file=con)
    if not args.apply:
        return []
    rec = top_applicable(recs)
    result["applied"] = None
    if rec is None:
        print("apply: no recommendation the tool can carry out on the deployed model (the "
              "reasons are above)", file=con)
        return []
    picked = dr.sample_indices
    applied = apply(rec, deployed_module, dr, x01[picked], y[picked], config,
                    input_range=input_range, seed=args.seed, float_module=float_module,
                    data=args.data)
    result["applied"] = applied.to_json()
    written = []
    if applied.module is not None:
        from aloha_ir.textio import save_module
        written += save_module(applied.module, out.path("applied.mlir"))
    applied.after.model = (f"{report.model} (PTQ at {rec.params['bits']} bits)"
                           if rec.measure == "more_bits" else f"{dr.model}, stronger attack")
    written.append(plot_curves([applied.before, applied.after], out.path("applied.png"),
                               f"{args.model} deployed: before and after "
                               f"{rec.measure.replace('_', ' ')}"))
    print(f"applied {describe_change(applied)}", file=con)
    return written
