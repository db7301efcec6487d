"""What passes say besides their results: warnings about the IR or the figures they computed.

A pass calls `warn(ctx, message)`; the context's `Diagnostics` decides where it goes. By default
it is printed on standard error as `warning: MESSAGE` (the stream looked up when it is said, so
a caller's redirected or captured sys.stderr gets it); a quiet one only collects it. Either way
`messages` keeps every one. The explorer evaluates hundreds of candidates, each of which may
overflow the memories (recorded as `fits = false` in its figures): it runs them quiet, instead of
redirecting the process's stderr, which other threads share and which would hide real errors.

    ctx = make_context()
    ctx.diagnostics = Diagnostics(quiet=True)
    PassManager(passes).run(module, ctx)
    ctx.diagnostics.messages          # ["lenet needs 120.5 KiB of weights and activations ..."]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field


@dataclass
class Diagnostics:
    """Where a context's warnings go: stderr unless `quiet`; all of them in `messages`."""

    quiet: bool = False
    messages: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.messages.append(message)
        if not self.quiet:
            print(f"warning: {message}", file=sys.stderr)


def warn(ctx, message: str) -> None:
    """Say `message` through `ctx`'s diagnostics (printed on stderr for a plain xDSL Context)."""
    diagnostics = getattr(ctx, "diagnostics", None)
    (diagnostics if diagnostics is not None else Diagnostics()).warn(message)
