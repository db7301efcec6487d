"""The C kernel records, registered by nn op class (hls4ml's templates registered per layer
class): a record builder fills an actor view's `kernel` (the template macro that computes a
firing) and `args` (its geometry, weights, activation or requantisation) from the actor's nn
block."""

from __future__ import annotations

from collections.abc import Callable

from aloha_ir.dialects import nn
from aloha_ir.optable import registrar
from backends.codegen.context import BuildContext
from backends.codegen.view import ActorView

# (context, the actor's view, its nn block, the output channels [lo, hi) of a split actor or None)
RecordBuilder = Callable[[BuildContext, ActorView, nn.NnOp, tuple[int, int] | None], None]

KERNEL_RECORDS: dict[type[nn.NnOp], RecordBuilder] = {}


# `@kernel(nn.ConvOp)`: the decorated function is the record builder of the nn op classes named
kernel = registrar(KERNEL_RECORDS, "C kernel record")
