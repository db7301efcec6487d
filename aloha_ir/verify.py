"""Verification levels, and the cross-dialect check of a lowering.

`verify_fast` runs every op's own invariant (`check`: the shape rules, operand kinds) in one walk,
and checks that no value is defined or used by an op outside the IR: what a pass can break. `verify_full` is xDSL's generic verification (IRDL constraints on every operand,
result and attribute, traits), ~3x slower; it runs on parsed text, in tests, and with --verify-full.
Both end with `verify_links`: a csdf.graph whose source nn.graph is in the module must still be a
lowering of it (one walk over actors and channels, no re-lowering):

- every actor's `block` refers to a block of the source graph (`@net::@conv1`) and an output actor's
  `port` to one of its outputs; an input actor computes an nn.input;
- shapes agree: an actor produces its block's whole result on each output channel (a part of a
  split actor its share, checked by the split itself; a merge what its actor makes), consumes on
  input port `inK` the whole K-th activation operand of its block, from an actor of the block that
  defines it, and a row plan recorded on that channel (`shape`) is of that operand's shape; its
  memory units have its constants' shapes;
- no block is lowered twice: the actors computing one block (gathers and merges only move its
  result) are one actor, or parts of a `partition` split whose output-channel ranges are disjoint;
- every block has an actor.

A csdf.graph written alone (`alohac compile --emit csdf`) keeps its links as provenance: nothing to
check them against.
"""

from __future__ import annotations

import math

from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.utils.exceptions import VerifyException

from aloha_ir.dialects import csdf, nn

# actors that move a block's result (partition's gather, map's merge of a split kernel's partial
# sums) rather than compute it: they share the block of the actor they serve
VIEW_KINDS = ("gather", "merge")


class LoweringMismatch(VerifyException):
    """A csdf.graph that no longer matches the nn.graph it was lowered from."""

    hint = "run convert-nn-to-csdf again after transforming the nn graph"


def verify_fast(module: ModuleOp) -> None:
    for op in module.walk():
        if op is module:
            continue
        for operand in op.operands:
            owner = operand.owner
            if getattr(owner, "parent", True) is None:
                raise VerifyException(f"{op.name} uses a value whose defining op was erased")
        for result in op.results:
            for use in result.uses:
                if use.operation.parent is None:
                    raise VerifyException(f"{op.name}'s result is used by a {use.operation.name} "
                                          "that is in no block (erased without dropping its "
                                          "operands)")
        check = getattr(op, "check", None)
        (check or op.verify_)()
    verify_links(module)


def verify_full(module: ModuleOp) -> None:
    module.verify()
    verify_links(module)


def verify_links(module: ModuleOp) -> None:
    """Check every csdf.graph of `module` against its source nn.graph (see the module docstring);
    raises LoweringMismatch naming the actor or block."""
    for graph in csdf.csdf_graphs(module):
        source = csdf.source_graph(module, graph)
        if source is not None:
            _Links(graph, source).check()


def _numel(value) -> int:
    return math.prod(nn.shape_of(value))


def _activations(block: Operation) -> list:
    return [v for v in block.operands if not isinstance(v.owner, nn.ConstOp)]


class _Links:
    def __init__(self, graph: csdf.GraphOp, source: nn.GraphOp):
        self.graph = graph
        self.source = source
        self.net = source.sym_name.data
        self.blocks = source.blocks()
        outputs = [op for op in source.ops if isinstance(op, nn.OutputOp)]
        self.ports = {p.data: v for p, v in zip(outputs[-1].ports.data, outputs[-1].inputs)} \
            if outputs else {}
        self.actors = graph.actor_map()
        self.block_of: dict[str, Operation | None] = {}

    def fail(self, message: str) -> None:
        raise LoweringMismatch(f"csdf.graph @{self.graph.sym_name.data} (lowered from nn.graph "
                               f"@{self.net}): {message}")

    def check(self) -> None:
        for name, actor in self.actors.items():
            self.block_of[name] = self.resolve(actor)
        self.check_coverage()
        for actor in self.actors.values():
            self.check_memory(actor)
        self.check_channels()

    def resolve(self, actor: csdf.ActorOp) -> Operation | None:
        name = actor.sym_name.data
        if actor.port is not None:
            if actor.port.data not in self.ports:
                self.fail(f"csdf.actor @{name} delivers output port '{actor.port.data}', which "
                          f"nn.graph @{self.net} does not have")
            return None
        if actor.block is None:
            return None
        root = actor.block.root_reference.data
        if root != self.net:
            self.fail(f"csdf.actor @{name} refers to {actor.block}, a block of another graph "
                      f"than @{self.net}")
        block = self.blocks.get(actor.block_name)
        if block is None:
            self.fail(f"csdf.actor @{name} refers to block {actor.block}, which nn.graph "
                      f"@{self.net} does not have (the nn graph changed after lowering)")
        if (actor.kind.data == "input") != isinstance(block, nn.InputOp):
            self.fail(f"csdf.actor @{name} is a '{actor.kind.data}' actor but its block "
                      f"{actor.block} is a {block.name}")
        return block

    def check_memory(self, actor: csdf.ActorOp) -> None:
        block = self.block_of[actor.sym_name.data]
        if block is None or actor.kind.data in VIEW_KINDS or actor.split is not None:
            return
        units = [tuple(t.get_shape()) for t in actor.memory_units().values()]
        consts = [nn.shape_of(v) for v in block.operands if isinstance(v.owner, nn.ConstOp)]
        if units != consts:
            self.fail(f"csdf.actor @{actor.sym_name.data}: memory units of shapes {units}, but "
                      f"its block {actor.block} has constants of shapes {consts}")

    def check_channels(self) -> None:
        for ch in self.graph.channels():
            if ch.is_self_loop:
                continue
            src, dst = self.actors.get(ch.src_name), self.actors.get(ch.dst_name)
            if src is None or dst is None:
                continue  # the graph's own verifier names the dangling channel
            self.check_production(ch, src)
            self.check_consumption(ch, dst)

    def check_production(self, ch: csdf.ChannelOp, src: csdf.ActorOp) -> None:
        block = self.block_of[src.sym_name.data]
        if block is None or not block.results or src.split is not None or \
                src.kind.data == "merge":  # a merge passes on what its actor (maybe a part) makes
            return
        produced, whole = sum(c * v for c, v in ch.prod_runs), _numel(block.results[0])
        if produced != whole:
            self.fail(f"csdf.actor @{src.sym_name.data} produces {produced} tokens on channel "
                      f"@{ch.sym_name.data}, but its block {src.block} has "
                      f"{list(nn.shape_of(block.results[0]))} = {whole} elements")

    def check_consumption(self, ch: csdf.ChannelOp, dst: csdf.ActorOp) -> None:
        name = dst.sym_name.data
        block = self.block_of[name]
        if dst.port is not None:
            value = self.ports[dst.port.data]
        elif block is None:
            return
        elif dst.kind.data in VIEW_KINDS:
            self.check_producer(ch, block, f"csdf.actor @{name} ({dst.kind.data})")
            return
        else:
            port = ch.dst_port.data
            ins = _activations(block)
            k = int(port[2:]) if port.startswith("in") and port[2:].isdigit() else -1
            if not 0 <= k < len(ins):
                self.fail(f"channel @{ch.sym_name.data} enters csdf.actor @{name} at port {port}, "
                          f"but its block {dst.block} has {len(ins)} activation input(s) "
                          "(ports in0..)")
            value = ins[k]
        if ch.shape is not None and tuple(ch.shape) != tuple(nn.shape_of(value)):
            self.fail(f"channel @{ch.sym_name.data} into csdf.actor @{name} records a row plan "
                      f"of a {list(ch.shape)} tensor (csdf.shape), but the tensor it reads there "
                      f"is {list(nn.shape_of(value))}")
        consumed, whole = sum(c * v for c, v in ch.cons_runs), _numel(value)
        if consumed != whole:
            self.fail(f"csdf.actor @{name} consumes {consumed} tokens on channel "
                      f"@{ch.sym_name.data}, but the tensor it reads there has "
                      f"{list(nn.shape_of(value))} = {whole} elements")
        producer = value.owner
        self.check_producer(ch, producer, f"the tensor csdf.actor @{name} reads on channel "
                                          f"@{ch.sym_name.data}")

    def check_producer(self, ch: csdf.ChannelOp, block: Operation, what: str) -> None:
        got = self.block_of[ch.src_name]
        if got is not block:
            label = nn.block_label(block) or block.name
            self.fail(f"{what} comes from block @{self.net}::@{label}, but channel "
                      f"@{ch.sym_name.data} comes from csdf.actor @{ch.src_name}")

    def check_coverage(self) -> None:
        computing: dict[int, list[csdf.ActorOp]] = {}
        for name, actor in self.actors.items():
            block = self.block_of[name]
            if block is not None and actor.kind.data not in VIEW_KINDS:
                computing.setdefault(id(block), []).append(actor)
        for i, op in enumerate(self.source.ops):
            if isinstance(op, (nn.ConstOp, nn.OutputOp)):
                continue
            label = nn.block_label(op) or f"{op.name} #{i}"
            actors = computing.get(id(op))
            if not actors:
                self.fail(f"nn block @{self.net}::@{label} ({op.name}) has no actor (the nn graph "
                          "changed after lowering)")
            if len(actors) > 1:
                self.check_split(op, label, actors)

    def check_split(self, block: Operation, label: str, actors: list[csdf.ActorOp]) -> None:
        names = ", ".join(f"@{a.sym_name.data}" for a in actors)
        spans = []
        for a in actors:
            if a.split is None:
                self.fail(f"nn block @{self.net}::@{label} is lowered twice: actors {names} "
                          "all compute it (only parts of a split share a block)")
            spans.append((*a.split, a.sym_name.data))
        shape = nn.shape_of(block.results[0])
        cout = shape[1] if len(shape) >= 2 else (shape[-1] if shape else 1)
        spans.sort()
        for (lo, hi, a), (lo2, _, b) in zip(spans, spans[1:]):
            if lo2 < hi:
                self.fail(f"nn block @{self.net}::@{label} is lowered twice: split actors @{a} "
                          f"and @{b} both compute output channels {lo2}..{hi - 1}")
        if spans[0][0] < 0 or max(hi for _, hi, _ in spans) > cout:
            self.fail(f"nn block @{self.net}::@{label}: split actors {names} cover channels "
                      f"outside 0..{cout - 1}")
