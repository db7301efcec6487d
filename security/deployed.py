"""Security of the deployed model: the float model and its fixed-point deployment attacked side by
side, and the float model's adversarial examples transferred to the deployment (issue 23 item 2).

The deployed forward pass is the bit-exact fixed-point executor (runtime/torch/fixed.py), which
equals the numpy reference bit for bit (tests/test_fixedpoint.py, test_quantize.py), which the
generated C equals bit for bit on every backend (tests/test_backends.py, test_layer_kernels.py);
tests/test_security_deployed.py closes the loop on the attack's own examples, run through the host
C program alohac compiles. Gradients go through the executor's straight-through estimators of the
rounding (BPDA: floor's gradient taken as 1, saturation as clamp).

The final check is the program's: an example counts as adversarial when the deployed graph's
output as the program computes it -- the last layer included, a softmax quantized to the output
format too -- has its first maximum at another class than the label. The attack itself steers
by the logits before the softmax (a quantized softmax's plateaus give no direction); where the two
decisions differ (ties the softmax's rounding creates), the program's decision is the one reported
and `surrogate_disagreements` counts them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from aloha_ir.errors import InputFileError, UsageError
from security.evaluate import (SecurityConfig, SecurityReport, attack_label, curve_average, epsilon_axes, evaluate,
                               level_of)


@dataclass
class DeployedReport:
    """The float and the deployed curves over the same samples and epsilons, and the deployed
    program's accuracy on the float model's adversarial examples (`transfer_accuracy`)."""

    model: str
    precision: str  # e.g. "fixed point W8/A8"
    float_report: SecurityReport
    deployed_report: SecurityReport
    transfer_accuracy: list[float]
    transfer_average: float
    transfer_rate: list[float | None]  # of the float's successful examples, the share that fool
    # the deployment too (None where the float attack had no success on a sample both get right)
    surrogate_disagreements: int
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"model": self.model, "precision": self.precision, "eps": self.float_report.eps,
                "float": self.float_report.to_json(), "deployed": self.deployed_report.to_json(),
                "transfer": {"accuracy": self.transfer_accuracy,
                             "curve_average": self.transfer_average,
                             "transfer_rate": self.transfer_rate},
                "surrogate_disagreements": self.surrogate_disagreements,
                "seconds": self.seconds, "notes": self.notes}


def quantize_ptq(module, bits: int, data: str, seed: int = 0):
    """A copy of the float `module` quantized as `alohac quantize MODEL --data DATA --bits BITS`
    does by default: canonicalize, then naive PTQ calibrated on DATA's training split."""
    from aloha_ir.context import make_context
    from aloha_ir.passmanager import PassManager
    from aloha_ir.weights import clone_with_weights
    from quant.formats import check_bits
    check_bits(bits)
    q = clone_with_weights(module)
    spec = data.replace('"', '\\"')
    PassManager.parse(f'canonicalize,quantize{{bits={bits} data="{spec}" seed={seed}}}').run(
        q, make_context())
    return q


def load_deployed(path: str, float_module):
    """An already-quantized model (an .mlir alohac quantize wrote, or a QDQ ONNX) to compare with
    the float one: it must be fixed point and take the float model's input shape."""
    from aloha_ir.dialects import nn
    from aloha_ir.dialects.nn import graph_of
    from frontends.loader import load_model
    from security.evaluate import is_quantized
    module = load_model(path)
    graph = graph_of(module)
    if not is_quantized(graph):
        raise InputFileError("not a fixed-point model", where=path,
                             hint="give --deployed BITS to quantize the float model here, or a "
                                  "model `alohac quantize` wrote")

    def shape(g):
        inp = next(op for op in g.ops if isinstance(op, nn.InputOp))
        return tuple(inp.output.type.get_shape()[1:])
    if shape(graph) != shape(graph_of(float_module)):
        raise InputFileError(f"its input shape {shape(graph)} is not the float model's "
                             f"{shape(graph_of(float_module))}", where=path)
    return module


def to_model_range(x01: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Attack-space inputs in [0, 1] as the model (and the generated program's input file) takes
    them: float32, computed as the attacked model computes them (security.evaluate.torch_model)."""
    import torch
    return (torch.from_numpy(np.ascontiguousarray(x01)).float() * (hi - lo) + lo).numpy()


def program_outputs(module, x01: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The deployed graph's outputs, as the generated program writes them (float32, the final
    softmax included), for inputs in [0, 1]."""
    import torch

    from runtime.torch.fixed import build_fixed
    net = build_fixed(module)
    with torch.no_grad():
        y = net(torch.from_numpy(to_model_range(x01, lo, hi)))
    return y.reshape(len(x01), -1).numpy().astype(np.float32)


def program_correct(module, x01: np.ndarray, y: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Per sample: the program's first maximal output is the label."""
    return program_outputs(module, x01, lo, hi).argmax(1) == y


def evaluate_deployed(float_module, deployed_module, x01: np.ndarray, y: np.ndarray,
                      config: SecurityConfig, *, input_range: tuple[float, float],
                      name: str = "model", precision: str = "fixed point",
                      progress=None) -> tuple[DeployedReport, np.ndarray, np.ndarray]:
    """Both curves over the same samples and epsilons; returns the report and the adversarial
    inputs [eps, N, ...] of the float and of the deployed model (in [0, 1])."""
    from security.evaluate import is_quantized
    from aloha_ir.dialects.nn import graph_of
    if is_quantized(graph_of(float_module)):
        raise UsageError("the model is already fixed point: give the float model and --deployed "
                         "BITS (or the quantized model as --deployed FILE)")
    if not is_quantized(graph_of(deployed_module)):
        raise UsageError("the deployed model is not fixed point")
    t0 = time.perf_counter()
    lo, hi = input_range
    fr, fadv = evaluate(float_module, x01, y, config, input_range=input_range, name=name,
                        progress=progress, keep_adversarial=True)
    dr, dadv, disagreements = evaluate_program(deployed_module, x01, y, config,
                                               input_range=input_range,
                                               name=f"{name} ({precision})", progress=progress)
    picked = np.asarray(dr.sample_indices)  # the samples both evaluations drew
    x, labels = x01[picked], y[picked]
    right_clean = program_correct(deployed_module, x, labels, lo, hi)
    float_clean = _correct(float_module, x, labels, input_range)
    transfer, rate = [], []
    for a in fadv:
        ok = program_correct(deployed_module, a, labels, lo, hi)
        transfer.append(float(ok.mean()))
        fooled_float = float_clean & right_clean & ~_correct(float_module, a, labels, input_range)
        rate.append(float((~ok[fooled_float]).mean()) if fooled_float.any() else None)
    report = DeployedReport(name, precision, fr, dr, transfer,
                            curve_average(fr.eps, transfer), rate, disagreements)
    report.seconds = time.perf_counter() - t0
    return report, fadv, dadv


def evaluate_program(deployed_module, x01: np.ndarray, y: np.ndarray, config: SecurityConfig, *,
                     input_range: tuple[float, float], name: str = "model",
                     progress=None) -> tuple[SecurityReport, np.ndarray, int]:
    """The deployed model's curve: attacked through the executor (straight-through gradients),
    every clean and adversarial input's verdict the program's decision. Returns the report, the
    adversarial inputs [eps, N, ...] and how many decisions the attack's logits got otherwise."""
    report, adv = evaluate(deployed_module, x01, y, config, input_range=input_range, name=name,
                           progress=progress, keep_adversarial=True)
    picked = np.asarray(report.sample_indices)
    disagreements = _program_check(report, deployed_module, x01[picked], y[picked], adv,
                                   input_range)
    return report, adv, disagreements


def narrowest_bits(module) -> int | None:
    """The narrowest fixed-point format of a deployed model's weights and activations, the
    precision more bits would widen (None: float)."""
    from aloha_ir.fixedpoint import format_of
    widths = [f.bits for op in module.walk() for f in map(format_of, op.results)
              if f is not None]
    return min(widths, default=None)


def _correct(module, x01, y, input_range) -> np.ndarray:
    import torch

    from security.evaluate import torch_model
    with torch.no_grad():
        out = torch_model(module, *input_range)(torch.from_numpy(np.ascontiguousarray(x01)))
    return out.reshape(len(x01), -1).argmax(1).numpy() == y


def _program_check(report: SecurityReport, module, x01, y, adv, input_range) -> int:
    """The deployed curve re-read by the program's decision on each adversarial example (and the
    clean inputs); returns how many decisions the attack's logits got otherwise."""
    lo, hi = input_range
    disagreements = 0
    accuracy = []
    for a in adv:
        ok = program_correct(module, a, y, lo, hi)
        disagreements += int((ok != _correct(module, a, y, input_range)).sum())
        accuracy.append(float(ok.mean()))
    report.clean_accuracy = float(program_correct(module, x01, y, lo, hi).mean())
    report.accuracy = accuracy
    report.curve_average = curve_average(report.eps, accuracy)
    report.level, report.kept = level_of(report.curve_average, report.clean_accuracy)
    return disagreements


def plot_deployed(report: DeployedReport, path: str, title: str | None = None) -> str:
    """The float and the deployed curves on one axes, with the deployment's accuracy on the float
    model's adversarial examples (transfer), as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fr, dr = report.float_report, report.deployed_report
    label = attack_label(fr)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(fr.eps, fr.accuracy, "-o", color="C0", ms=3,
            label=f"float: {label} (avg {fr.curve_average:.3f}, {fr.level})")
    ax.plot(dr.eps, dr.accuracy, "-s", color="C3", ms=3,
            label=f"deployed ({report.precision}): {label} (avg {dr.curve_average:.3f}, "
                  f"{dr.level})")
    ax.plot(fr.eps, report.transfer_accuracy, "--", color="C2",
            label=f"deployed on the float's examples (avg {report.transfer_average:.3f})")
    epsilon_axes(ax, fr.norm, "accuracy")
    ax.set_title(title or f"float vs deployed: {report.model}, {fr.samples} samples", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")  # the curves fall from the upper left
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
