"""`quantize`: power-of-two fixed-point formats for every tensor of an nn graph.

The result is the IR's own: every block's result type becomes `!nn.fixed<bits, frac[, unsigned]>`,
weights carry their format in the constant's type (and a `fracs` attribute per output channel when
`granularity=channel`), biases live in the accumulator's format (32 bits). Executors read formats from
types; aloha_ir.fixedpoint defines the arithmetic.

Methods (`method=`, the CLI's `--method`):
- `ptq`: naive post-training quantization. Weights: the smallest format holding max |w| (per layer or
  output channel). Activations: the range seen on calibration images (max, or a percentile of |x|).
- `pact`, `dorefa`, `inq`: quantization-aware fine-tuning in torch (runtime/torch/qat.py), with the
  precision-relaxation heuristic for pact and dorefa, fitted to the epoch budget (the report's
  `relaxation`: plan, drops, whether the target was reached and why not); then the trained network
  is snapped to power-of-two formats and the accuracy after snapping is what is reported.
  `insert_bn=true` (pact, dorefa) follows the seeds' scheme: a batch norm after every convolution
  that lacks one while training, folded into the convolution before the final power-of-two phase.
The precision-exploration grid (`grid` in this module) evaluates (weight bits, activation bits) pairs
without training and suggests the relaxation's starting point.

The pass needs data: `data=SPEC` (frontends.datasets) or the driver's `--data` (ctx.dataset).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, ModuleOp, StringAttr, i64
from xdsl.ir import SSAValue

from aloha_ir import fixedpoint as fp
from aloha_ir.analysis import NN, Requires
from aloha_ir.context import record_reports
from aloha_ir.dialects import nn
from aloha_ir.errors import PassError, UsageError
from aloha_ir.passmanager import TransformPass
from aloha_ir.weights import weights_of
from passes.execution import accuracy, check_finite_weights, dataset_for, near_chance
from quant.formats import apply_formats, check_bits, choose_formats, format_table

METHODS = ("ptq", "pact", "dorefa", "inq")


# ---------------------------------------------------------------------------------------------------
# The pass


@dataclass
class QuantizeReport:
    graph: str
    method: str
    weight_bits: int
    activation_bits: int
    granularity: str
    float_accuracy: float | None
    quantized_accuracy: float | None
    formats: dict[str, dict]
    log: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    relaxation: dict | None = None  # pact/dorefa: plan, steps, reached_target, reason
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        from dataclasses import asdict
        return asdict(self)


@dataclass(frozen=True)
class QuantizePass(TransformPass):
    """Power-of-two fixed-point formats: naive PTQ, or PACT/DoReFa/INQ fine-tuning then snapping."""

    name = "quantize"
    requires = Requires(level=NN, data=True)

    method: str = "ptq"
    bits: int = 8
    abits: int = 0
    granularity: str = "layer"
    data: str = ""
    calibration: str = "max"
    percentile: float = 99.99
    samples: int = 512
    evaluate: bool = True
    # fine-tuning (pact/dorefa/inq); Table 4's relaxation parameters are the defaults
    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 64
    start_bits: float = 16.0
    start_abits: float = 0.0  # the activations' start (0: start_bits)
    relaxation_factor: float = math.sqrt(2.0)
    delta_loss_window: int = 0  # 0: Table 4's 20 epochs, shortened to fit the epoch budget
    delta_loss_avg_thresh: float = 5.0
    delta_loss_stdev_thresh: float = 5.0
    stale_checks: int = 2
    loss_target: float = 100.0
    insert_bn: bool = False
    checkpoint: str = ""
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise PassError(f"unknown quantization method '{self.method}'",
                            hint="methods: " + ", ".join(METHODS))
        if self.granularity not in ("layer", "channel"):
            raise PassError("granularity must be layer or channel")
        if self.calibration not in ("max", "percentile"):
            raise PassError("calibration must be max or percentile")
        check_bits(self.bits, self.abits or self.bits)
        if self.method in ("pact", "dorefa"):
            self._check_relaxation()
        if self.insert_bn and self.method not in ("pact", "dorefa"):
            raise PassError("insert_bn goes with the pact and dorefa fine-tuning",
                            hint="ptq does not train; inq's power-of-two weights would not "
                                 "survive folding")

    def _check_relaxation(self) -> None:
        for what, start, target in (("start_bits", self.start_bits, self.bits),
                                    ("start_abits", self.start_abits or self.start_bits,
                                     self.activation_bits)):
            if not fp.MIN_BITS <= start <= fp.MAX_BITS:
                raise UsageError(f"{what} {start:g} is outside {fp.MIN_BITS}..{fp.MAX_BITS}",
                                 hint="the relaxation starts from a fixed-point precision")
            if start < target:
                raise UsageError(f"{what} {start:g} is below the target {target} bits",
                                 hint="the relaxation lowers the precision from the start to the "
                                      "target: start at or above it")
        rules = [(self.relaxation_factor > 1, "relaxation_factor", "> 1"),
                 (self.delta_loss_window >= 0, "delta_loss_window", ">= 0 (0: automatic)"),
                 (self.stale_checks >= 1, "stale_checks", ">= 1"), (self.epochs >= 1, "epochs",
                                                                    ">= 1")]
        for ok, option, rule in rules:
            if not ok:
                raise UsageError(f"quantize: {option} must be {rule}, got "
                                 f"{getattr(self, option)}")

    @property
    def activation_bits(self) -> int:
        return self.abits or self.bits

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        from aloha_ir.dialects.nn import graph_of
        graph = graph_of(op)
        store = weights_of(op)
        if any(fp.format_of(o.results[0]) for o in graph.ops if o.results):
            raise PassError(f"@{graph.sym_name.data} is already quantized",
                            hint="quantize the float model")
        for o in graph.ops:
            if isinstance(o, nn.BatchNormOp) and len(o.params) == 4:
                raise PassError("batch norms with statistics must be folded first",
                                hint="run canonicalize before quantize")
        check_finite_weights(graph, store)
        splits = dataset_for(ctx, self.data, graph, self.name)
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        float_acc = self._float_accuracy(op, splits) if self.evaluate else None
        seconds["float_eval"] = time.perf_counter() - t0
        untrained = near_chance(float_acc, splits.test)
        log: list[dict] = []
        trained: dict = {}
        relaxation = None
        if self.method != "ptq":
            from runtime.torch.qat import fine_tune
            t0 = time.perf_counter()
            log, trained, relaxation = fine_tune(op, splits, self, _fold_batchnorms)
            seconds["fine_tune"] = time.perf_counter() - t0
        from runtime.torch.calibrate import calibrate
        t0 = time.perf_counter()
        stats = calibrate(op, splits.train, self.samples,
                          self.percentile if self.calibration == "percentile" else None)
        stats.update(trained)  # PACT's trained clip levels are the activation ranges
        formats = choose_formats(graph, store, stats, self.bits, self.activation_bits,
                                 self.granularity == "channel",
                                 input_bits=min(fp.MAX_BITS, max(self.activation_bits, 8)))
        apply_formats(graph, formats)
        seconds["calibrate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        q_acc = self._fixed_accuracy(op, splits) if self.evaluate else None
        seconds["fixed_eval"] = time.perf_counter() - t0
        graph.attributes["quantization"] = DictionaryAttr({
            "method": StringAttr(self.method), "weight_bits": IntegerAttr(self.bits, i64),
            "activation_bits": IntegerAttr(self.activation_bits, i64),
            "granularity": StringAttr(self.granularity)})
        record_reports(ctx, self.name, {graph.sym_name.data: QuantizeReport(
            graph.sym_name.data, self.method, self.bits, self.activation_bits, self.granularity,
            float_acc, q_acc, format_table(graph), log, seconds, relaxation,
            [untrained] if untrained else [])})

    def _float_accuracy(self, module: ModuleOp, splits) -> float:
        from runtime.torch.module import build
        return accuracy(build(module, logits=True), splits.test)

    def _fixed_accuracy(self, module: ModuleOp, splits) -> float:
        from runtime.torch.fixed import build_fixed
        return accuracy(build_fixed(module, logits=True), splits.test)


def _fold_batchnorms(module: ModuleOp) -> None:
    """Fold the batch norms fine-tuning inserted into their convolutions (canonicalize)."""
    from aloha_ir.context import make_context
    from aloha_ir.passmanager import PassManager
    PassManager.parse("canonicalize").run(module, make_context())


# ---------------------------------------------------------------------------------------------------
# Precision exploration (the deliverable's section 2.4.4.1)


@dataclass
class GridResult:
    float_accuracy: float
    points: list[dict]            # {"weight_bits", "activation_bits", "accuracy"}
    suggested: dict | None        # the relaxation's suggested starting point
    threshold: float = 0.95

    def suggestion(self) -> str:
        """The suggested relaxation start in words, with the option that applies it; when no
        point falls below the threshold, what that means."""
        if self.suggested:
            w, a = self.suggested["weight_bits"], self.suggested["activation_bits"]
            return (f"suggested relaxation start: W{w} A{a} (accuracy "
                    f"{self.suggested['accuracy']:.4f}, the most accurate grid point below "
                    f"{self.threshold:.0%} of the float {self.float_accuracy:.4f}): "
                    f"--start-bits {w},{a}")
        w = min(p["weight_bits"] for p in self.points)
        a = min(p["activation_bits"] for p in self.points)
        low = min(p["accuracy"] for p in self.points)
        return (f"suggested relaxation start: none: every grid point down to W{w} A{a} keeps at "
                f"least {self.threshold:.0%} of the float accuracy {self.float_accuracy:.4f} "
                f"(lowest {low:.4f}), so naive quantization (--method ptq) needs no relaxation "
                "at these precisions")

    def to_json(self) -> dict:
        from dataclasses import asdict
        return {**asdict(self), "suggestion": self.suggestion()}


def explore_precision(module: ModuleOp, splits, weight_bits=(16, 12, 8, 6, 4),
                      activation_bits=(16, 12, 8, 6, 4), per_channel: bool = False,
                      samples: int = 512, threshold: float = 0.95) -> GridResult:
    """Naive quantization of every (weight bits, activation bits) pair, without training, evaluated
    on the validation split. Suggested start: the most accurate configuration whose accuracy is
    below `threshold` x float accuracy (the first one that is no longer comparable to float)."""
    from aloha_ir.weights import clone_with_weights
    from aloha_ir.dialects.nn import graph_of
    from runtime.torch.calibrate import calibrate
    from runtime.torch.fixed import build_fixed
    from runtime.torch.module import build
    check_bits(*weight_bits, *activation_bits)
    float_acc = accuracy(build(module, logits=True), splits.val)
    stats = calibrate(module, splits.train, samples, None)
    store = weights_of(module)
    points = []
    for wb in weight_bits:
        for ab in activation_bits:
            trial = clone_with_weights(module)
            g = graph_of(trial)
            by_index = {v: stats[o] for o, v in zip(_values(graph_of(module)), _values(g))}
            apply_formats(g, choose_formats(g, store, by_index, wb, ab, per_channel,
                                            input_bits=min(fp.MAX_BITS, max(ab, 8))))
            points.append({"weight_bits": wb, "activation_bits": ab,
                           "accuracy": accuracy(build_fixed(trial, logits=True), splits.val)})
    below = [p for p in points if p["accuracy"] < threshold * float_acc]
    suggested = max(below, key=lambda p: (p["accuracy"], p["weight_bits"] + p["activation_bits"])) \
        if below else None
    return GridResult(float_acc, points, suggested, threshold)


def _values(graph: nn.GraphOp) -> list[SSAValue]:
    return [op.results[0] for op in graph.ops if op.results and not isinstance(op, nn.ConstOp)]
