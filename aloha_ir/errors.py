"""One exception family for the whole compiler.

Every error a user can cause is an `AlohaError` subclass carrying a stable exit code, the place it
happened (file, ONNX node, IR op, pass) and what to do. The driver prints `str(error)` as one line and
exits with `error.exit_code`; `--debug` shows the traceback instead.

This module is the family: import every error from here. Its base (`AlohaError`, and the input and
usage errors archdesc raises) is defined in the tiny `aloha_errors` package so that archdesc, which
imports no other project package, raises the same classes.
"""

from __future__ import annotations

from aloha_errors import AlohaError, InputFileError, UsageError, did_you_mean


class MappingMismatch(InputFileError):
    """A mapping file (partition plan, assignment) that does not fit the model it is applied to:
    an actor it names is not in the graph, or cannot run on the unit it names."""


class UnsupportedError(AlohaError):
    """The input uses an operator, attribute or feature the compiler does not handle."""

    exit_code = 4
    kind = "unsupported"


class ShapeError(AlohaError):
    """A shape that is dynamic, inconsistent, or cannot be inferred statically."""

    exit_code = 5
    kind = "shape error"


class IRParseError(AlohaError):
    """Textual IR that does not parse."""

    exit_code = 6
    kind = "parse error"


class IRVerifyError(AlohaError):
    """IR that parses but breaks an op's invariant (shape rule, operand kinds, references)."""

    exit_code = 7
    kind = "verification error"


class PassError(AlohaError):
    """A pass failed on its input."""

    exit_code = 8
    kind = "pass error"


class MissingSetting(PassError):
    """A pass needs a setting its caller did not give. `setting` names it for a driver (`target`
    and `dataset`: the context's; `allow_overflow`: analyze-memory's option), `how` says in the
    API's words how to give it, `otherwise` the other way out, if any. The hint reads `OTHERWISE,
    or HOW`; a driver that gives the setting from a flag names its flag instead (`advice`)."""

    def __init__(self, message: str, *, setting: str, how: str, otherwise: str = "",
                 where: str | None = None):
        self.setting, self.otherwise = setting, otherwise
        super().__init__(message, where=where, hint=self.advice(how))

    def advice(self, how: str) -> str:
        """The hint with `how` as the way to give the setting."""
        return f"{self.otherwise}, or {how}" if self.otherwise else how


class PlacementError(PassError):
    """A requested placement (partition's `actors=`, map's `assign=`/`units=`) that does not fit
    the graph or the platform: a typed pass error, so a caller applying a mapping file can say
    the file does not fit (MappingMismatch) without reading the message."""


class InternalError(AlohaError):
    """A compiler bug caught where it is known which part failed (a pass): exit 1, like any
    uncaught exception, but the message names the part."""

    kind = "internal error"


class NoFeasiblePointError(AlohaError):
    """A search found no point that meets its constraints (its outputs are written)."""

    exit_code = 9
    kind = "no feasible point"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what was kept and how to resume; the driver prints it and exits 130."""

    exit_code = 130

    def __init__(self, detail: str = ""):
        super().__init__(detail)
        self.detail = detail


class AlohaWarning(UserWarning):
    """Something the compiler did that changes what the user gave it (a float16 input computed in
    float32): said once, on standard error, as `alohac: warning: ...`."""


def show_warnings_as_one_line() -> None:
    """Format AlohaWarnings as the driver prints errors: one line, without our source line.
    (Only the format changes, so warnings.catch_warnings(record=True) still records them.)"""
    import warnings
    original = warnings.formatwarning
    if getattr(original, "aloha", False):
        return

    def one_line(message, category, filename, lineno, line=None):
        if issubclass(category, AlohaWarning):
            return f"alohac: warning: {' '.join(str(message).split())}\n"
        return original(message, category, filename, lineno, line)
    one_line.aloha = True
    warnings.formatwarning = one_line


ERROR_CLASSES = (UsageError, InputFileError, UnsupportedError, ShapeError, IRParseError,
                 IRVerifyError, PassError, NoFeasiblePointError)


def exit_code_help() -> str:
    """The exit-code table of `alohac --help`, from the classes themselves (so it cannot drift)."""
    rows = [(0, "success"), (AlohaError.exit_code, "internal error (a compiler bug; --debug)")]
    rows += [(c.exit_code, (c.__doc__ or c.kind).strip().splitlines()[0].rstrip("."))
             for c in ERROR_CLASSES]
    rows.append((Interrupted.exit_code, "interrupted (Ctrl-C); outputs are as they were, caches "
                                        "and checkpoints are kept"))
    rows.append((141, "the reader of the output closed the pipe (`alohac list passes | head -1`)"))
    return "exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in sorted(rows)) + "\n"


__all__ = ["AlohaError", "InputFileError", "UnsupportedError", "ShapeError", "IRParseError",
           "IRVerifyError", "PassError", "UsageError", "NoFeasiblePointError", "Interrupted",
           "AlohaWarning", "did_you_mean", "show_warnings_as_one_line", "ERROR_CLASSES",
           "exit_code_help"]
