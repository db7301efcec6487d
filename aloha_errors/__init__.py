"""The base of the compiler's one exception family, below every other package.

aloha_ir.errors is the family (every error class, the exit-code table); it re-exports these. They
live here, alone, so that archdesc, which imports no other project package, raises the same classes
with the same exit codes as the rest of the compiler.
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


class UsageError(AlohaError):
    """Bad command-line use: a malformed option, an unknown name, a value the target lacks.

    Unknown names are the zoo model, bundled platform, pass or pass option, backend, dataset and
    space a command line names (a missing file is an InputFileError)."""

    exit_code = 2
    kind = "usage error"


def did_you_mean(name: str, known, what: str) -> str:
    """The hint for an unknown name: the closest known one, then every known one."""
    import difflib
    known = list(known)
    close = difflib.get_close_matches(name, known, 1)
    return (f"did you mean '{close[0]}'? " if close else "") + f"{what}: " + ", ".join(known)
