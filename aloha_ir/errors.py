"""One exception family for the whole compiler.

Every error a user can cause is an `AlohaError` subclass carrying a stable exit code, the place it
happened (file, ONNX node, IR op, pass) and what to do. The driver prints `str(error)` as one line and
exits with `error.exit_code`; `--debug` shows the traceback instead.
"""

from __future__ import annotations


class AlohaError(Exception):
    """Base of all user-facing errors."""

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return " ".join(text.split())


class InputFileError(AlohaError):
    """A file is missing, unreadable, truncated or malformed, or an output cannot be written.

    Outputs: a full disk, an unwritable place, a file where a folder is needed (OutputError)."""

    exit_code = 3
    kind = "input error"


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


class UsageError(AlohaError):
    """Bad command-line use: a malformed option, an unknown name, a value the target lacks.

    Unknown names are the zoo model, bundled platform, pass or pass option, backend, dataset and
    space a command line names (a missing file is an InputFileError)."""

    exit_code = 2
    kind = "usage error"


class InternalError(AlohaError):
    """A compiler bug caught where it is known which part failed (a pass): exit 1, like any
    uncaught exception, but the message names the part."""

    kind = "internal error"


class NoFeasiblePointError(AlohaError):
    """A search found no point that meets its constraints (its outputs are written)."""

    exit_code = 9
    kind = "no feasible point"


def did_you_mean(name: str, known, what: str) -> str:
    """The hint for an unknown name: the closest known one, then every known one."""
    import difflib
    known = list(known)
    close = difflib.get_close_matches(name, known, 1)
    return (f"did you mean '{close[0]}'? " if close else "") + f"{what}: " + ", ".join(known)


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
