"""The exploration's evaluation cache: evaluated design points in one embedded SQLite file.

Evaluating a design point (a genotype) costs seconds to minutes -- proxy training, mapping, a
security evaluation -- so every result is kept, keyed by the genotype, and a stopped run resumes
without redoing any of them; a point the search proposes twice is free the second time.

Keys. `genotype_key` is the sha256 of the genotype's canonical JSON (sorted keys, no spaces;
an integral float counts as the int it equals and numpy scalars as Python numbers, so 3, 3.0 and
np.int64(3) name one point). Results also live under a *context*, `context_key` of the evaluation
settings (target, objectives, data, training budget...): a result computed under other settings
is never reused, yet both can share one file.

Durability. Every `put` is its own committed transaction in WAL mode with synchronous=FULL: a run
killed with SIGKILL (or a power cut) keeps everything put before. Evaluations are slow, so the
fsync per point costs nothing that matters.

Values. Genotypes and results are stored as JSON. Results may hold inf, -inf and nan (an
infeasible point's latency, a diverged training's loss): they round-trip as Python's JSON
extensions `Infinity`/`NaN`. Genotypes may not (a key must name one point). Tuples come back as
lists and dict keys as strings, as JSON has it. Anything else that is not JSON data (a set, an
object) is a TypeError -- a bug in the evaluator, not a user error.

One connection serves the whole process, guarded by a lock, so threads (e.g. futures' callbacks)
may share a cache. Other processes may open the same file (WAL: readers never block, writers
wait up to 30 s); WAL needs a local file system, not NFS.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
import time

from aloha_ir.errors import InputFileError

FORMAT = "aloha-evaluation-cache"
VERSION = 1
SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE contexts (context TEXT PRIMARY KEY, settings TEXT NOT NULL);
CREATE TABLE points (
    context TEXT NOT NULL,
    key TEXT NOT NULL,
    genotype TEXT NOT NULL,
    result TEXT NOT NULL,
    stored REAL NOT NULL,
    PRIMARY KEY (context, key)
);
"""

_CHUNK = 500  # keys per `IN (...)` query, well under SQLite's bound on parameters


def _plain(value):
    """json's `default`: numpy scalars and arrays as Python numbers and lists."""
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _canonical(value):
    """The genotype as the value its key hashes: integral floats as ints, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _canonical(value.tolist())  # numpy scalar or array
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _canonical_json(value, what: str) -> str:
    try:
        return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"),
                          allow_nan=False, default=_plain)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} is not JSON data without inf/nan: {e}") from None


def genotype_key(genotype: dict) -> str:
    """The cache key of a design point: sha256 hex of its canonical JSON."""
    return hashlib.sha256(_canonical_json(genotype, "genotype").encode()).hexdigest()


def context_key(settings: dict) -> str:
    """The key of the evaluation settings a result was computed under (same hashing)."""
    return hashlib.sha256(_canonical_json(settings, "evaluation settings").encode()).hexdigest()


def _dumps(value, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True,
                          default=_plain)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} is not JSON data: {e}") from None


class EvaluationCache:
    """SQLite file (or ':memory:' when path is None) of evaluated design points."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = None if path is None else os.fspath(path)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        if self.path is None:
            conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            self._create(conn)
        else:
            conn = self._open_file(self.path)
        self._conn = conn

    # -- opening ----------------------------------------------------------------------------

    def _fail(self, message: str, hint: str) -> InputFileError:
        return InputFileError(message, where=self.path, hint=hint)

    def _open_file(self, path: str) -> sqlite3.Connection:
        """Open or create the file, refusing (and never touching) anything but our format."""
        other = "give another cache path, or move this file away to start a fresh cache"
        if os.path.isdir(path):
            raise self._fail("is a directory, not an evaluation cache", other)
        if os.path.exists(path):
            try:
                with open(path, "rb") as f:
                    head = f.read(len(SQLITE_HEADER))
            except OSError as e:
                raise self._fail(f"cannot read the evaluation cache ({e.strerror})",
                                 other) from None
            if head and head != SQLITE_HEADER:
                raise self._fail("is not an SQLite file, so not an evaluation cache", other)
        else:
            parent = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as e:
                raise self._fail(f"cannot create the cache's folder {parent} ({e.strerror})",
                                 "give a cache path in a writable folder") from None
        try:
            conn = sqlite3.connect(path, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as e:
            raise self._fail(f"cannot open the evaluation cache ({e})", other) from None
        try:
            self._check_or_create(conn, other)
            # only now, once it is known to be ours: switching to WAL rewrites the header
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise self._fail(f"SQLite refused WAL mode (journal mode stays {mode})",
                                 "keep the cache on a local file system")
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as e:
            conn.close()
            raise self._fail(f"cannot use the evaluation cache ({e})", other) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_or_create(self, conn: sqlite3.Connection, other: str) -> None:
        tables = {row[0] for row in
                  conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            conn.execute("BEGIN IMMEDIATE")  # another process may be creating it right now
            try:
                if not conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    self._create(conn, in_transaction=True)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            tables = {"meta"}
        if "meta" not in tables:
            raise self._fail("is an SQLite database but not an evaluation cache "
                             f"(tables: {', '.join(sorted(tables))})", other)
        meta = dict(conn.execute("SELECT name, value FROM meta"))
        if meta.get("format") != FORMAT:
            raise self._fail(f"is an SQLite database of format {meta.get('format')!r}, "
                             f"not an evaluation cache ({FORMAT!r})", other)
        version = meta.get("version")
        if version != str(VERSION):
            newer = version is not None and version.isdigit() and int(version) > VERSION
            raise self._fail(
                f"is an evaluation cache of format version {version}, this ALOHA reads "
                f"version {VERSION}",
                "use the ALOHA that wrote it" if newer else
                "its results may not match this version's evaluation: move it away (or give "
                "another cache path) to start a fresh cache")

    @staticmethod
    def _create(conn: sqlite3.Connection, in_transaction: bool = False) -> None:
        statements = [s for s in _SCHEMA.split(";") if s.strip()]
        if not in_transaction:
            conn.execute("BEGIN")
        for statement in statements:
            conn.execute(statement)
        conn.executemany("INSERT INTO meta VALUES (?, ?)",
                         [("format", FORMAT), ("version", str(VERSION)),
                          ("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))])
        if not in_transaction:
            conn.execute("COMMIT")

    # -- use --------------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("the evaluation cache is closed")
        return self._conn

    def get(self, context: str, key: str) -> dict | None:
        """The stored result of point `key` under `context`, or None."""
        with self._lock:
            row = self._db().execute("SELECT result FROM points WHERE context=? AND key=?",
                                     (context, key)).fetchone()
        return None if row is None else json.loads(row[0])

    def get_many(self, context: str, keys: list[str]) -> dict[str, dict]:
        """The stored results among `keys` (absent keys are left out)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict] = {}
        with self._lock:
            db = self._db()
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i:i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(f"SELECT key, result FROM points WHERE context=? AND key IN "
                                  f"({marks})", (context, *chunk)).fetchall()
                found.update((k, json.loads(r)) for k, r in rows)
        return found

    def put(self, context: str, key: str, genotype: dict, result: dict) -> None:
        """Store (or replace) one result, committed before returning."""
        row = (context, key, _dumps(genotype, "genotype"), _dumps(result, "result"), time.time())
        with self._lock:
            self._db().execute(
                "INSERT INTO points (context, key, genotype, result, stored) VALUES (?,?,?,?,?) "
                "ON CONFLICT (context, key) DO UPDATE SET genotype=excluded.genotype, "
                "result=excluded.result, stored=excluded.stored", row)

    def entries(self, context: str) -> list[tuple[str, dict, dict]]:
        """Every (key, genotype, result) under `context`, in the order first stored."""
        with self._lock:
            rows = self._db().execute("SELECT key, genotype, result FROM points WHERE context=? "
                                      "ORDER BY rowid", (context,)).fetchall()
        return [(k, json.loads(g), json.loads(r)) for k, g, r in rows]

    def count(self, context: str) -> int:
        """Points stored under `context`."""
        with self._lock:
            return self._db().execute("SELECT count(*) FROM points WHERE context=?",
                                      (context,)).fetchone()[0]

    def context(self, settings: dict) -> str:
        """`context_key(settings)`, recording the settings so the file tells what it holds."""
        key = context_key(settings)
        with self._lock:
            self._db().execute("INSERT OR IGNORE INTO contexts VALUES (?, ?)",
                               (key, _dumps(settings, "evaluation settings")))
        return key

    def contexts(self) -> dict[str, dict | None]:
        """Every context with points or recorded settings -> its settings (None if unrecorded)."""
        with self._lock:
            db = self._db()
            known = {k: json.loads(s) for k, s in db.execute("SELECT context, settings "
                                                             "FROM contexts")}
            used = [k for (k,) in db.execute("SELECT DISTINCT context FROM points")]
        return {**known, **{k: known.get(k) for k in used}}

    def __len__(self) -> int:
        """Points stored, over all contexts."""
        with self._lock:
            return self._db().execute("SELECT count(*) FROM points").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> EvaluationCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EvaluationCache({self.path or ':memory:'!r})"
