"""Per-operator kernel records: which kernel computes an actor's firing, with what arguments.

One module per op family registers a record builder per nn op class (`@kernel(nn.ConvOp)`);
`kernel_record` looks the actor's block up in `KERNEL_RECORDS`. Boundary actors (input, output)
and the gathers of split actors need no nn op's record."""

from __future__ import annotations

from aloha_ir import fixedpoint as fp
from aloha_ir.dialects import csdf, nn
from aloha_ir.errors import UnsupportedError
from backends.codegen.context import BuildContext
# the family modules register their builders in KERNEL_RECORDS when imported
from backends.codegen.kernels import (activation, elementwise, layout, linear,  # noqa: F401
                                      normalization, pool)
from backends.codegen.kernels.registry import KERNEL_RECORDS, kernel
from backends.codegen.view import ActorView

__all__ = ["KERNEL_RECORDS", "kernel", "kernel_record"]


def kernel_record(b: BuildContext, view: ActorView, actor: csdf.ActorOp, block) -> None:
    """Fill `view`'s kernel, arguments, output shape and debug dump of `actor`, whose nn block is
    `block` (None for the boundary actors)."""
    kind = actor.kind.data
    if kind in ("input", "output"):
        view.kernel = kind
        return
    if kind == "gather":
        view.kernel = "gather"
        view.args["parts"] = actor.parts
        view.dump = block is not None
        _shape_of_block(view, block, b)
        return
    if block is None:
        raise UnsupportedError(f"actor @{actor.sym_name.data} ({kind}) has no nn block")
    _shape_of_block(view, block, b)
    lo_hi = actor.split
    view.dump = True
    if lo_hi is not None:
        view.ref = {"channels": list(lo_hi)}
    builder = KERNEL_RECORDS.get(type(block))
    if builder is None:
        raise UnsupportedError(f"{block.name} ({view.name}) has no generated kernel",
                               hint="the host kernel library covers conv, pool, dense, add, mul, "
                               "batchnorm, concat (channels), activations, LRN, softmax, channel "
                               "shuffle, reshape/flatten")
    builder(b, view, block, lo_hi)


def _shape_of_block(view: ActorView, block, b: BuildContext) -> None:
    if block is None:
        return
    view.out_shape = tuple(nn.shape_of(block.results[0]))
    if b.fixed:
        view.out_frac = fp.format_of(block.results[0]).frac
