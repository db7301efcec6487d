"""Where a job's process runs: on this machine (a fork server's child), or on a Dask cluster.

A launcher starts a job's command and gives a handle the runner polls (`exitcode`: None while it
runs) and stops (`stop`: the whole process group, SIGTERM then SIGKILL; on Dask, a cancel file the
task watches). Both report the process id the runner records, so a restarted server can stop a
job that outlived its predecessor.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from multiprocessing import forkserver

from service import worker

# imported once by the fork server, so that each job's process starts with them loaded
PRELOAD = ["alohac.main", "flows.target", "backends.registry", "service.preload"]


class LocalHandle:
    def __init__(self, process):
        self.process = process
        self.pid = process.pid

    @property
    def exitcode(self) -> int | None:
        code = self.process.exitcode
        if code is None:
            return None
        self.process.join(0)
        return code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as a shell says

    def stop(self, grace: float = 1.0) -> None:
        worker.stop_group(self.pid, grace)
        self.process.join(grace + 1.0)


class LocalLauncher:
    """Each job a child of a fork server that has the compiler imported."""

    name = "local"

    def __init__(self):
        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload(PRELOAD)
        # started now, beside the server's own start, not by the first job (seconds of imports)
        threading.Thread(target=forkserver.ensure_running, name="aloha-forkserver",
                         daemon=True).start()

    def start(self, argv: list[str], folder: str) -> LocalHandle:
        p = self.ctx.Process(target=worker.run_command, args=(argv, folder), daemon=False,
                             name=f"aloha-job-{os.path.basename(folder)}")
        p.start()
        return LocalHandle(p)

    def close(self) -> None:
        pass


class DaskHandle:
    def __init__(self, future, folder: str):
        self.future, self.folder, self.pid = future, folder, None

    @property
    def exitcode(self) -> int | None:
        if not self.future.done():
            return None
        if self.future.cancelled():
            return 130
        try:
            return int(self.future.result())
        except BaseException:  # noqa: BLE001 -- a lost worker: the job failed, the server lives
            return 1

    def stop(self, grace: float = 1.0) -> None:
        with open(os.path.join(self.folder, worker.CANCEL_FILE), "w"):
            pass  # a running task stops its process within its poll interval
        self.future.cancel()  # a task still queued on the cluster never starts


class DaskLauncher:
    """Jobs as tasks on an existing Dask cluster (the explorer's executor). The cluster's
    workers must see the data folder at the same path (a shared file system)."""

    name = "dask"

    def __init__(self, address: str):
        from explore.executor import dask_executor
        self.executor = dask_executor(address)

    def start(self, argv: list[str], folder: str) -> DaskHandle:
        return DaskHandle(self.executor.submit(worker.run_subprocess, argv, folder), folder)

    def close(self) -> None:
        self.executor.shutdown(cancel_futures=True)
