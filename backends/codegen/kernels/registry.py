"""The C kernel records, registered by nn op class (hls4ml's templates registered per layer
class): a record builder fills an actor view's `kernel` (the template macro that computes a
firing) and `args` (its geometry, weights, activation or requantisation) from the actor's nn
block."""

from __future__ import annotations

from collections.abc import Callable

from aloha_ir.dialects import nn
from aloha_ir.errors import InternalError
from backends.codegen.context import BuildContext
from backends.codegen.view import ActorView

# (context, the actor's view, its nn block, the output channels [lo, hi) of a split actor or None)
RecordBuilder = Callable[[BuildContext, ActorView, nn.NnOp, tuple[int, int] | None], None]

KERNEL_RECORDS: dict[type[nn.NnOp], RecordBuilder] = {}


def kernel(*ops: type[nn.NnOp]) -> Callable[[RecordBuilder], RecordBuilder]:
    """Register the decorated function as the record builder of the nn op classes `ops`."""
    def register(builder: RecordBuilder) -> RecordBuilder:
        for op in ops:
            if op in KERNEL_RECORDS:
                raise InternalError(f"{op.name} has two C kernel records: "
                                    f"{KERNEL_RECORDS[op].__name__} and {builder.__name__}")
            KERNEL_RECORDS[op] = builder
        return builder
    return register
