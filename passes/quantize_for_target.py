"""`quantize-for-target`: a float model bound for a platform that computes in fixed point is
quantized before it is mapped, so the generated code runs the data type the report predicts.

Nothing happens when the graph is already quantized (its types give the precision; the report
carries the scale mapping of a model imported from QDQ, frontends/onnx/qdq.py) or when it is
deployed in float (the platform's data type, or `bits=32`, is f32). Otherwise the graph gets
power-of-two formats at the deployment width (`bits`, else the platform's default data type) by
the `quantize` pass's naive PTQ, per layer:

- with data (`data=SPEC` or the driver's `--data`): calibrated on `samples` inputs of it (the
  quantize pass's 512 by default);
- without data: calibrated on `samples` inputs (16 by default) drawn uniformly from the range the
  model's input declares (its `value_range`, else [0, 1]), with one bit of headroom on every
  activation for inputs the random ones did not cover. The accuracy of that deployment is
  unknown: the note says so, and `alohac quantize MODEL --data DATA` (or `--data` here)
  calibrates on real inputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, ModuleOp, StringAttr, i64

from aloha_ir.analysis import NN, Requires
from aloha_ir.context import record_reports
from aloha_ir.dialects import nn
from aloha_ir.errors import UnsupportedError
from aloha_ir.passmanager import TransformPass
from archdesc.model import DATATYPE_BITS
from passes.target import datatype_of, nn_precision, platform_of

HEADROOM = 2.0  # one integer bit more than the random calibration inputs needed


@dataclass
class QuantizeForTargetReport:
    graph: str
    platform: str
    datatype: str
    quantized: bool  # this pass quantized the graph
    calibration: str  # what the formats were calibrated on ("" when nothing was done)
    # a model imported from QDQ: block -> {"output"/"weight": {"scale", "step", "error"}}
    scale_mapping: dict = field(default_factory=dict)

    def note(self) -> str:
        """One line for the driver to print when the pass quantized the model."""
        return (f"{self.graph} is float and {self.platform} computes in {self.datatype}: "
                f"quantized it to {self.datatype} (PTQ, per-layer power-of-two formats) "
                f"calibrated on {self.calibration}")

    def to_json(self) -> dict:
        return asdict(self)


def uniform_inputs(graph: nn.GraphOp, samples: int, seed: int = 0):
    """`samples` inputs uniform in the model's declared input range ([0, 1] if none), as a
    dataset the quantize pass's calibration reads."""
    from frontends.datasets import Dataset, Normalization
    inp = next(op for op in graph.ops if isinstance(op, nn.InputOp))
    lo, hi = nn.floats(inp.value_range)[:2] if inp.value_range is not None else (0.0, 1.0)
    shape = tuple(nn.shape_of(inp.output)[1:])
    x = np.random.default_rng(seed).uniform(lo, hi, (samples,) + shape).astype(np.float32)
    data = Dataset("uniform", x, np.zeros(samples, dtype=np.int64), 1,
                   Normalization((float(lo), float(hi))), source="uniform random inputs")
    return data, (lo, hi)


@dataclass(frozen=True)
class QuantizeForTargetPass(TransformPass):
    """Quantize a float model for a platform without float (PTQ; random inputs if no data)."""

    name = "quantize-for-target"
    requires = Requires(level=NN, target=True)  # data if given, else random calibration inputs

    target: str = ""
    bits: int = 0
    data: str = ""
    samples: int = 0  # 0: 512 inputs of the data, or 16 random ones

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        from aloha_ir.dialects.nn import graph_of
        graph = graph_of(op)
        platform = platform_of(ctx, self.target, self.name)
        precision = nn_precision(graph)
        datatype = datatype_of(platform, self.bits, precision)
        report = QuantizeForTargetReport(graph.sym_name.data, platform.name, datatype, False, "")
        if precision is not None:
            from frontends.onnx.qdq import scale_mapping
            report.scale_mapping = scale_mapping(graph)
        if precision is None and datatype != "f32":
            inputs = [o for o in graph.ops if isinstance(o, nn.InputOp)]
            if len(inputs) > 1:  # the calibration data, random or a dataset, is one tensor
                raise UnsupportedError(
                    f"{graph.sym_name.data} has {len(inputs)} inputs "
                    f"({', '.join(repr(nn.block_label(i)) for i in inputs)}) and {platform.name} "
                    f"computes in {datatype}: calibrating it for {datatype} takes a model with "
                    "one input", where=self.name,
                    hint="give the inputs other than the data as initializers, or compile for a "
                    "platform with float (host-cpu)")
            bits = DATATYPE_BITS[datatype]
            if self.data or getattr(ctx, "dataset", None) is not None:
                report.calibration = self._with_data(ctx, op, bits)
            else:
                report.calibration = self._without_data(op, graph, bits)
            report.quantized = True
        record_reports(ctx, self.name, {graph.sym_name.data: report})

    def _with_data(self, ctx, op: ModuleOp, bits: int) -> str:
        from passes.quantize import QuantizePass
        q = QuantizePass(bits=bits, data=self.data, samples=self.samples or QuantizePass.samples,
                         evaluate=False)
        q.apply(ctx, op)
        return f"{q.samples} inputs of {self.data or 'the dataset of the context'}"

    def _without_data(self, op: ModuleOp, graph: nn.GraphOp, bits: int) -> str:
        from aloha_ir import fixedpoint as fp
        from aloha_ir.weights import weights_of
        from passes.execution import check_finite_weights
        from quant.formats import apply_formats, choose_formats
        from runtime.torch.calibrate import calibrate
        store = weights_of(op)
        check_finite_weights(graph, store)
        # whole batches of the graph's batch N, run N at a time: the ops are shaped for N items
        # (a reshape names the batch), so a larger batch would not fit them
        batch = nn.shape_of(next(o for o in graph.ops if isinstance(o, nn.InputOp)).output)[0]
        samples = -(-(self.samples or 16) // batch) * batch
        data, (lo, hi) = uniform_inputs(graph, samples)
        stats = calibrate(op, data, samples, None, **({"batch_size": batch} if batch > 1 else {}))
        for r in stats.values():
            r.lo, r.hi, r.level = r.lo * HEADROOM, r.hi * HEADROOM, r.level * HEADROOM
        apply_formats(graph, choose_formats(graph, store, stats, bits, bits, False,
                                            input_bits=min(fp.MAX_BITS, max(bits, 8))))
        graph.attributes["quantization"] = DictionaryAttr({
            "method": StringAttr("ptq"), "weight_bits": IntegerAttr(bits, i64),
            "activation_bits": IntegerAttr(bits, i64), "granularity": StringAttr("layer"),
            "calibration": StringAttr("uniform-random")})
        return (f"{samples} random inputs uniform in [{lo:g}, {hi:g}] (no --data given: "
                "one bit of headroom per activation; the accuracy is unknown -- pass --data DATA "
                "to calibrate on real inputs)")
