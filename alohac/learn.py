"""`alohac train` and `alohac quantize`: the commands that execute the network (torch, lazily)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from aloha_ir.errors import Interrupted, UsageError
from passes.execution import data_for_model

DATA_HELP = ("dataset: digits (scikit-learn's 8x8 digits, bundled), mnist:DIR (IDX files, gz or "
             "not), cifar10:DIR (python batches), npz:FILE (x/y or x_train/y_train/x_test/y_test), "
             "images:DIR (one folder per class)")


def _splits(spec: str, seed: int):
    from frontends.datasets import load
    return load(spec, seed=seed)


def _model_for_training(spec: str):
    """The model as an nn module, its graph and its data interface."""
    from aloha_ir.dialects.nn import graph_of
    from frontends.loader import load_model
    module = load_model(spec)
    return module, graph_of(module)


def _write_onnx(module, path: str) -> str:
    from backends.onnx.export import save_onnx
    save_onnx(module, path)
    return path


def cmd_train(args) -> int:
    from runtime.torch.module import build
    from runtime.torch.train import TrainConfig, evaluate, save_curves, train
    from aloha_ir.outputs import check_file, staged_file
    if not args.output.endswith(".onnx"):
        raise UsageError("-o must name an .onnx file", hint="e.g. -o out/model.onnx")
    check_file(args.output)
    module, graph = _model_for_training(args.model)
    splits = data_for_model(_splits(args.data, args.seed), graph)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         optimizer=args.optimizer, seed=args.seed, patience=args.patience,
                         subset=args.subset, checkpoint=args.checkpoint)
    model = build(module, logits=True)
    try:
        result = train(model, splits, config, augment=_adversarial(args, graph, splits),
                       penalty=_penalty(args, graph, splits))
    except KeyboardInterrupt as e:
        if isinstance(e, Interrupted):  # it says what the checkpoint holds
            raise
        raise Interrupted("nothing written; --checkpoint FILE saves every epoch, so that a "
                          "rerun resumes") from None
    test = evaluate(model, splits.test)
    model.write_back(module)
    title = f"{args.model} trained on {args.data}" + (
        f" with {args.adversarial.upper()} L{args.adv_norm} eps {args.adv_eps:g} examples"
        if args.adversarial else "") + (
        f" with an input-gradient penalty {args.input_gradient_penalty:g}"
        if args.input_gradient_penalty else "")
    with staged_file(args.output, "train") as out:  # the model and its curves, together
        name = os.path.basename(args.output)
        written = [_write_onnx(module, out.path(name))]
        written += save_curves(result, out.path(name[:-5] + ".curves"), title) or []
    written = [out.final(w) for w in written]
    summary = {"model": args.model, "data": args.data, "accuracy": float(test.accuracy),
               "loss": float(test.loss), "epochs": len(result.history),
               "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
               "onnx": args.output}
    if args.adversarial:
        summary["adversarial"] = {"attack": args.adversarial, "norm": args.adv_norm,
                                  "eps": args.adv_eps, "steps": args.adv_steps,
                                  "fraction": args.adv_fraction}
    if args.input_gradient_penalty:
        summary["input_gradient_penalty"] = args.input_gradient_penalty
    for w in written:
        print(f"wrote {w}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"test accuracy {summary['accuracy']:.4f}  loss {summary['loss']:.4f}  after "
              f"{summary['epochs']} epochs (best {summary['best_epoch']})")
    return 0


def _adversarial(args, graph, splits):
    """The adversarial-training batch transform asked for, or None: attacks crafted in [0, 1]
    and mapped to the range the model takes (that of the data it is trained on)."""
    if not args.adversarial:
        return None
    from runtime.torch.attacks import AdversarialAugment, Attack
    from security.evaluate import model_range
    lo, hi = model_range(graph, None, splits.train.value_range)
    return AdversarialAugment(Attack(args.adversarial, args.adv_norm, args.adv_steps,
                                     random_start=args.adversarial == "pgd"),
                              args.adv_eps, lo=lo, hi=hi, fraction=args.adv_fraction)


def _penalty(args, graph, splits):
    """The input-gradient penalty asked for, or None: gradients taken in [0, 1] attack space
    whatever range the model takes."""
    if args.input_gradient_penalty is None:
        return None
    from alohac.run import in_flags
    from runtime.torch.regularize import InputGradientPenalty
    from security.evaluate import model_range
    lo, hi = model_range(graph, None, splits.train.value_range)
    with in_flags({"weight": "--input-gradient-penalty"}):
        return InputGradientPenalty(args.input_gradient_penalty, lo=lo, hi=hi)


def _weight_activation(text: str, option: str, cast, hint: str = "") -> list:
    """`W` or `W,A` (weight and activation bits) as one or two numbers."""
    try:
        parts = [cast(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        raise UsageError(f"{option} '{text}' must be W or W,A (weight and activation bits)",
                         hint=hint or None)
    return parts


def _bits(text: str) -> tuple[int, int]:
    parts = _weight_activation(text, "--bits", int)
    from quant.formats import check_bits
    check_bits(*parts)
    return parts[0], parts[-1]


def _untrained(warnings: list[str], float_accuracy, splits, args) -> list[str]:
    """The pass's warnings, the near-chance one naming the train command for this model and
    data."""
    from passes.execution import near_chance
    hint = near_chance(float_accuracy, splits.test, f"alohac train {args.model} --data "
                                                    f"{args.data} -o OUT.onnx")
    generic = near_chance(float_accuracy, splits.test)
    return [hint if w == generic else w for w in warnings]


def _start_bits(text: str) -> tuple[float, float]:
    parts = _weight_activation(text, "--start-bits", float,
                               "e.g. --start-bits 8, or the --grid suggestion such as 8,6")
    return parts[0], parts[-1]


def _bits_text(w: float, a: float) -> str:
    return f"W{w:g} A{a:g}"


def relaxation_lines(rel: dict) -> list[str]:
    """The relaxation in the log: its plan, one line per drop, and the outcome (or why the
    target was not reached, which the power-of-two phase then jumps to)."""
    p = rel["plan"]
    start = _bits_text(p["start_weight_bits"], p["start_activation_bits"])
    target = _bits_text(p["target_weight_bits"], p["target_activation_bits"])
    lines = []
    if p["drops"]:
        checks = p["stale_checks"]
        lines.append(f"relaxation plan: {start} -> {target} in {p['drops']} drop"
                     f"{'s' * (p['drops'] > 1)} of {p['step_bits']:.3g} bits, a drop after "
                     f"{checks} stale check{'s' * (checks > 1)} of the delta loss over "
                     f"{p['window']} epochs; the target at epoch {p['target_epoch']} at the "
                     f"earliest of {p['epochs']}" + (f" ({p['note']})" if p["note"] else ""))
    for st in rel["steps"]:
        lines.append(f"  epoch {st['epoch']}: "
                     f"{_bits_text(st['from_weight_bits'], st['from_activation_bits'])} -> "
                     f"{_bits_text(st['to_weight_bits'], st['to_activation_bits'])} (stale: delta "
                     f"loss mean {st['delta_loss_mean']:.3g}, std {st['delta_loss_std']:.3g} over "
                     f"{st['window']} epochs; total loss {st['total_loss']:.4g}, val accuracy "
                     f"{st['val_accuracy']:.4f})")
    if rel["reached_target"]:
        at = f" at epoch {rel['reached_epoch']}" if rel["reached_epoch"] else ""
        lines.append(f"relaxation reached {target}{at} of {p['epochs']}")
    else:
        final = _bits_text(rel["final_weight_bits"], rel["final_activation_bits"])
        lines.append(f"relaxation stopped at {final}, short of {target}: {rel['reason']}; the "
                     f"power-of-two phase jumps from {final} to {target}")
    return lines


def cmd_quantize(args) -> int:
    from aloha_ir.context import make_context
    from aloha_ir.passmanager import PassManager
    from aloha_ir.textio import save_module
    from frontends.loader import model_stem
    from passes.quantize import QuantizePass, explore_precision
    from backends.onnx.qdq import save_quantized
    from aloha_ir.outputs import Staged, check_folder
    wbits, abits = _bits(args.bits)
    check_folder(args.output)
    module, graph = _model_for_training(args.model)
    ctx = make_context()
    ctx.dataset = data_for_model(_splits(args.data, args.seed), graph)
    PassManager.parse("canonicalize").run(module, ctx)
    out = sys.stderr if args.json else sys.stdout
    grid = None
    start_w, start_a = _start_bits(args.start_bits)
    qp = QuantizePass(method=args.method, bits=wbits, abits=abits, granularity=args.granularity,
                      calibration=args.calibration, samples=args.samples,
                      epochs=args.epochs, lr=args.lr, start_bits=start_w, start_abits=start_a,
                      delta_loss_window=args.delta_loss_window or 0,
                      stale_checks=args.stale_checks, checkpoint=args.checkpoint or "",
                      seed=args.seed, insert_bn=args.insert_bn)
    if args.grid:
        grid = explore_precision(module, ctx.dataset, per_channel=args.granularity == "channel")
        print(f"precision grid (float accuracy {grid.float_accuracy:.4f}, validation split):",
              file=out)
        for p in grid.points:
            print(f"  W{p['weight_bits']:>2} A{p['activation_bits']:>2}  {p['accuracy']:.4f}",
                  file=out)
        print(grid.suggestion(), file=out)
    qp.apply(ctx, module)
    report = ctx.report("quantize")
    report.warnings = _untrained(report.warnings, report.float_accuracy, ctx.dataset, args)
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if report.relaxation is not None:
        for line in relaxation_lines(report.relaxation):
            print(line, file=out)
    for entry in report.log:
        if "phase" in entry:  # the epochs are in the JSON's log; the phases after them here
            print("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in entry.items()), file=out)
    stem = model_stem(args.model)
    with Staged(args.output, "quantize") as staged:
        written = save_module(module, staged.path(f"{stem}.mlir"))
        onnx_path = staged.path(f"{stem}.onnx")
        written += save_quantized(module, onnx_path) or [onnx_path]
    onnx_path = staged.final(onnx_path)
    for w in written:
        print(f"wrote {staged.final(w)}", file=out)
    print(f"float accuracy {report.float_accuracy:.4f}  quantized (W{wbits}/A{abits}, "
          f"{args.method}) {report.quantized_accuracy:.4f}", file=out)
    if args.json:
        data = {"model": args.model, "data": args.data, "method": args.method,
                "float_accuracy": report.float_accuracy,
                "quantized_accuracy": report.quantized_accuracy, "weight_bits": wbits,
                "activation_bits": abits, "granularity": args.granularity,
                "formats": report.formats, "log": report.log, "seconds": report.seconds,
                "warnings": report.warnings, "onnx": onnx_path}
        if report.relaxation is not None:
            data.update(relaxation=report.relaxation["steps"],
                        reached_target=report.relaxation["reached_target"],
                        reason=report.relaxation["reason"],
                        relaxation_plan=report.relaxation["plan"])
        if grid is not None:
            data["grid"] = grid.to_json()
        print(json.dumps(data))
    return 0


def _thresholds(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",")]
    except ValueError:
        values = []
    if not values or any(not (t >= 0) for t in values):
        raise UsageError(f"--threshold '{text}' must be one or more numbers >= 0, comma-separated",
                         hint="e.g. --threshold 1.0 or --threshold 0.5,1.0,1.5")
    return values


def cmd_prune(args) -> int:
    from aloha_ir.context import make_context
    from aloha_ir.passmanager import PassManager
    from aloha_ir.textio import save_module
    from aloha_ir.outputs import write_text
    from aloha_ir.weights import clone_with_weights
    from frontends.loader import model_stem
    from passes.prune import PrunePass
    from aloha_ir.outputs import Staged, check_folder
    thresholds = _thresholds(args.threshold)
    if args.method == "activity" and len(thresholds) > 1:
        raise UsageError("a threshold sweep goes with --method threshold")
    check_folder(args.output)
    module, graph = _model_for_training(args.model)
    ctx = make_context()
    ctx.dataset = data_for_model(_splits(args.data, args.seed), graph)
    PassManager.parse("canonicalize").run(module, ctx)
    out = sys.stderr if args.json else sys.stdout
    trials = []
    for t in thresholds:
        trial = clone_with_weights(module)
        PrunePass(method=args.method, threshold=t, iterations=args.iterations, epochs=args.epochs,
                  lr=args.lr, max_activity=args.max_activity, samples=args.samples,
                  sparsify=args.sparsify, seed=args.seed).apply(ctx, trial)
        report = ctx.report("prune")
        trials.append((trial, report))
        share = 100 * report.params_removed / max(1, report.params_before)
        print(f"{_candidate(args, report):>18}: parameters {report.params_before} -> "
              f"{report.params_after} ({share:.1f}% removed), MACs {report.macs_before} -> "
              f"{report.macs_after}, accuracy {report.accuracy_before:.4f} -> "
              f"{report.accuracy_after:.4f}", file=out)
    kept, selection = _select(args, [r for _, r in trials])
    chosen, report = trials[kept]
    report.warnings = _untrained(report.warnings, report.accuracy_before, ctx.dataset, args) + \
        ([selection["warning"]] if selection["warning"] else [])
    print(f"kept {_candidate(args, report)}: {selection['reason']}", file=out)
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for layer in report.layers:
        if layer.kernels:
            print(f"  {layer.name}: {layer.kernels_removed} of {layer.kernels} kernels removed, "
                  f"{layer.kernels_zeroed} zeroed", file=out)
    sweep = [{"threshold": r.threshold, "params_after": r.params_after, "macs_after": r.macs_after,
              "accuracy_after": r.accuracy_after,
              "accuracy_drop": r.accuracy_before - r.accuracy_after,
              "within_max_drop": r.accuracy_before - r.accuracy_after <= args.max_drop,
              "kept": i == kept} for i, (_, r) in enumerate(trials)]
    record = {**report.to_json(), "max_drop": args.max_drop, "selection": selection["reason"],
              "sweep": sweep}
    stem = model_stem(args.model)
    with Staged(args.output, "prune") as staged:
        written = save_module(chosen, staged.path(f"{stem}.mlir"))
        onnx_path = staged.path(f"{stem}.onnx")
        written.append(_write_onnx(chosen, onnx_path))
        written.append(write_text(staged.path(f"{stem}.prune.json"),
                                  json.dumps(record, indent=2) + "\n"))
    onnx_path = staged.final(onnx_path)
    for w in written:
        print(f"wrote {staged.final(w)}", file=out)
    if args.json:
        print(json.dumps({"model": args.model, "data": args.data, **record, "onnx": onnx_path}))
    return 0


def _candidate(args, report) -> str:
    return f"t={report.threshold:g}" if args.method == "threshold" else \
        f"max activity {args.max_activity:g}"


def _loses(drop: float) -> str:
    return f"loses {drop:.4f}" if drop >= 0 else f"gains {-drop:.4f}"


def _select(args, reports: list) -> tuple[int, dict]:
    """The seeds' selection: the largest threshold whose accuracy loss is at most --max-drop.
    Returns its index and {"reason", "warning"} (a warning when no candidate is within)."""
    drops = [r.accuracy_before - r.accuracy_after for r in reports]
    ok = [i for i, d in enumerate(drops) if d <= args.max_drop]
    others = [f"{_candidate(args, r)} {_loses(d)}" for r, d in zip(reports, drops)]
    if len(reports) == 1:
        within = "within" if ok else "more than"
        return 0, {"reason": f"the only candidate; it {_loses(drops[0])} accuracy, {within} "
                             f"--max-drop {args.max_drop:g}",
                   "warning": "" if ok else
                   f"{_candidate(args, reports[0])} loses {drops[0]:.4f} accuracy, more than "
                   f"--max-drop {args.max_drop:g}; kept as the only candidate (try smaller "
                   "thresholds, or several: --threshold 0.25,0.5,1.0)"}
    if ok:
        i = max(ok, key=lambda k: reports[k].threshold)
        rest = [o for k, o in enumerate(others) if k != i]
        return i, {"reason": f"the largest threshold losing at most --max-drop {args.max_drop:g} "
                             f"accuracy (it {_loses(drops[i])}; {', '.join(rest)})",
                   "warning": ""}
    i = min(range(len(reports)), key=lambda k: (drops[k], reports[k].threshold))
    return i, {"reason": f"no threshold loses at most --max-drop {args.max_drop:g} accuracy "
                         f"({', '.join(others)}): the one losing least",
               "warning": f"every threshold loses more than --max-drop {args.max_drop:g} "
                          f"accuracy; kept {_candidate(args, reports[i])}, which loses "
                          f"{drops[i]:.4f} (try smaller thresholds)"}


def _common(p: argparse.ArgumentParser, output_help: str) -> None:
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--data", default="digits", help=DATA_HELP + " (default: digits)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data split, the initial weights and the batch order")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("-o", "--output", required=True, metavar=output_help,
                   help="where to write (" + ("an .onnx file" if output_help.endswith(".onnx")
                                              else "a directory") + ")")


def add_parsers(sub, epilog: str) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("train", help="train or fine-tune a model on a dataset (torch)",
                       description="Train MODEL (zoo:NAME builds it with seeded weights; an .onnx "
                                   "is fine-tuned from its weights) on DATA, keep the best "
                                   "validation epoch, write the trained model as ONNX and its "
                                   "learning curves (OUT.curves.json/.png). Models alohac builds "
                                   "take inputs in [0, 1] with the normalisation inside the graph; "
                                   "imported models keep their input range and the data is "
                                   "rescaled to it. --json prints one JSON object as the last line "
                                   "(accuracy, loss, epochs on the test split).",
                       epilog=epilog, formatter_class=fmt)
    _common(p, "OUT.onnx")
    p.add_argument("--epochs", type=int, default=10, help="training epochs")
    p.add_argument("--batch-size", type=int, default=64, help="samples per batch")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="optimizer")
    p.add_argument("--patience", type=int, default=0,
                   help="stop after this many epochs without validation improvement (0: off)")
    p.add_argument("--subset", type=int, default=0,
                   help="fast mode: train on this many samples (0: all)")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="save every epoch here; a rerun resumes from it")
    g = p.add_argument_group("adversarial training (a mitigation: alohac secure shows the curve "
                             "before and after)")
    g.add_argument("--adversarial", choices=("fgsm", "pgd"),
                   help="replace part of every batch by attacks on the current model")
    g.add_argument("--adv-eps", type=float, default=0.1,
                   help="their epsilon, inputs in [0, 1] (default 0.1)")
    g.add_argument("--adv-norm", default="inf", help="inf, 2 or 1 (default inf)")
    g.add_argument("--adv-steps", type=int, default=7, help="PGD steps (default 7)")
    g.add_argument("--adv-fraction", type=float, default=0.5,
                   help="the share of each batch replaced (default 0.5)")
    g = p.add_argument_group("input-gradient regularisation (a mitigation: Ross and Doshi-Velez "
                             "2018)")
    g.add_argument("--input-gradient-penalty", type=float, metavar="WEIGHT",
                   help="add WEIGHT x the mean squared L2 norm of each sample's input gradient "
                        "of its loss, inputs in [0, 1] (e.g. 10)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("quantize", help="quantize a model to power-of-two fixed point",
                       description="Quantize MODEL to fixed point: naive post-training quantization "
                                   "(ptq) or fine-tuning (pact with precision relaxation, dorefa, "
                                   "inq), snapped to the power-of-two formats NEURAghe and Orlando "
                                   "requantise with. Writes OUT/NAME.mlir (+ weights), the QDQ "
                                   "OUT/NAME.onnx and OUT/NAME.quant.json (per-layer formats). "
                                   "Prints the precision grid with its suggested relaxation "
                                   "start (--grid), and for pact/dorefa the relaxation plan "
                                   "fitted to --epochs, one line per precision drop and whether "
                                   "the target was reached (if not, why). Warns when the float "
                                   "model is near chance (untrained). --json prints one JSON "
                                   "object as the last line (float_accuracy, quantized_accuracy, "
                                   "weight_bits, activation_bits, formats, warnings; pact/dorefa: "
                                   "relaxation (the drops), reached_target, reason, "
                                   "relaxation_plan).",
                       epilog=epilog, formatter_class=fmt)
    _common(p, "OUT")
    p.add_argument("--bits", default="8", metavar="W[,A]",
                   help="weight and activation bits, 2..16 (default 8)")
    p.add_argument("--method", choices=("ptq", "pact", "dorefa", "inq"), default="ptq",
                   help="ptq: calibrate only; pact (with precision relaxation), dorefa, inq: "
                        "fine-tune quantized")
    p.add_argument("--granularity", choices=("layer", "channel"), default="layer",
                   help="weight formats per layer (NEURAghe's per-layer shift) or per output "
                        "channel")
    p.add_argument("--calibration", choices=("max", "percentile"), default="max",
                   help="activation range from the calibration images: their maximum or a high "
                        "percentile")
    p.add_argument("--samples", type=int, default=512, help="calibration images")
    p.add_argument("--grid", action="store_true",
                   help="first evaluate the (weight bits x activation bits) grid without training "
                        "and print the suggested relaxation start")
    p.add_argument("--epochs", type=int, default=30, help="fine-tuning epochs (pact/dorefa/inq)")
    p.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate")
    p.add_argument("--start-bits", default="16", metavar="W[,A]",
                   help="relaxation start precision of weights and activations (default 16: "
                        "Table 4's Q1.15; --grid suggests one)")
    p.add_argument("--delta-loss-window", type=int, default=None,
                   help="relaxation window in epochs (default: Table 4's 20, shortened so that "
                        "the relaxation can reach --bits within --epochs)")
    p.add_argument("--stale-checks", type=int, default=2,
                   help="consecutive stale epochs before a precision drop (default 2)")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="fine-tuning checkpoint; an interrupted run resumes from it")
    p.add_argument("--insert-bn", action="store_true",
                   help="pact/dorefa: train with a batch norm after every conv lacking one (the "
                        "seeds' scheme), folded before deployment")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("prune", help="prune weights (threshold x sigma) or idle kernels (activity)",
                       description="Prune MODEL. threshold: in every conv and dense layer the "
                                   "weights within t x sigma of the layer mean collapse to the "
                                   "mean (zeros once deployed mean-subtracted); several "
                                   "comma-separated thresholds are each evaluated and the largest "
                                   "losing at most --max-drop accuracy is kept (printed with every "
                                   "candidate's loss); --iterations with "
                                   "--epochs fine-tunes between growing thresholds. activity: "
                                   "kernels of rectified convolutions that are active on at most "
                                   "--max-activity of the images are removed (--sparsify first "
                                   "fine-tunes under a group-lasso penalty that silences weak "
                                   "kernels). Writes OUT/NAME.mlir (+ weights), OUT/NAME.onnx and "
                                   "OUT/NAME.prune.json (parameters and MACs before/after, per "
                                   "layer, the sweep and the selection). --json prints one JSON "
                                   "object as the last line.",
                       epilog=epilog, formatter_class=fmt)
    _common(p, "OUT")
    p.add_argument("--method", choices=("threshold", "activity"), default="threshold",
                   help="threshold: weights near the layer mean; activity: kernels that "
                        "(nearly) never fire")
    p.add_argument("--threshold", default="1.0", metavar="T[,T...]",
                   help="t in units of the layer's weight standard deviation (default 1.0)")
    p.add_argument("--max-drop", type=float, default=0.01,
                   help="accuracy loss allowed when choosing among thresholds (default 0.01)")
    p.add_argument("--iterations", type=int, default=1,
                   help="reach t in this many steps, fine-tuning --epochs after each")
    p.add_argument("--epochs", type=int, default=0,
                   help="fine-tuning epochs (after each threshold step, or after kernel removal)")
    p.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate")
    p.add_argument("--max-activity", type=float, default=0.01,
                   help="kernels active on at most this fraction of images go (default 0.01)")
    p.add_argument("--samples", type=int, default=1000, help="images profiled for activity")
    p.add_argument("--sparsify", type=float, default=0.0, metavar="LAMBDA",
                   help="group-lasso strength of the fine-tuning before the activity profile "
                        "(needs --epochs)")
    p.set_defaults(func=cmd_prune)
