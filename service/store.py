"""The service's persistent state: jobs in SQLite, each job's files in its own folder.

A job is a row (its kind, parameters, state, result, the process that runs it) and a folder
DATA/jobs/ID/ (the command's outputs under out/, its log, its events). SQLite in WAL mode, one
connection shared under a lock: the server's request handlers and its runner thread are the only
writers, and a submission is one short transaction (the benchmark's p95 is a few ms).

States: queued -> running -> succeeded | failed | cancelled. A row that says running when the
server starts belonged to a server that died: `recover` queues it again (results are deterministic
given the job's seed, so the rerun gives the same answer).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL = frozenset({"succeeded", "failed", "cancelled"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT UNIQUE NOT NULL,
    kind        TEXT NOT NULL,
    params      TEXT NOT NULL,
    state       TEXT NOT NULL,
    parent      TEXT,
    stage       TEXT,
    created     REAL NOT NULL,
    started     REAL,
    finished    REAL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    pid         INTEGER,
    pid_start   TEXT,
    exit_code   INTEGER,
    error       TEXT,
    result      TEXT,
    cache_key   TEXT,
    cached_from TEXT,
    timeout     REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_cache ON jobs(cache_key, state);
CREATE INDEX IF NOT EXISTS jobs_parent ON jobs(parent);
"""


@dataclass
class Job:
    id: str
    kind: str
    params: dict
    state: str
    created: float
    parent: str | None = None
    stage: str | None = None
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    pid: int | None = None
    pid_start: str | None = None
    exit_code: int | None = None
    error: str | None = None
    result: dict | None = None
    cache_key: str | None = None
    cached_from: str | None = None
    timeout: float | None = None
    children: list[str] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.state in FINAL


_COLUMNS = ("id", "kind", "params", "state", "parent", "stage", "created", "started", "finished",
            "attempts", "pid", "pid_start", "exit_code", "error", "result", "cache_key",
            "cached_from", "timeout")


def _job(row: sqlite3.Row) -> Job:
    d = {k: row[k] for k in _COLUMNS}
    d["params"] = json.loads(d["params"])
    d["result"] = json.loads(d["result"]) if d["result"] else None
    return Job(**d)


def new_id() -> str:
    return uuid.uuid4().hex[:16]


class Store:
    """The jobs table and the data folder's layout (models/, datasets/, jobs/)."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        for sub in ("models", "datasets", "jobs"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(os.path.join(self.root, "jobs.sqlite"), check_same_thread=False,
                                  isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    # --- the layout -------------------------------------------------------------------------------

    def folder(self, job_id: str) -> str:
        return os.path.join(self.root, "jobs", job_id)

    def out(self, job_id: str) -> str:
        """Where the job's command writes its outputs (its artefacts)."""
        return os.path.join(self.folder(job_id), "out")

    def events_path(self, job_id: str) -> str:
        return os.path.join(self.folder(job_id), "events.jsonl")

    def log_path(self, job_id: str) -> str:
        return os.path.join(self.folder(job_id), "log.txt")

    # --- rows -------------------------------------------------------------------------------------

    def insert(self, job: Job) -> Job:
        with self.lock:
            self.db.execute(
                f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                [json.dumps(getattr(job, k), sort_keys=True) if k in ("params", "result") and
                 getattr(job, k) is not None else getattr(job, k) for k in _COLUMNS])
        os.makedirs(self.out(job.id), exist_ok=True)
        return job

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            row = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            job = _job(row)
            job.children = [r[0] for r in self.db.execute(
                "SELECT id FROM jobs WHERE parent = ? ORDER BY seq", (job_id,))]
        return job

    def update(self, job_id: str, **values) -> None:
        if not values:
            return
        for k in ("params", "result"):
            if k in values and values[k] is not None:
                values[k] = json.dumps(values[k], sort_keys=True)
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.lock:
            self.db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", [*values.values(), job_id])

    def transition(self, job_id: str, frm: tuple[str, ...], to: str, **values) -> bool:
        """Move a job from one of the states `frm` to `to` (with `values`), atomically: False if
        it was no longer in one of them (cancelled meanwhile, say)."""
        sets = ", ".join(f"{k} = ?" for k in ("state", *values))
        with self.lock:
            cur = self.db.execute(
                f"UPDATE jobs SET {sets} WHERE id = ? AND state IN ({', '.join('?' * len(frm))})",
                [to, *(json.dumps(v, sort_keys=True) if k == "result" and v is not None else v
                       for k, v in values.items()), job_id, *frm])
            return cur.rowcount == 1

    def list(self, state: str | None = None, kind: str | None = None, parent: str | None = None,
             limit: int = 100, offset: int = 0) -> list[Job]:
        where, args = [], []
        for col, value in (("state", state), ("kind", kind), ("parent", parent)):
            if value is not None:
                where.append(f"{col} = ?")
                args.append(value)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "") + \
            " ORDER BY seq DESC LIMIT ? OFFSET ?"
        with self.lock:
            jobs = [_job(r) for r in self.db.execute(sql, [*args, limit, offset])]
            by_id = {j.id: j for j in jobs}
            if by_id:  # each listed job's children, in one query
                marks = ", ".join("?" * len(by_id))
                for parent, child in self.db.execute(
                        f"SELECT parent, id FROM jobs WHERE parent IN ({marks}) ORDER BY seq",
                        list(by_id)):
                    by_id[parent].children.append(child)
        return jobs

    def queued(self) -> list[Job]:
        """Queued jobs, oldest first."""
        with self.lock:
            return [_job(r) for r in self.db.execute(
                "SELECT * FROM jobs WHERE state = 'queued' ORDER BY seq")]

    def running(self) -> list[Job]:
        with self.lock:
            return [_job(r) for r in self.db.execute(
                "SELECT * FROM jobs WHERE state = 'running' ORDER BY seq")]

    def counts(self) -> dict[str, int]:
        with self.lock:
            got = dict(self.db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"))
        return {s: got.get(s, 0) for s in STATES}

    def cached(self, key: str) -> Job | None:
        """The newest succeeded job with this cache key whose outputs are still there."""
        with self.lock:
            rows = self.db.execute("SELECT * FROM jobs WHERE cache_key = ? AND state = 'succeeded' "
                                   "ORDER BY seq DESC", (key,)).fetchall()
        for r in rows:
            if os.path.isdir(self.out(r["id"])):
                return _job(r)
        return None

    def delete(self, job_id: str) -> None:
        """The row and the folder (the caller has stopped its process)."""
        with self.lock:
            self.db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def reset_folder(self, job_id: str) -> None:
        """An empty out/ for a rerun (the log and the events keep the history)."""
        shutil.rmtree(self.out(job_id), ignore_errors=True)
        os.makedirs(self.out(job_id), exist_ok=True)
        for name in ("stdout.txt", "CANCEL"):
            try:
                os.unlink(os.path.join(self.folder(job_id), name))
            except FileNotFoundError:
                pass

    def close(self) -> None:
        with self.lock:
            self.db.close()


def now() -> float:
    return time.time()
