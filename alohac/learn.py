"""`alohac train` and `alohac quantize`: the commands that execute the network (torch, lazily)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from aloha_ir.errors import UsageError

DATA_HELP = ("dataset: digits (scikit-learn's 8x8 digits, bundled), mnist:DIR (IDX files, gz or "
             "not), cifar10:DIR (python batches), npz:FILE (x/y or x_train/y_train/x_test/y_test), "
             "images:DIR (one folder per class)")


def data_for_model(splits, graph):
    from passes.quantize import data_for_model as fit
    return fit(splits, graph)


def _splits(spec: str, seed: int):
    from frontends.datasets import load
    return load(spec, seed=seed)


def _model_for_training(spec: str):
    """The model as an nn module, its graph and its data interface."""
    from backends.reference import graph_of
    from frontends.loader import load_model
    module = load_model(spec)
    return module, graph_of(module)


def _write_onnx(module, path: str) -> str:
    from backends.onnx.export import save_onnx
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    save_onnx(module, path)
    return path


def cmd_train(args) -> int:
    from backends.torch.module import build
    from backends.torch.train import TrainConfig, evaluate, save_curves, train
    if not args.output.endswith(".onnx"):
        raise UsageError("-o must name an .onnx file", hint="e.g. -o out/model.onnx")
    module, graph = _model_for_training(args.model)
    splits = data_for_model(_splits(args.data, args.seed), graph)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         optimizer=args.optimizer, seed=args.seed, patience=args.patience,
                         subset=args.subset, checkpoint=args.checkpoint,
                         progress=not args.json and sys.stderr.isatty())
    model = build(module, logits=True)
    result = train(model, splits, config)
    test = evaluate(model, splits.test)
    model.write_back(module)
    written = [_write_onnx(module, args.output)]
    stem = args.output[:-5] + ".curves"
    written += save_curves(result, stem) or []
    summary = {"model": args.model, "data": args.data, "accuracy": float(test.accuracy),
               "loss": float(test.loss), "epochs": len(result.history),
               "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
               "onnx": args.output}
    for w in written:
        print(f"wrote {w}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"test accuracy {summary['accuracy']:.4f}  loss {summary['loss']:.4f}  after "
              f"{summary['epochs']} epochs (best {summary['best_epoch']})")
    return 0


def _bits(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        raise UsageError(f"--bits '{text}' must be W or W,A (weight and activation bits)")
    from passes.quantize import check_bits
    check_bits(*parts)
    return parts[0], parts[-1]


def cmd_quantize(args) -> int:
    from aloha_ir.context import make_context
    from aloha_ir.passmanager import PassManager
    from aloha_ir.textio import save_module
    from frontends.loader import model_stem
    from passes.quantize import QuantizePass, explore_precision
    wbits, abits = _bits(args.bits)
    try:
        from backends.onnx.qdq import save_quantized
    except ImportError:
        from aloha_ir.errors import UnsupportedError
        raise UnsupportedError("the quantized ONNX (QDQ) export is not in this build yet",
                               hint="use the quantize pass from the Python API meanwhile") from None
    module, graph = _model_for_training(args.model)
    ctx = make_context()
    ctx.dataset = data_for_model(_splits(args.data, args.seed), graph)
    PassManager.parse("canonicalize").run(module, ctx)
    out = sys.stderr if args.json else sys.stdout
    grid = None
    if args.grid:
        grid = explore_precision(module, ctx.dataset, per_channel=args.granularity == "channel")
        print(f"precision grid (float accuracy {grid.float_accuracy:.4f}, validation split):",
              file=out)
        for p in grid.points:
            print(f"  W{p['weight_bits']:>2} A{p['activation_bits']:>2}  {p['accuracy']:.4f}",
                  file=out)
        if grid.suggested:
            print(f"  suggested start: W{grid.suggested['weight_bits']} "
                  f"A{grid.suggested['activation_bits']}", file=out)
    qp = QuantizePass(method=args.method, bits=wbits, abits=abits, granularity=args.granularity,
                      calibration=args.calibration, samples=args.samples,
                      epochs=args.epochs, lr=args.lr, start_bits=args.start_bits,
                      delta_loss_window=args.delta_loss_window, stale_checks=args.stale_checks,
                      checkpoint=args.checkpoint or "", seed=args.seed)
    qp.apply(ctx, module)
    report = ctx.analyses["quantize"]
    for entry in report.log:
        print("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in entry.items()), file=out)
    os.makedirs(args.output, exist_ok=True)
    stem = model_stem(args.model)
    written = save_module(module, os.path.join(args.output, f"{stem}.mlir"))
    onnx_path = os.path.join(args.output, f"{stem}.onnx")
    written += save_quantized(module, onnx_path) or [onnx_path]
    for w in written:
        print(f"wrote {w}", file=out)
    print(f"float accuracy {report.float_accuracy:.4f}  quantized (W{wbits}/A{abits}, "
          f"{args.method}) {report.quantized_accuracy:.4f}", file=out)
    if args.json:
        data = {"model": args.model, "data": args.data, "method": args.method,
                "float_accuracy": report.float_accuracy,
                "quantized_accuracy": report.quantized_accuracy, "weight_bits": wbits,
                "activation_bits": abits, "granularity": args.granularity,
                "formats": report.formats, "log": report.log, "seconds": report.seconds,
                "onnx": onnx_path}
        if grid is not None:
            data["grid"] = grid.to_json()
        print(json.dumps(data))
    return 0


def _common(p: argparse.ArgumentParser, output_help: str) -> None:
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--data", default="digits", help=DATA_HELP + " (default: digits)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("-o", "--output", required=True, metavar=output_help)


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
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--patience", type=int, default=0,
                   help="stop after this many epochs without validation improvement (0: off)")
    p.add_argument("--subset", type=int, default=0,
                   help="fast mode: train on this many samples (0: all)")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="save every epoch here; a rerun resumes from it")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("quantize", help="quantize a model to power-of-two fixed point",
                       description="Quantize MODEL to fixed point: naive post-training quantization "
                                   "(ptq) or fine-tuning (pact with precision relaxation, dorefa, "
                                   "inq), snapped to the power-of-two formats NEURAghe and Orlando "
                                   "requantise with. Writes OUT/NAME.mlir (+ weights), the QDQ "
                                   "OUT/NAME.onnx and OUT/NAME.quant.json (per-layer formats). "
                                   "Prints the precision grid (--grid) and the relaxation log. "
                                   "--json prints one JSON object as the last line "
                                   "(float_accuracy, quantized_accuracy, weight_bits, "
                                   "activation_bits, formats).",
                       epilog=epilog, formatter_class=fmt)
    _common(p, "OUT")
    p.add_argument("--bits", default="8", metavar="W[,A]",
                   help="weight and activation bits, 2..16 (default 8)")
    p.add_argument("--method", choices=("ptq", "pact", "dorefa", "inq"), default="ptq")
    p.add_argument("--granularity", choices=("layer", "channel"), default="layer",
                   help="weight formats per layer (NEURAghe's per-layer shift) or per output "
                        "channel")
    p.add_argument("--calibration", choices=("max", "percentile"), default="max")
    p.add_argument("--samples", type=int, default=512, help="calibration images")
    p.add_argument("--grid", action="store_true",
                   help="first evaluate the (weight bits x activation bits) grid without training "
                        "and print the suggested relaxation start")
    p.add_argument("--epochs", type=int, default=30, help="fine-tuning epochs (pact/dorefa/inq)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--start-bits", type=float, default=16.0,
                   help="relaxation start precision (Table 4: 16, Q1.15)")
    p.add_argument("--delta-loss-window", type=int, default=20,
                   help="relaxation window in epochs (Table 4: 20)")
    p.add_argument("--stale-checks", type=int, default=2,
                   help="consecutive stale epochs before a precision drop (default 2)")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="fine-tuning checkpoint; an interrupted run resumes from it")
    p.set_defaults(func=cmd_quantize)
