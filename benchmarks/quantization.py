"""Quantization and pruning on MNIST (or digits without $ALOHA_DATA): float vs 8-bit naive PTQ
(power-of-two) vs onnxruntime's quantize_static (QDQ, MinMax) on the same model and calibration
images; our QDQ export run by onnxruntime against our fixed-point simulation (argmax agreement on
the test set); 4-bit weights+activations after PACT with precision relaxation; threshold pruning at
t = 0.5, 1.0, 1.5 and kernel-activity pruning (plain, and after group-lasso sparsification). Wall
time per step.

The relaxation runs a shorter schedule than the seeds' Table 4 (start 8 bits, window 2 epochs, one
stale check, thresholds 50) so that it ends in minutes on 2 cores; Table 4's defaults are the pass's.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from aloha_ir.context import make_context  # noqa: E402
from aloha_ir.passmanager import PassManager  # noqa: E402
from aloha_ir.weights import clone_with_weights  # noqa: E402
from frontends.datasets import load  # noqa: E402
from frontends.loader import load_model  # noqa: E402


def timed(label, fn):
    t0 = time.perf_counter()
    out = fn()
    print(f"  [{label}: {time.perf_counter() - t0:.2f} s]")
    return out


def ort_static(onnx_path: str, calib: np.ndarray, test) -> float:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.items, None)

    out = onnx_path.replace(".onnx", ".ort-qdq.onnx")
    quantize_static(onnx_path, out, Reader(), quant_format=QuantFormat.QDQ)
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    pred = np.concatenate([sess.run(None, {"input": test.x[i:i + 1]})[0].argmax(1)
                           for i in range(len(test))])
    return float((pred == test.y).mean())


def main() -> None:
    import torch

    from backends.onnx.export import save_onnx
    from runtime.torch.module import build
    from runtime.torch.train import TrainConfig, evaluate, train
    from passes.quantize import QuantizePass
    root = os.environ.get("ALOHA_DATA")
    if root:
        spec, model_name, epochs = f"mnist:{os.path.join(root, 'mnist')}", "zoo:mnist_cnn", 4
    else:
        print("ALOHA_DATA is not set: using scikit-learn's digits instead of MNIST")
        spec, model_name, epochs = "digits", "zoo:digits_cnn", 15
    splits = timed("load data", lambda: load(spec))
    print(f"data {spec}: train {len(splits.train)}, val {len(splits.val)}, test {len(splits.test)}")
    module = load_model(model_name)
    model = build(module, logits=True)
    timed(f"train {epochs} epochs", lambda: train(model, splits, TrainConfig(epochs=epochs,
                                                                              progress=False)))
    model.write_back(module)
    float_acc = float(evaluate(model, splits.test).accuracy)
    PassManager.parse("canonicalize").run(module, make_context())
    ctx = make_context()
    ctx.dataset = splits

    def quantized(**opts):
        m = clone_with_weights(module)
        QuantizePass(**opts).apply(ctx, m)
        return ctx.report("quantize"), m

    ptq, ptq_module = timed("PTQ 8 bit", lambda: quantized(method="ptq", bits=8))
    agreement = {exact: timed(f"QDQ export (exact={exact}) vs our simulation",
                              lambda: qdq_agreement(ptq_module, splits.test, exact))
                 for exact in (True, False)}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "float.onnx")
        save_onnx(module, path)
        calib = splits.train.head(512).x
        ort_acc = timed("onnxruntime quantize_static", lambda: ort_static(path, calib,
                                                                           splits.test))
    pact, _ = timed("PACT 4/4 with relaxation", lambda: quantized(
        method="pact", bits=4, epochs=12, start_bits=8, delta_loss_window=2, stale_checks=1,
        delta_loss_avg_thresh=50, delta_loss_stdev_thresh=50))
    torch.set_num_threads(torch.get_num_threads())
    print(f"float accuracy                     {float_acc:.4f}")
    print(f"PTQ 8-bit power-of-two (ours)      {ptq.quantized_accuracy:.4f}  "
          f"(float - PTQ = {100 * (float_acc - ptq.quantized_accuracy):+.2f} points)")
    print(f"onnxruntime quantize_static QDQ    {ort_acc:.4f}  "
          f"(ours - ORT = {100 * (ptq.quantized_accuracy - ort_acc):+.2f} points)")
    print(f"PACT 4/4 bits after relaxation     {pact.quantized_accuracy:.4f}  "
          f"(float - PACT = {100 * (float_acc - pact.quantized_accuracy):+.2f} points)")
    for exact, (agree, n) in agreement.items():
        rounding = "round half up" if exact else "fused, half to even"
        print(f"QDQ in onnxruntime vs our fixed point, argmax agreement ({rounding}): "
              f"{agree:.4f} of {n}")
    from alohac.learn import relaxation_lines
    print("\n".join(relaxation_lines(pact.relaxation)))
    prune_section(module, ctx, float_acc)


def qdq_agreement(module, test, exact: bool) -> tuple[float, int]:
    """Share of test images on which onnxruntime running our QDQ export picks the class our
    fixed-point simulation picks."""
    import onnxruntime as ort
    import torch

    from backends.onnx.qdq import export_qdq
    from runtime.torch.fixed import build_fixed
    model = export_qdq(module, exact)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    ours = []
    fixed = build_fixed(module, logits=True).eval()
    with torch.no_grad():
        for x, _ in test.batches(256):
            ours.append(fixed(torch.from_numpy(x)).argmax(1).numpy())
    theirs = np.concatenate([sess.run(None, {name: test.x[i:i + 1]})[0].argmax(1)
                             for i in range(len(test))])
    return float((np.concatenate(ours) == theirs).mean()), len(test)


def prune_section(module, ctx, float_acc: float) -> None:
    from passes.prune import PrunePass

    def pruned(**opts):
        m = clone_with_weights(module)
        PrunePass(**opts).apply(ctx, m)
        return ctx.report("prune")

    print(f"pruning (float accuracy {float_acc:.4f}; parameters and MACs as deployed)")
    for t in (0.5, 1.0, 1.5):
        r = timed(f"prune t={t}", lambda: pruned(threshold=t))
        print(f"  threshold t={t}: {r.params_removed} of {r.params_before} parameters removed "
              f"({100 * r.params_removed / r.params_before:.1f}%), MACs {r.macs_before} -> "
              f"{r.macs_after}, accuracy {r.accuracy_before:.4f} -> {r.accuracy_after:.4f}")
    r = timed("prune t=1.5 iterative (3 steps, 1 epoch each)",
              lambda: pruned(threshold=1.5, iterations=3, epochs=1))
    print(f"  threshold t=1.5 iterative: {r.params_removed} removed, accuracy "
          f"{r.accuracy_before:.4f} -> {r.accuracy_after:.4f}")
    for label, opts in (("kernel activity", {}),
                        ("kernel activity after sparsify=10 (2 epochs)",
                         {"sparsify": 10.0, "epochs": 2})):
        r = timed(label, lambda: pruned(method="activity", **opts))
        kernels = ", ".join(f"{lay.name} {lay.kernels_removed}+{lay.kernels_zeroed}/{lay.kernels}"
                            for lay in r.layers)
        print(f"  {label}: kernels removed+zeroed per layer: {kernels}; parameters "
              f"{r.params_before} -> {r.params_after}, MACs {r.macs_before} -> {r.macs_after}, "
              f"accuracy {r.accuracy_before:.4f} -> {r.accuracy_after:.4f} "
              f"({100 * (r.accuracy_after - r.accuracy_before):+.2f} points)")


if __name__ == "__main__":
    main()
