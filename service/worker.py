"""A job's process: `alohac` with the job's argv, in the job's folder, its output to files.

`run_command` is the body of a local worker process (a child of the runner's fork server, which
has alohac's modules imported already, so a job starts in milliseconds rather than the second an
interpreter takes to import them). `run_subprocess` runs the same command as a fresh interpreter
and is what a Dask worker executes (`alohac serve --scheduler`): there a cancel is a file the
task watches for, since a Dask future cannot stop a task that is running.

Either way the job is a process group of its own: stopping it stops what the command started
(its worker processes, a `make` of the generated code).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

CANCEL_FILE = "CANCEL"


def _die_with_parent(parent: int) -> None:
    """Linux: this process gets SIGKILL when its parent (the fork server, which exits with the
    server) dies, so a server killed with -9 leaves no job running behind it.

    The fork server exits when the last holder of its "alive" pipe closes it, and it hands every
    child a copy: a job that kept that copy would keep the fork server -- and so itself -- alive
    after the server died. The job closes it."""
    from multiprocessing import forkserver
    server = forkserver._forkserver
    if server._forkserver_alive_fd is not None:
        os.close(server._forkserver_alive_fd)
        server._forkserver_alive_fd = None
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: recovery kills the recorded process instead
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(128 + signal.SIGKILL)


def _environment(folder: str) -> dict[str, str]:
    env = dict(os.environ)
    env["ALOHA_EVENTS"] = os.path.join(folder, "events.jsonl")
    env["MPLBACKEND"] = "Agg"
    env.pop("COLUMNS", None)
    return env


def run_command(argv: list[str], folder: str) -> None:
    """The job's process (see the module docstring); exits with alohac's exit code."""
    parent = os.getppid()
    os.setpgrp()
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.chdir(folder)
    os.environ.update(_environment(folder))
    out = os.open("stdout.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    log = os.open("log.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out, 1)
    os.dup2(log, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    from alohac.main import main
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own exit on a bad argv
        code = e.code if isinstance(e.code, int) else 2
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def run_subprocess(argv: list[str], folder: str, poll: float = 0.2) -> int:
    """The job as a fresh `python -m alohac.main` (a Dask task); a CANCEL file in the folder
    stops it (SIGTERM to its group, SIGKILL a second later). Returns the exit code."""
    with open(os.path.join(folder, "stdout.txt"), "wb") as out, \
            open(os.path.join(folder, "log.txt"), "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "alohac.main", *argv], cwd=folder,
                                env=_environment(folder), stdout=out, stderr=log,
                                start_new_session=True)
        while True:
            try:
                return proc.wait(timeout=poll)
            except subprocess.TimeoutExpired:
                pass
            if os.path.exists(os.path.join(folder, CANCEL_FILE)):
                stop_group(proc.pid)
                return proc.wait()


def stop_group(pgid: int, grace: float = 1.0) -> None:
    """SIGTERM to a job's process group, then SIGKILL to what is left after `grace` seconds.
    The job's leader (pid `pgid`) is signalled itself too: a job cancelled within milliseconds of
    its start may not have made its group yet (`os.setpgrp` is its first act)."""
    def send(sig) -> None:
        for kill in (os.killpg, os.kill):
            try:
                kill(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    send(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid) and _state(pgid) in ("Z", "X", ""):
            return
        time.sleep(0.02)
    send(signal.SIGKILL)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # a zombie leader still counts for killpg: look for a member that is not one
    for pid in _members(pgid):
        if _state(pid) not in ("Z", "X", ""):
            return True
    return False


def _members(pgid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
                if int(fields[2]) == pgid:
                    out.append(int(name))
            except (OSError, IndexError, ValueError):
                continue
    return out if os.path.isdir("/proc") else [pgid]


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "" if os.path.isdir("/proc") else "R"


def start_time(pid: int) -> str:
    """The process's start time (clock ticks since boot, Linux): with the pid it names one
    process, not whichever later reuses the number ("" where /proc is absent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return ""
