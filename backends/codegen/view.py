"""The plain objects C templates read: FIFOs, input ports, actors with their kernel records,
threads, weight tensors, the program's inputs and outputs, and the whole view with its memory
figures, weights blob and manifest. Templates never walk the IR; build.py fills these once."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from aloha_ir import fixedpoint as fp
from backends.codegen.names import c_float


class TokenBuffer:
    """A buffer of elements of `storage`, `per_token` elements a token (a FIFO, an input window);
    a subclass says how many `elements` it holds."""

    @property
    def elem(self) -> int:
        """Bytes of one token."""
        return self.storage.nbytes * self.per_token

    @property
    def nbytes(self) -> int:
        return self.elements * self.storage.nbytes


@dataclass
class FifoView(TokenBuffer):
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
    def elements(self) -> int:
        return max(1, self.capacity) * self.per_token


@dataclass
class PortView(TokenBuffer):
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
    def elements(self) -> int:
        return self.window_rows * self.row_tokens * self.per_token


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
            return ", ".join(c_float(v) for v in self.values.tolist())
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
    items: int = 1  # > 1: the kernel runs once per batch item (see backends/codegen/__init__.py)
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
    """One of the program's inputs or outputs: the model's port, the input or output actor that
    streams it, and its file on the command line (`arg`, as the usage names it) and C globals
    (`var`: the FILE, `var`_frame: one frame)."""

    actor: int
    port: str
    shape: tuple[int, ...]
    elements: int
    fmt: fp.Fixed | None
    var: str
    arg: str

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

    def manifest(self) -> dict:
        return {"port": self.port, "shape": list(self.shape), "storage": self.storage.ctype,
                "file": self.arg}


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
    inputs: list[IoView]  # in the model's input order: the program's first arguments
    outputs: list[IoView]  # in the model's output order: its last arguments
    latency_s: float
    period_s: float
    power: dict = field(default_factory=dict)
    # threads: one pthread per unit (aloha_rt.c); static: the whole frame's firings in one loop
    # in the schedule's start order, one thread, no pthreads, no malloc (a microcontroller's way)
    runtime: str = "threads"
    # with runtime "auto": which of the two it chose and why (threads.RuntimeChoice)
    runtime_choice: object = None

    @property
    def thread_units(self) -> list[str]:
        """The units whose actors a thread runs (a platform installs their power knobs): each
        thread's unit, or with the static runtime every unit an actor is mapped to (its one thread
        runs them all, and calls every such unit's knob around each frame)."""
        if self.runtime == "static":
            return sorted({a.unit for a in self.actors if a.unit})
        return [t.unit for t in self.threads]

    def io(self, actor: ActorView) -> IoView:
        """The input or output that the boundary actor `actor` streams."""
        return next(v for v in (*self.inputs, *self.outputs) if v.actor == actor.index)

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
                 "io_bytes": sum(v.nbytes for v in (*self.inputs, *self.outputs))}
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
            "fixed": self.fixed,
            "inputs": [v.manifest() for v in self.inputs],
            "outputs": [v.manifest() for v in self.outputs],
            "memory": self.memory(),
            "weights": [{"name": t.name, "ctype": t.ctype, "offset": t.offset,
                         "elements": t.length} for t in self.tensors],
            # one frame of the program is each model input's whole tensor: a batch of this many
            "batch": self.inputs[0].shape[0] if self.inputs[0].shape else 1,
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
            "runtime": self.runtime,
            **({"runtime_choice": self.runtime_choice.manifest()} if self.runtime_choice else {}),
            "threads": [{"name": t.name, "unit": t.unit, "runs": len(t.order)}
                        for t in self.threads]}
