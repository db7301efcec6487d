"""Imported once by the fork server that starts every local job (service.launch): what the first
command of a fresh interpreter spends seconds on -- matplotlib and its fonts, torch, the bundled
platforms parsed, the pass registry, the ONNX importer's first run -- done
once and inherited by every job's process. Each is a module import or a cache of a pure function:
no result changes. torch is imported, never run (no thread pool to fork)."""

import os
from importlib.util import find_spec

os.environ.setdefault("MPLBACKEND", "Agg")

import importlib  # noqa: E402
import io  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402

from aloha_ir.passmanager import default_registry  # noqa: E402
from archdesc.loader import load_platform, platform_names  # noqa: E402
from frontends.loader import load_model  # noqa: E402

for _name in platform_names():
    load_platform(_name)
default_registry()
_fig = plt.figure(figsize=(2, 1))
_fig.text(0.5, 0.5, "ALOHA")
_fig.savefig(io.BytesIO(), format="png")
plt.close(_fig)
load_model("zoo:lenet5")
if find_spec("torch") is not None:
    importlib.import_module("torch")


def _exit_now(fork_server: int = os.getpid()) -> None:
    """The fork server exits when the service has gone (its "alive" pipe closes); tearing down
    torch and matplotlib took seconds, and each running job lives until its parent is gone
    (PR_SET_PDEATHSIG). Registered last, so run first; a job, a fork of this process, skips it."""
    if os.getpid() == fork_server:
        os._exit(0)


import atexit  # noqa: E402

atexit.register(_exit_now)
