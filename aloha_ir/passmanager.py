"""The PassManager: pipeline text in, verified IR and typed analysis results out.

    result = PassManager.parse("canonicalize,analyze-cost").run(module)
    result.module, result.analyses["analyze-cost"]

Pipeline text is xDSL's (`quantize{bits=8,method=ptq},analyze-cost`); options are the passes' dataclass
fields. After every pass the IR is verified (each op's shape rules; xDSL's full generic verification with
verify_full=True); a failure names the pass and the op. Instruments
(`time_passes`, `print_ir_after_all`, `dump_dir`) observe the run without touching the passes.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.utils.arg_spec import parse_pipeline
from xdsl.utils.exceptions import ArgSpecParseError, VerifyException

from aloha_ir.context import AlohaContext, make_context
from aloha_ir.errors import AlohaError, IRVerifyError, PassError, UsageError, did_you_mean
from aloha_ir.textio import print_module, save_module
from aloha_ir.verify import verify_fast, verify_full


@dataclass
class PassTiming:
    name: str
    seconds: float


@dataclass
class PipelineResult:
    module: ModuleOp
    analyses: dict[str, Any] = field(default_factory=dict)
    timings: list[PassTiming] = field(default_factory=list)


def _spec_error(spec: str, e: Exception) -> UsageError:
    return UsageError(f"cannot parse pipeline '{spec}': "
                      f"{str(getattr(e, 'msg', e)).splitlines()[0]}",
                      hint="write name{option=value,...},name2")


class PassManager:
    def __init__(self, passes: list[ModulePass], *, verify_each: bool = True,
                 verify_full: bool = False,
                 time_passes: bool = False, print_ir_after_all: bool = False,
                 dump_dir: str | None = None, stream: TextIO | None = None):
        self.passes = list(passes)
        self.verify_each = verify_each
        self.verify_full = verify_full
        self.time_passes = time_passes
        self.print_ir_after_all = print_ir_after_all
        self.dump_dir = dump_dir
        self.stream = stream

    @classmethod
    def parse(cls, pipeline: str, **options) -> "PassManager":
        from passes.registry import pass_class
        passes = []
        try:
            specs = list(parse_pipeline(pipeline.strip()))
        except ArgSpecParseError as e:
            raise _spec_error(pipeline, e) from None
        for spec in specs:
            pcls = pass_class(spec.name)
            known = [f.name for f in dataclasses.fields(pcls)]
            for option in spec.normalize_parameter_names().parameters:
                if option not in known:
                    raise UsageError(f"pass '{spec.name}' has no option '{option}'",
                                     hint=did_you_mean(option, known, "its options")
                                     if known else "it takes none")
            try:
                passes.append(pcls.from_pass_spec(spec))
            except (ValueError, TypeError, ArgSpecParseError) as e:
                raise UsageError(f"bad options for pass '{spec.name}': "
                                 f"{str(e).splitlines()[0]}",
                                 hint="its options: " + (", ".join(known) or "none")) from None
        return cls(passes, **options)

    def pipeline_text(self) -> str:
        return ",".join(str(p.pipeline_pass_spec()) for p in self.passes)

    def run(self, module: ModuleOp, ctx: AlohaContext | None = None) -> PipelineResult:
        ctx = ctx or make_context()
        result = PipelineResult(module)
        out = self.stream or sys.stderr
        if self.dump_dir:
            os.makedirs(self.dump_dir, exist_ok=True)
            save_module(module, os.path.join(self.dump_dir, "00-input.mlir"))
        for index, p in enumerate(self.passes, 1):
            start = time.perf_counter()
            try:
                p.apply(ctx, module)
            except AlohaError as e:
                if not e.where:
                    e.where = f"pass '{p.name}'"
                    e.args = (e.one_line(),)
                raise
            except VerifyException as e:
                raise PassError(str(e).splitlines()[0], where=f"pass '{p.name}'") from None
            elapsed = time.perf_counter() - start
            result.timings.append(PassTiming(p.name, elapsed))
            if self.verify_each:
                try:
                    (verify_full if self.verify_full else verify_fast)(module)
                except VerifyException as e:
                    raise IRVerifyError(str(e).splitlines()[0],
                                        where=f"IR after pass '{p.name}'",
                                        hint=getattr(e, "hint", "this is a compiler bug; rerun "
                                                     "with --dump-dir")) from None
            if self.print_ir_after_all:
                out.write(f"// -----// IR Dump After {p.name} //----- //\n")
                out.write(print_module(module))
            if self.dump_dir:
                save_module(module, os.path.join(self.dump_dir, f"{index:02d}-{p.name}.mlir"))
        result.analyses = dict(ctx.analyses)
        if self.time_passes:
            self.report_timings(result.timings, out)
        return result

    @staticmethod
    def report_timings(timings: list[PassTiming], out: TextIO) -> None:
        total = sum(t.seconds for t in timings) or 1e-12
        out.write("===- Pass execution timing report -===\n")
        out.write(f"  Total: {total * 1e3:.3f} ms\n   Wall (ms)   (%)  Name\n")
        for t in timings:
            out.write(f"  {t.seconds * 1e3:10.3f} {100 * t.seconds / total:5.1f}%  {t.name}\n")
