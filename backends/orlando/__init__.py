"""`orlando`: STMicroelectronics Orlando (8 convolution accelerators, 16 DSPs, a stream switch).

The generated program drives the middleware API of orlando_api.h (emitted with the code; no vendor
SDK exists here, so orlando_api_host.c emulates it on the host with aloha_kernels):
- the stream switch: a static route table, one route per FIFO whose two actors sit on different
  units (src unit -> dst unit; a source with several routes multicasts), configured at start;
- CA configurations for conv actors mapped to a CA: kernel size, batch, parallel kernels and
  chaining (rule in `ca_config`), configured at start; every firing runs its output row on the CA;
- DSP kernel launches for the actors on DSP units (pool, activation, LRN, FC, ...);
- the operating point from the graph (`orl_set_opp`), and operating-point switching as a power
  knob: a CA thread's busy hook drops its CA to the low point and gates it once the frame's
  convolutions are done (the FC phase leaves every CA idle), and restores it for the next frame.
"""

from __future__ import annotations

import math

from aloha_ir.dialects import csdf
from backends.api import Backend

CA_MAX_KERNEL = 12  # kernels up to 12x12 per CA (hardware.md)
CA_MAX_BATCH = 16  # input maps one CA accumulates per pass
CA_MACS = 36  # MACs per CA
CA_MAX_PARALLEL = 4


def ca_config(geom: dict, cout: int) -> dict:
    """A conv's CA configuration. batch = min(16, input maps per group): one CA accumulates that
    many input maps per pass; parallel kernels = min(4, 36 // (kh x kw) or 1, output maps);
    chaining: a kernel beyond 12x12 is cut in ceil(kh/12) x ceil(kw/12) pieces and an accumulation
    deeper than 16 input maps in ceil(cin/16) stages, each stage a CA whose output feeds the next
    one's partial-sum input: chain = pieces x stages (1 = no chaining)."""
    kh, kw = geom["kh"], geom["kw"]
    cin = geom["cin"] // geom["group"]
    pieces = math.ceil(kh / CA_MAX_KERNEL) * math.ceil(kw / CA_MAX_KERNEL)
    stages = math.ceil(cin / CA_MAX_BATCH)
    return {"kh": kh, "kw": kw, "batch": min(CA_MAX_BATCH, cin),
            "parallel": max(1, min(CA_MAX_PARALLEL, CA_MACS // (kh * kw), cout)),
            "chain": pieces * stages, "cin": cin, "cout": cout}


class OrlandoBackend(Backend):
    name = "orlando"
    default_platform = "orlando"
    description = ("Orlando: stream-switch routes, CA configurations (chaining), DSP kernel "
                   "launches, operating points; host emulation of the middleware API")
    sources = Backend.sources + ("orlando_api_host.c",)
    headers = Backend.headers + ("orlando_api.h",)

    def view(self, module, platform):
        view = super().view(module, platform)
        graph = csdf.csdf_graphs(module)[0]
        opp = graph.operating_point or platform.default_operating_point
        units = [u for u, _ in platform.units()]
        kinds = {u: pe.kind for u, pe in platform.units()}
        ca_units = [u for u in units if kinds[u] == "conv-engine"]
        dsp_units = [u for u, pe in platform.units() if pe.name == "dsp"]
        by_name = {a.name: a for a in view.actors}
        routes = []
        for f in view.fifos:
            if f.self_loop:
                continue
            a, b = by_name[f.src].unit, by_name[f.dst].unit
            if a and b and a != b:
                routes.append({"fifo": f.name, "src": units.index(a), "dst": units.index(b)})
        cas = []
        for a in view.actors:
            if a.pe_kind == "conv-engine" and a.kernel == "conv":
                lo, hi = a.args["co"]
                cfg = ca_config(a.args["geom"], hi - lo)
                cfg["ca"] = ca_units.index(a.unit)
                a.args["ca"] = cfg
                cas.append(a.cname)
            elif a.unit in dsp_units:
                a.args["dsp"] = {"dsp": dsp_units.index(a.unit)}
        view.power.update({"opp": opp or "", "units": units, "ca_units": ca_units,
                           "dsp_units": dsp_units, "routes": routes, "ca_actors": cas,
                           "idle_opp": "low", "ca_idle": "gate"})
        return view
