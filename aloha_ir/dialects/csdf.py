"""The `csdf` dialect: a DNN as a cyclo-static dataflow graph (the seeds' G(A, C)).

One `csdf.graph` symbol op holds `csdf.actor` symbols and `csdf.channel` ops that reference actors by
symbol (a graph region: cycles and self-loops are legal). Rates, execution counts and work are stored
run-length encoded (`6 x 18`), as i64 arrays of (count, value) pairs.

    csdf.graph @net_csdf from @net {
      csdf.actor @conv1 "conv3x3" block @net::@conv1 phases 6 times [6 x 96] work [6 x 2592]
          memory {weights = tensor<16x3x3x3xf32>, bias = tensor<16xf32>}
      csdf.channel @c0 @input out0 -> @conv1 in0 prod [6 x 18] cons [1 x 36, 4 x 18, 1 x 0] init 0 : f32
      csdf.channel @conv1_reuse0 @conv1 reuse_out0 -> @conv1 reuse_in0 prod [5 x 36, 1 x 0]
          cons [1 x 0, 5 x 36] init 0 : f32
    }

Actor: the operator (`conv3x3`, `maxpool2x2`, `dense`, ...), the nn block it came from (a symbol
reference `@graph::@block` into the nn.graph the csdf graph names with `from`; an output actor
names its network output `port "y"` instead; an actor of a graph written by hand may have
neither), its phase count, per phase how many times the operator runs (`times`) and the elementary
operations that takes (`work`: MACs for conv/dense), and its memory units (parameter tensors). Channel: ports, production and
consumption per phase, initial tokens, the token element type (one token = one tensor element).
Analyses record their results as typed annotations (`Annotation`): discardable attributes in the
`csdf.` namespace (`csdf.pe`, `csdf.buffer`, ...), printed after `attributes`, read and written
through accessors of the same name (`actor.pe`, `channel.buffer = 3`); the verifier checks their
types and refuses an unknown `csdf.` key. The lowering records its row plans the same way (`reads`
on an actor, `shape` and `rows` on the channel into it), analyze-schedule its static order (`order`
on each actor): later stages read them instead of running the lowering or the schedule again.

The graph verifier checks references, port uniqueness, equal phase counts on all ports of an actor,
balance (a repetition vector exists), liveness (one iteration completes from the initial marking),
that a recorded row plan gives its channel's and reuse loop's rates, and that a recorded static
order fires each actor as often as one iteration does, each firing at a position of its own.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools

from xdsl.dialects.builtin import (
    DenseArrayBase,
    DictionaryAttr,
    IntegerAttr,
    StringAttr,
    SymbolRefAttr,
    TensorType,
)
from xdsl.ir import Attribute, Block, Dialect, Operation, Region
from xdsl.irdl import IRDLOperation, irdl_op_definition, opt_prop_def, prop_def, region_def, traits_def
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import IsolatedFromAbove, NoTerminator, SymbolOpInterface, SymbolTable
from xdsl.utils.exceptions import VerifyException

from aloha_ir import dataflow, rle, rowflow
from aloha_ir.annotations import Annotation, annotation_fields, check_annotations
from aloha_ir.analysis import repetition
from aloha_ir.dialects import nn
from aloha_ir.dialects.nn import (
    element_bytes,
    int_attr,
    ints_attr,
    parse_graph_body,
    print_graph_body,
    tensor_bytes,
)

_SYMREF_CACHE: dict[str, SymbolRefAttr] = {}
_STR_CACHE: dict[str, StringAttr] = {}


def symref(name: str) -> SymbolRefAttr:
    a = _SYMREF_CACHE.get(name)
    if a is None:
        a = _SYMREF_CACHE[name] = SymbolRefAttr(name)
    return a


def str_attr(s: str) -> StringAttr:
    a = _STR_CACHE.get(s)
    if a is None:
        a = _STR_CACHE[s] = StringAttr(s)
    return a


def runs_attr(runs: rle.Runs) -> DenseArrayBase:
    return ints_attr(rle.flat(runs))


def runs_of(attr: DenseArrayBase) -> rle.Runs:
    return rle.unflat(attr.get_values())


def _check_runs(op: IRDLOperation, what: str, attr: DenseArrayBase, phases: int | None = None
                ) -> rle.Runs:
    values = attr.get_values()
    if len(values) % 2:
        raise VerifyException(f"{op.name} @{_sym(op)}: {what} must be (count x value) runs")
    runs = rle.unflat(values)
    for c, v in runs:
        if c < 1:
            raise VerifyException(f"{op.name} @{_sym(op)}: {what} has a run of {c} phases "
                                  "(counts must be >= 1)")
        if v < 0:
            raise VerifyException(f"{op.name} @{_sym(op)}: {what} has a negative value {v}")
    if phases is not None and rle.length(runs) != phases:
        raise VerifyException(f"{op.name} @{_sym(op)}: {what} covers {rle.length(runs)} phases, "
                              f"the actor has {phases}")
    return runs


def _sym(op: IRDLOperation) -> str:
    s = op.properties.get("sym_name")
    return s.data if isinstance(s, StringAttr) else "?"


def _print_runs(printer: Printer, runs: rle.Runs) -> None:
    printer.print_string(f"[{rle.text(runs)}]")


def _parse_runs(parser: Parser) -> DenseArrayBase:
    def run() -> tuple[int, int]:
        count = parser.parse_integer(allow_boolean=False)
        parser.parse_keyword("x")
        return count, parser.parse_integer(allow_boolean=False)

    runs = parser.parse_comma_separated_list(Parser.Delimiter.SQUARE, run, "run 'N x value'")
    return ints_attr([x for r in runs for x in r])


NAMESPACE = "csdf."


@functools.cache
def _writable(cls: type) -> frozenset[str]:
    """The public names an op of class `cls` may be assigned: xDSL's Operation fields (`parent`,
    `results`, `attributes`, ... which its __init__, clone and the rewriter set) and the data
    descriptors of the class (setters such as `operands`, IRDL's accessors, annotations).
    Computed on first use: irdl_op_definition adds its accessors after the class body."""
    fields = {f.name for f in dataclasses.fields(cls)}
    setters = {name for klass in cls.__mro__ for name, v in vars(klass).items()
               if hasattr(type(v), "__set__")}
    return frozenset(n for n in fields | setters if not n.startswith("_"))


class CsdfOp(IRDLOperation):
    """Base: `check` is the op's own invariant, which `verify_fast` runs. Assigning a public name
    that is neither an annotation nor one of xDSL's fields (`actor.pee = "x"`) is an
    AttributeError naming the annotations; private names (`_next_op`, ...) are xDSL's."""

    def __setattr__(self, name: str, value) -> None:
        if name.startswith("_") or name in _writable(type(self)):
            super().__setattr__(name, value)
            return
        known = sorted(a.name for a in self.annotation_fields().values())
        close = difflib.get_close_matches(name, known, n=1)
        raise AttributeError(f"{self.name} @{_sym(self)} has no annotation {name!r}"
                             + (f" (did you mean {close[0]!r}?)" if close else "")
                             + f"; its annotations: {', '.join(known) or 'none'}")

    def check(self) -> None:
        """Local invariant."""

    def verify_(self) -> None:
        self.check()

    @classmethod
    def annotation_fields(cls) -> dict[str, Annotation]:
        """The annotations an op of this class may carry, by attribute key (`csdf.pe`)."""
        return annotation_fields(cls)

    def check_annotations(self) -> None:
        check_annotations(self)

    def annotations(self) -> dict[str, Attribute]:
        """The discardable attributes, `csdf.` namespace dropped (the JSON export's keys)."""
        return {k.removeprefix(NAMESPACE): v for k, v in self.attributes.items()}


# ---------------------------------------------------------------------------------------------------


def block_ref(graph: str, block: str) -> SymbolRefAttr:
    """`@graph::@block`: an actor's link to the nn block it computes."""
    return SymbolRefAttr(graph, [block])


def _parse_symbol_ref(parser: Parser, what: str) -> SymbolRefAttr:
    pos = parser.pos
    attr = parser.parse_attribute()
    if not isinstance(attr, SymbolRefAttr):
        parser.raise_error(f"expected a symbol reference ({what})", pos, parser.pos)
    return attr


@irdl_op_definition
class GraphOp(CsdfOp):
    """A CSDF graph; `source` refers to the nn.graph it was lowered from (its blocks hold the
    weights)."""

    name = "csdf.graph"
    sym_name = prop_def(StringAttr)
    source = opt_prop_def(SymbolRefAttr)
    body = region_def("single_block")
    traits = traits_def(SymbolOpInterface(), SymbolTable(), IsolatedFromAbove(), NoTerminator())

    @staticmethod
    def build_graph(name: str, ops: list, source: str | None = None) -> "GraphOp":
        props: dict[str, Attribute] = {"sym_name": StringAttr(name)}
        if source is not None:
            props["source"] = SymbolRefAttr(source)
        return GraphOp.create(properties=props, regions=[Region(Block(ops))])

    platform = Annotation("str", "the platform `map` mapped the graph to")
    datatype = Annotation("str", "the data type `map` mapped the graph at (f32, fixed16, fixed8)")
    operating_point = Annotation("str", "the operating point `map` used")
    latency_s = Annotation("float", "analyze-schedule: one frame's latency, seconds")
    period_s = Annotation("float", "analyze-schedule: the steady-state period per frame, seconds")
    memory_bytes = Annotation("int", "analyze-memory: the program's memory, bytes")
    energy_j = Annotation("float", "analyze-energy: energy per frame, joules")
    processors = Annotation("int", "analyze-processors: processors a strictly periodic schedule "
                            "needs")
    iteration_firings = Annotation("int", "analyze-repetition: firings of one graph iteration")

    @property
    def source_name(self) -> str | None:
        """The name of the nn.graph this graph was lowered from (None: a graph of its own)."""
        return self.source.root_reference.data if self.source is not None else None

    @property
    def ops(self):
        return self.body.block.ops

    def actors(self) -> list["ActorOp"]:
        return [op for op in self.ops if isinstance(op, ActorOp)]

    def channels(self) -> list["ChannelOp"]:
        return [op for op in self.ops if isinstance(op, ChannelOp)]

    def actor_map(self) -> dict[str, "ActorOp"]:
        return {op.sym_name.data: op for op in self.ops if isinstance(op, ActorOp)}

    def print(self, printer: Printer) -> None:
        printer.print_string(f" @{self.sym_name.data}")
        if self.source is not None:
            printer.print_string(" from ")
            printer.print_attribute(self.source)
        print_graph_body(printer, self)

    @classmethod
    def parse(cls, parser: Parser) -> "GraphOp":
        props: dict[str, Attribute] = {"sym_name": parser.parse_symbol_name()}
        if parser.parse_optional_keyword("from"):
            props["source"] = _parse_symbol_ref(parser, "the source nn.graph")
        attrs, region = parse_graph_body(parser)
        return cls.create(properties=props, attributes=attrs, regions=[region])

    def dataflow_graph(self) -> tuple[dict[str, int], list[dataflow.Edge]]:
        """(phases per actor, edges): the plain form the algorithms of aloha_ir.dataflow take."""
        phases = {a.sym_name.data: a.phase_count for a in self.actors()}
        edges = [c.edge() for c in self.channels()]
        return phases, edges

    def check(self) -> None:
        actors: dict[str, ActorOp] = {}
        for op in self.ops:
            if isinstance(op, ActorOp):
                actors[op.sym_name.data] = op
            elif not isinstance(op, ChannelOp):
                raise VerifyException(f"csdf.graph may only hold csdf.actor and csdf.channel, "
                                      f"found {op.name}")
        seen_ports: dict[tuple[str, str, str], str] = {}
        phases = {n: a.phase_count for n, a in actors.items()}
        edges = []
        for ch in self.channels():
            name = ch.sym_name.data
            edge = ch.edge()
            for end, port, direction, runs in ((edge.src, ch.src_port.data, "out", edge.prod),
                                               (edge.dst, ch.dst_port.data, "in", edge.cons)):
                actor = actors.get(end)
                if actor is None:
                    raise VerifyException(f"csdf.channel @{name}: no actor @{end} in graph "
                                          f"@{self.sym_name.data} (dangling channel)")
                key = (end, port, direction)
                if key in seen_ports:
                    raise VerifyException(f"csdf.channel @{name}: {direction} port {port} of @{end} "
                                          f"is already used by channel @{seen_ports[key]}")
                seen_ports[key] = name
                n = rle.length(runs)
                if n != phases[end]:
                    what = "production" if direction == "out" else "consumption"
                    raise VerifyException(
                        f"csdf.channel @{name}: {what} sequence has {n} phases but actor @{end} has "
                        f"{phases[end]} (all ports of an actor need equal phase counts)")
            edges.append(edge)
        try:  # consistent and live (cached by content across passes)
            firings = repetition(phases, edges).firings
        except dataflow.DataflowError as e:
            raise VerifyException(f"csdf.graph @{self.sym_name.data}: {e}") from None
        self.check_annotations()
        loops = {(c.dst_name, c.dst_port.data): c for c in self.channels() if c.is_self_loop}
        for ch in self.channels():
            _check_row_plan(ch, phases[ch.dst_name], loops)
        _check_order(self, firings)
        if self.source is not None and self.source.nested_references.data:
            raise VerifyException(f"csdf.graph @{self.sym_name.data}: `from` must name an "
                                  "nn.graph (@net)")


def _check_row_plan(ch: "ChannelOp", phases: int, loops: dict[tuple[str, str], "ChannelOp"]
                    ) -> None:
    """A channel's recorded row plan (`rows`, `shape`) must be what its rates say: per phase of its
    reader, the new rows of the plan's row calculus (aloha_ir.rowflow.input_rates) times the row
    size are the consumption, and the rows it takes back from / puts into the reader's reuse
    self-loop (`reuse_<port>`) are that loop's consumption and production."""
    plan, shape = ch.rows, ch.shape
    if plan is None and shape is None:
        return
    name, actor = ch.sym_name.data, ch.dst_name
    where = f"csdf.channel @{name} (into csdf.actor @{actor} port {ch.dst_port.data})"
    if plan is None or shape is None:
        raise VerifyException(f"{where}: a row plan needs both csdf.rows and csdf.shape")
    if len(plan) != 2 * phases:
        raise VerifyException(f"{where}: csdf.rows holds {len(plan)} values, but a (lo, hi) pair "
                              f"per phase of @{actor} is {2 * phases}")
    h, row = rowflow.rows_of(shape)
    ranges = list(zip(plan[0::2], plan[1::2]))
    for j, (lo, hi) in enumerate(ranges):
        if lo <= hi and not 0 <= lo <= hi < h:
            raise VerifyException(f"{where}: csdf.rows reads rows {lo}..{hi} at phase {j}, but "
                                  f"the tensor {list(shape)} has rows 0..{h - 1}")
    rates = rowflow.input_rates(ranges, h)

    def refuse(what: str, want: list[int], got: list[int]) -> None:
        raise VerifyException(
            f"{where}: its row plan (csdf.rows, rows of {row} tokens) makes {what} "
            f"[{rle.text(rle.encode(want))}] per phase, but the IR says "
            f"[{rle.text(rle.encode(got))}] (edit the rates and the row plan together, or lower "
            "the nn graph again with convert-nn-to-csdf)")

    cons = rle.expand(ch.cons_runs)
    want = [n * row for n in rates.new]
    if want != cons:
        refuse("the consumption", want, cons)
    loop = loops.get((actor, f"reuse_{ch.dst_port.data}"))
    if not rates.has_reuse:
        return
    if loop is None:
        raise VerifyException(f"{where}: its row plan reuses rows between phases, but @{actor} "
                              f"has no self-loop on port reuse_{ch.dst_port.data}")
    for what, got, need in (("the reuse loop's consumption", loop.cons_runs, rates.reuse_in),
                            ("the reuse loop's production", loop.prod_runs, rates.reuse_out)):
        want = [n * row for n in need]
        if want != rle.expand(got):
            refuse(f"{what} (@{loop.sym_name.data})", want, rle.expand(got))


def _check_order(graph: GraphOp, firings: dict[str, int]) -> None:
    """analyze-schedule's static order (`order` on each actor) must fire an actor as often as one
    graph iteration does, and give every firing its own position among the iteration's firings;
    complete (on every actor), the positions are 0, 1, ... without gap. An actor without one (a
    transform added it after the schedule) leaves the order incomplete, which code generation
    refuses, asking for analyze-schedule."""
    where = f"csdf.graph @{graph.sym_name.data}"
    total = sum(firings.values())
    slots: list[int] = []
    complete = True
    for a in graph.actors():
        o, name = a.order, a.sym_name.data
        if o is None:
            complete = False
            continue
        if len(o) != firings[name]:
            raise VerifyException(f"{where}: csdf.order places {len(o)} firing(s) of @{name}, but "
                                  f"it fires {firings[name]} times per graph iteration")
        slots.extend(o)
    if not slots:
        return
    if len(set(slots)) != len(slots) or min(slots) < 0 or max(slots) >= total or \
            (complete and len(slots) != total):
        raise VerifyException(f"{where}: csdf.order must give each of the {total} firings of one "
                              "iteration its own position 0, 1, ...")


@irdl_op_definition
class ActorOp(CsdfOp):
    """An actor; `block` refers to the nn block it computes (`@net::@conv1`: partition's parts,
    their gather and map's merge refer to the block of the actor they came from), `port` to the
    network output an output actor delivers."""

    name = "csdf.actor"
    sym_name = prop_def(StringAttr)
    kind = prop_def(StringAttr)
    block = opt_prop_def(SymbolRefAttr)
    port = opt_prop_def(StringAttr)
    phases = prop_def(IntegerAttr)
    times = prop_def(DenseArrayBase)
    work = prop_def(DenseArrayBase)
    memory = opt_prop_def(DictionaryAttr)
    traits = traits_def(SymbolOpInterface())

    pe = Annotation("str", "map: the unit that runs the actor (empty: none)")
    pe_kind = Annotation("str", "map: the kind of that unit's PE (cpu, conv-engine, ...)")
    cost_s = Annotation("float", "map: seconds of one iteration on that unit")
    exec_times = Annotation("runs", "map: per-phase execution times, ns; the schedule reads them")
    start_s = Annotation("float", "analyze-schedule: first firing's start in one frame, seconds")
    end_s = Annotation("float", "analyze-schedule: last firing's end in one frame, seconds")
    split = Annotation("ints", "partition: [lo, hi), the block's output channels this part "
                       "computes")
    parts = Annotation("int", "partition: how many parts a gather collects")
    merges = Annotation("int", "map: how many partial outputs a merge sums")
    repetition = Annotation("int", "analyze-repetition: the repetition vector's entry")
    firings = Annotation("int", "analyze-repetition: firings per graph iteration")
    reads = Annotation("str", "convert-nn-to-csdf: how the actor reads its inputs, `rows` (a "
                       "window of rows per firing, one output row per firing) or `whole` (the "
                       "whole input over its phases, its output at the last firing)")
    order = Annotation("ints", "analyze-schedule: the positions of the actor's firings in the "
                       "start order of the one-frame self-timed schedule (0, 1, ... over the "
                       "graph)")

    @staticmethod
    def build(name: str, kind: str, block: SymbolRefAttr | None, phases: int, times: rle.Runs,
              work: rle.Runs, memory: dict[str, Attribute] | None = None,
              port: str | None = None) -> "ActorOp":
        props: dict[str, Attribute] = {
            "sym_name": StringAttr(name), "kind": str_attr(kind),
            "phases": int_attr(phases), "times": runs_attr(times), "work": runs_attr(work)}
        if block is not None:
            props["block"] = block
        if port is not None:
            props["port"] = StringAttr(port)
        if memory:
            props["memory"] = DictionaryAttr(memory)
        return ActorOp.create(properties=props)

    def block_in(self, blocks: dict[str, Operation]) -> Operation | None:
        """The block the actor computes, from its graph's `nn.GraphOp.blocks()` (None: no block,
        or a graph written alone)."""
        return blocks.get(self.block_name) if self.block is not None else None

    @property
    def block_name(self) -> str:
        """The name of the block the actor computes, the port an output actor delivers, or ""."""
        if self.block is not None:
            nested = self.block.nested_references.data
            return (nested[-1] if nested else self.block.root_reference).data
        return self.port.data if self.port is not None else ""

    @property
    def phase_count(self) -> int:
        return self.phases.value.data

    @property
    def times_runs(self) -> rle.Runs:
        return runs_of(self.times)

    @property
    def work_runs(self) -> rle.Runs:
        return runs_of(self.work)

    def memory_units(self) -> dict[str, TensorType]:
        return dict(self.memory.data) if self.memory is not None else {}  # type: ignore[arg-type]

    def memory_bytes(self) -> int:
        return sum(tensor_bytes(t) for t in self.memory_units().values())

    def check(self) -> None:
        p = self.phase_count
        if p < 1:
            raise VerifyException(f"csdf.actor @{self.sym_name.data}: phases must be >= 1, got {p}")
        if self.block is not None and len(self.block.nested_references.data) != 1:
            raise VerifyException(f"csdf.actor @{self.sym_name.data}: block must refer to a block "
                                  "of an nn.graph (@net::@block)")
        if self.block is not None and self.port is not None:
            raise VerifyException(f"csdf.actor @{self.sym_name.data}: an actor computes a block "
                                  "or delivers an output port, not both")
        _check_runs(self, "times", self.times, p)
        _check_runs(self, "work", self.work, p)
        self.check_annotations()
        mapped = self.attributes.get(ActorOp.exec_times.key)
        if mapped is not None:  # the schedule reads one time per phase
            _check_runs(self, "exec_times", mapped, p)
        if self.reads not in (None, "rows", "whole"):
            raise VerifyException(f"csdf.actor @{self.sym_name.data}: csdf.reads must be \"rows\" "
                                  f"or \"whole\", got {self.reads!r}")
        split = self.split
        if split is not None and (len(split) != 2 or not 0 <= split[0] < split[1]):
            raise VerifyException(f"csdf.actor @{self.sym_name.data}: split must be [lo, hi) "
                                  f"output channels with 0 <= lo < hi, got {list(split)}")
        for k, t in self.memory_units().items():
            if not isinstance(t, TensorType):
                raise VerifyException(f"csdf.actor @{self.sym_name.data}: memory unit {k} must be "
                                      "a tensor type")

    def print(self, printer: Printer) -> None:
        printer.print_string(f" @{self.sym_name.data} ")
        printer.print_string_literal(self.kind.data)
        if self.block is not None:
            printer.print_string(" block ")
            printer.print_attribute(self.block)
        if self.port is not None:
            printer.print_string(" port ")
            printer.print_string_literal(self.port.data)
        printer.print_string(f" phases {self.phase_count} times ")
        _print_runs(printer, runs_of(self.times))
        printer.print_string(" work ")
        _print_runs(printer, runs_of(self.work))
        if self.memory is not None:
            printer.print_string(" memory ")
            printer.print_attr_dict(self.memory.data)
        if self.attributes:
            printer.print_string(" attributes ")
            printer.print_attr_dict(self.attributes)

    @classmethod
    def parse(cls, parser: Parser) -> "ActorOp":
        props: dict[str, Attribute] = {"sym_name": parser.parse_symbol_name(),
                                       "kind": StringAttr(parser.parse_str_literal("operator"))}
        if parser.parse_optional_keyword("block"):
            props["block"] = _parse_symbol_ref(parser, "the nn block, @net::@block")
        if parser.parse_optional_keyword("port"):
            props["port"] = StringAttr(parser.parse_str_literal("network output port"))
        parser.parse_keyword("phases")
        props["phases"] = int_attr(parser.parse_integer(allow_boolean=False))
        parser.parse_keyword("times")
        props["times"] = _parse_runs(parser)
        parser.parse_keyword("work")
        props["work"] = _parse_runs(parser)
        if parser.parse_optional_keyword("memory"):
            props["memory"] = DictionaryAttr(parser.parse_optional_attr_dict())
        attrs = {}
        if parser.parse_optional_keyword("attributes"):
            attrs = parser.parse_optional_attr_dict()
        return cls.create(properties=props, attributes=attrs)


@irdl_op_definition
class ChannelOp(CsdfOp):
    """A FIFO from `src`'s output port to `dst`'s input port (src == dst: a self-loop)."""

    name = "csdf.channel"
    sym_name = prop_def(StringAttr)
    src = prop_def(SymbolRefAttr)
    src_port = prop_def(StringAttr)
    dst = prop_def(SymbolRefAttr)
    dst_port = prop_def(StringAttr)
    prod = prop_def(DenseArrayBase)
    cons = prop_def(DenseArrayBase)
    initial = prop_def(IntegerAttr)
    token = prop_def(Attribute)
    traits = traits_def(SymbolOpInterface())

    buffer = Annotation("int", "analyze-schedule: the FIFO's capacity, tokens (size-buffers, "
                        "when it runs after, sets the generated program's)")
    shape = Annotation("ints", "convert-nn-to-csdf: the shape of the tensor the channel carries "
                       "(its rows and row size follow aloha_ir.rowflow.rows_of)")
    rows = Annotation("ints", "convert-nn-to-csdf: the reader's row plan, per phase of the "
                      "consumer the input rows (lo, hi) it reads, inclusive, flat")
    link = Annotation("str", "map: the platform link the channel crosses (local: none)")
    delay_ns = Annotation("int", "map: the transfer delay of one row over that link, ns")

    @staticmethod
    def build(name: str, src: str, src_port: str, dst: str, dst_port: str, prod: rle.Runs,
              cons: rle.Runs, token: Attribute, initial: int = 0) -> "ChannelOp":
        return ChannelOp.create(properties={
            "sym_name": StringAttr(name), "src": symref(src), "src_port": str_attr(src_port),
            "dst": symref(dst), "dst_port": str_attr(dst_port), "prod": runs_attr(prod),
            "cons": runs_attr(cons), "initial": int_attr(initial), "token": token})

    @property
    def src_name(self) -> str:
        return self.src.root_reference.data

    @property
    def dst_name(self) -> str:
        return self.dst.root_reference.data

    @property
    def is_self_loop(self) -> bool:
        return self.src_name == self.dst_name

    @property
    def initial_tokens(self) -> int:
        return self.initial.value.data

    @property
    def token_bytes(self) -> int:
        return element_bytes(self.token)

    @property
    def prod_runs(self) -> rle.Runs:
        return runs_of(self.prod)

    @property
    def cons_runs(self) -> rle.Runs:
        return runs_of(self.cons)

    def edge(self) -> dataflow.Edge:
        return dataflow.Edge(self.sym_name.data, self.src_name, self.dst_name, runs_of(self.prod),
                             runs_of(self.cons), self.initial_tokens)

    def check(self) -> None:
        name = self.sym_name.data
        if self.src.nested_references.data or self.dst.nested_references.data:
            raise VerifyException(f"csdf.channel @{name}: endpoints must be flat actor symbols")
        _check_runs(self, "production", self.prod)
        _check_runs(self, "consumption", self.cons)
        if self.initial_tokens < 0:
            raise VerifyException(f"csdf.channel @{name}: initial tokens must be >= 0, got "
                                  f"{self.initial_tokens} (negative tokens)")
        if not self.src_port.data or not self.dst_port.data:
            raise VerifyException(f"csdf.channel @{name}: ports need names")
        self.check_annotations()

    def print(self, printer: Printer) -> None:
        printer.print_string(f" @{self.sym_name.data} @{self.src_name} {self.src_port.data} -> "
                             f"@{self.dst_name} {self.dst_port.data} prod ")
        _print_runs(printer, runs_of(self.prod))
        printer.print_string(" cons ")
        _print_runs(printer, runs_of(self.cons))
        printer.print_string(f" init {self.initial_tokens}")
        if self.attributes:
            printer.print_string(" attributes ")
            printer.print_attr_dict(self.attributes)
        printer.print_string(" : ")
        printer.print_attribute(self.token)

    @classmethod
    def parse(cls, parser: Parser) -> "ChannelOp":
        props: dict[str, Attribute] = {"sym_name": parser.parse_symbol_name()}
        props["src"] = SymbolRefAttr(parser.parse_symbol_name())
        props["src_port"] = StringAttr(parser.parse_identifier("source port"))
        parser.parse_punctuation("->")
        props["dst"] = SymbolRefAttr(parser.parse_symbol_name())
        props["dst_port"] = StringAttr(parser.parse_identifier("destination port"))
        parser.parse_keyword("prod")
        props["prod"] = _parse_runs(parser)
        parser.parse_keyword("cons")
        props["cons"] = _parse_runs(parser)
        parser.parse_keyword("init")
        props["initial"] = int_attr(parser.parse_integer(allow_boolean=False))
        attrs = {}
        if parser.parse_optional_keyword("attributes"):
            attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        props["token"] = parser.parse_type()
        return cls.create(properties=props, attributes=attrs)


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, or `base_2`, `base_3`, ... whichever is not in `taken`; adds it to `taken`."""
    out, k = base, 1
    while out in taken:
        k += 1
        out = f"{base}_{k}"
    taken.add(out)
    return out


def csdf_graphs(module) -> list[GraphOp]:
    return [op for op in module.ops if isinstance(op, GraphOp)]


def source_graph(module, graph: GraphOp) -> nn.GraphOp | None:
    """The nn.graph `graph` was lowered from, when it is in `module` (a csdf graph written alone
    keeps its links as provenance)."""
    name = graph.source_name
    if name is None:
        return None
    for op in module.ops:
        if isinstance(op, nn.GraphOp) and op.sym_name.data == name:
            return op
    return None


CSDF_OPS = [GraphOp, ActorOp, ChannelOp]
CSDF = Dialect("csdf", CSDF_OPS, [])

__all__ = ["CSDF", "GraphOp", "ActorOp", "ChannelOp", "block_ref", "csdf_graphs", "runs_attr",
           "runs_of", "source_graph", "symref"]
