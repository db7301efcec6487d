"""The exploration's evaluation cache (explore/cache.py): results survive a killed run and a
wrong file is refused untouched."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading

import numpy as np
import pytest

from aloha_ir.errors import InputFileError
from explore.cache import EvaluationCache, context_key, genotype_key

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- cache ----------------------------------------------------------------------------------------

def test_cache_round_trip(tmp_path):
    path = tmp_path / "cache.sqlite"
    genotype = {"width": 16, "layers": [3, 3], "act": "relu"}
    result = {"accuracy": 0.91, "latency": math.inf, "energy": -math.inf, "loss": math.nan,
              "per_class": [0.5, 1.0], "ok": True, "note": None}
    with EvaluationCache(path) as cache:
        key = genotype_key(genotype)
        assert cache.get("ctx", key) is None
        cache.put("ctx", key, genotype, result)
        assert len(cache) == 1
    with EvaluationCache(str(path)) as cache:  # persisted, reopened
        got = cache.get("ctx", key)
        assert got["accuracy"] == 0.91 and got["per_class"] == [0.5, 1.0] and got["ok"] is True
        assert got["latency"] == math.inf and got["energy"] == -math.inf
        assert math.isnan(got["loss"]) and got["note"] is None
        [(k, g, r)] = cache.entries("ctx")
        assert (k, g, r["latency"]) == (key, genotype, math.inf) and math.isnan(r["loss"])
        cache.put("ctx", key, genotype, {"accuracy": 0.5})  # replaces
        assert cache.get("ctx", key) == {"accuracy": 0.5} and len(cache) == 1
        mode = cache._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_cache_in_memory_and_values_that_are_not_json():
    with EvaluationCache(None) as cache:
        cache.put("c", "k", {"a": np.int64(3)}, {"acc": np.float32(0.5), "v": np.arange(3)})
        assert cache.get("c", "k") == {"acc": 0.5, "v": [0, 1, 2]}
        with pytest.raises(TypeError, match="result is not JSON"):
            cache.put("c", "k2", {"a": 1}, {"s": {1, 2}})
        assert len(cache) == 1
    with pytest.raises(ValueError, match="closed"):
        cache.get("c", "k")


def test_genotype_key_is_canonical():
    a = genotype_key({"b": 1, "a": [2, 3.0]})
    assert a == genotype_key({"a": (2, 3), "b": 1.0})
    assert a == genotype_key({"a": [np.int64(2), np.float64(3)], "b": np.int32(1)})
    assert a != genotype_key({"a": [2, 3.5], "b": 1})
    assert len(a) == 64 and int(a, 16) >= 0
    assert genotype_key({"x": True}) != genotype_key({"x": 1})
    with pytest.raises(TypeError, match="inf/nan"):
        genotype_key({"lr": math.nan})
    assert context_key({"target": "neuraghe"}) != context_key({"target": "orlando"})


def test_cache_get_many_and_contexts():
    with EvaluationCache(None) as cache:  # in memory: 1200 fsyncs would take seconds
        settings = {"target": "neuraghe-losa", "epochs": 2}
        ctx = cache.context(settings)
        other = context_key({"target": "neuraghe-losa", "epochs": 5})
        assert ctx == context_key(settings)
        keys = [genotype_key({"i": i}) for i in range(1200)]  # more than one IN (...) chunk
        for i, k in enumerate(keys):
            cache.put(ctx, k, {"i": i}, {"v": i})
        cache.put(other, keys[0], {"i": 0}, {"v": "other"})
        got = cache.get_many(ctx, keys + ["missing"])
        assert set(got) == set(keys) and got[keys[7]] == {"v": 7}
        assert cache.get_many(other, keys) == {keys[0]: {"v": "other"}}
        assert cache.get(other, keys[1]) is None
        assert [g["i"] for _, g, _ in cache.entries(ctx)] == list(range(1200))
        assert len(cache.entries(other)) == 1 and len(cache) == 1201
        assert cache.contexts() == {ctx: settings, other: None}


def test_cache_keeps_every_put_of_a_sigkilled_run(tmp_path):
    path = tmp_path / "deep" / "er" / "cache.sqlite"  # parent folders are created
    code = ("import os, signal, sys\n"
            "from explore.cache import EvaluationCache\n"
            "cache = EvaluationCache(sys.argv[1])\n"
            "for i in range(40):\n"
            "    cache.put('ctx', f'k{i}', {'i': i}, {'v': i * 0.5})\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with EvaluationCache(path) as cache:
        assert len(cache) == 40
        assert [(k, g, r) for k, g, r in cache.entries("ctx")] == \
            [(f"k{i}", {"i": i}, {"v": i * 0.5}) for i in range(40)]


def _refused(path) -> InputFileError:
    before = path.read_bytes()
    with pytest.raises(InputFileError) as info:
        EvaluationCache(path)
    assert path.read_bytes() == before
    assert str(path) in str(info.value)
    return info.value


def test_cache_refuses_a_file_that_is_not_sqlite(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"not": "a cache"}\n' * 50)
    error = _refused(path)
    assert "not an SQLite file" in str(error) and "move this file away" in str(error)


def test_cache_refuses_another_format_version_and_other_databases(tmp_path):
    path = tmp_path / "cache.sqlite"
    with EvaluationCache(path) as cache:
        cache.put("c", "k", {}, {"v": 1})
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='99' WHERE name='version'")
    db.close()
    error = _refused(path)
    assert "format version 99" in str(error) and "use the ALOHA that wrote it" in str(error)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='0' WHERE name='version'")
    db.close()
    assert "start a fresh cache" in str(_refused(path))

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE people (name TEXT)")
        db.execute("INSERT INTO people VALUES ('ada')")
    db.close()
    assert "not an evaluation cache (tables: people)" in str(_refused(other))
    with pytest.raises(InputFileError, match="is a directory"):
        EvaluationCache(tmp_path)


def test_cache_from_threads(tmp_path):
    with EvaluationCache(tmp_path / "c.sqlite") as cache:
        errors = []

        def work(t):
            try:
                for i in range(40):
                    key = f"{t}-{i}"
                    cache.put("ctx", key, {"t": t, "i": i}, {"v": i})
                    assert cache.get("ctx", key) == {"v": i}
                    cache.get_many("ctx", [key, f"{(t + 1) % 8}-{i}"])
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors
        assert len(cache) == 320
