"""The Backend API: how a platform's code generator plugs into `alohac compile --target`.

A backend is a class registered under the entry-point group `aloha.backends` (so a platform can live
in another package). It names its default platform and the passes it needs (`extra_passes`, which
flows.target.TargetFlow runs), and owns a directory of Jinja2 templates. Generation is two steps,
on purpose: `view()` builds a plain codegen view from the mapped csdf graph (backends/codegen/:
buffers, FIFOs, per-PE static orders, firings, weights, power knobs), and templates render that
view; templates never walk the IR. Templates are looked up in the
backend's own directory first, then in each base class's, then in the common ones
(backends/templates): a platform overrides a common template by shipping a file of the same name.
Rendering uses StrictUndefined, so a template naming a field the view lacks fails loudly.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass
from typing import ClassVar

import jinja2

from aloha_ir.errors import InputFileError, UsageError
from aloha_ir.outputs import write_bytes, write_text

COMMON_TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
# threads: one pthread per processing unit (Linux, or the host); static: one loop over the frame's
# firings in the schedule's start order, no pthreads, no malloc, with a startup file and linker
# script for a Cortex-M4 board model (`make TARGET=cortex-m4`; the Makefile says which); auto:
# static when the threads' predicted period with their hand-overs is no shorter than one thread's
# (backends/codegen/threads.py choose_runtime), else threads
RUNTIMES = ("threads", "static", "auto")
CORTEX_M_FILES = ("cortex_m4_startup.c", "mps2_an386.ld")


@dataclass(frozen=True)
class Generated:
    """What a backend wrote: the code directory and its files (path -> bytes)."""

    code_dir: str
    files: dict[str, int]
    view: object = None


class Backend:
    """Base class. Subclasses set `name`, `default_platform`, `description`, and may extend
    `extra_passes()`, `view()` and `files()`."""

    name: ClassVar[str] = ""
    default_platform: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # extra template directories searched before the class's own (a platform package's overrides)
    template_dirs: ClassVar[tuple[str, ...]] = ()
    # the runtimes its templates handle (a platform.j2 whose hooks take pthread locks names only
    # "threads"; `auto` then keeps the threads)
    runtimes: ClassVar[tuple[str, ...]] = ("threads", "static")

    def __init__(self, *, weights: str = "file", fifo_override: dict[str, int] | None = None,
                 runtime: str = "threads"):
        if weights not in ("file", "embedded"):
            raise UsageError(f"weights={weights!r}: expected 'file' or 'embedded'")
        if runtime not in RUNTIMES:
            raise UsageError(f"runtime={runtime!r}: expected one of {', '.join(RUNTIMES)}")
        if runtime != "auto" and runtime not in self.runtimes:
            raise UsageError(f"backend {self.name}: its templates handle the runtime "
                             f"{' or '.join(self.runtimes)}, not {runtime}",
                             hint="--runtime " + self.runtimes[0])
        if runtime == "auto" and "static" not in self.runtimes:
            runtime = "threads"
        self.weights = weights
        self.fifo_override = dict(fifo_override or {})
        self.runtime = runtime

    # -- what the backend needs ------------------------------------------------------------------
    @classmethod
    def extra_passes(cls, flow) -> list:
        """The passes this backend needs on the nn graph before the target flow's cost analysis
        and lowering (flows.target.TargetFlow calls it with itself: `flow.bits`, `flow.data`,
        `flow.platform`). The generated code computes in the platform's data type, so a float
        model bound for a fixed-point platform is quantized first (quantize-for-target,
        calibrated on `flow.data` if given). A backend extends the list (or replaces it: one
        that runs float code on any platform returns [])."""
        from passes.quantize_for_target import QuantizeForTargetPass
        return [QuantizeForTargetPass(bits=flow.bits, data=flow.data)]

    # -- generation -----------------------------------------------------------------------------
    def view(self, module, platform):
        """The codegen view of the mapped module (a plain object templates read)."""
        from backends.codegen import build_view
        return build_view(module, platform, weights=self.weights,
                          fifo_override=self.fifo_override, runtime=self.runtime)

    sources: ClassVar[tuple[str, ...]] = ("network.c", "aloha_rt.c", "aloha_kernels.c")
    headers: ClassVar[tuple[str, ...]] = ("aloha_rt.h", "aloha_kernels.h")

    def files(self, view) -> dict[str, str]:
        """Output file name -> template name: every source and header (a `.c`/`.h` file whose
        template is `NAME.j2` if one exists, else the plain file), and the Makefile."""
        env = self.environment()
        names = env.list_templates()
        out = {"Makefile": "Makefile.j2"}
        for f in self.sources + self.headers:
            out[f] = f + ".j2" if f + ".j2" in names else f
        if view.runtime == "static":
            out.update({f: f for f in CORTEX_M_FILES})
        return out

    def environment(self) -> jinja2.Environment:
        dirs = list(self.template_dirs)
        for cls in type(self).__mro__:
            if cls is object or not issubclass(cls, Backend):
                continue
            here = os.path.join(os.path.dirname(inspect.getfile(cls)), "templates")
            if os.path.isdir(here) and here not in dirs:
                dirs.append(here)
        if COMMON_TEMPLATES not in dirs:
            dirs.append(COMMON_TEMPLATES)
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(dirs), undefined=jinja2.StrictUndefined,
                                 keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
        env.filters["c_string"] = c_string
        return env

    def generate(self, module, platform, code_dir: str) -> Generated:
        """Render every file into `code_dir` (created); the weights blob too."""
        view = self.view(module, platform)
        env = self.environment()
        rendered = {}
        for out, template in self.files(view).items():
            try:
                t = env.get_template(template)
            except jinja2.TemplateNotFound:
                raise InputFileError(f"backend {self.name}: template {template} not found",
                                     hint="search path: " + ", ".join(env.loader.searchpath)
                                     ) from None
            rendered[out] = t.render(view=view, backend=self.name, sources=self.sources,
                                     headers=self.headers)
        rendered["network.json"] = json.dumps(view.manifest(), indent=1) + "\n"
        os.makedirs(code_dir, exist_ok=True)
        sizes: dict[str, int] = {}
        for out, text in rendered.items():
            write_text(os.path.join(code_dir, out), text)
            sizes[out] = len(text.encode())
        for out, data in view.binary_files().items():
            write_bytes(os.path.join(code_dir, out), data)
            sizes[out] = len(data)
        return Generated(code_dir, sizes, view)


def c_string(text: str) -> str:
    """A C string literal for `text` (names from ONNX may hold quotes, backslashes, anything)."""
    out = []
    for ch in str(text):
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127 and ch != "?":  # '?' avoided: trigraphs
            out.append(ch)
        else:
            out.extend(f"\\{b:03o}" for b in ch.encode())
    return '"' + "".join(out) + '"'
