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
from collections.abc import Callable

import numpy as np
from xdsl.dialects.builtin import DictionaryAttr, FloatAttr
from xdsl.ir import Operation

from aloha_ir.consts import const_tensor
from aloha_ir.dialects.nn import (ActOp, AddOp, BatchNormOp, ChannelShuffleOp, ConcatOp, ConstOp,
                                  ConvOp, DenseOp, DropoutOp, FlattenOp, GraphOp, InputOp, LrnOp, MulOp,
                                  OutputOp, PadOp, PoolOp, ReduceOp, ReshapeOp, ResizeOp,
                                  SliceOp, TransposeOp, shape_of, tensor_bytes)
from aloha_ir.errors import InternalError
from aloha_ir.optable import registrar


MacsRule = Callable[[Operation], int]

# nn op class -> the multiply-accumulates of one block of it (every block has a rule:
# tests/test_op_coverage.py checks)
MACS: dict[type[Operation], MacsRule] = {}

# `@macs(nn.ConvOp)`: the decorated function counts the MACs of the nn op classes named
macs = registrar(MACS, "MAC rule")


@macs(ConvOp)
def conv_macs(op: ConvOp) -> int:
    """One per weight of a group's kernel per output element: prod(out) x C_in/group x kh x kw."""
    w = shape_of(op.weight)  # [C_out, C_in/group, kh, kw]
    return math.prod(shape_of(op.output)) * w[1] * w[2] * w[3]


@macs(DenseOp)
def dense_macs(op: DenseOp) -> int:
    """K per output element: N x M x K."""
    n, m = shape_of(op.output)
    return n * m * shape_of(op.weight)[1]


@macs(InputOp, PoolOp, AddOp, MulOp, ConcatOp, ActOp, LrnOp, BatchNormOp, ReshapeOp, FlattenOp,
      TransposeOp, SliceOp, ChannelShuffleOp, PadOp, ResizeOp, ReduceOp, DropoutOp)
def no_macs(op: Operation) -> int:
    """None: DESIGN.md's contract counts the multiply-accumulates of conv and dense layers only.
    The input streams values in; pooling, padding, resizing, concatenation and the layout ops move,
    compare or average elements; activations, add, mul and batch norm work element by element; LRN's
    squares over neighbouring channels and a mean's sums are normalisations, not layer MACs. What
    these blocks compute is the `work` of their actor (passes/convert_nn_to_csdf.py's row plans)."""
    return 0


def block_macs(op: Operation) -> int:
    """The MACs of block `op` by its rule in MACS (bias not counted)."""
    rule = MACS.get(type(op))
    if rule is None:
        raise InternalError(f"no MAC rule for {op.name}: register one with "
                            "aloha_ir.cost's @macs")
    return rule(op)


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
    # one window sum per output position and group: the MACs of one output channel per group
    # (conv: prod(out) / C_out x group x C_in/group x kh x kw; dense: N x K)
    return kept + macs * op.prop_int("group", 1) // shape_of(op.output)[1]


def is_block(op: Operation) -> bool:
    """Blocks of the seeds' DNN(B, E): everything but constants and the output marker."""
    return not isinstance(op, (ConstOp, OutputOp))
