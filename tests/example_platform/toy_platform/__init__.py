"""An example platform package living outside backends/: its backend registers through the
`aloha.backends` entry point (see the README, "Adding a platform")."""

from __future__ import annotations

import os

from backends.host import HostBackend

HERE = os.path.dirname(__file__)


class ToyBackend(HostBackend):
    """The host's C with this package's platform.j2: a power knob that counts busy/idle switches."""

    name = "toy"
    default_platform = os.path.join(HERE, "toy.arch")
    description = "example out-of-tree platform (one core, busy/idle log)"
    template_dirs = (os.path.join(HERE, "templates"),)
    runtimes = ("threads",)  # its power knob takes a pthread lock
