"""The codegen view: the mapped csdf graph as plain data a C template can render.

Templates never walk the IR; this module does, once, and hands them lists of plain objects:

- `fifos`: every csdf channel with its capacity = the `buffer` analyze-schedule wrote (tokens);
- `actors`: per actor its input ports (the FIFO it reads, its reuse self-loop, per firing how many
  rows it reads new, takes back from the loop and puts into it: the row calculus of the lowering,
  recomputed by the same functions), its output FIFOs with the tokens produced per firing, and a
  `kernel` record (which kernel, its geometry, weights, fused activation or requantisation);
- `threads`: one per processing unit (the boundary actors the mapping leaves unplaced -- input,
  output, gather -- join the nearest programmable unit's), each with its static order for one
  frame: the per-unit firing order of the one-frame self-timed schedule analyze-schedule ran,
  run-length encoded as (actor, firings) runs;
- `tensors`: the weights blob, every tensor in its storage type (aloha_ir.fixedpoint.storage_of:
  float32, or int8/int16/int32 integers of the fixed-point formats, biases and per-channel shifts
  int32 in their accumulator formats), written as weights.bin or embedded as C arrays;
- storage: every FIFO, window and output buffer holds the element type of the tensor it carries;
  conv and dense name their accumulator (int32 where fixedpoint.accumulator_of proves it enough);
  `memory()` is what the program allocates, part by part, which analyze-memory predicts (a
  per-item kernel's one-item copies of its windows and output, below, count as windows and
  output buffers).

A batch of N items is one frame, folded into the rows as the lowering folds it (a row of an
[N, C, H, W] tensor is N x C x W tokens): row y holds x[n][c][y][:] at (n * C + c) * W, the rows of
an [N * C, H, W] tensor. Kernels that treat channels independently (pooling, activations,
reshapes, softmax along C) run on the folded tensor as they are; kernels that mix the channels of
one item (conv, dense, elementwise with broadcasting, batch norm, concat, LRN, channel shuffle, the
gathers and merges of split actors) run once per item (`items`) on that item's slice of their
windows (analyze_memory.batch_items says which; a NEURAghe split kernel's CE actor and its merge
among them, so every item's partial sums go through the FIFO to the merge). A reshape across the
batch axis stays exact (rows are read back in NCHW order), and an op that would mix items in its
kernel (softmax or concat along N) has no kernel and is refused.

Why the static order and the FIFO sizes agree: the program is a Kahn network with blocking reads and
writes (a bounded FIFO is a data channel plus a credit channel), so whether it completes does not
depend on timing. Running frame after frame in the one-frame schedule's order is one execution, and it
needs no more than that schedule's occupancy, which the analysed `buffer` covers (analyze-schedule
takes the larger of the one-frame and the stream occupancy). So every run completes, whatever the
real timing, and a FIFO made smaller than a firing's own production fails at once.
"""

from __future__ import annotations

import itertools
import math
import re
import struct
from dataclasses import dataclass, field

import numpy as np

from aloha_ir import rle, rowflow
from aloha_ir import fixedpoint as fp
from aloha_ir.analysis import repetition
from aloha_ir.consts import const_tensor
from aloha_ir.dialects import csdf, nn
from aloha_ir.errors import UnsupportedError
from aloha_ir.weights import weights_of
from passes.analyze_memory import Deployment, batch_items, channel_storage, item_sliced
from passes.convert_nn_to_csdf import plan_block
from passes.target import nn_blocks

C_KEYWORDS = frozenset("""auto break case char const continue default do double else enum extern
float for goto if inline int long register restrict return short signed sizeof static struct switch
typedef union unsigned void volatile while _Bool _Complex _Imaginary main""".split())
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
ACT = {None: "ALOHA_ACT_NONE", "relu": "ALOHA_ACT_RELU", "leaky_relu": "ALOHA_ACT_LEAKY",
       "clip": "ALOHA_ACT_CLIP", "sigmoid": "ALOHA_ACT_SIGMOID", "tanh": "ALOHA_ACT_TANH"}


def c_identifier(name: str, index: int, prefix: str = "a") -> str:
    """A valid, unique C identifier for the `index`-th object named `name` (ONNX names hold '/',
    ':', '.', leading digits, keywords): the prefix and index make it unique and valid whatever
    the name is; the sanitised name keeps it readable."""
    body = _UNSAFE.sub("_", name).strip("_")[:40]
    ident = f"{prefix}{index}_{body}" if body else f"{prefix}{index}"
    return re.sub(r"__+", "_", ident)


@dataclass
class FifoView:
    index: int
    name: str
    cname: str
    src: str
    dst: str
    capacity: int
    analysed: int
    self_loop: bool
    max_firing: int  # the most tokens one firing moves through it
    storage: fp.Storage = fp.FLOAT32  # element type (of a merge's partial sums: the accumulator)
    per_token: int = 1  # elements per token (a merge's: one partial sum per job)

    @property
    def elem(self) -> int:
        return self.storage.nbytes * self.per_token

    @property
    def elements(self) -> int:
        return max(1, self.capacity) * self.per_token

    @property
    def nbytes(self) -> int:
        return self.elements * self.storage.nbytes


@dataclass
class PortView:
    fifo: int
    reuse: int  # fifo index of the reuse self-loop, or -1
    row_tokens: int
    whole: bool  # keep every row of the frame (ops that need their whole input)
    window_rows: int
    new: list[int]
    reuse_in: list[int]
    reuse_out: list[int]
    c: int
    h: int
    w: int
    shape: tuple[int, ...] = ()  # the tensor the port reads (empty for boundary/gather actors)
    items: int = 1  # its rows hold this many item slices the per-item kernel takes apart
    storage: fp.Storage = fp.FLOAT32  # element type of the input
    per_token: int = 1

    @property
    def elem(self) -> int:
        return self.storage.nbytes * self.per_token

    @property
    def elements(self) -> int:
        return self.window_rows * self.row_tokens * self.per_token

    @property
    def nbytes(self) -> int:
        return self.elements * self.storage.nbytes


@dataclass
class TensorView:
    name: str
    cname: str
    storage: fp.Storage
    offset: int  # in bytes, from the first tensor
    values: np.ndarray  # flat, of the storage's dtype

    @property
    def ctype(self) -> str:
        return self.storage.ctype

    @property
    def length(self) -> int:
        return int(self.values.size)

    @property
    def nbytes(self) -> int:
        return self.length * self.storage.nbytes

    def c_values(self) -> str:
        if self.storage is fp.FLOAT32:
            return ", ".join(_c_float(v) for v in self.values.tolist())
        return ", ".join(str(int(v)) for v in self.values.tolist())


@dataclass
class ActorView:
    index: int
    name: str
    cname: str
    operator: str  # the csdf actor's operator
    kernel: str  # the template macro that computes a firing
    unit: str
    pe_kind: str
    phases: int
    ins: list[PortView]
    outs: list[int]
    prod: list[int]  # tokens written to each output FIFO per firing
    args: dict = field(default_factory=dict)
    block: str = ""
    out_shape: tuple[int, ...] = ()
    out_frac: int = 0  # dequantisation of the output (fixed point)
    dump: bool = False  # debug builds write what it computes to dump/<cname>.bin (`alohac compare`)
    # what the dump holds, relative to its block's output: {} the output; "channels": [lo, hi) of
    # it (a split actor's slice); "taps": the partial sums of those kernel taps per job, no bias
    # or activation, in accumulator units times "scale" per channel (a split kernel's CE actor)
    ref: dict = field(default_factory=dict)
    cost_s: float = 0.0  # the analysis's predicted seconds per frame
    work: int = 0  # per frame: MACs (conv, dense) or element operations, as the cost model counts
    items: int = 1  # > 1: the kernel runs once per batch item (module docstring)
    out_row: int = 0  # tokens of one output row (all items), when items > 1
    out: fp.Storage = fp.FLOAT32  # element type of the output
    out_per_token: int = 1
    staging: int = 0  # elements of a whole-tensor layout buffer (global pool, reshape), input type

    @property
    def obuf_tokens(self) -> int:
        return max([0] + self.prod)

    @property
    def obuf_elements(self) -> int:
        return self.obuf_tokens * self.out_per_token

    @property
    def obuf_bytes(self) -> int:
        return self.obuf_elements * self.out.nbytes

    @property
    def staging_bytes(self) -> int:
        return self.staging * self.ins[0].elem if self.staging else 0

    def sliced_ports(self) -> list[tuple[int, int, int, int]]:
        """(port, row tokens, one item's row tokens, window rows) of each port whose rows the
        per-item kernel takes apart."""
        return [(i, p.row_tokens, p.row_tokens // p.items, p.window_rows)
                for i, p in enumerate(self.ins) if p.items > 1]

    def item_window_bytes(self) -> int:
        """The per-item kernel's copies of one item's slice of each sliced input window."""
        return sum(rows * t * self.ins[i].elem for i, _, t, rows in self.sliced_ports())

    def item_obuf_bytes(self) -> int:
        """The per-item kernel's one-item output buffer."""
        return self.obuf_bytes // self.items if self.items > 1 else 0


@dataclass
class ThreadView:
    index: int
    name: str
    unit: str
    order: list[tuple[int, int]]  # (actor index, consecutive firings) for one frame


@dataclass
class IoView:
    actor: int
    shape: tuple[int, ...]
    elements: int
    fmt: fp.Fixed | None
    low: float | None = None
    high: float | None = None

    @property
    def row_channels(self) -> int:
        """Channels of a row of a rank-4 tensor, batch folded in (N x C)."""
        return self.shape[0] * self.shape[1]

    @property
    def storage(self) -> fp.Storage:
        return fp.storage_of(self.fmt)

    @property
    def nbytes(self) -> int:
        return self.elements * self.storage.nbytes


@dataclass
class CodegenView:
    name: str
    platform: str
    datatype: str
    fixed: bool
    weights: str  # file | embedded
    actors: list[ActorView]
    fifos: list[FifoView]
    threads: list[ThreadView]
    tensors: list[TensorView]
    input: IoView
    output: IoView
    latency_s: float
    period_s: float
    power: dict = field(default_factory=dict)

    @property
    def blob_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def blob(self) -> bytes:
        """weights.bin: the magic `ALOHAWB2`, the payload's byte count (uint64), then every tensor
        in order, each in its own storage type (int8, int16, int32 or float32), little-endian and
        packed (no padding between tensors)."""
        parts = [b"ALOHAWB2", struct.pack("<Q", self.blob_bytes)]
        for t in self.tensors:
            parts.append(np.ascontiguousarray(t.values, dtype=t.storage.dtype).tobytes())
        return b"".join(parts)

    @property
    def kernel_variants(self) -> list[str]:
        """The integer conv/dense kernels the program calls (aloha_kernels.c compiles only
        those)."""
        names = set()
        for a in self.actors:
            v = a.args.get("variant")
            if v:
                names.add(v)
        return sorted(names)

    def memory(self) -> dict:
        """The bytes the program allocates statically, by part (analyze-memory's figures)."""
        parts = {"parameter_bytes": self.blob_bytes,
                 "buffer_bytes": sum(f.nbytes for f in self.fifos),
                 "window_bytes": sum(sum(p.nbytes for p in a.ins) + a.item_window_bytes()
                                     for a in self.actors),
                 "row_bytes": sum(a.obuf_bytes + a.item_obuf_bytes() for a in self.actors),
                 "staging_bytes": sum(a.staging_bytes for a in self.actors),
                 "io_bytes": self.input.nbytes + self.output.nbytes}
        parts["scratch_bytes"] = sum(parts[k] for k in ("window_bytes", "row_bytes",
                                                        "staging_bytes", "io_bytes"))
        parts["memory_bytes"] = parts["parameter_bytes"] + parts["buffer_bytes"] + \
            parts["scratch_bytes"]
        return parts

    def binary_files(self) -> dict[str, bytes]:
        return {"weights.bin": self.blob()} if self.weights == "file" else {}

    def manifest(self) -> dict:
        """network.json: what the program holds, for tools (`alohac compare` reads the dumps)."""
        return {
            "name": self.name, "platform": self.platform, "datatype": self.datatype,
            "fixed": self.fixed, "input_shape": list(self.input.shape),
            "input_storage": self.input.storage.ctype, "output_storage": self.output.storage.ctype,
            "memory": self.memory(),
            "weights": [{"name": t.name, "ctype": t.ctype, "offset": t.offset,
                         "elements": t.length} for t in self.tensors],
            "output_shape": list(self.output.shape),
            # one input of the program is the model's whole input tensor: a batch of this many
            "batch": self.input.shape[0] if self.input.shape else 1,
            "latency_s": self.latency_s,
            "period_s": self.period_s,
            "actors": [{"name": a.name, "cname": a.cname, "block": a.block, "kernel": a.kernel,
                        "unit": a.unit, "out_shape": list(a.out_shape), "dump": a.dump,
                        "ref": a.ref,
                        "predicted_s": a.cost_s, "work": a.work}
                       for a in self.actors],
            "fifos": [{"name": f.name, "capacity": f.capacity, "analysed": f.analysed,
                       "max_firing": f.max_firing, "self_loop": f.self_loop,
                       "ctype": f.storage.ctype, "token_bytes": f.elem}
                      for f in self.fifos],
            "threads": [{"name": t.name, "unit": t.unit, "runs": len(t.order)}
                        for t in self.threads]}



def _c_float(v: float) -> str:
    if math.isnan(v) or math.isinf(v):
        raise UnsupportedError("a weight is not finite; the generated code cannot hold it")
    text = repr(float(np.float32(v)))
    return text + ("f" if ("." in text or "e" in text) else ".0f")


# ---------------------------------------------------------------------------------------------------


def _dims(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of one item of a rank-4 tensor; another rank is one row of all its elements."""
    if len(shape) == 4:
        return shape[1], shape[2], shape[3]
    return 1, 1, math.prod(shape)


def _folded(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(N x C, H, W): the whole tensor as its rows hold it, batch folded into the channels."""
    if len(shape) == 4:
        return shape[0] * shape[1], shape[2], shape[3]
    return 1, 1, math.prod(shape)


def _bcast_dims(shape: tuple[int, ...], batch: int) -> tuple[int, int, int]:
    """(C, H, W) of an operand broadcast against one item of a rank-4 output with `batch` items
    (numpy right alignment; the operand has one item or one per output item)."""
    s = (1,) * (4 - len(shape)) + tuple(shape)
    if len(s) != 4 or s[0] not in (1, batch):
        raise UnsupportedError(f"cannot broadcast a {list(shape)} operand inside a row")
    return s[1], s[2], s[3]


def _batch_items(view: ActorView, actor: csdf.ActorOp, block, plan) -> None:
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
    per_row = plan is None or plan.produce_per_row
    view.out_row = max(view.prod) // (1 if per_row else rowflow.rows_of(view.out_shape)[0])
    if view.out_row % n:
        raise UnsupportedError(f"actor @{view.name}: an output row of {view.out_row} tokens "
                               f"does not split into {n} items")


class _Weights:
    def __init__(self):
        self.tensors: list[TensorView] = []
        self.by_key: dict[object, TensorView] = {}
        self.offset = 0

    def add(self, key, name: str, values: np.ndarray, storage: fp.Storage) -> TensorView:
        """The tensor `key` in `storage` (once, however many actors use it)."""
        if key in self.by_key:
            return self.by_key[key]
        flat = np.ascontiguousarray(values).reshape(-1)
        if storage is not fp.FLOAT32 and flat.size:
            info = np.iinfo(np.dtype(storage.dtype))
            if flat.min() < info.min or flat.max() > info.max:
                raise UnsupportedError(f"constant {name} does not fit {storage.ctype}")
        t = TensorView(name, c_identifier(name, len(self.tensors), "w"), storage, self.offset,
                       flat.astype(storage.dtype))
        self.offset += t.nbytes
        self.tensors.append(t)
        self.by_key[key] = t
        return t


class _Builder:
    def __init__(self, module, graph: csdf.GraphOp):
        self.module = module
        self.graph = graph
        self.blocks = nn_blocks(module, graph)
        nn_graph = next(iter(self.blocks.values())).parent_op() if self.blocks else None
        self.nn_graph = nn_graph
        self.store = weights_of(module)
        self.fixed = any(fp.format_of(op.results[0]) is not None for op in nn_graph.ops
                         if op.results and not isinstance(op, nn.ConstOp))
        self.ref = None
        if self.fixed:
            from runtime.reference import FixedReference
            self.ref = FixedReference(nn_graph, self.store)
        self.weights = _Weights()

    # -- constants ------------------------------------------------------------------------------
    def const(self, v, name: str) -> TensorView:
        op = v.owner
        if self.fixed:
            return self.weights.add(v, name, self.ref.consts[v], fp.storage_of(fp.format_of(v)))
        return self.weights.add(v, name, const_tensor(op, self.store).materialize(), fp.FLOAT32)

    def bias_acc(self, op, index: int, acc_frac, name: str) -> TensorView | None:
        """A conv/dense/bn bias in the accumulator's format (the reference's `_bias`): int32."""
        if len(op.operands) <= index:
            return None
        b = op.operands[index]
        if not self.fixed:
            return self.const(b, name)
        q = self.ref.consts[b]
        real = fp.dequantize(q, self.ref.frac(b)) if fp.format_of(b) else q
        acc = np.broadcast_to(np.asarray(acc_frac), np.shape(real)) if np.ndim(acc_frac) else acc_frac
        return self.weights.add((b, "acc"), name, fp.quantize(real, acc, fp.BIAS_BITS), fp.INT32)

    def frac(self, v):
        return self.ref.frac(v)

    def value_storage(self, v) -> fp.Storage:
        """How the program stores the tensor `v` (a FIFO token, a window element)."""
        return fp.storage_of(fp.format_of(v)) if self.fixed else fp.FLOAT32

    # -- activation / requantisation ------------------------------------------------------------
    @staticmethod
    def act(op) -> dict:
        fused = op.fused_activation() if isinstance(op, nn.FusedActivation) else None
        kind, params = (fused[0], fused[1]) if fused else (None, ())
        return _act_record(kind, params)

    def rq(self, op, shift, channels: int, name: str, act: bool = True) -> dict:
        """The requantisation record of `op` given shift = acc_frac - out_frac (scalar or per
        output channel)."""
        fmt = fp.format_of(op.results[0])
        fused = op.fused_activation() if act and isinstance(op, nn.FusedActivation) else None
        kind = fused[0] if fused else None
        rec = {"kind": ACT[kind], "leaky_mult": 0, "qmin": fmt.qmin, "qmax": fmt.qmax,
               "clip_lo": fmt.qmin, "clip_hi": fmt.qmax, "shift0": 0, "shift": None,
               "type": fp.storage_of(fmt).tag}
        if kind == "leaky_relu":
            rec["leaky_mult"] = fp.leaky_multiplier(fused[1][0])
        elif kind == "clip":
            rec["clip_lo"], rec["clip_hi"] = fp.clip_bounds(fused[1][0], fused[1][1], fmt)
        elif kind not in (None, "relu"):
            raise UnsupportedError(f"fused activation {kind} has no fixed-point requantisation",
                                   where=name)
        s = np.asarray(shift, dtype=np.int64)
        if s.ndim and len(set(s.tolist())) > 1:
            full = np.broadcast_to(s, (channels,)) if s.size == 1 else s
            rec["shift"] = self.weights.add(("shift", name), f"{name}_shift", full, fp.INT32)
        else:
            rec["shift0"] = int(s.reshape(-1)[0]) if s.ndim else int(s)
        return rec


def _act_record(kind, params) -> dict:
    if kind not in ACT:
        raise UnsupportedError(f"activation {kind} has no float kernel")
    rec = {"kind": ACT[kind], "alpha": 0.0, "lo": 0.0, "hi": 0.0}
    if kind == "leaky_relu":
        rec["alpha"] = float(params[0]) if params else 0.01
    elif kind == "clip":
        rec["lo"], rec["hi"] = float(params[0]), float(params[1])
    return {k: (_c_float(v) if isinstance(v, float) else v) for k, v in rec.items()}


def _ports(graph: csdf.GraphOp, actor: csdf.ActorOp, fifo_index: dict[str, int], plan
           ) -> list[PortView]:
    """Input ports in port order, with the row calculus the lowering used for their rates."""
    name = actor.sym_name.data
    ins = {c.dst_port.data: c for c in graph.channels() if c.dst_name == name and not c.is_self_loop}
    loops = {c.dst_port.data: c for c in graph.channels() if c.is_self_loop and c.dst_name == name}
    ports = []
    whole = plan is not None and not plan.produce_per_row
    # ports are in0, in1, ... (a gather's: in<port>_<part>, in that order)
    names = sorted(ins, key=lambda p: tuple(int(x) for x in re.findall(r"\d+", p)))
    expected = [f"in{k}" for k in range(len(ins))]
    if actor.kind.data != "gather" and names != expected:
        raise UnsupportedError(f"actor @{name} has input ports {names}, expected {expected}")
    for k, port in enumerate(names):
        ch = ins[port]
        if plan is not None:
            value, ranges = plan.inputs[k]
            shape = nn.shape_of(value)
        else:  # boundary and gather actors: one row per firing (gather reads slices)
            shape = None
            ranges = None
        phases = actor.phase_count
        cons = rle.expand(ch.cons_runs)
        if shape is not None:
            h_rows, row_tokens = rowflow.rows_of(shape)
            rates = rowflow.input_rates(ranges, h_rows)
            new, rin, rout = list(rates.new), list(rates.reuse_in), list(rates.reuse_out)
            if [n * row_tokens for n in new] != cons:
                raise UnsupportedError(f"actor @{name} port in{k}: the channel's consumption "
                                       "does not follow the row calculus (was the graph edited?)")
            c, h, w = _dims(shape)
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


def build_view(module, platform, *, weights: str = "file",
               fifo_override: dict[str, int] | None = None) -> CodegenView:
    graphs = csdf.csdf_graphs(module)
    if len(graphs) != 1:
        raise UnsupportedError(f"code generation needs one mapped csdf.graph, found {len(graphs)}",
                               hint="compile a single network")
    graph = graphs[0]
    if graph.channels()[0].buffer is None:
        raise UnsupportedError("the csdf graph has no FIFO sizes", hint="run analyze-schedule")
    b = _Builder(module, graph)
    phases, edges = graph.dataflow_graph()
    q = repetition(phases, edges).firings
    for a, n in q.items():
        if n != phases[a]:
            raise UnsupportedError(f"actor @{a} fires {n} times per frame over {phases[a]} phases;"
                                   " the generator handles one phase cycle per frame")
    datatype = graph.datatype or platform.default_datatype
    if not b.fixed and datatype != "f32":
        raise UnsupportedError(f"the model is float but {platform.name} deploys {datatype} (it has "
                               "no float data type): the generated code would not be what the "
                               "report predicts", hint="quantize it first (alohac quantize MODEL "
                               "--data DATA), or let alohac compile --target quantize it")
    dep = Deployment(datatype, b.fixed)
    actor_map = graph.actor_map()
    fifo_override = dict(fifo_override or {})
    fifos, fifo_index = [], {}
    for i, ch in enumerate(graph.channels()):
        name = ch.sym_name.data
        analysed = ch.buffer
        cap = fifo_override.pop(name, analysed)
        most = max(max(rle.expand(ch.prod_runs)), max(rle.expand(ch.cons_runs)))
        storage, per_token = channel_storage(ch, actor_map, b.blocks, dep)
        fifos.append(FifoView(i, name, c_identifier(name, i, "f"), ch.src_name, ch.dst_name, cap,
                              analysed, ch.is_self_loop, most, storage, per_token))
        fifo_index[name] = i
    if fifo_override:
        raise UnsupportedError(f"no channel {', '.join(fifo_override)} to resize")
    actors: list[ActorView] = []
    index = {a.sym_name.data: i for i, a in enumerate(graph.actors())}
    inputs, outputs = [], []
    for i, actor in enumerate(graph.actors()):
        name = actor.sym_name.data
        block = actor.block_in(b.blocks)
        kind = actor.kind.data
        boundary = kind in ("input", "output", "gather", "merge")
        plan = plan_block(block) if block is not None and not boundary else None
        outs = [fifo_index[c.sym_name.data] for c in graph.channels()
                if c.src_name == name and not c.is_self_loop]
        prods = {tuple(rle.expand(c.prod_runs)) for c in graph.channels()
                 if c.src_name == name and not c.is_self_loop}
        if len(prods) > 1:
            raise UnsupportedError(f"actor @{name} produces differently on its outputs")
        prod = list(prods.pop()) if prods else [0] * actor.phase_count
        ports = _ports(graph, actor, fifo_index, plan)
        for p in ports:
            p.storage, p.per_token = fifos[p.fifo].storage, fifos[p.fifo].per_token
        view = ActorView(i, name, c_identifier(name, i), kind, "", actor.pe or "",
                         actor.pe_kind or "", actor.phase_count, ports, outs, prod,
                         block=actor.block_name, cost_s=actor.cost_s or 0.0,
                         work=rle.total(actor.work_runs))
        if outs:
            view.out, view.out_per_token = fifos[outs[0]].storage, fifos[outs[0]].per_token
        _kernel(b, view, actor, block)
        _batch_items(view, actor, block, plan)
        if kind == "input":
            inputs.append(view)
        elif kind == "output":
            outputs.append(view)
        actors.append(view)
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedError(f"the generated program streams one input and one output; the model"
                               f" has {len(inputs)} input(s) and {len(outputs)} output(s)",
                               hint="compile a model with one input and one output")
    threads = _threads(graph, actors, fifos, index, platform)
    return CodegenView(
        graph.sym_name.data.removesuffix("_csdf"), platform.name, datatype, b.fixed, weights,
        actors, fifos, threads, b.weights.tensors, _io(b, inputs[0], True),
        _io(b, outputs[0], False), graph.latency_s or 0.0, graph.period_s or 0.0)


def _io(b: _Builder, actor: ActorView, is_input: bool) -> IoView:
    if is_input:
        op = next(o for o in b.nn_graph.ops if isinstance(o, nn.InputOp))
        v = op.output
    else:
        out = b.nn_graph.ops.last
        v = out.operands[0]
    shape = nn.shape_of(v)
    low = high = None
    if is_input:
        if op.value_range is not None:
            low, high = nn.floats(op.value_range)[:2]
    return IoView(actor.index, shape, math.prod(shape), fp.format_of(v), low, high)


def _threads(graph, actors: list[ActorView], fifos: list[FifoView], index: dict[str, int],
             platform) -> list[ThreadView]:
    """One thread per processing unit, running its actors in the one-frame schedule's order.

    The actors the mapping leaves unplaced (input, output, gather) join the thread of the nearest
    programmable unit: a thread of their own each would put more threads than cores on the
    machine, and every hand-over between them would cost a sleep and a wake-up. Folding keeps the
    program deadlock-free: the one-frame timeline, in start order, is one sequential execution of
    the graph (a firing starts after those whose tokens it reads and whose space it reuses) that
    holds no more tokens than the timed schedule, and every thread's order is a subsequence of it.
    """
    from passes.analyze_schedule import schedule
    report = schedule(graph, frames=1, in_flight=0, record=True, annotate=False)
    home = _homes(actors, fifos, index, platform)
    order: dict[str, list[int]] = {}
    for f in report.frame_timeline:  # start order; the simulator records ties causally
        a = index[f.actor]
        order.setdefault(actors[a].unit or home.get(a, f.unit), []).append(a)
    threads = []
    for unit, seq in order.items():
        runs = [(a, len(list(g))) for a, g in itertools.groupby(seq)]
        label = unit if not unit.startswith("@") else actors[seq[0]].name
        threads.append(ThreadView(len(threads), label, unit, runs))
    return threads


def _homes(actors: list[ActorView], fifos: list[FifoView], index: dict[str, int],
           platform) -> dict[int, str]:
    """Unplaced actor -> the programmable (cpu) unit it runs on: that of the nearest placed actor,
    consumers before producers, else the platform's first cpu unit (none: it keeps a thread)."""
    cpu = [u for u, pe in platform.units() if pe.kind == "cpu"]
    if not cpu:
        return {}
    near: dict[int, list[int]] = {a.index: [] for a in actors}
    for f in fifos:
        if not f.self_loop:
            near[index[f.src]].append(index[f.dst])
    for f in fifos:
        if not f.self_loop:
            near[index[f.dst]].append(index[f.src])
    homes = {}
    for a in actors:
        if a.unit:
            continue
        seen, frontier, found = {a.index}, [a.index], None
        while frontier and found is None:
            nxt = []
            for i in frontier:
                for j in near[i]:
                    if j not in seen:
                        seen.add(j)
                        nxt.append(j)
            found = next((actors[j].unit for j in nxt if actors[j].unit in cpu), None)
            frontier = nxt
        homes[a.index] = found or cpu[0]
    return homes


# ---------------------------------------------------------------------------------------------------
# per-operator kernel records


def _kernel(b: _Builder, view: ActorView, actor: csdf.ActorOp, block) -> None:
    kind = actor.kind.data
    fixed = b.fixed
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
    a = view.args
    if isinstance(block, nn.ConvOp):
        kernel, strides, pads, dil = block.window()
        x = nn.shape_of(block.input)
        o = block.out_shape()
        cin, h, w = x[1], x[2], x[3]
        a["geom"] = dict(cin=cin, cout=o[1], h=h, w=w, oh=o[2], ow=o[3], kh=kernel[0],
                         kw=kernel[1], sh=strides[0], sw=strides[1], pt=pads[0], pl=pads[1],
                         dh=dil[0], dw=dil[1], group=block.prop_int("group", 1))
        a["co"] = lo_hi or (0, o[1])
        a["w"] = b.const(block.weight, f"{view.block}_w")
        if fixed:
            acc = b.frac(block.input) + np.asarray(b.frac(block.weight))
            a["bias"] = b.bias_acc(block, 2, acc, f"{view.block}_b")
            a["rq"] = b.rq(block, acc - fp.format_of(block.output).frac, o[1], view.block)
            a["acc_scale"] = np.broadcast_to(2.0 ** -acc, (o[1],)).tolist()
            _accumulator(a, block, cin // a["geom"]["group"] * kernel[0] * kernel[1], view.name)
            a["geom"].update(wtype=a["w"].storage.tag, acc32=a["acc32"])
        else:
            a["geom"].update(wtype=fp.FLOAT32.tag, acc32=0)
            a["bias"] = b.const(block.bias, f"{view.block}_b") if block.bias is not None else None
            a["act"] = b.act(block)
            a["acc_scale"] = [1.0] * o[1]
        view.kernel = "conv"
    elif isinstance(block, nn.PoolOp):
        ksel = {"max": 0, "avg": 1, "global_max": 0, "global_avg": 1}[block.kind.data]
        x = nn.shape_of(block.input)
        o = block.out_shape()
        if fixed:
            a["rq"] = b.rq(block, fp.format_of(block.input).frac - fp.format_of(block.output).frac,
                           o[1], view.block)
        else:
            a["act"] = b.act(block)
        if block.is_global:
            view.kernel = "gpool"
            a.update(c=x[0] * x[1], hw=x[2] * x[3], kind=ksel)
            view.staging = math.prod(x)
        else:
            kernel, strides, pads, dil = block.window()
            a["geom"] = dict(kind=ksel, c=x[0] * x[1], h=x[2], w=x[3], oh=o[2], ow=o[3],
                             kh=kernel[0], kw=kernel[1], sh=strides[0], sw=strides[1], pt=pads[0], pl=pads[1],
                             pb=pads[2], pr=pads[3], dh=dil[0], dw=dil[1],
                             count_include_pad=block.prop_int("count_include_pad"))
            view.kernel = "pool"
    elif isinstance(block, nn.DenseOp):
        m = block.out_shape()[1]
        k = nn.shape_of(block.weight)[1]
        a.update(k=k, m=lo_hi or (0, m))
        a["w"] = b.const(block.weight, f"{view.block}_w")
        if fixed:
            acc = b.frac(block.input) + np.asarray(b.frac(block.weight))
            a["bias"] = b.bias_acc(block, 2, acc, f"{view.block}_b")
            a["rq"] = b.rq(block, acc - fp.format_of(block.output).frac, m, view.block)
            _accumulator(a, block, k, view.name)
        else:
            a["bias"] = b.const(block.bias, f"{view.block}_b") if block.bias is not None else None
            a["act"] = b.act(block)
        view.kernel = "dense"
    elif isinstance(block, (nn.AddOp, nn.MulOp)):
        _binary(b, view, block)
    elif isinstance(block, nn.BatchNormOp):
        if len(block.params) != 2:
            raise UnsupportedError("a batch norm must be in scale-shift form", where=view.name,
                                   hint="run canonicalize")
        c = view.out_shape[1] if len(view.out_shape) == 4 else view.out_shape[-1]
        s = block.params[0]
        if fixed:
            fs = np.asarray(b.frac(s))
            acc = b.frac(block.input) + fs
            scale = np.broadcast_to(b.ref.consts[s].reshape(-1), (c,)) \
                if b.ref.consts[s].size == 1 else b.ref.consts[s].reshape(-1)
            a["scale"] = b.weights.add((s, "bn"), f"{view.block}_scale", scale,
                                       fp.storage_of(fp.format_of(s)))
            accs = np.broadcast_to(acc, (c,)) if np.ndim(acc) else np.full(c, acc)
            bq = b.ref.consts[block.params[1]]
            real = fp.dequantize(bq, b.frac(block.params[1])) if fp.format_of(block.params[1]) \
                else bq
            real = np.broadcast_to(np.asarray(real).reshape(-1), (c,))
            a["bias"] = b.weights.add((block.params[1], "bn"), f"{view.block}_bias",
                                      fp.quantize(real, accs, fp.BIAS_BITS), fp.INT32)
            a["rq"] = b.rq(block, accs - fp.format_of(block.output).frac, c, view.block)
        else:
            for key, v in (("scale", s), ("bias", block.params[1])):
                vals = const_tensor(v.owner, b.store).materialize().reshape(-1)
                a[key] = b.weights.add((v, "bn"), f"{view.block}_{key}",
                                       np.broadcast_to(vals, (c,)), fp.FLOAT32)
            a["act"] = b.act(block)
        view.kernel = "bn"
    elif isinstance(block, nn.ConcatOp):
        axis = block.prop_int("axis")
        if len(view.out_shape) != 4 or axis != 1:
            raise UnsupportedError(f"concat along axis {axis} of a rank-{len(view.out_shape)} "
                                   "tensor has no generated kernel", where=view.name)
        parts = []
        for v in block.inputs:
            c = nn.shape_of(v)[1]
            shift = fp.format_of(v).frac - fp.format_of(block.output).frac if fixed else 0
            parts.append({"c": c, "rq": _plain_rq(block, shift) if fixed else None})
        a["parts"] = parts
        a["w"] = view.out_shape[3]
        view.kernel = "concat"
    elif isinstance(block, nn.ActOp):
        _activation(b, view, block)
    elif isinstance(block, nn.LrnOp):
        c, _, w = _dims(view.out_shape)
        a.update(c=c, w=w, size=block.prop_int("size"), alpha=block.prop_float("alpha"),
                 beta=block.prop_float("beta"), bias=block.prop_float("bias"))
        if fixed:
            a.update(fin=fp.format_of(block.input).frac, **_island(block))
        view.kernel = "lrn"
    elif isinstance(block, nn.ChannelShuffleOp):
        c, _, w = _dims(view.out_shape)
        a.update(c=c, w=w, groups=block.prop_int("groups"))
        if fixed:
            a["rq"] = _plain_rq(block, fp.format_of(block.input).frac -
                                fp.format_of(block.output).frac)
        view.kernel = "shuffle"
    elif isinstance(block, (nn.ReshapeOp, nn.FlattenOp, nn.DropoutOp)):
        x = nn.shape_of(block.operands[0])
        a["in_dims"] = _folded(x)
        a["out_dims"] = _folded(view.out_shape)
        a["n"] = math.prod(x)
        view.staging = a["n"]
        if fixed:
            a["rq"] = _plain_rq(block, fp.format_of(block.operands[0]).frac -
                                fp.format_of(block.results[0]).frac)
        view.kernel = "copy"
    else:
        raise UnsupportedError(f"{block.name} ({view.name}) has no generated kernel",
                               hint="the host kernel library covers conv, pool, dense, add, mul, "
                               "batchnorm, concat (channels), activations, LRN, softmax, channel "
                               "shuffle, reshape/flatten")


def _shape_of_block(view: ActorView, block, b: _Builder) -> None:
    if block is None:
        return
    view.out_shape = tuple(nn.shape_of(block.results[0]))
    if b.fixed:
        view.out_frac = fp.format_of(block.results[0]).frac


def _plain_rq(op, shift: int) -> dict:
    fmt = fp.format_of(op.results[0])
    return {"kind": ACT[None], "leaky_mult": 0, "qmin": fmt.qmin, "qmax": fmt.qmax,
            "clip_lo": fmt.qmin, "clip_hi": fmt.qmax, "shift0": int(shift), "shift": None,
            "type": fp.storage_of(fmt).tag}


def _island(op) -> dict:
    fmt = fp.format_of(op.results[0])
    return {"fout": fmt.frac, "qmin": fmt.qmin, "qmax": fmt.qmax, "otype": fp.storage_of(fmt).tag}


_SHORT = {"int8_t": "i8", "uint8_t": "u8", "int16_t": "i16", "uint16_t": "u16", "int32_t": "i32"}


def _accumulator(a: dict, block, fan_in: int, name: str) -> None:
    """A conv/dense's accumulator (int32 where fixedpoint.accumulator_of proves it enough) and
    the integer kernel variant it calls (aloha_kernels.c's `<input>_<weight>_a<bits>`)."""
    x, w = fp.format_of(block.input), fp.format_of(block.weight)
    if not w.signed:
        raise UnsupportedError(f"{name}: unsigned weights ({w}) have no integer kernel",
                               hint="quantize with signed weight formats (alohac quantize does)")
    acc = fp.accumulator_of(fan_in, x, w)
    a["acc32"] = int(acc is fp.INT32)
    a["variant"] = (f"{_SHORT[fp.storage_of(x).ctype]}_{_SHORT[fp.storage_of(w).ctype]}_"
                    f"a{8 * acc.nbytes}")


def _binary(b: _Builder, view: ActorView, block) -> None:
    a = view.args
    if len(view.out_shape) != 4:
        raise UnsupportedError(f"{block.name} on a rank-{len(view.out_shape)} tensor has no "
                               "generated kernel", where=view.name)
    c, h, w = _dims(view.out_shape)
    operands = []
    port = 0
    for v in (block.lhs, block.rhs):
        oc, oh, ow = _bcast_dims(nn.shape_of(v), view.out_shape[0])
        if (oc not in (1, c)) or (oh not in (1, h)) or (ow not in (1, w)):
            raise UnsupportedError(f"{block.name} broadcast of {list(nn.shape_of(v))} to "
                                   f"{list(view.out_shape)} is not supported", where=view.name)
        if isinstance(v.owner, nn.ConstOp):
            if len(nn.shape_of(v)) == 4 and nn.shape_of(v)[0] > 1:
                raise UnsupportedError(f"{block.name}: a constant operand with one value per "
                                       f"batch item ({list(nn.shape_of(v))}) has no generated "
                                       "kernel", where=view.name,
                                       hint="compile with batch 1 and stream the items")
            t = b.const(v, f"{view.block}_k{len(operands)}")
            operands.append({"const": t, "c": oc, "h": oh, "w": ow})
        else:
            operands.append({"port": port, "c": oc, "h": oh, "w": ow})
            port += 1
    a["operands"] = operands
    a.update(c=c, w=w)
    if b.fixed:
        fa, fb = b.frac(block.lhs), b.frac(block.rhs)
        if np.ndim(fa) or np.ndim(fb):
            raise UnsupportedError("per-channel formats on an elementwise operand", where=view.name)
        fout = fp.format_of(block.output).frac
        if isinstance(block, nn.AddOp):
            f = max(fa, fb)
            a.update(la=f - fa, lb=f - fb)
            a["rq"] = b.rq(block, f - fout, c, view.block)
        else:
            a["rq"] = b.rq(block, fa + fb - fout, c, view.block, act=False)
    else:
        a["act"] = b.act(block) if isinstance(block, nn.AddOp) else _act_record(None, ())
    view.kernel = "add" if isinstance(block, nn.AddOp) else "mul"


def _activation(b: _Builder, view: ActorView, block: nn.ActOp) -> None:
    a = view.args
    kind = block.kind.data
    shape = view.out_shape
    if kind == "softmax":
        axis = block.prop_int("axis", 1) % len(shape)
        if len(shape) == 4 and axis == 1:
            a.update(n=shape[1], inner=shape[3], per_row=True, outer=shape[0])
        elif axis == len(shape) - 1:
            a.update(n=shape[-1], inner=1, per_row=False, outer=math.prod(shape[:-1]))
        else:
            raise UnsupportedError(f"softmax along axis {axis} of {list(shape)}", where=view.name)
        if b.fixed:
            a.update(fin=fp.format_of(block.input).frac, **_island(block))
        view.kernel = "softmax"
        return
    c, _, w = _folded(shape)
    a["n"] = c * w
    if b.fixed:
        if kind in ("sigmoid", "tanh"):
            a.update(fin=fp.format_of(block.input).frac, island=ACT[kind], **_island(block))
            view.kernel = "island"
            return
        fmt = fp.format_of(block.output)
        rq = _plain_rq(block, fp.format_of(block.input).frac - fmt.frac)
        params = nn.floats(block.params)
        if kind == "relu":
            rq["kind"] = ACT["relu"]
        elif kind == "leaky_relu":
            rq.update(kind=ACT["leaky_relu"], leaky_mult=fp.leaky_multiplier(params[0]))
        elif kind == "clip":
            lo, hi = fp.clip_bounds(*params, fmt)
            rq.update(kind=ACT["clip"], clip_lo=lo, clip_hi=hi)
        else:
            raise UnsupportedError(f"activation {kind} has no fixed-point kernel", where=view.name)
        a["rq"] = rq
        view.kernel = "requant"
    else:
        a["act"] = _act_record(kind, nn.floats(block.params))
        view.kernel = "act"
