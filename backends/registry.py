"""The backend registry: backend name -> Backend class, from the `aloha.backends` entry points.

A platform package registers its backend there (its pyproject's
`[project.entry-points."aloha.backends"]`), so it can live outside this repository; the bundled
backends are found even in a source tree that was never installed.
"""

from __future__ import annotations

from importlib import metadata

from aloha_ir.errors import UsageError
from backends.api import Backend

ENTRY_POINT_GROUP = "aloha.backends"


def registered() -> dict[str, type[Backend]]:
    """Backend name -> class, from the `aloha.backends` entry points (the bundled ones included)."""
    found: dict[str, type[Backend]] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as e:  # a broken third-party plugin must not break the compiler
            import sys
            print(f"warning: backend entry point {ep.name} ({ep.value}) failed to load: {e}",
                  file=sys.stderr)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            continue
        found[cls.name or ep.name] = cls
    # the bundled backends, when running from a source tree never installed (or installed before
    # a bundled backend existed, so its entry points lack it)
    for cls in _bundled():
        found.setdefault(cls.name, cls)
    return dict(sorted(found.items()))


def _bundled() -> tuple[type[Backend], ...]:
    from backends.host import HostBackend
    from backends.neuraghe import NeuragheBackend
    from backends.orlando import OrlandoBackend
    return (HostBackend, NeuragheBackend, OrlandoBackend)


def get_backend(name: str) -> type[Backend]:
    backends = registered()
    cls = backends.get(name)
    if cls is None:
        raise UsageError(f"no backend '{name}'", hint="registered: " + ", ".join(backends))
    return cls
