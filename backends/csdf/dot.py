"""Graphviz DOT of a csdf.graph: actors as boxes (operator, phases), channels labelled with their
rates; reuse self-loops dashed. `dot -Tpng G.dot -o G.png` draws it."""

from __future__ import annotations

from aloha_ir import rle
from aloha_ir.dialects import csdf


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def _q(*lines: str) -> str:
    """A quoted DOT string; several lines are joined with DOT's `\\n`."""
    return '"' + "\\n".join(_esc(s) for s in lines) + '"'


def _short(runs: rle.Runs, limit: int = 4) -> str:
    text = rle.text(runs[:limit])
    return text + (", ..." if len(runs) > limit else "")


def to_dot(graph: csdf.GraphOp) -> str:
    lines = [f"digraph {_q(graph.sym_name.data)} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=9];']
    for a in graph.actors():
        label = [a.sym_name.data, f"{a.kind.data} x {a.phase_count} phases"]
        if a.memory_bytes():
            label.append(f"memory {a.memory_bytes():,} B")
        shape = ', shape=ellipse, fillcolor="#f3f3f3"' if a.kind.data in ("input", "output") else ""
        lines.append(f"  {_q(a.sym_name.data)} [label={_q(*label)}{shape}];")
    for c in graph.channels():
        style = ", style=dashed, color=gray40" if c.is_self_loop else ""
        lines.append(f"  {_q(c.src_name)} -> {_q(c.dst_name)} "
                     f"[label={_q(_short(c.prod_runs), '-> ' + _short(c.cons_runs))}{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
