"""Structured events for a supervising process: partial results and progress as they happen.

A long command (a security curve, a design-space search, a training) reports each finished point
to whoever runs it. On a terminal that is a progress line (aloha_ir.console); for the service,
which runs the same commands in worker processes, it is one JSON object per line appended to the
file named by the environment variable ALOHA_EVENTS:

    {"type": "point", "t": 1764751234.5, "eps": 0.1, "accuracy": 0.42, "samples": 50}

Nothing is written when ALOHA_EVENTS is unset (the command line), so library code calls `emit`
unconditionally. Each line is written with one `write` on a file opened for appending, so lines
from several processes of one job (a command's own worker processes) never interleave.
"""

from __future__ import annotations

import json
import math
import os
import time

ENV = "ALOHA_EVENTS"


def enabled() -> bool:
    """Whether anyone listens (compute a costly partial result only then)."""
    return bool(os.environ.get(ENV))


def _plain(value):
    """JSON without NaN/Infinity (a browser's JSON.parse rejects them): non-finite floats as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # a numpy scalar
        return _plain(value.item())
    return value


def emit(kind: str, **data) -> None:
    """Append one event of type `kind` with `data` (JSON values) to $ALOHA_EVENTS, if set."""
    path = os.environ.get(ENV)
    if path:
        append(path, kind, **data)


def append(path: str, kind: str, **data) -> None:
    """Append one event to the events file `path` (the supervisor's own events: state changes)."""
    line = json.dumps({"type": kind, "t": round(time.time(), 3), **_plain(data)},
                      separators=(",", ":"), allow_nan=False) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read(path: str, offset: int = 0) -> tuple[list[dict], int]:
    """The complete events of `path` from byte `offset`, and the offset after the last complete
    line (a line still being written is left for the next read)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b"\n") + 1
    events = []
    for raw in chunk[:end].splitlines():
        try:
            events.append(json.loads(raw))
        except ValueError:  # not ours (a torn line after a kill): skipped, never fatal
            continue
    return events, offset + end
