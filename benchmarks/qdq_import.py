"""Pre-quantized (QDQ) models imported into fixed point: top-1 agreement with onnxruntime's own QDQ
run and the per-layer error of mapping its scales to power-of-two steps.

A CNN (conv, residual add, max and average pooling, MatMul, Gemm) trained in torch on digits, or on
MNIST with $ALOHA_DATA, then mnist-8 too, is quantized by onnxruntime's quantize_static (QDQ,
symmetric int8 activations, per-tensor and per-channel int8 weights, MinMax on 32 training images),
imported by `alohac`'s ONNX frontend and run by the bit-exact fixed-point reference
(runtime/reference.py) after canonicalize, as `alohac compile` runs it. `--save DIR` keeps the QDQ
models (DIR/NAME_qdq.onnx) for `alohac compile`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

import numpy as np

ROOT = os.path.join(os.path.dirname(__file__), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from aloha_ir.context import make_context  # noqa: E402
from aloha_ir.dialects.nn import graph_of  # noqa: E402
from aloha_ir.errors import AlohaWarning  # noqa: E402
from aloha_ir.passmanager import PassManager  # noqa: E402
from frontends.datasets import load  # noqa: E402
from frontends.onnx import import_onnx  # noqa: E402
from frontends.onnx.qdq import scale_mapping  # noqa: E402
from qdq_helpers import cnn, ort_run, quantize_qdq  # noqa: E402
from runtime.reference import reference  # noqa: E402


def evaluate(name: str, path: str, x: np.ndarray, y: np.ndarray) -> None:
    """Agreement of the imported model with onnxruntime's run of `path`, and its scale mapping."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlohaWarning)  # the table below says it all
        module = import_onnx(path)
    PassManager.parse("canonicalize").run(module, make_context())
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    q, _ = reference(module).run(x.astype(np.float64))[0]
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    y_ort = ort_run(path, x)
    t_ort = time.perf_counter() - t0
    agree = np.mean(q.argmax(1) == y_ort.argmax(1))
    print(f"{name}: top-1 agreement with onnxruntime's QDQ run {agree:.2%} on {len(x)} images "
          f"(accuracy: onnxruntime {np.mean(y_ort.argmax(1) == y):.2%}, fixed point "
          f"{np.mean(q.argmax(1) == y):.2%}) [import {t_import:.2f} s, reference {t_ref:.2f} s, "
          f"onnxruntime {t_ort:.2f} s]")
    rows = scale_mapping(graph_of(module))
    print(f"  {'block':<24} {'tensor':<7} {'scale':>11} {'step':>11} {'error':>8}")
    for block, roles in rows.items():
        for role, r in roles.items():
            print(f"  {block:<24} {role:<7} {r['scale']:>11.6g} {r['step']:>11.6g} "
                  f"{r['error']:>+8.1%}")
    errors = [abs(r["error"]) for roles in rows.values() for r in roles.values()]
    print(f"  mean |error| {np.mean(errors):.1%}, largest {max(errors):.1%}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = os.environ.get("ALOHA_DATA")
    ap.add_argument("--data", choices=("digits", "mnist"),
                    default="mnist" if root else "digits",
                    help="what the CNN learns (mnist needs $ALOHA_DATA; default: mnist when set)")
    ap.add_argument("--save", metavar="DIR", help="keep the QDQ models in DIR")
    args = ap.parse_args()
    if args.data == "mnist" and not root:
        ap.error("--data mnist needs ALOHA_DATA (the shared data folder)")
    out = args.save or tempfile.mkdtemp(prefix="qdq-")
    os.makedirs(out, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the shared MNIST training file is truncated
        splits = load(f"mnist:{os.path.join(root, 'mnist')}" if args.data == "mnist" else "digits")
    side = splits.train.x.shape[-1]
    n_train = 6000 if args.data == "mnist" else len(splits.train.x)
    t0 = time.perf_counter()
    src = cnn(side, splits.train.x[:n_train], splits.train.y[:n_train],
              os.path.join(out, f"{args.data}_cnn.onnx"),
              **({"epochs": 4} if args.data == "mnist" else {"c": 16, "hidden": 64, "epochs": 40}))
    print(f"{args.data} CNN trained on {n_train} images [{time.perf_counter() - t0:.1f} s]")
    x, y = splits.test.x[:1000], splits.test.y[:1000]
    calib = splits.train.x[:32]
    for per_channel in (False, True):
        kind = "per-channel" if per_channel else "per-tensor"
        path = quantize_qdq(src, os.path.join(out, f"{args.data}_cnn_qdq"
                                              f"{'_pc' if per_channel else ''}.onnx"),
                            calib, per_channel)
        evaluate(f"{args.data} CNN, {kind} weights", path, x, y)
    if root:
        import onnx
        from onnx import version_converter
        src8 = os.path.join(out, "mnist-8_opset13.onnx")
        onnx.save(version_converter.convert_version(onnx.load(os.path.join(
            root, "onnx", "mnist-8.onnx")), 13), src8)
        mnist = load(f"mnist:{os.path.join(root, 'mnist')}") if args.data != "mnist" else splits
        path = quantize_qdq(src8, os.path.join(out, "mnist-8_qdq.onnx"),
                            mnist.train.x[:32] * 255.0, True)
        evaluate("mnist-8, per-channel weights", path, mnist.test.x[:1000] * 255.0,
                 mnist.test.y[:1000])
    if args.save:
        print(f"QDQ models in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
