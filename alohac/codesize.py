"""The code-size report `alohac compile` writes beside generated code (code/code-size.md, .json)."""

from __future__ import annotations

import json
import os

from aloha_ir.outputs import write_text


def write_report(code_dir: str, generated, backend) -> list[str]:
    """Bytes and lines per generated file, the weights, and the static buffers the program holds."""
    rows = []
    for name, nbytes in sorted(generated.files.items()):
        path = os.path.join(code_dir, name)
        lines = 0
        if not name.endswith(".bin"):
            with open(path, "rb") as f:
                lines = f.read().count(b"\n")
        rows.append({"file": name, "bytes": nbytes, "lines": lines})
    view = getattr(generated, "view", None)
    report = {"backend": backend.name, "weights": backend.weights, "runtime": backend.runtime,
              "files": rows,
              "source_bytes": sum(r["bytes"] for r in rows if not r["file"].endswith(".bin")),
              "source_lines": sum(r["lines"] for r in rows)}
    if view is not None:
        report.update(memory=view.memory(), threads=len(view.threads), actors=len(view.actors),
                      fifos=len(view.fifos))
    md = ["# Generated code", "", f"backend `{backend.name}`, weights `{backend.weights}`, "
          f"runtime `{backend.runtime}`", "",
          "| file | bytes | lines |", "|---|---:|---:|"]
    md += [f"| {r['file']} | {r['bytes']:,} | {r['lines']:,} |" for r in rows]
    md.append(f"| **sources** | {report['source_bytes']:,} | {report['source_lines']:,} |")
    if view is not None:
        m = report["memory"]
        md += ["", f"Static memory of the program ({m['memory_bytes']:,} B, what report.json "
               f"predicts): parameters {m['parameter_bytes']:,} B, FIFO buffers "
               f"{m['buffer_bytes']:,} B, row windows {m['window_bytes']:,} B, output buffers "
               f"{m['row_bytes']:,} B, staging {m['staging_bytes']:,} B, input/output frames "
               f"{m['io_bytes']:,} B. {report['actors']} actors, {report['fifos']} FIFOs, "
               f"{report['threads']} threads.", "",
               "`make -C code size` prints the compiled program's text/data/bss; "
               "`ALOHA_MEMORY=1 code/network IN OUT` prints the program's own count."]
    return [write_text(os.path.join(code_dir, "code-size.md"), "\n".join(md) + "\n"),
            write_text(os.path.join(code_dir, "code-size.json"), json.dumps(report, indent=1)
                       + "\n")]
