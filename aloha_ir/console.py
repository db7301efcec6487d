"""Output that reads well on a terminal and in a log.

On a terminal, rich draws tables at the window's width and live progress bars. Piped or
redirected, rich would cut every table at 80 columns (numbers ending in "…") and a progress bar
prints nothing until the run ends, so a log of a 4-minute training stayed empty. Here a console
on a stream that is not a terminal is as wide as its widest line, and a progress bar becomes one
plain line per epoch, point or stage on standard error.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from aloha_ir import events

# wide enough for any table alohac prints; rich then sizes each table to its content
LOG_WIDTH = 100_000


def console(stderr: bool = False):
    """A rich Console on stdout (or stderr): the terminal's width on a terminal, never cut in a
    pipe or a file."""
    from rich.console import Console
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(file=stream)
    return Console(file=stream, width=LOG_WIDTH, soft_wrap=True)


class Progress:
    """A progress report on stderr: one line per `step` as `LABEL: TEXT [12.3 s]`, and on a
    terminal a live bar below them (`update` moves it between steps). `enabled=False` says nothing
    anywhere (nested runs, workers).

        with Progress("train", total=epochs) as p:
            for epoch in ...:
                p.step(f"epoch {epoch}/{epochs} loss {loss:.4f}", advance=1)
    """

    def __init__(self, label: str, total: int | None = None, enabled: bool = True,
                 stream: TextIO | None = None, fields: str = ""):
        self.label, self.total, self.enabled = label, total, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.live = enabled and self.stream.isatty()
        self.start = time.monotonic()
        self.done = 0
        self.bar = None
        if self.live:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn,
                                       TimeElapsedColumn)
            from rich.progress import Progress as Bar
            self.bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), TextColumn("{task.fields[status]}"),
                           console=Console(file=self.stream))
            self.task = self.bar.add_task(label, total=total, status=fields)

    def __enter__(self) -> Progress:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def update(self, completed: int | None = None, total: int | None = None,
               status: str | None = None, advance: int = 0) -> None:
        """Move the bar (terminal only): no log line, for ticks finer than a step."""
        if completed is not None:
            self.done = completed
        self.done += advance
        if total is not None:
            self.total = total
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, total=self.total,
                            **({"status": status} if status is not None else {}))

    def step(self, text: str, completed: int | None = None, advance: int = 0,
             total: int | None = None) -> None:
        """One finished epoch, point or stage: a line in a log; on a terminal the same line above
        the bar, which keeps moving below."""
        self.update(completed, total, "", advance)
        if not self.enabled:
            return
        events.emit("progress", label=self.label, text=text, done=self.done, total=self.total)
        line = f"{self.label}: {text} [{time.monotonic() - self.start:.1f} s]"
        if self.bar is not None:
            self.bar.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self.stream, flush=True)
