"""The loaded form of an architecture description: immutable dataclasses, exportable to JSON.

A `Platform` is processing elements (each a kind of cost model with its parameters), memories,
links, power figures and data types. All quantities are in SI base units (Hz, B, B/s, W, V, s, J).
Two PE kinds exist, because two cost models exist:
- `conv-engine`: a grid of sum-of-products units fed by DMAs from a scratchpad, run in jobs
  (NEURAghe's Convolution Engine, Orlando's convolution accelerators);
- `cpu`: a core running kernels at some operations per cycle, bounded by its memory bandwidth
  (the Zynq's ARM cores, Orlando's DSPs, the host's x86 cores).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

DATATYPE_BITS = {"f32": 32, "fixed16": 16, "fixed8": 8}
PE_KINDS = ("conv-engine", "cpu")


def _named(items, name: str):
    """The item called `name` (PEs, memories and links are looked up by name); KeyError if none."""
    for x in items:
        if x.name == name:
            return x
    raise KeyError(name)


@dataclass(frozen=True)
class KernelRule:
    """A kernel the engine does not run natively: `jobs` runs of `native`, merged on `merge_on`."""

    kernel: tuple[int, int]
    native: tuple[int, int]
    jobs: int = 1
    merge_on: str | None = None


@dataclass(frozen=True)
class OperatingPoint:
    name: str
    clock_hz: float
    voltage_v: float | None = None
    active_w: float | None = None  # per unit; None: the PE's own figure
    idle_w: float | None = None


@dataclass(frozen=True)
class ProcessingElement:
    name: str
    kind: str
    count: int
    ops: tuple[str, ...]
    clock_hz: float
    active_w: float = 0.0  # per unit, while running a firing
    idle_w: float = 0.0  # per unit, otherwise
    operating_points: tuple[OperatingPoint, ...] = ()
    # cpu
    ops_per_cycle: tuple[tuple[str, float], ...] = ()  # data type -> elementary ops per cycle
    memory_bandwidth_bps: float = 0.0  # bytes a kernel streams per second at most (0: unbounded)
    call_overhead_s: float = 0.0
    # what the generated program pays to pass a FIFO transfer to another unit's thread beyond the
    # copy (its sleeps and wake-ups, amortised); not in the schedule: --runtime auto weighs it
    handover_s: float = 0.0
    # conv-engine
    grid: tuple[int, int] = (1, 1)  # rows (output maps in parallel) x columns (input groups)
    multipliers: int = 0  # per sum-of-products unit
    pixels_per_cycle: int = 1  # per unit
    simd: tuple[tuple[str, int], ...] = ()  # data type -> MACs packed per multiplier
    kernels: tuple[tuple[int, int], ...] = ()  # native kernel sizes
    kernel_rules: tuple[KernelRule, ...] = ()
    stride: str = "native"  # or "subsample": computed at stride 1, subsampled
    max_pad: int = 0
    job_overhead_s: float = 0.0
    pipeline_fill_cycles: int = 0
    accumulator_bytes: int = 4
    scratchpad: str | None = None  # memory holding a job's tiles
    activation_dma: str | None = None  # link for activations in and out
    weight_dma: str | None = None  # link for weights

    def units(self) -> list[str]:
        """One name per physical unit: `arm0`, `arm1` (a single unit keeps the PE's name)."""
        return [self.name] if self.count == 1 else [f"{self.name}{i}" for i in range(self.count)]

    def rate(self, datatype: str) -> float:
        return dict(self.ops_per_cycle).get(datatype, 0.0)

    def pack(self, datatype: str) -> int:
        return dict(self.simd).get(datatype, 1)

    def supports(self, op: str) -> bool:
        return op in self.ops

    def operating_point(self, name: str | None) -> OperatingPoint | None:
        for p in self.operating_points:
            if p.name == name:
                return p
        return None


@dataclass(frozen=True)
class Memory:
    name: str
    size_bytes: float
    bandwidth_bps: float = 0.0
    banks: int = 1
    holds: tuple[str, ...] = ()  # "weights", "activations"


@dataclass(frozen=True)
class Link:
    name: str
    bandwidth_bps: float
    latency_s: float = 0.0
    between: tuple[str, ...] = ()  # PE or memory names it connects
    energy_per_byte_j: float = 0.0


@dataclass(frozen=True)
class Platform:
    name: str
    description: str
    backend: str
    datatypes: tuple[str, ...]
    default_datatype: str
    static_w: float
    pes: tuple[ProcessingElement, ...]
    memories: tuple[Memory, ...] = ()
    links: tuple[Link, ...] = ()
    operating_points: tuple[str, ...] = ()  # names every PE with operating points defines
    default_operating_point: str | None = None
    source: str = field(default="", compare=False)

    def pe(self, name: str) -> ProcessingElement:
        return _named(self.pes, name)

    def memory(self, name: str) -> Memory:
        return _named(self.memories, name)

    def link(self, name: str) -> Link:
        return _named(self.links, name)

    def units(self) -> list[tuple[str, ProcessingElement]]:
        """(unit name, its PE) for every physical processing unit, in declaration order."""
        return [(u, p) for p in self.pes for u in p.units()]

    def clock(self, pe: ProcessingElement, opp: str | None = None) -> float:
        point = pe.operating_point(opp or self.default_operating_point)
        return point.clock_hz if point else pe.clock_hz

    def power(self, pe: ProcessingElement, opp: str | None = None) -> tuple[float, float]:
        """(active, idle) watts per unit of `pe` at the operating point."""
        point = pe.operating_point(opp or self.default_operating_point)
        active = point.active_w if point and point.active_w is not None else pe.active_w
        idle = point.idle_w if point and point.idle_w is not None else pe.idle_w
        return active, idle

    def link_between(self, a: str, b: str) -> Link | None:
        """The link joining PEs (or memories) `a` and `b`; links with no `between` join any pair."""
        fallback = None
        for x in self.links:
            if a in x.between and b in x.between:
                return x
            if not x.between and fallback is None:
                fallback = x
        return fallback

    def to_json(self) -> dict:
        return dataclasses.asdict(self)
