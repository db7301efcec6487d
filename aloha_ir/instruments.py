"""Pass instruments: objects the PassManager calls around a run and after each pass (TVM's
`instrument.py`, MLIR's PassInstrumentation), so timing, IR printing and dumps, or a caller's own
progress display, observe a pipeline without touching the passes.

    PassManager(passes, instruments=[TimePasses(sys.stderr), DumpIR("out/dump")])

A hook that is not overridden does nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from aloha_ir.textio import print_module, save_module

if TYPE_CHECKING:
    from xdsl.dialects.builtin import ModuleOp
    from xdsl.passes import ModulePass


@dataclass
class PassTiming:
    name: str
    seconds: float


class PassInstrument:
    """Hooks with fixed names; subclasses override those they need."""

    def run_before_pipeline(self, module: ModuleOp) -> None:
        """Before the first pass, with the input IR."""

    def run_after_pass(self, p: ModulePass, index: int, module: ModuleOp, seconds: float) -> None:
        """After pass number `index` (from 1) ran and the IR verified; `seconds` it took."""

    def run_after_pipeline(self, module: ModuleOp, timings: list[PassTiming]) -> None:
        """After the last pass, with every pass's timing."""


@dataclass
class TimePasses(PassInstrument):
    """`--time-passes`: MLIR's timing report, written after the run."""

    out: TextIO

    def run_after_pipeline(self, module: ModuleOp, timings: list[PassTiming]) -> None:
        total = sum(t.seconds for t in timings) or 1e-12
        self.out.write("===- Pass execution timing report -===\n")
        self.out.write(f"  Total: {total * 1e3:.3f} ms\n   Wall (ms)   (%)  Name\n")
        for t in timings:
            self.out.write(f"  {t.seconds * 1e3:10.3f} {100 * t.seconds / total:5.1f}%  "
                           f"{t.name}\n")


@dataclass
class PrintIRAfterAll(PassInstrument):
    """`--print-ir-after-all`: the IR after every pass, with MLIR's banner."""

    out: TextIO

    def run_after_pass(self, p: ModulePass, index: int, module: ModuleOp, seconds: float) -> None:
        self.out.write(f"// -----// IR Dump After {p.name} //----- //\n")
        self.out.write(print_module(module))


@dataclass
class DumpIR(PassInstrument):
    """`--dump-dir`: the input and the IR after every pass, with its weights, as files that load
    back (`00-input.mlir`, `01-canonicalize.mlir`, ...)."""

    directory: str
    written: list[str] = field(default_factory=list)

    def _save(self, module: ModuleOp, name: str) -> None:
        path = os.path.join(self.directory, name)
        save_module(module, path)
        self.written.append(path)

    def run_before_pipeline(self, module: ModuleOp) -> None:
        os.makedirs(self.directory, exist_ok=True)
        self._save(module, "00-input.mlir")

    def run_after_pass(self, p: ModulePass, index: int, module: ModuleOp, seconds: float) -> None:
        self._save(module, f"{index:02d}-{p.name}.mlir")
