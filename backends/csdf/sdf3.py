"""SDF3 XML export of a csdf.graph, in the form the real `sdf3analysis-csdf` accepts (reference/csdf.md).

- every port of an actor and its executionTime list the same number of phases, run-length `N*v`;
- every actor gets a self-loop with one initial token and rate 1 per phase, so SDF3 does not assume
  auto-concurrency (its throughput would be "infinite");
- no `xsi:` schema attributes (the tool would try to fetch the schema);
- execution time per phase: the mapped per-phase times when a mapping set `exec_times`, otherwise the
  phase's work (elementary operations, one per time unit), at least 1;
- tokenSize `sz` is in bits.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from aloha_ir import rle
from aloha_ir.dialects import csdf
from aloha_ir.dialects.csdf import unique_name

PROCESSOR = "p"


def _exec_times(actor: csdf.ActorOp) -> rle.Runs:
    mapped = actor.exec_times
    if mapped is not None:
        return mapped
    return rle.normalize((c, max(1, w)) for c, w in actor.work_runs)


def to_element(graph: csdf.GraphOp) -> ET.Element:
    name = graph.source_name or graph.sym_name.data
    root = ET.Element("sdf3", {"type": "csdf", "version": "1.0"})
    app = ET.SubElement(root, "applicationGraph", {"name": name})
    g = ET.SubElement(app, "csdf", {"name": name, "type": name})
    props = ET.Element("csdfProperties")
    actors = graph.actors()
    channels = graph.channels()
    ports: dict[str, list[tuple[str, str, rle.Runs]]] = {a.sym_name.data: [] for a in actors}
    for ch in channels:
        ports[ch.src_name].append((ch.src_port.data, "out", ch.prod_runs))
        ports[ch.dst_name].append((ch.dst_port.data, "in", ch.cons_runs))
    channel_names = {ch.sym_name.data for ch in channels}
    loops = []
    for actor in actors:
        a = actor.sym_name.data
        p = actor.phase_count
        el = ET.SubElement(g, "actor", {"name": a, "type": actor.kind.data})
        taken = {port for port, _, _ in ports[a]}
        out_port, in_port = unique_name("sched_out", taken), unique_name("sched_in", taken)
        for port, direction, runs in ports[a] + [(out_port, "out", ((p, 1),)),
                                                 (in_port, "in", ((p, 1),))]:
            ET.SubElement(el, "port", {"name": port, "type": direction, "rate": rle.sdf3(runs)})
        loops.append((a, out_port, in_port, unique_name(f"{a}_sched", channel_names)))
        ap = ET.SubElement(props, "actorProperties", {"actor": a})
        proc = ET.SubElement(ap, "processor", {"type": PROCESSOR, "default": "true"})
        ET.SubElement(proc, "executionTime", {"time": rle.sdf3(_exec_times(actor))})
    for ch in channels:
        ET.SubElement(g, "channel", {
            "name": ch.sym_name.data, "srcActor": ch.src_name, "srcPort": ch.src_port.data,
            "dstActor": ch.dst_name, "dstPort": ch.dst_port.data,
            "initialTokens": str(ch.initial_tokens)})
        cp = ET.SubElement(props, "channelProperties", {"channel": ch.sym_name.data})
        ET.SubElement(cp, "tokenSize", {"sz": str(8 * ch.token_bytes)})
    for a, out_port, in_port, cname in loops:
        ET.SubElement(g, "channel", {"name": cname, "srcActor": a, "srcPort": out_port,
                                     "dstActor": a, "dstPort": in_port, "initialTokens": "1"})
    app.append(props)
    return root


def to_sdf3(graph: csdf.GraphOp) -> str:
    root = to_element(graph)
    ET.indent(root, " ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
