"""`neuraghe`: NEURAghe (Zynq ARM Cortex-A9 + FPGA Convolution Engine) code generator.

The generated program drives the middleware API of neuraghe_api.h (emitted with the code; no vendor
SDK exists here, so neuraghe_api_host.c emulates it on the host with aloha_kernels). Conv actors
mapped to the conv engine (pe_kind "conv-engine") submit CE jobs from a static table per layer:
tiles of output rows x output groups of N_ROW maps x the kernel rule's sub-jobs (a 7x7 runs as
four 5x5 jobs whose partial outputs the `<actor>_merge` actor sums on an ARM core). The tiling is
the cost model's (archdesc/costmodel.py `_engine`), so the table has exactly `cost(...).jobs`
entries.

A CSDF firing of a CE actor produces one output row; the job of the tile holding that row is issued
row by row as its input rows arrive (one row share per firing and per output group x sub-job), and
the firing waits for its shares. Everything else runs on the ARM threads with the common kernels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from aloha_ir.dialects import csdf
from aloha_ir.errors import UnsupportedError
from archdesc import costmodel
from archdesc.costmodel import Layer
from backends.api import Backend

RING_SLOTS = 15  # job slots in shared DDR (hardware.md)


@dataclass(frozen=True)
class Job:
    """One CE job descriptor of a layer (static part; buffers are bound at submission)."""

    index: int
    tile: int
    oy_lo: int  # output rows of the tile (the CSDF firings that issue its row shares)
    oy_hi: int
    r_lo: int  # stride-1 rows the CE computes for the tile (subsampled afterwards)
    r_hi: int
    og: int  # output group of N_ROW maps
    co_lo: int  # output maps [co_lo, co_hi) of the actor's slice (padded numbering, group 1)
    co_hi: int
    sub: int  # partial index of a split kernel (7x7 as 4 x 5x5); 0 otherwise
    ky0: int  # the taps of the layer's kernel this job covers
    kx0: int
    kh: int
    kw: int
    IF: int  # input maps, padded to the CE granularity
    OF: int  # output maps of the job (N_ROW)
    IH: int  # input rows of the tile, halo included
    IW: int
    FS_h: int  # the native filter the CE runs (3x3 or 5x5)
    FS_w: int


def _ce_pe(platform, pe=None):
    if pe is not None:
        return pe
    for p in platform.pes:
        if p.kind == "conv-engine":
            return p
    raise UnsupportedError(f"{platform.name} has no conv engine")


def ce_jobs(platform, layer: Layer, datatype: str, opp: str | None = None,
            pe=None) -> list[Job]:
    """The CE job table of a conv layer (an actor's Layer), split as the cost model charges it:
    per group, per tile of stride-1 rows (the cost model's tile rows), per output group of N_ROW
    maps, per sub-job of the kernel rule, for one item of a batch:
    len(result) x layer.batch == costmodel.cost(...).jobs."""
    pe = _ce_pe(platform, pe)
    c = costmodel.cost(platform, pe, layer, datatype, opp)
    k0, k1 = layer.kernel
    d0, d1 = layer.dilation
    keff = ((k0 - 1) * d0 + 1, (k1 - 1) * d1 + 1)
    rule = costmodel.native_kernel(pe, keff)
    nh, nw = rule.native
    n_row, n_col = pe.grid
    per_col = max(1, pe.multipliers // (nh * nw))
    groups = layer.group
    cin_g, cout_g = layer.cin // groups, layer.cout // groups
    if_pad = math.ceil(cin_g / (per_col * n_col)) * per_col * n_col
    out_groups = math.ceil(cout_g / n_row)
    pt, pl, pb, pr = layer.pads
    if pe.stride == "subsample":
        h1, sh = layer.hin + pt + pb - keff[0] + 1, layer.stride[0]
    else:
        h1, sh = layer.hout, 1
    if rule.jobs == 1:
        subs = [(0, 0, k0, k1)]
    else:
        if (d0, d1) != (1, 1):
            raise UnsupportedError(f"a dilated {k0}x{k1} kernel split in {rule.jobs} jobs")
        subs = [(y, x, min(nh, k0 - y), min(nw, k1 - x))
                for y in range(0, k0, nh) for x in range(0, k1, nw)]
        if len(subs) != rule.jobs:
            raise UnsupportedError(f"{k0}x{k1} as {rule.jobs} x {nh}x{nw}: the taps split in "
                                   f"{len(subs)} jobs")
    r, tiles = c.tile_rows, c.tiles
    if r < 1 or tiles != math.ceil(h1 / r):
        raise UnsupportedError(f"cost model tiling {tiles} x {r} rows does not cover {h1} rows")
    jobs: list[Job] = []
    for gi in range(groups):
        for t in range(tiles):
            r_lo, r_hi = t * r, min((t + 1) * r, h1)
            oy_lo = min(-(-r_lo // sh), layer.hout)
            oy_hi = min(-(-r_hi // sh), layer.hout)
            for og in range(out_groups):
                if groups == 1:
                    co_lo, co_hi = og * n_row, (og + 1) * n_row
                else:
                    co_lo = gi * cout_g + og * n_row
                    co_hi = min(co_lo + n_row, (gi + 1) * cout_g)
                for s, (ky0, kx0, kh, kw) in enumerate(subs):
                    jobs.append(Job(len(jobs), t, oy_lo, oy_hi, r_lo, r_hi, og, co_lo, co_hi, s,
                                    ky0, kx0, kh, kw, if_pad, n_row, (r_hi - r_lo - 1) + nh,
                                    layer.win, nh, nw))
    if len(jobs) * layer.batch != c.jobs:  # the table runs once per item of a batch
        raise UnsupportedError(f"CE job table has {len(jobs)} jobs per item, the cost model "
                               f"{c.jobs} for {layer.batch} item(s)")
    return jobs


def graph_opp(module) -> str | None:
    return csdf.csdf_graphs(module)[0].operating_point


class NeuragheBackend(Backend):
    name = "neuraghe"
    default_platform = "neuraghe-losa"
    description = ("NEURAghe: CE jobs (ring of 15 slots, tiles x output groups, 7x7 as 4 x 5x5 + "
                   "ARM merge) and ARM threads; host emulation of the middleware API")
    sources = Backend.sources + ("neuraghe_api_host.c",)
    headers = Backend.headers + ("neuraghe_api.h",)

    def view(self, module, platform):
        from passes.target import actor_layers
        view = super().view(module, platform)
        graph = csdf.csdf_graphs(module)[0]
        layers = actor_layers(module, graph)
        opp = graph_opp(module)
        pe_of = {u: pe for u, pe in platform.units()}
        ce_units = [u for u, pe in platform.units() if pe.kind == "conv-engine"]
        by_name = {a.name: a for a in view.actors}
        ce_layers = []
        for a in view.actors:
            if a.pe_kind != "conv-engine" or a.kernel != "conv" or a.operator == "merge":
                continue
            pe = pe_of[a.unit]
            layer = layers[a.name]
            jobs = ce_jobs(platform, layer, view.datatype, opp, pe)
            g = a.args["geom"]
            group = g["group"]
            lo, hi = a.args["co"]
            merges = max(j.sub for j in jobs) + 1
            if merges > 1 and group != 1:
                raise UnsupportedError(f"CE actor @{a.name}: a split kernel in a grouped conv")
            ce = {"unit": ce_units.index(a.unit), "jobs": [asdict(j) for j in jobs],
                  "n_row": pe.grid[0], "if_pad": jobs[0].IF if group == 1 else g["cin"],
                  "of_pad": (max(j.co_hi for j in jobs) if group == 1 else hi - lo),
                  "padded": 1 if group == 1 else 0, "cout": hi - lo, "co_base": lo,
                  "merges": merges, "max_og": 4,
                  "precision8": 1 if view.datatype == "fixed8" else 0,
                  "subsample": g["sh"], "zero_padding": g["pt"],
                  "tiles": jobs[-1].tile + 1 if jobs else 0}
            if view.fixed:
                rq = a.args["rq"]
                ce["qf"] = rq["shift0"] if rq["shift"] is None else -1
                ce["relu"] = 1 if rq["kind"] == "ALOHA_ACT_RELU" else 0
            else:
                ce["qf"] = 0
                ce["relu"] = 1 if a.args["act"]["kind"] == "ALOHA_ACT_RELU" else 0
            if merges > 1:
                out = view.fifos[a.outs[0]]
                merge = by_name[out.dst]
                if merge.operator != "merge" or len(a.outs) != 1 or out.per_token != merges:
                    raise UnsupportedError(f"CE actor @{a.name} splits its kernel in {merges} jobs"
                                           f" but feeds @{out.dst}, not a merge of {merges}")
                merge.args["merge"] = {"ce": a.cname, "merges": merges}
                ce["relu"] = 0  # the merge applies the activation
                # what the CE actor computes, and its FIFO carries, is each job's partial sums
                # of its taps ([C][W][job] per row, each item's in turn): its debug dump, in
                # accumulator units (`alohac compare` scales them per channel); the merge's
                # output is the block's
                subs = sorted({(j.sub, j.ky0, j.kx0, j.kh, j.kw) for j in jobs})
                merge.ref = dict(a.ref)
                a.ref = {**a.ref, "taps": [list(t[1:]) for t in subs],
                         "scale": a.args["acc_scale"][lo:hi]}
                a.out_frac = 0
            a.args["ce"] = ce
            ce_layers.append(a.cname)
        for a in view.actors:
            if a.operator == "merge" and "merge" not in a.args:
                raise UnsupportedError(f"merge actor @{a.name} has no CE producer")
        view.power.update({"ce_units": ce_units, "ce_layers": ce_layers,
                           "clock_gating": "ce", "ring_slots": RING_SLOTS})
        return view
