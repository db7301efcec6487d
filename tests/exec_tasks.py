"""Task functions for the executor tests: importable by spawned workers and Dask workers (as
`exec_tasks`, tests/ being on sys.path), each counting its runs in files so a test can tell
exactly which tasks ran how often, whatever process ran them."""

from __future__ import annotations

import os
import time


def _count(folder: str, name: str) -> None:
    with open(os.path.join(folder, f"{name}.runs"), "a") as f:
        f.write(f"{os.getpid()}\n")


def runs(folder: str, name) -> int:
    """How many times task `name` has started."""
    try:
        with open(os.path.join(str(folder), f"{name}.runs")) as f:
            return len(f.read().split())
    except FileNotFoundError:
        return 0


def square(x):
    return x * x


def pid(_=None) -> int:
    return os.getpid()


def counted_square(job):
    """job = (folder, i): i*i, counting the run."""
    folder, i = job
    _count(folder, i)
    return i * i


def die_once(job):
    """Kill its own worker the first time it runs (leaving a marker first), then return i*i."""
    folder, i = job
    _count(folder, i)
    marker = os.path.join(folder, f"{i}.marker")
    if not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(0.2)  # let results finished just before reach the main process
        os._exit(1)
    return i * i


def die_always(job):
    folder, i = job
    _count(folder, i)
    time.sleep(0.2)
    os._exit(3)


def mixed(job):
    """die_once for i == 0, die_always for i == 1, counted_square otherwise."""
    folder, i = job
    if i == 0:
        return die_once(job)
    if i == 1:
        return die_always(job)
    return counted_square(job)


class Boom(ValueError):
    pass


def boom(x):
    raise Boom(f"boom {x}")


def slow_square(x, seconds=0.05):
    time.sleep(seconds)
    return x * x


def failing_initializer():
    raise RuntimeError("no data here")


def start_and_hang(*_args):
    """Mark that this worker has started a task (a file named by its pid in $ALOHA_TEST_FLAGS),
    then never finish: what a long evaluation looks like from outside."""
    import threading
    open(os.path.join(os.environ["ALOHA_TEST_FLAGS"], f"{os.getpid()}.started"), "w").close()
    threading.Event().wait()
