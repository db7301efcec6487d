"""Cost figures of nn blocks, as DESIGN.md's contract defines them.

- macs: multiply-accumulates of conv and dense layers, bias not counted;
- params: elements of the parameter tensors (every nn.const a block reads);
- activation bytes: the size of a block's output tensor;
- pruned weights (blocks the `prune` pass annotated): weights equal to the block's collapse value
  (`pruning.value`, the layer mean the threshold method collapses to; 0 when absent). Deployed
  mean-subtracted, they are zeros that are neither stored nor multiplied; the mean's share is
  added back as mean x the window sum of the input, one sum per output position and group, whose
  additions `sparse_macs` counts as MACs.
"""

from __future__ import annotations

import math

import numpy as np
from xdsl.dialects.builtin import DictionaryAttr, FloatAttr
from xdsl.ir import Operation

from aloha_ir.consts import const_tensor
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


def pruned_weights(op: Operation, store) -> int:
    """Weights of a pruned conv/dense block equal to its collapse value (0 for other blocks)."""
    pruning = op.attributes.get("pruning")
    if not isinstance(op, (ConvOp, DenseOp)) or not isinstance(pruning, DictionaryAttr) or \
            not isinstance(op.weight.owner, ConstOp):
        return 0
    w = const_tensor(op.weight.owner, store).materialize()
    return int(np.count_nonzero(w == np.float32(collapse_value(op))))


def collapse_value(op: Operation) -> float:
    pruning = op.attributes.get("pruning")
    value = pruning.data.get("value") if isinstance(pruning, DictionaryAttr) else None
    return float(value.value.data) if isinstance(value, FloatAttr) else 0.0


def sparse_macs(op: Operation, pruned: int) -> int:
    """MACs left when `pruned` weights are skipped, plus the mean correction's window sums."""
    macs = block_macs(op)
    if not pruned:
        return macs
    size = math.prod(shape_of(op.weight))
    kept = macs * (size - pruned) // size
    if collapse_value(op) == 0.0:
        return kept
    out = shape_of(op.output)
    if isinstance(op, DenseOp):
        return kept + out[0] * shape_of(op.weight)[1]
    w = shape_of(op.weight)
    group = op.prop_int("group", 1)
    return kept + math.prod(out) // out[1] * group * w[1] * w[2] * w[3]


def is_block(op: Operation) -> bool:
    """Blocks of the seeds' DNN(B, E): everything but constants and the output marker."""
    return not isinstance(op, (ConstOp, OutputOp))
