"""What a kernel record is built from: the nn blocks of the mapped graph, whether they compute in
fixed point (then the bit-exact reference's integer constants and formats), and the weights blob
the records' constants go to."""

from __future__ import annotations

import numpy as np

from aloha_ir import fixedpoint as fp
from aloha_ir.consts import const_tensor
from aloha_ir.dialects import csdf, nn
from aloha_ir.errors import UnsupportedError
from aloha_ir.weights import weights_of
from backends.codegen.records import ACT, act_record, plain_rq
from backends.codegen.view import TensorView
from backends.codegen.weights import WeightBlob
from passes.target import nn_blocks


class BuildContext:
    """The state the kernel record builders of one view share."""

    def __init__(self, module, graph: csdf.GraphOp):
        self.blocks = nn_blocks(module, graph)
        nn_graph = next(iter(self.blocks.values())).parent_op() if self.blocks else None
        self.nn_graph = nn_graph
        self.store = weights_of(module)
        self.fixed = any(fp.format_of(op.results[0]) is not None for op in nn_graph.ops
                         if op.results and not isinstance(op, nn.ConstOp))
        self.ref = None
        if self.fixed:
            from runtime.reference import FixedReference
            self.ref = FixedReference(nn_graph, self.store)
        self.weights = WeightBlob()

    # -- constants ------------------------------------------------------------------------------
    def const(self, v, name: str) -> TensorView:
        op = v.owner
        if self.fixed:
            return self.weights.add(v, name, self.ref.consts[v], fp.storage_of(fp.format_of(v)))
        return self.weights.add(v, name, const_tensor(op, self.store).materialize(), fp.FLOAT32)

    def bias_acc(self, op, index: int, acc_frac, name: str) -> TensorView | None:
        """A conv/dense/bn bias in the accumulator's format (the reference's `_bias`): int32."""
        if len(op.operands) <= index:
            return None
        b = op.operands[index]
        if not self.fixed:
            return self.const(b, name)
        q = self.ref.consts[b]
        real = fp.dequantize(q, self.ref.frac(b)) if fp.format_of(b) else q
        acc = np.broadcast_to(np.asarray(acc_frac), np.shape(real)) if np.ndim(acc_frac) else acc_frac
        return self.weights.add((b, "acc"), name, fp.quantize(real, acc, fp.BIAS_BITS), fp.INT32)

    def frac(self, v):
        return self.ref.frac(v)

    # -- activation / requantisation ------------------------------------------------------------
    @staticmethod
    def act(op) -> dict:
        fused = op.fused_activation() if isinstance(op, nn.FusedActivation) else None
        kind, params = (fused[0], fused[1]) if fused else (None, ())
        return act_record(kind, params)

    def rq(self, op, shift, channels: int, name: str, act: bool = True) -> dict:
        """The requantisation record of `op` given shift = acc_frac - out_frac (scalar or per
        output channel)."""
        fmt = fp.format_of(op.results[0])
        fused = op.fused_activation() if act and isinstance(op, nn.FusedActivation) else None
        kind = fused[0] if fused else None
        rec = plain_rq(op, 0)
        rec["kind"] = ACT[kind]
        if kind == "leaky_relu":
            rec["leaky_mult"] = fp.leaky_multiplier(fused[1][0])
        elif kind == "clip":
            rec["clip_lo"], rec["clip_hi"] = fp.clip_bounds(fused[1][0], fused[1][1], fmt)
        elif kind not in (None, "relu"):
            raise UnsupportedError(f"fused activation {kind} has no fixed-point requantisation",
                                   where=name)
        s = np.asarray(shift, dtype=np.int64)
        if s.ndim and len(set(s.tolist())) > 1:
            full = np.broadcast_to(s, (channels,)) if s.size == 1 else s
            rec["shift"] = self.weights.add(("shift", name), f"{name}_shift", full, fp.INT32)
        else:
            rec["shift0"] = int(s.reshape(-1)[0]) if s.ndim else int(s)
        return rec
