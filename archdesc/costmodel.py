"""How long a layer takes on a processing element: the mechanistic cost models of the two PE kinds.

`conv-engine` (hardware.md's first-order model of NEURAghe's CE, also used for Orlando's CAs):
- a kernel the engine lacks runs as its `kernel` rule says (1x1 as a zero-padded 3x3; 7x7 as four
  5x5 jobs whose partial outputs another PE merges), or as the smallest native kernel that holds it;
- a unit does `multipliers` MACs per cycle for `pixels_per_cycle` output pixels: a k x k kernel
  covers floor(multipliers / k^2) input maps per column (3 for 3x3 and 1 for 5x5 on NEURAghe);
  input maps are padded to that x grid columns, output maps to grid rows (the channel granularity);
- with `stride = subsample` the engine computes the stride-1 output and drops rows/columns;
- work is split in jobs: a tile of rows x one group of `grid rows` output maps, streaming every
  input group; tiles are sized so the input rows plus the partial sums of G output groups fit the
  scratchpad, and the tiling (G, rows) with the shortest time is chosen, as a tuned runtime would;
- cycles per pass over an input group = (tile rows + k - 1) x padded width / pixels per cycle +
  pipeline fill; time = max(cycles / clock + jobs x per-job overhead, DMA bytes / bandwidth) with
  weights on one DMA and activations in and out on the other; a batch of N items is N passes of
  the whole job table, one item after the other.
`cpu`: time = max(ops / (ops_per_cycle x clock), bytes touched / memory bandwidth) + per-firing call
overhead; conv and dense count 2 ops per MAC.

The mechanisms, their source labels in hardware.md, and where each is checked by hand
(tests/test_costmodel.py; the report's "how" column names the ones a layer hit):
- channel granularity (input maps to 3 x N_COL or N_COL, output maps to N_ROW) [C];
- 1x1 as a zero-padded 3x3, 7x7 as four 5x5 jobs merged on the ARM [C] (11x11 as nine [D]);
- stride computed at stride 1 and subsampled [C]: s^2 the useful work (ResNet's stride-2 layers);
- 8-bit packing, two MACs per DSP [C]; the pipeline fill per pass [E] does not pack;
- TCDM tiling with halo rows streamed again, weights reloaded per tile [C][D];
- a per-job overhead [E] (hardware.md: 1-3 us), which governs small late layers (7x7, 14x14 maps);
- DMA bound: activations in and out on one DMA, weights on the other, 0.8 GB/s each [C]; the CEs
  of a multi-CE configuration share the cluster's DMAs and TCDM, split statically [D];
- the ARM: NEON rate [C][D], memory bandwidth [C] (residual adds, pooling and merges are
  memory-bound; fully connected layers compute-bound), a call overhead per firing [E]; its work
  overlaps the CE's through the self-timed schedule (different units), not here.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from archdesc.model import DATATYPE_BITS, KernelRule, Platform, ProcessingElement


@dataclass(frozen=True)
class Layer:
    """What a cost model needs to know of one actor's work (one nn block, or a slice of one)."""

    op: str  # operator family: conv, dense, pool, add, ...
    cin: int = 1
    hin: int = 1
    win: int = 1
    cout: int = 1
    hout: int = 1
    wout: int = 1
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    group: int = 1
    macs: int = 0
    work: int = 0  # elementary operations of a non-MAC operator (the csdf actor's work)
    params: int = 0  # parameter elements
    in_elems: int = 0  # input elements read
    out_elems: int = 0
    firings: int = 1  # csdf firings per graph iteration (per-call overheads)
    jobs: int = 1  # partial results a merge combines (a merge actor's layer)
    batch: int = 1  # items of a batch (shapes above are one item's; counts are the whole batch's)


@dataclass(frozen=True)
class Cost:
    seconds: float
    compute_s: float
    transfer_s: float
    jobs: int = 0
    note: str = ""
    tile_rows: int = 0  # conv engine: the chosen tiling (stride-1 output rows per tile), so a
    tiles: int = 0  # backend issues exactly the jobs the cost counts


class Unsupported(Exception):
    """The PE cannot run this layer (operator not listed, kernel without a rule)."""


def native_kernel(pe: ProcessingElement, kernel: tuple[int, int]) -> KernelRule | None:
    """How `pe` runs `kernel`: its rule, the kernel itself, the smallest native one holding it."""
    for r in pe.kernel_rules:
        if r.kernel == kernel:
            return r
    if kernel in pe.kernels:
        return KernelRule(kernel, kernel)
    fits = [k for k in pe.kernels if k[0] >= kernel[0] and k[1] >= kernel[1]]
    if fits:
        return KernelRule(kernel, min(fits, key=lambda k: k[0] * k[1]))
    return None


def cost(platform: Platform, pe: ProcessingElement, layer: Layer, datatype: str,
         opp: str | None = None) -> Cost:
    """Seconds per graph iteration of `layer` on one unit of `pe` (raises Unsupported)."""
    if not pe.supports(layer.op):
        raise Unsupported(f"{pe.name} does not run '{layer.op}'")
    return _cost(platform, pe, layer, datatype, platform.clock(pe, opp))


@functools.lru_cache(maxsize=65536)
def _cost(platform: Platform, pe: ProcessingElement, layer: Layer, datatype: str,
          clock: float) -> Cost:
    if pe.kind == "conv-engine":
        c = _engine(platform, pe, layer, datatype, clock)
        n = layer.batch
        return Cost(c.seconds * n, c.compute_s * n, c.transfer_s * n, c.jobs * n,
                    c.note + (f", {n} items" if n > 1 else ""), c.tile_rows, c.tiles)
    return _cpu(pe, layer, datatype, clock)


def _bytes(datatype: str) -> int:
    return DATATYPE_BITS[datatype] // 8


def _cpu(pe: ProcessingElement, layer: Layer, datatype: str, clock: float) -> Cost:
    rate = pe.rate(datatype) or max(r for _, r in pe.ops_per_cycle)
    ops = 2 * layer.macs if layer.macs else layer.work
    b = _bytes(datatype)
    touched = (layer.in_elems + layer.out_elems + layer.params) * b
    compute = ops / (rate * clock)
    transfer = touched / pe.memory_bandwidth_bps if pe.memory_bandwidth_bps else 0.0
    calls = layer.firings * pe.call_overhead_s
    bound = (f"memory-bound: {touched:,} B at {pe.memory_bandwidth_bps / 1e9:g} GB/s"
             if transfer > compute else
             f"compute-bound: {ops:,} ops at {rate:g}/cycle")
    return Cost(max(compute, transfer) + calls, compute, transfer,
                note=f"{bound}, + {layer.firings} call(s) x {pe.call_overhead_s * 1e6:g} us")


def _engine(platform: Platform, pe: ProcessingElement, layer: Layer, datatype: str,
            clock: float) -> Cost:
    if layer.op != "conv":
        raise Unsupported(f"{pe.name} runs conv only")
    kh = (layer.kernel[0] - 1) * layer.dilation[0] + 1
    kw = (layer.kernel[1] - 1) * layer.dilation[1] + 1
    rule = native_kernel(pe, (kh, kw))
    if rule is None:
        raise Unsupported(f"{pe.name} has no way to run a {kh}x{kw} kernel")
    if layer.group > 1:  # every group is a separate convolution
        one = Layer("conv", layer.cin // layer.group, layer.hin, layer.win,
                    layer.cout // layer.group, layer.hout, layer.wout, layer.kernel, layer.stride,
                    layer.pads, layer.dilation, 1, layer.macs // layer.group)
        c = _engine(platform, pe, one, datatype, clock)
        return Cost(c.seconds * layer.group, c.compute_s * layer.group,
                    c.transfer_s * layer.group, c.jobs * layer.group, f"{layer.group} groups x "
                    + c.note, c.tile_rows, c.tiles)
    nh, nw = rule.native
    rows, cols = pe.grid
    area = nh * nw
    per_col = max(1, pe.multipliers // area)
    cycles_per_pixel = math.ceil(area / pe.multipliers)
    in_groups = math.ceil(layer.cin / (per_col * cols))
    out_groups = math.ceil(layer.cout / rows)
    cin_padded = in_groups * per_col * cols
    pt, pl, pb, pr = layer.pads
    if pe.stride == "subsample":  # stride-1 output rows and columns
        h1, w1, sh = layer.hin + pt + pb - kh + 1, layer.win + pl + pr - kw + 1, 1
    else:
        h1, w1, sh = layer.hout, layer.wout, layer.stride[0]
    wpad = w1 + nw - 1  # columns streamed per row: the native kernel's padded width
    b = _bytes(datatype)
    ppc = pe.pixels_per_cycle * pe.pack(datatype)
    weight_bytes = layer.cout * layer.cin * layer.kernel[0] * layer.kernel[1] * b  # group is 1 here
    out_bytes = layer.cout * layer.hout * layer.wout * b
    scratch = platform.memory(pe.scratchpad).size_bytes if pe.scratchpad else float("inf")
    act_bw = platform.link(pe.activation_dma).bandwidth_bps if pe.activation_dma else float("inf")
    w_bw = platform.link(pe.weight_dma).bandwidth_bps if pe.weight_dma else float("inf")
    per_row_in = cin_padded * wpad * b
    best: Cost | None = None
    for g in range(1, out_groups + 1):
        per_row_out = g * rows * w1 * pe.accumulator_bytes
        r = int((scratch - per_row_in * (nh - 1)) // (per_row_in * sh + per_row_out))
        if r < 1:
            break
        r = min(r, h1)
        tiles = math.ceil(h1 / r)
        rows_in = (h1 - 1) * sh + nh + (tiles - 1) * (nh - sh)  # input rows streamed, halos again
        passes = rule.jobs * out_groups * in_groups
        pixels = rows_in * wpad if sh == 1 else h1 * w1 + tiles * (nh - 1) * w1
        cycles = passes * (pixels * cycles_per_pixel / ppc + pe.pipeline_fill_cycles * tiles)
        jobs = rule.jobs * tiles * out_groups
        compute = cycles / clock + jobs * pe.job_overhead_s
        in_bytes = cin_padded * rows_in * wpad * b * math.ceil(out_groups / g)
        transfer = max(weight_bytes * tiles / w_bw, (in_bytes + out_bytes * rule.jobs) / act_bw)
        t = max(compute, transfer)
        if best is None or t < best.seconds:
            how = [f"{kh}x{kw} as {rule.jobs} x {nh}x{nw}", f"{tiles} tile(s) of {r} rows",
                   f"{g} output groups per pass", f"{jobs} job(s) "
                   f"({100 * jobs * pe.job_overhead_s / t:.0f}% overhead)"]
            if pe.stride == "subsample" and max(layer.stride) > 1:
                how.append(f"at stride 1, subsampled {layer.stride[0]}x{layer.stride[1]}")
            if cin_padded != layer.cin:
                how.append(f"input maps padded {layer.cin}->{cin_padded}")
            if out_groups * rows != layer.cout:
                how.append(f"output maps padded {layer.cout}->{out_groups * rows}")
            how.append("DMA-bound" if transfer > compute else "compute-bound")
            best = Cost(t, compute, transfer, jobs, ", ".join(how), r, tiles)
        if tiles == 1 and g == out_groups:
            break
    if best is None:
        raise Unsupported(f"{pe.name}: one row of a {layer.cin}-channel, {layer.win}-wide input "
                          f"does not fit the {pe.scratchpad} scratchpad")
    return best


def merge_layer(layer: Layer, jobs: int) -> Layer:
    """The merge a kernel rule leaves to another PE: add `jobs` partial outputs (+ReLU)."""
    n = layer.batch * layer.cout * layer.hout * layer.wout
    return Layer("add", layer.cout, layer.hout, layer.wout, layer.cout, layer.hout, layer.wout,
                 work=jobs * n, in_elems=jobs * n, out_elems=n, firings=layer.firings, jobs=jobs,
                 batch=layer.batch)
