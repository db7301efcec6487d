"""Per-operator kernel records: which kernel computes an actor's firing, with what arguments.

One module per op family registers a record builder per nn op class (`@kernel(nn.ConvOp)`);
`kernel_record` looks the actor's block up in `KERNEL_RECORDS`. Boundary actors (input, output)
and the gathers of split actors need no nn op's record.

`KERNEL_RECORDS` is the one list of the nn ops the C kernel library computes: `check_kernels`
refuses, before anything is generated, a graph with an op outside it (a platform's .arch may list
an op in a PE's `ops`, so the mapping places it and the analyses predict it, without a C kernel)."""

from __future__ import annotations

from aloha_ir import fixedpoint as fp
from aloha_ir.dialects import csdf, nn
from aloha_ir.errors import UnsupportedError
from backends.codegen.context import BuildContext
# the family modules register their builders in KERNEL_RECORDS when imported
from backends.codegen.kernels import (activation, elementwise, layout, linear,  # noqa: F401
                                      normalization, pool, reduce, resize)
from backends.codegen.kernels.registry import KERNEL_RECORDS, kernel
from backends.codegen.view import ActorView

__all__ = ["KERNEL_RECORDS", "check_kernels", "kernel", "kernel_record"]

# actors that compute no nn op of their own (a gather copies the parts of a split actor)
RECORDLESS_KINDS = ("input", "output", "gather")


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
    KERNEL_RECORDS[type(block)](b, view, block, lo_hi)  # check_kernels has refused the others


def check_kernels(graph: csdf.GraphOp, blocks: dict) -> None:
    """Refuse `graph` (its nn blocks by name: `blocks`) if an actor computes an nn op that has no
    C kernel record: one UnsupportedError naming every such op with its nodes, and the ops the
    kernel library has."""
    missing: dict[str, list[str]] = {}
    for actor in graph.actors():
        block = actor.block_in(blocks) if actor.kind.data not in RECORDLESS_KINDS else None
        if block is not None and type(block) not in KERNEL_RECORDS:
            nodes = missing.setdefault(block.name, [])
            label = nn.block_label(block) or actor.sym_name.data
            if label not in nodes:
                nodes.append(label)
    if missing:
        ops = "; ".join(f"{op} (node {', '.join(repr(n) for n in nodes)})"
                        for op, nodes in sorted(missing.items()))
        have = ", ".join(sorted(op.name for op in KERNEL_RECORDS))
        raise UnsupportedError(f"the C kernel library has no kernel for {ops}",
                               hint=f"`alohac analyze` predicts the model; the kernels are {have}")


def _shape_of_block(view: ActorView, block, b: BuildContext) -> None:
    if block is None:
        return
    view.out_shape = tuple(nn.shape_of(block.results[0]))
    if b.fixed:
        view.out_frac = fp.format_of(block.results[0]).frac
