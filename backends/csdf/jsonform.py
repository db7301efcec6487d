"""JSON form of a csdf.graph: actors with phases and memory units, channels with their rates.

Sequences stay run-length encoded as [[count, value], ...] (the IR's form); totals are given beside
them so a reader needs no decoding for the common questions.
"""

from __future__ import annotations

from xdsl.dialects.builtin import IntegerAttr, StringAttr

from aloha_ir import rle
from aloha_ir.dialects import csdf
from aloha_ir.dialects.nn import tensor_bytes


def _runs(runs: rle.Runs) -> list[list[int]]:
    return [[c, v] for c, v in runs]


def _plain(attr) -> object:
    if isinstance(attr, IntegerAttr):
        return attr.value.data
    if isinstance(attr, StringAttr):
        return attr.data
    return str(attr)


def to_json(graph: csdf.GraphOp) -> dict:
    actors = []
    for a in graph.actors():
        units = []
        for key, t in a.memory_units().items():
            units.append({"name": key, "shape": list(t.get_shape()), "type": str(t.element_type),
                          "bytes": tensor_bytes(t)})
        actors.append({
            "name": a.sym_name.data, "operator": a.kind.data, "block": a.block_name,
            "phases": a.phase_count, "times": _runs(a.times_runs), "work": _runs(a.work_runs),
            "work_total": rle.total(a.work_runs), "memory_units": units,
            "memory_bytes": a.memory_bytes(),
            "attributes": {k: _plain(v) for k, v in a.annotations().items()}})
    channels = []
    for c in graph.channels():
        channels.append({
            "name": c.sym_name.data, "src": c.src_name, "src_port": c.src_port.data,
            "dst": c.dst_name, "dst_port": c.dst_port.data, "self_loop": c.is_self_loop,
            "production": _runs(c.prod_runs), "consumption": _runs(c.cons_runs),
            "tokens_per_iteration": rle.total(c.prod_runs), "initial_tokens": c.initial_tokens,
            "token_type": str(c.token), "token_bytes": c.token_bytes,
            "attributes": {k: _plain(v) for k, v in c.annotations().items()}})
    return {"name": graph.sym_name.data,
            "source": graph.source_name,
            "actors": actors, "channels": channels}
