"""Cost figures of nn blocks, as DESIGN.md's contract defines them.

- macs: multiply-accumulates of conv and dense layers, bias not counted;
- params: elements of the parameter tensors (every nn.const a block reads);
- activation bytes: the size of a block's output tensor.
"""

from __future__ import annotations

import math

from xdsl.ir import Operation

from aloha_ir.dialects.nn import ConstOp, ConvOp, DenseOp, GraphOp, OutputOp, shape_of, tensor_bytes


def block_macs(op: Operation) -> int:
    if isinstance(op, ConvOp):
        w = shape_of(op.weight)  # [C_out, C_in/group, kh, kw]
        return math.prod(shape_of(op.output)) * w[1] * w[2] * w[3]
    if isinstance(op, DenseOp):
        n, m = shape_of(op.output)
        return n * m * shape_of(op.weight)[1]
    return 0


def block_params(op: Operation) -> int:
    """Elements of the constants `op` reads (a constant shared by two blocks counts for each)."""
    return sum(math.prod(shape_of(v)) for v in op.operands if isinstance(v.owner, ConstOp))


def activation_bytes(op: Operation) -> int:
    return sum(tensor_bytes(r.type) for r in op.results)


def count_params(graph: GraphOp) -> int:
    """Elements of all distinct constants of the graph that some block reads."""
    return sum(math.prod(shape_of(op.output)) for op in graph.ops
               if isinstance(op, ConstOp) and op.output.uses)


def is_block(op: Operation) -> bool:
    """Blocks of the seeds' DNN(B, E): everything but constants and the output marker."""
    return not isinstance(op, (ConstOp, OutputOp))
