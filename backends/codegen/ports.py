"""The row calculus of each input port: how many rows a firing reads new, takes back from the
reuse self-loop and puts into it, from the row plan the lowering recorded on the channel that
feeds the port (`rows`, `shape`; the csdf verifier has checked it against the channel's and the
self-loop's rates) and whether the actor reads its inputs whole (`reads`); and which ports of a
per-item kernel hold one slice per batch item."""

from __future__ import annotations

import math
import re

from aloha_ir import rle, rowflow
from aloha_ir.dialects import csdf
from aloha_ir.errors import UnsupportedError
from backends.codegen.view import ActorView, PortView
from passes.analyze_memory import batch_items, item_sliced


def dims(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of one item of a rank-4 tensor; another rank is one row of all its elements."""
    if len(shape) == 4:
        return shape[1], shape[2], shape[3]
    return 1, 1, math.prod(shape)


def folded(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(N x C, H, W): the whole tensor as its rows hold it, batch folded into the channels."""
    if len(shape) == 4:
        return shape[0] * shape[1], shape[2], shape[3]
    return 1, 1, math.prod(shape)


def input_ports(graph: csdf.GraphOp, actor: csdf.ActorOp, fifo_index: dict[str, int]
                ) -> list[PortView]:
    """Input ports in port order, with the row calculus of the row plan each input channel records
    (a boundary actor -- input, output, gather, merge -- has none: it reads one row per firing)."""
    name = actor.sym_name.data
    ins = {c.dst_port.data: c for c in graph.channels() if c.dst_name == name and not c.is_self_loop}
    loops = {c.dst_port.data: c for c in graph.channels() if c.is_self_loop and c.dst_name == name}
    ports = []
    whole = actor.reads == "whole"
    # ports are in0, in1, ... (a gather's: in<port>_<part>, in that order)
    names = sorted(ins, key=lambda p: tuple(int(x) for x in re.findall(r"\d+", p)))
    expected = [f"in{k}" for k in range(len(ins))]
    if actor.kind.data != "gather" and names != expected:
        raise UnsupportedError(f"actor @{name} has input ports {names}, expected {expected}")
    for k, port in enumerate(names):
        ch = ins[port]
        if actor.reads is not None and ch.rows is None:
            raise UnsupportedError(f"channel @{ch.sym_name.data} into actor @{name} has no row "
                                   "plan (csdf.rows, csdf.shape)",
                                   hint="lower the nn graph again with convert-nn-to-csdf")
        shape = ch.shape if actor.reads is not None else None
        phases = actor.phase_count
        cons = rle.expand(ch.cons_runs)
        if shape is not None:
            h_rows, row_tokens = rowflow.rows_of(shape)
            plan = ch.rows  # the verifier checked it against the channel's and the loop's rates
            rates = rowflow.input_rates(list(zip(plan[0::2], plan[1::2])), h_rows)
            new, rin, rout = list(rates.new), list(rates.reuse_in), list(rates.reuse_out)
            c, h, w = dims(shape)
        else:
            row_tokens = max(cons) if max(cons) else 1
            new = [n // row_tokens for n in cons]
            rin = rout = [0] * phases
            c, h, w = 1, 1, row_tokens
        loop = loops.get(f"reuse_in{k}")
        if any(rout) and loop is None:
            raise UnsupportedError(f"actor @{name} port in{k}: reuse rows but no self-loop")
        window = sum(new) if whole else max(a + b for a, b in zip(new, rin))
        ports.append(PortView(fifo_index[ch.sym_name.data],
                              fifo_index[loop.sym_name.data] if loop is not None else -1,
                              row_tokens, whole, max(1, window), new, rin, rout, c, h, w,
                              tuple(shape) if shape is not None else ()))
    return ports


def mark_batch_items(view: ActorView, actor: csdf.ActorOp, block) -> None:
    """Mark a per-item kernel of a batch (N > 1; analyze_memory.batch_items says which) and which
    of its ports hold N item slices (an operand with one item is broadcast to every item, read
    whole)."""
    n = batch_items(actor.kind.data, block)
    if n == 1:
        return
    view.items = n
    for p in view.ins:
        if item_sliced(p.shape, view.out_shape, n):
            p.items = n
            if p.row_tokens % n:
                raise UnsupportedError(f"actor @{view.name}: a row of {p.row_tokens} tokens "
                                       f"does not split into {n} items")
    per_row = actor.reads != "whole"
    view.out_row = max(view.prod) // (1 if per_row else rowflow.rows_of(view.out_shape)[0])
    if view.out_row % n:
        raise UnsupportedError(f"actor @{view.name}: an output row of {view.out_row} tokens "
                               f"does not split into {n} items")



def storage_order(rank: int) -> tuple[int, ...]:
    """The axes of a rank-`rank` tensor in the order its rows store them, outermost first: a
    rank-4 [N, C, H, W] tensor row by row ([H, N, C, W], batch folded into the rows), another rank
    as one row in C order."""
    return (2, 0, 1, 3) if rank == 4 else tuple(range(rank))


def storage_strides(shape: tuple[int, ...]) -> list[int]:
    """Per axis of `shape`, in elements: the step between neighbours where the rows store it."""
    strides = [0] * len(shape)
    step = 1
    for axis in reversed(storage_order(len(shape))):
        strides[axis] = step
        step *= shape[axis]
    return strides
