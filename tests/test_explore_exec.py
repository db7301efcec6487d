"""The exploration's evaluation cache (explore/cache.py) and executors (explore/executor.py):
results survive a killed run, a wrong file is refused untouched, and a dying worker costs only
its own task, which is retried -- locally and on a Dask LocalCluster."""

from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest

import exec_tasks as T
from aloha_ir.errors import InputFileError, UsageError
from explore.cache import EvaluationCache, context_key, genotype_key
from explore.executor import (LocalExecutor, SerialExecutor, WorkerDied, dask_executor,
                              make_executor, map_unordered, scheduler_address)

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


# -- LocalExecutor ------------------------------------------------------------------------------

def _own_children_alive(pids) -> list[int]:
    """Those of `pids` still running or unreaped (zombies)."""
    return [p for p in pids if psutil.pid_exists(p)]


def _until(condition, what: str, seconds: float = 30.0) -> None:
    """Wait for condition() to hold; a test failure (not a hang) after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {seconds:g} s for {what}")
        time.sleep(0.001)


def test_local_results_equal_serial_and_no_children_left():
    seen = set()
    with LocalExecutor(2) as ex:
        futures = [ex.submit(T.square, i) for i in range(30)]
        assert [f.result() for f in futures] == [T.square(i) for i in range(30)]
        seen.update(f.result() for f in [ex.submit(T.pid) for _ in range(10)])
        seen.update(ex.pids())
    assert len(seen) == 2
    assert not _own_children_alive(seen)
    assert not [p for p in mp.active_children() if p.name == "aloha-explore-worker"]
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(T.square, 1)


def test_local_dying_task_is_retried_and_the_others_run_once(tmp_path):
    folder = str(tmp_path)
    jobs = [(folder, i) for i in range(8)]
    with LocalExecutor(2, retries=2) as ex:
        before = set(ex.pids())
        futures = [ex.submit(T.die_once if i == 3 else T.counted_square, job)
                   for i, job in enumerate(jobs)]
        assert [f.result() for f in futures] == [i * i for i in range(8)]
        after = set(ex.pids())
        assert len(after) == 2 and after != before  # the dead worker was replaced
    assert T.runs(folder, 3) == 2
    assert [T.runs(folder, i) for i in range(8) if i != 3] == [1] * 7
    assert not _own_children_alive(before | after)
    assert not [c for c in psutil.Process().children() if c.status() == psutil.STATUS_ZOMBIE]


def test_local_always_dying_task_fails_with_worker_died(tmp_path):
    folder = str(tmp_path)
    with LocalExecutor(2, retries=1) as ex:
        doomed = ex.submit(T.die_always, (folder, "doomed"))
        others = [ex.submit(T.counted_square, (folder, i)) for i in range(6)]
        with pytest.raises(WorkerDied) as info:
            doomed.result()
        assert [f.result() for f in others] == [i * i for i in range(6)]
        assert ex.submit(T.square, 7).result() == 49  # the pool goes on
    assert T.runs(folder, "doomed") == 2
    assert [T.runs(folder, i) for i in range(6)] == [1] * 6
    error = info.value
    assert error.attempts == 2 and error.exitcode == 3 and "die_always" in error.task
    assert "2 attempts" in str(error) and "exited with code 3" in str(error)


def test_local_task_exceptions_reach_their_own_future():
    with LocalExecutor(1) as ex:
        bad = ex.submit(T.boom, 5)
        good = ex.submit(T.square, 4)
        unpicklable = ex.submit(lambda: 1)
        with pytest.raises(T.Boom, match="boom 5") as info:
            bad.result()
        assert "raise Boom" in str(info.value.__cause__)  # the worker's traceback
        assert good.result() == 16
        with pytest.raises(Exception, match="lambda"):
            unpicklable.result()
        assert ex.submit(T.square, 3).result() == 9


def test_local_exit_by_exception_cancels_and_kills(tmp_path):
    with pytest.raises(KeyError):
        with LocalExecutor(1) as ex:
            running = ex.submit(T.slow_square, 2, 60)
            queued = ex.submit(T.square, 3)
            pids = ex.pids()
            _until(running.running, "the slow task to start")
            raise KeyError("the search failed")
    assert queued.cancelled()
    with pytest.raises(WorkerDied, match="terminate"):
        running.result(timeout=0)
    assert not _own_children_alive(pids)


def test_local_shutdown_fails_a_task_waiting_for_its_retry(tmp_path):
    ex = LocalExecutor(1, retries=1, initializer=time.sleep, initargs=(0.5,))
    doomed = ex.submit(T.die_once, (str(tmp_path), 0))
    # requeued while its new worker starts
    _until(lambda: doomed.running() and ex._pending, "the task to be requeued")
    ex.shutdown(cancel_futures=True)
    with pytest.raises(cf.CancelledError, match="waiting for a retry"):
        doomed.result(timeout=0)


class _TerminatedAsItsWorkerDies(LocalExecutor):
    """terminate() landing just before the manager sees a worker's death (the race)."""

    def _lost(self, w):
        with self._lock:
            self._shutdown = self._terminate = True
            self._pending.clear()
        super()._lost(w)


def test_local_worker_dying_during_terminate_does_not_leave_its_future_hanging(tmp_path):
    ex = _TerminatedAsItsWorkerDies(1, retries=2)
    doomed = ex.submit(T.die_always, (str(tmp_path), "doomed"))
    with pytest.raises(WorkerDied, match="terminated"):
        doomed.result(timeout=30)  # used to be requeued after the queue was emptied: a hang
    ex._thread.join(30)
    assert not ex._thread.is_alive() and T.runs(tmp_path, "doomed") == 1


def test_local_manager_cancels_what_is_left_in_the_queue():
    ex = LocalExecutor(1, initializer=time.sleep, initargs=(1.0,))
    queued = ex.submit(T.square, 3)  # no worker is ready yet: it stays queued
    with ex._lock:  # the manager stops with a task still queued (as a requeue after terminate)
        ex._terminate = ex._shutdown = True
    ex._wake()
    ex._thread.join(30)
    assert not ex._thread.is_alive()
    done, _ = cf.wait([queued], timeout=10)  # cancelled and waiters woken, not left pending
    assert queued in done and queued.cancelled()


def test_local_cancel_initializer_and_bad_options():
    with LocalExecutor(1) as ex:
        first = ex.submit(T.slow_square, 2, 0.3)
        later = ex.submit(T.square, 3)
        assert later.cancel()
        assert first.result() == 4 and later.cancelled()
    with LocalExecutor(1, initializer=T.failing_initializer) as ex:
        with pytest.raises(cf.BrokenExecutor, match="no data here"):
            ex.submit(T.square, 2).result()
    with pytest.raises(UsageError):
        LocalExecutor(0)
    with pytest.raises(UsageError, match="^workers: the number of workers"):
        make_executor(-1)


def test_serial_executor_and_make_executor():
    ex = make_executor(0)
    assert isinstance(ex, SerialExecutor)
    assert ex.submit(T.square, 3).result() == 9
    with pytest.raises(T.Boom):
        ex.submit(T.boom, 1).result()
    ex.shutdown()
    with make_executor(1) as ex:
        assert isinstance(ex, LocalExecutor) and ex.submit(T.square, 5).result() == 25


# -- map_unordered ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["local", "serial", "threads"])
def test_map_unordered_yields_every_index_once(kind, tmp_path):
    folder = str(tmp_path)
    jobs = [(folder, i) for i in range(12)]
    executor = {"local": lambda: LocalExecutor(2), "serial": SerialExecutor,
                "threads": lambda: cf.ThreadPoolExecutor(3)}[kind]()
    with executor as ex:
        fn = T.mixed if kind == "local" else T.counted_square
        if kind == "local":
            out = list(map_unordered(ex, fn, jobs, retries=1))
        else:
            out = list(map_unordered(ex, fn, jobs))
    assert sorted(i for i, _ in out) == list(range(12))
    results = dict(out)
    if kind == "local":
        assert isinstance(results.pop(1), WorkerDied) and T.runs(folder, 1) == 2
        assert T.runs(folder, 0) == 2
        assert results == {i: i * i for i in range(12) if i != 1}
        assert [T.runs(folder, i) for i in range(2, 12)] == [1] * 10
    else:
        assert results == {i: i * i for i in range(12)}
    with SerialExecutor() as ex:
        out = dict(map_unordered(ex, T.boom, [1, 2]))
    assert sorted(out) == [0, 1] and all(isinstance(e, T.Boom) for e in out.values())


def test_map_unordered_keeps_the_executors_own_retries(tmp_path):
    with make_executor(1, retries=0) as ex:  # no retry: die_once's one death fails it
        [(i, out)] = list(map_unordered(ex, T.die_once, [(str(tmp_path), 0)]))
    assert i == 0 and isinstance(out, WorkerDied) and out.attempts == 1
    assert T.runs(tmp_path, 0) == 1
    with make_executor(1, retries=0) as ex:  # an explicit retries= still wins
        [(_, out)] = list(map_unordered(ex, T.die_once, [(str(tmp_path), 1)], retries=1))
    assert out == 1 and T.runs(tmp_path, 1) == 2


# -- Dask ---------------------------------------------------------------------------------------

class _FakeRemote:
    """A Dask future that never finishes unless cancelled."""

    def __init__(self):
        self.status, self.callbacks = "pending", []

    def add_done_callback(self, fn):
        self.callbacks.append(fn)

    def cancel(self):
        self.status = "cancelled"
        for fn in self.callbacks:
            fn(self)


class _FakeClient:
    def __init__(self):
        self.remotes, self.closed = [], False

    def submit(self, fn, *args, pure=True, **kwargs):
        self.remotes.append(_FakeRemote())
        return self.remotes[-1]

    def close(self):
        self.closed = True


def test_dask_cancel_wakes_wait_and_as_completed():
    from explore.executor import DaskExecutor
    client = _FakeClient()
    ex = DaskExecutor(client)
    first, second = ex.submit(T.square, 2), ex.submit(T.square, 3)
    assert first.cancel()
    start = time.monotonic()
    done, _ = cf.wait([first], timeout=5)  # used to sleep the whole timeout: never notified
    assert first in done and time.monotonic() - start < 2
    assert client.remotes[0].status == "cancelled"  # the Dask task too
    waiter = threading.Thread(target=lambda: list(cf.as_completed([second], timeout=10)))
    waiter.start()
    time.sleep(0.05)
    assert second.cancel()
    waiter.join(5)
    assert not waiter.is_alive()
    ex.shutdown(wait=False)
    assert client.closed and second.cancelled()


def test_scheduler_addresses():
    assert scheduler_address("tcp://10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    assert scheduler_address("node-3.cluster:8786") == "tcp://node-3.cluster:8786"
    assert scheduler_address("tcp://[::1]:8786") == "tcp://[::1]:8786"
    for bad in ["", "tcp://host", "http://host:80", "host:99999", "tcp://ho st:1", "8786"]:
        with pytest.raises(UsageError, match="tcp://HOST:PORT"):
            scheduler_address(bad)


def test_dask_unreachable_scheduler_is_a_usage_error():
    with pytest.raises(UsageError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9 "):
        dask_executor("127.0.0.1:9", timeout=1)


@pytest.fixture(scope="module")
def cluster():
    """2 one-thread worker processes; each worker holds one task, a task may lose 2 workers."""
    try:
        import dask
        from distributed import LocalCluster
        with dask.config.set({"distributed.scheduler.allowed-failures": 2,
                              "distributed.scheduler.worker-saturation": 1.0}):
            local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                 dashboard_address=":0")
    except Exception as e:  # pragma: no cover - depends on the machine
        pytest.skip(f"distributed cannot start a LocalCluster here: {e!r}")
    yield local
    local.close()


def test_dask_results_equal_serial(cluster):
    with make_executor(scheduler=cluster.scheduler_address) as ex:
        futures = [ex.submit(T.square, i) for i in range(20)]
        assert [f.result() for f in futures] == [T.square(i) for i in range(20)]
        with pytest.raises(T.Boom):
            ex.submit(T.boom, 1).result()


def test_dask_dying_task_is_retried_and_the_others_run_once(cluster, tmp_path):
    from distributed import KilledWorker
    folder = str(tmp_path)
    with make_executor(scheduler=cluster.scheduler_address) as ex:
        out = list(map_unordered(ex, T.mixed, [(folder, i) for i in range(8)]))
    assert sorted(i for i, _ in out) == list(range(8))
    results = dict(out)
    assert isinstance(results.pop(1), KilledWorker)  # after allowed-failures + 1 = 3 deaths
    assert T.runs(folder, 1) == 3
    assert results == {i: i * i for i in range(8) if i != 1}
    assert T.runs(folder, 0) == 2
    assert [T.runs(folder, i) for i in range(2, 8)] == [1] * 6
