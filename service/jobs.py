"""The evaluation queue: submission, the runner that starts and reaps job processes, cancel,
delete, recovery after a crash, and the result cache.

- Submission validates the parameters (service.kinds) and resolves every reference, so a bad
  request fails at once with nothing stored. A client-supplied id makes it idempotent: the same
  id with the same request returns the job already there; with another request it is a conflict.
- The cache: a job's key is its kind, its parameters and the digests of the model and data it
  reads. A submission whose key a succeeded job has is answered from that job (its result, its
  artefacts hard-linked), without running anything.
- The runner (one thread) starts queued jobs while fewer than `workers` run, reaps finished ones,
  stops those past their timeout, and advances flow jobs (service.flow).
- `recover` at start: a job the database says is running belonged to a server that died; its
  process group, if alive, is stopped, and the job is queued again.

Every state change is also an event in the job's events file, where the server-sent event stream
reads it with the command's own events (service.app).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass

from pydantic import ValidationError

from aloha_ir import events
from service import flow, kinds, worker
from service.resources import BadReference, Resources
from service.store import FINAL, Job, Store, new_id, now

log = logging.getLogger("aloha.service")


class Conflict(Exception):
    """A client id already names a different request (HTTP 409)."""


class NotFound(Exception):
    """No such job (HTTP 404)."""


@dataclass
class Settings:
    workers: int = 2
    timeout: float = 3600.0  # seconds, a job's default; a request may ask for less or more
    poll: float = 0.05


class Queue:
    def __init__(self, store: Store, resources: Resources, launcher, settings: Settings):
        self.store, self.resources, self.launcher, self.settings = \
            store, resources, launcher, settings
        self.handles: dict = {}
        self.commands: dict[str, kinds.Command] = {}
        self.lock = threading.RLock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    # --- submission -------------------------------------------------------------------------------

    def submit(self, kind: str, params: dict, client_id: str | None = None,
               timeout: float | None = None, parent: str | None = None, stage: str | None = None,
               use_cache: bool = True) -> tuple[Job, bool]:
        """A new job (or the existing one for `client_id`); returns it and whether it is new.
        Raises ValidationError or BadReference for a bad request, Conflict for a reused id."""
        model = kinds.PARAMS[kind].model_validate(params)
        canonical = model.model_dump(mode="json")
        key = self._cache_key(kind, model)  # resolves every reference: BadReference here
        with self.lock:
            if client_id is not None:
                old = self.store.get(client_id)
                if old is not None:
                    if old.kind != kind or old.params != canonical or old.parent != parent:
                        raise Conflict(f"job id '{client_id}' names another request")
                    return old, False
            job = Job(id=client_id or new_id(), kind=kind, params=canonical, state="queued",
                      created=now(), parent=parent, stage=stage, cache_key=key,
                      timeout=timeout if timeout is not None else self.settings.timeout)
            hit = self.store.cached(key) if use_cache and kind != "flow" else None
            if hit is not None:
                job.state, job.result, job.cached_from = "succeeded", hit.result, hit.id
                job.started = job.finished = job.created
                self.store.insert(job)
                _link_tree(self.store.out(hit.id), self.store.out(job.id))
                self._event(job.id, "state", state="succeeded", cached_from=hit.id)
                return self.store.get(job.id), True
            self.store.insert(job)
            self._event(job.id, "state", state="queued")
        self.wake.set()
        return self.store.get(job.id), True

    def _cache_key(self, kind: str, model) -> str:
        """The result cache's key; also checks that every reference resolves."""
        from importlib.metadata import version
        parts = {"kind": kind, "params": model.model_dump(mode="json"),
                 "aloha": version("aloha")}
        if kind == "flow":
            kinds.command("explore", model.explore, self.resources, self._jobs_root())
            return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
        kinds.command(kind, model, self.resources, self._jobs_root())
        for field in ("model", "mapping"):
            ref = getattr(model, field, None)
            if ref:
                parts[f"{field}_digest"] = self.resources.model_digest(
                    ref, self.resources.resolve_model(ref, self._jobs_root()))
        if getattr(model, "data", None):
            parts["data_digest"] = self.resources.dataset_digest(model.data)
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def _jobs_root(self) -> str:
        return os.path.join(self.store.root, "jobs")

    # --- control ----------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise NotFound(f"no job '{job_id}'")
        return job

    def cancel(self, job_id: str) -> Job:
        """Stop a job now: a queued one never starts, a running one's process group is stopped
        (SIGTERM, SIGKILL a second later), a flow's running stage with it. A job already ended
        is returned as it is."""
        job = self.get(job_id)
        with self.lock:  # the flow first: its stage's end must not read as the flow failing
            handle = self.handles.pop(job_id, None)
            cancelled = self.store.transition(job_id, ("queued", "running"), "cancelled",
                                              finished=now())
        if cancelled:
            self._event(job_id, "state", state="cancelled")
        for child in job.children:
            if not self.store.get(child).final:
                self.cancel(child)
        if handle is not None:
            handle.stop()
            self.store.update(job_id, pid=None)
        return self.get(job_id)

    def delete(self, job_id: str) -> None:
        """Cancel if needed, then remove the job, its children and every file of theirs."""
        job = self.get(job_id)
        if not job.final:
            self.cancel(job_id)
        for child in job.children:
            self.delete(child)
        self.store.delete(job_id)

    # --- the runner -------------------------------------------------------------------------------

    def start(self) -> None:
        self.recover()
        self.thread = threading.Thread(target=self._loop, name="aloha-runner", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Server shutdown: stop the runner and the running processes; their jobs stay
        'running' in the database, so the next start queues them again."""
        self.stopping.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(10)
        with self.lock:
            handles, self.handles = dict(self.handles), {}
        for handle in handles.values():
            handle.stop()
        self.launcher.close()

    def recover(self) -> int:
        """Queue again the jobs a dead server left running (stopping their processes if any
        outlived it); returns how many."""
        n = 0
        for job in self.store.running():
            if job.kind != "flow" and job.pid and worker.start_time(job.pid) == job.pid_start \
                    and job.pid_start:
                worker.stop_group(job.pid)
            if job.kind != "flow":
                self.store.reset_folder(job.id)
            self.store.update(job.id, state="queued", pid=None, pid_start=None, started=None)
            self._event(job.id, "state", state="queued", note="the server restarted; run again")
            n += 1
        return n

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 -- the runner outlives any one job's surprise
                log.exception("runner tick failed")
            self.wake.wait(self.settings.poll)
            self.wake.clear()

    def tick(self) -> None:
        with self.lock:
            for job_id, handle in list(self.handles.items()):
                code = handle.exitcode
                if code is not None:
                    del self.handles[job_id]
                    self._finish(job_id, code)
            for job in self.store.running():
                if job.kind == "flow":
                    flow.advance(self, job)
                elif job.id in self.handles and job.started and job.timeout and \
                        now() - job.started > job.timeout:
                    handle = self.handles.pop(job.id)
                    handle.stop()
                    self._fail(job.id, f"timed out after {job.timeout:g} s (the job's timeout)",
                               None)
            for job in self.store.queued():
                if job.kind == "flow":
                    if self.store.transition(job.id, ("queued",), "running", started=now(),
                                             attempts=job.attempts + 1):
                        self._event(job.id, "state", state="running")
                        flow.advance(self, self.store.get(job.id))
                    continue
                if len(self.handles) >= self.settings.workers:
                    continue
                self._launch(job)

    def _launch(self, job: Job) -> None:
        try:
            model = kinds.PARAMS[job.kind].model_validate(job.params)
            cmd = kinds.command(job.kind, model, self.resources, self._jobs_root())
        except (ValidationError, BadReference) as e:  # a model deleted since submission
            self._fail(job.id, f"cannot run: {getattr(e, 'message', e)}", None)
            return
        folder = self.store.folder(job.id)
        if not self.store.transition(job.id, ("queued",), "running", started=now(),
                                     attempts=job.attempts + 1):
            return
        try:
            link_inputs(folder, cmd.inputs)
        except OSError as e:
            self._fail(job.id, f"cannot run: its input could not be linked: {e}", None)
            return
        handle = self.launcher.start(cmd.argv, folder)
        self.handles[job.id] = handle
        self.commands[job.id] = cmd
        self.store.update(job.id, pid=handle.pid,
                          pid_start=worker.start_time(handle.pid) if handle.pid else None)
        self._event(job.id, "state", state="running", argv=["alohac", *cmd.argv])

    def _finish(self, job_id: str, code: int) -> None:
        job = self.store.get(job_id)
        if job is None or job.state != "running":
            return  # cancelled or deleted meanwhile
        folder = self.store.folder(job_id)
        cmd = self.commands.pop(job_id, None)
        stdout = _read(os.path.join(folder, "stdout.txt"))
        result = kinds.read_result(folder, cmd, stdout) if cmd is not None else None
        if code == 0 and result is not None:
            if self.store.transition(job_id, ("running",), "succeeded", finished=now(),
                                     exit_code=0, result=result, pid=None):
                self._event(job_id, "state", state="succeeded")
            return
        self._fail(job_id, _error_of(folder, code) if code else "the command wrote no result",
                   code)

    def _fail(self, job_id: str, message: str, code: int | None) -> None:
        if self.store.transition(job_id, ("running", "queued"), "failed", finished=now(),
                                 exit_code=code, error=message, pid=None):
            self._event(job_id, "state", state="failed", error=message)

    def succeed(self, job_id: str, result: dict) -> None:
        """A job the runner drives itself (a flow) is done."""
        if self.store.transition(job_id, ("running",), "succeeded", finished=now(), result=result):
            self._event(job_id, "state", state="succeeded")

    def fail(self, job_id: str, message: str) -> None:
        self._fail(job_id, message, None)

    def _event(self, job_id: str, kind: str, **data) -> None:
        if kind == "state":  # the server's log: a line per state change
            extra = data.get("error") or data.get("note") or (
                f"from the cache of {data['cached_from']}" if data.get("cached_from") else "")
            log.info("job %s %s%s", job_id, data["state"], f": {extra}" if extra else "")
        folder = self.store.folder(job_id)
        if os.path.isdir(folder):
            events.append(self.store.events_path(job_id), kind, **data)

    def counts(self) -> dict:
        return {**self.store.counts(), "workers": self.settings.workers,
                "launcher": self.launcher.name}


def _read(path: str, limit: int = 1 << 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - limit))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _error_of(folder: str, code: int) -> str:
    """The command's own message (its `alohac: KIND: ...` line), else its exit status."""
    lines = _read(os.path.join(folder, "log.txt"), 1 << 16).splitlines()
    for line in reversed(lines):
        if line.startswith("alohac: "):
            return f"{line[len('alohac: '):]} (exit {code})"
    if code >= 128:
        return f"the job's process was killed (signal {code - 128})"
    return f"exit {code}" + (f": {lines[-1]}" if lines else "")


def _link_tree(src: str, dst: str) -> None:
    """A cached job's artefacts: hard links to the original's (a copy across file systems)."""
    shutil.rmtree(dst, ignore_errors=True)

    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)
    shutil.copytree(src, dst, copy_function=link, symlinks=False)


def wait(queue: Queue, job_id: str, timeout: float = 60.0) -> Job:
    """Block until the job ends (tests and the in-process API)."""
    deadline = time.monotonic() + timeout
    while True:
        job = queue.get(job_id)
        if job.final or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


__all__ = ["Queue", "Settings", "Conflict", "NotFound", "FINAL", "BadReference", "wait"]


def link_inputs(folder: str, inputs: dict[str, str]) -> None:
    """Make each stored input visible in the job's folder under its job-relative name: a hard
    link (no copy of a large model), a copy across file systems; again on a relaunch."""
    for rel, source in inputs.items():
        path = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):
            os.unlink(path)
        try:
            os.link(source, path)
        except OSError:
            shutil.copyfile(source, path)
