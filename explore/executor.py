"""Where the exploration's evaluations run: concurrent.futures executors that survive dying workers.

An evaluation trains and maps a network for seconds to minutes, and may die with its process (a
segfault in a native library, the OOM killer). ProcessPoolExecutor then breaks as a whole: every
pending future fails. Here a death costs only the point that was running:

- `make_executor(workers)` with workers >= 1: a `LocalExecutor`, long-lived spawned worker
  processes, one task each at a time, so the process that died names the one task it ran. That
  task is resubmitted (`retries` times, then its future fails with `WorkerDied`) and the worker
  replaced; every other future is untouched.
- `make_executor(0)`: a `SerialExecutor`, each task run at submit in the calling thread -- for
  debugging (pdb, prints, profilers); a crash there is the whole run's.
- `make_executor(scheduler="tcp://HOST:PORT")`: a `DaskExecutor` on a Dask distributed cluster.
  The scheduler reschedules the tasks of a worker that died (its nanny restarts the worker); a
  task that was on `allowed-failures` + 1 dying workers (the scheduler's config
  distributed.scheduler.allowed-failures, default 3) fails with distributed.KilledWorker. Every
  task *assigned* to the dying worker counts, including one queued behind the running task, so
  start the scheduler with distributed.scheduler.worker-saturation 1.0 to hold each worker to one
  task. Task functions must be importable on the workers.

`map_unordered` yields (index, result or exception) as evaluations finish, whatever the executor.
Every executor has `terminate()`, the stop for Ctrl-C: queued tasks are cancelled and running ones
killed (local workers) or cancelled (Dask) instead of awaited -- an evaluation may take minutes.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures as cf
import functools
import multiprocessing as mp
import os
import pickle
import queue
import re
import reprlib
import signal
import threading
import traceback
import weakref
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import wait as _wait

from aloha_ir.errors import UsageError


class WorkerDied(Exception):
    """A task's worker process died while running it, on every allowed attempt."""

    def __init__(self, message: str, *, task: str = "", exitcode: int | None = None,
                 attempts: int = 0):
        super().__init__(message)
        self.task = task
        self.exitcode = exitcode
        self.attempts = attempts


class _RemoteTraceback(Exception):
    """The worker-side traceback, chained as the __cause__ of a task's exception."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


# -- the worker process ---------------------------------------------------------------------------

_READY, _INIT_FAILED, _OK, _ERROR = "ready", "init-failed", "ok", "error"


def _exit_with_parent(sentinel) -> None:
    """Worker-side watch: leave when the main process is gone (killed), not after the task."""
    _wait([sentinel])
    os._exit(1)


def _error_reply(kind: str, exc: BaseException) -> bytes:
    text = "".join(traceback.format_exception(exc))
    try:
        return pickle.dumps((kind, exc, text), pickle.HIGHEST_PROTOCOL)
    except Exception:  # an exception that does not pickle travels as its text
        stand_in = RuntimeError(f"{type(exc).__name__}: {exc}")
        return pickle.dumps((kind, stand_in, text), pickle.HIGHEST_PROTOCOL)


def _worker_main(conn, initializer, initargs) -> None:
    """Run tasks one at a time until the stop message (b"") or the main process's end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    parent = mp.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent.sentinel,), daemon=True).start()
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as e:
            conn.send_bytes(_error_reply(_INIT_FAILED, e))
            return
    conn.send_bytes(pickle.dumps((_READY, os.getpid())))
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not data:
            return
        try:
            fn, args, kwargs = pickle.loads(data)
            result = fn(*args, **kwargs)
        except BaseException as e:
            reply = _error_reply(_ERROR, e)
        else:
            try:
                reply = pickle.dumps((_OK, result), pickle.HIGHEST_PROTOCOL)
            except Exception as e:
                reply = _error_reply(_ERROR, TypeError(f"the task's result does not pickle: {e}"))
        data = fn = args = kwargs = result = None  # drop this task's data before the next
        conn.send_bytes(reply)


# -- the main-process side ----------------------------------------------------------------------

class _Task:
    __slots__ = ("future", "payload", "retries", "deaths", "started")

    def __init__(self, future: cf.Future, payload: bytes, retries: int):
        self.future = future
        self.payload = payload
        self.retries = retries
        self.deaths = 0
        self.started = False

    @property
    def name(self) -> str:
        """fn(args...) for messages, made only when needed (a repr of big arguments costs)."""
        try:
            return _task_name(*pickle.loads(self.payload))
        except Exception:
            return "a task"


class _Worker:
    __slots__ = ("proc", "conn", "task", "ready", "eof")

    def __init__(self, proc, conn):
        self.proc = proc
        self.conn = conn
        self.task: _Task | None = None
        self.ready = False
        self.eof = False


def _task_name(fn, args, kwargs) -> str:
    short = reprlib.Repr()
    short.maxstring = short.maxother = 40

    def brief(value) -> str:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return f"<{len(value)} bytes>"
        return short.repr(value)

    parts = [brief(a) for a in args] + [f"{k}={brief(v)}" for k, v in kwargs.items()]
    return f"{getattr(fn, '__qualname__', repr(fn))}({', '.join(parts)})"


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is None:
        return "vanished"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    return f"exited with code {exitcode}"


def _cancel(task: _Task) -> None:
    """Cancel a queued task; one queued for a retry has started, so it fails instead."""
    if task.future.cancel():
        try:
            task.future.set_running_or_notify_cancel()  # wakes cf.wait and as_completed
        except RuntimeError:  # notified already
            pass
    else:
        task.future.set_exception(cf.CancelledError(
            f"{task.name} was waiting for a retry when the executor was shut down"))


_STARTUP_FAILURES = 3  # workers in a row dying before they are ready: the pool is broken
_live_executors: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _shutdown_at_exit() -> None:
    """Finish and stop pools never shut down, before multiprocessing's own exit hook (which
    would wait forever on their idle workers)."""
    for executor in list(_live_executors):
        executor.shutdown(wait=True)


class LocalExecutor(cf.Executor):
    """`workers` long-lived worker processes (spawn context), each running one task at a time.
    A worker that dies mid-task (segfault, os._exit, OOM kill) is replaced, and only its own task
    is resubmitted (up to `retries` times; then that future fails with WorkerDied naming the
    task); every other task and future is unaffected -- unlike ProcessPoolExecutor, whose whole
    pool breaks.

    Tasks are pickled at submit (an unpicklable one fails its own future); an exception raised by
    a task fails its future with that exception, its worker-side traceback as __cause__. Workers
    ignore SIGINT (Ctrl-C is the main process's) and leave when the main process dies. Leaving a
    `with` block by an exception cancels the queued tasks and kills the workers at once (their
    results would have nowhere to go); shutdown() otherwise lets running tasks finish.
    No task timeout: a worker that hangs holds its task forever.
    """

    def __init__(self, workers: int, retries: int = 2, initializer: Callable | None = None,
                 initargs: tuple = ()):
        if not isinstance(workers, int) or workers < 1:
            raise UsageError(f"a LocalExecutor needs at least one worker, not {workers!r}",
                             hint="workers=0 (make_executor) runs tasks in-process")
        if not isinstance(retries, int) or retries < 0:
            raise UsageError(f"retries must be 0 or more, not {retries!r}")
        self.workers = workers
        self.retries = retries
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._ctx = mp.get_context("spawn")
        self._lock = threading.Lock()
        self._pending: collections.deque[_Task] = collections.deque()
        self._shutdown = False
        self._terminate = False
        self._broken: str | None = None
        self._startup_failures = 0
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._wake_lock = threading.Lock()
        self._woken = False
        self._pool: list[_Worker] = []
        try:
            for _ in range(workers):
                self._start_worker()
        except BaseException:
            for w in self._pool:
                w.proc.kill()
                w.proc.join()
            raise
        self._thread = threading.Thread(target=self._manage, name="LocalExecutor", daemon=True)
        self._thread.start()
        _live_executors.add(self)

    # -- public ---------------------------------------------------------------------------------

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        """Queue fn(*args, **kwargs); its future fails with WorkerDied after `retries` deaths."""
        return self._submit(fn, args, kwargs, self.retries)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Run what is queued (unless cancel_futures), then stop the workers."""
        with self._lock:
            self._shutdown = True
            cancelled = list(self._pending) if cancel_futures else []
            if cancel_futures:
                self._pending.clear()
        for task in cancelled:
            _cancel(task)
        self._wake()
        if wait and threading.current_thread() is not self._thread:  # not from a callback
            self._thread.join()

    def terminate(self) -> None:
        """Cancel the queued tasks, kill the workers now; running tasks fail with WorkerDied."""
        with self._lock:
            self._shutdown = self._terminate = True
            cancelled = list(self._pending)
            self._pending.clear()
        for task in cancelled:
            _cancel(task)
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.shutdown(wait=True)
        else:
            self.terminate()
        return False

    def pids(self) -> list[int]:
        """The worker processes' ids now (replaced workers have new ones)."""
        pids = []
        for w in list(self._pool):
            try:
                pids.append(w.proc.pid)
            except ValueError:  # reaped meanwhile
                pass
        return pids

    # -- submitting -----------------------------------------------------------------------------

    def _submit(self, fn, args: tuple, kwargs: dict, retries: int) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            payload = pickle.dumps((fn, args, kwargs), pickle.HIGHEST_PROTOCOL)
            error = None
        except Exception as e:
            payload, error = b"", e
        with self._lock:
            if self._broken:
                raise cf.BrokenExecutor(self._broken)
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if error is None:
                self._pending.append(_Task(future, payload, retries))
                wake, self._woken = not self._woken, True
        if error is not None:
            future.set_running_or_notify_cancel()
            future.set_exception(error)
        elif wake:
            self._wake()
        return future

    def _wake(self) -> None:
        with self._wake_lock:
            try:
                self._wake_w.send_bytes(b"")
            except OSError:  # the manager has finished and closed the pipe
                pass

    # -- the manager thread -------------------------------------------------------------------

    def _start_worker(self) -> None:
        ours, theirs = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_worker_main, name="aloha-explore-worker",
                                 args=(theirs, self._initializer, self._initargs))
        proc.start()
        theirs.close()
        self._pool.append(_Worker(proc, ours))

    def _manage(self) -> None:
        try:
            while self._dispatch():
                waitables = [self._wake_r]
                for w in self._pool:
                    if not w.eof:
                        waitables.append(w.conn)
                    waitables.append(w.proc.sentinel)
                ready = set(_wait(waitables))
                if self._wake_r in ready:
                    while self._wake_r.poll():
                        self._wake_r.recv_bytes()
                    with self._lock:
                        self._woken = False
                for w in list(self._pool):
                    if w.conn in ready:
                        self._receive(w)
                for w in list(self._pool):
                    if w.proc.sentinel in ready:
                        self._lost(w)
        except BaseException as e:  # a bug here must not leave futures waiting forever
            self._break(f"the executor's manager thread failed: {e!r}")
            raise
        finally:
            self._stop_workers()
            with self._lock:  # a task requeued after terminate() emptied the queue
                left = list(self._pending)
                self._pending.clear()
            for task in left:
                _cancel(task)

    def _dispatch(self) -> bool:
        """Hand queued tasks to idle ready workers; False once there is nothing left to do."""
        sends = []
        with self._lock:
            if self._terminate or self._broken:
                return False
            for w in self._pool:
                if not (w.ready and w.task is None and not w.eof):
                    continue
                while self._pending:
                    task = self._pending.popleft()
                    if task.started or task.future.set_running_or_notify_cancel():
                        task.started = True
                        w.task = task
                        sends.append(w)
                        break
                if not self._pending:
                    break
            busy = any(w.task is not None for w in self._pool)
            if self._shutdown and not self._pending and not busy:
                return False
        for w in sends:
            try:
                w.conn.send_bytes(w.task.payload)
            except OSError:  # it died before reading: the task never ran, so no death counts
                task, w.task = w.task, None
                with self._lock:
                    self._pending.appendleft(task)
                w.eof = True
        return True

    def _receive(self, w: _Worker) -> None:
        """Read every message waiting from worker `w`."""
        while not w.eof and w.conn.poll():
            try:
                data = w.conn.recv_bytes()
            except (EOFError, OSError):  # it died; its sentinel says so soon
                w.eof = True
                return
            try:
                message = pickle.loads(data)
            except Exception as e:
                message = (_ERROR, RuntimeError(f"the task's reply does not unpickle here: {e!r}"),
                           "")
            kind = message[0]
            if kind == _READY:
                w.ready = True
                self._startup_failures = 0
            elif kind == _INIT_FAILED:
                self._break(f"a worker's initializer failed: {message[1]!r}\n{message[2]}")
            elif w.task is not None:
                task, w.task = w.task, None
                if kind == _OK:
                    task.future.set_result(message[1])
                else:
                    exc = message[1]
                    if message[2]:
                        exc.__cause__ = _RemoteTraceback(message[2])
                    task.future.set_exception(exc)

    def _lost(self, w: _Worker) -> None:
        """Worker `w` has exited: reap it, resubmit or fail its task, replace it."""
        self._receive(w)  # a reply sent just before it died still counts
        w.proc.join()
        exitcode = w.proc.exitcode
        self._pool.remove(w)
        w.conn.close()
        w.proc.close()
        task = w.task
        with self._lock:
            terminating = self._terminate
        if task is not None:
            task.deaths += 1
            if terminating:  # terminate() has emptied the queue: a requeued task would hang
                name = task.name
                task.future.set_exception(WorkerDied(
                    f"the worker running {name} died while the executor was terminated",
                    task=name, exitcode=exitcode, attempts=task.deaths))
            elif task.deaths > task.retries:
                name = task.name
                task.future.set_exception(WorkerDied(
                    f"{name} lost its worker on each of its {task.deaths} attempts "
                    f"(the last one {_how_it_ended(exitcode)})",
                    task=name, exitcode=exitcode, attempts=task.deaths))
            else:
                with self._lock:
                    self._pending.appendleft(task)
        if not w.ready:
            self._startup_failures += 1
            if self._startup_failures >= _STARTUP_FAILURES:
                self._break(f"{self._startup_failures} workers in a row died while starting; "
                            f"the last {_how_it_ended(exitcode)} (their stderr says why; a "
                            "script starting workers needs `if __name__ == '__main__':`)")
                return
        with self._lock:
            needed = not self._broken and (not self._shutdown or self._pending)
        if needed:
            self._start_worker()

    def _break(self, reason: str) -> None:
        """Fail every queued and running task and any later submit."""
        with self._lock:
            if self._broken:
                return
            self._broken = reason
            failed = list(self._pending) + [w.task for w in self._pool if w.task is not None]
            self._pending.clear()
        for w in self._pool:
            w.task = None
        for task in failed:
            if task.started or task.future.set_running_or_notify_cancel():
                task.future.set_exception(cf.BrokenExecutor(reason))

    def _stop_workers(self) -> None:
        """Ask idle workers to leave (kill all when terminating or broken), reap every one."""
        with self._lock:
            kill = self._terminate or bool(self._broken)
        for w in self._pool:
            if kill or w.task is not None:
                w.proc.kill()
            else:
                try:
                    w.conn.send_bytes(b"")
                except OSError:
                    pass
        for w in self._pool:
            w.proc.join(5.0)
            if w.proc.exitcode is None:
                w.proc.kill()
                w.proc.join()
            if w.task is not None:
                name = w.task.name
                w.task.future.set_exception(WorkerDied(
                    f"the worker running {name} was stopped by terminate()",
                    task=name, exitcode=w.proc.exitcode, attempts=w.task.deaths))
                w.task = None
            w.conn.close()
            w.proc.close()
        self._pool.clear()
        with self._wake_lock:
            self._wake_r.close()
            self._wake_w.close()
        _live_executors.discard(self)


class SerialExecutor(cf.Executor):
    """workers=0: each task runs at submit, in the calling thread. For debugging (pdb, prints,
    profilers see the evaluation); a worker death here is the whole run's."""

    def __init__(self):
        self._shutdown = False

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future: cf.Future = cf.Future()
        future.set_running_or_notify_cancel()
        try:
            result = fn(*args, **kwargs)
        except Exception as e:  # KeyboardInterrupt and SystemExit stop the run, as they should
            future.set_exception(e)
        else:
            future.set_result(result)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True

    def terminate(self) -> None:
        """Nothing runs in the background: as shutdown()."""
        self.shutdown()


# -- Dask ---------------------------------------------------------------------------------------

_ADDRESS = re.compile(r"^(?:(?P<proto>[a-z]+)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)"
                      r":(?P<port>[0-9]{1,5})$")
_PROTOCOLS = ("tcp", "tls", "ws", "wss", "ucx")


def scheduler_address(address: str) -> str:
    """`address` as Dask wants it (tcp:// added to a bare HOST:PORT), or a UsageError."""
    m = _ADDRESS.match(address.strip()) if isinstance(address, str) else None
    if not m or m["proto"] not in (None, *_PROTOCOLS) or not 0 < int(m["port"]) < 65536:
        raise UsageError(f"malformed Dask scheduler address {address!r}", where="scheduler",
                         hint="give it as tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786")
    return f"{m['proto'] or 'tcp'}://{m['host']}:{int(m['port'])}"


class DaskExecutor(cf.Executor):
    """A Dask distributed cluster as an Executor. Tasks are impure (never deduplicated by their
    arguments, so a resubmission runs again), and each Dask future is released as soon as its
    result has reached this process -- distributed's own ClientExecutor keeps it while the
    concurrent.futures future lives, and a finished result held by a worker that then dies is
    recomputed. Cancelling a future cancels its task even when running. shutdown() closes this
    client, never the cluster; shutdown(wait=False) cancels what has not finished (a closed
    client's tasks do not outlive it)."""

    def __init__(self, client):
        self.client = client
        self._lock = threading.Lock()
        self._remote: dict[cf.Future, object] = {}  # ours -> its Dask future, until settled
        self._shutdown = False

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        future: cf.Future = cf.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            remote = self.client.submit(fn, *args, pure=False, **kwargs)
            self._remote[future] = remote
        future.add_done_callback(self._cancel_remote)  # no reference to `remote` from ours
        remote.add_done_callback(functools.partial(self._settle, future))
        return future

    def _settle(self, future: cf.Future, remote) -> None:
        """Runs in the client's callback thread when the Dask future is done."""
        try:
            if future.done():
                return
            if remote.status == "finished":
                future.set_result(remote.result())
            elif remote.status == "cancelled":
                self._cancel(future)
            else:
                future.set_exception(remote.exception())
        except BaseException as e:
            if not future.done():
                future.set_exception(e)
        finally:
            with self._lock:
                self._remote.pop(future, None)

    @staticmethod
    def _cancel(future: cf.Future) -> None:
        future.cancel()  # its done callback, _cancel_remote, wakes the waiters

    def _cancel_remote(self, future: cf.Future) -> None:
        """Done callback of ours: a cancel (the user's or ours) wakes cf.wait and as_completed
        (Future.cancel alone does not) and cancels the Dask task."""
        if future.cancelled():
            try:
                future.set_running_or_notify_cancel()  # CANCELLED -> CANCELLED_AND_NOTIFIED
            except RuntimeError:  # notified already
                pass
            with self._lock:
                remote = self._remote.pop(future, None)
            if remote is not None:
                remote.cancel()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            mine = list(self._remote)
        if wait and not cancel_futures:
            cf.wait(mine)
        for future in mine:
            self._cancel(future)
        self.client.close()

    def terminate(self) -> None:
        """Cancel every task now, running ones included (the cluster itself stays up)."""
        self.shutdown(wait=False, cancel_futures=True)


def dask_executor(address: str, timeout: float = 5.0) -> DaskExecutor:
    """An executor on the Dask scheduler at `address` (tcp://HOST:PORT); a UsageError when the
    address is malformed or the scheduler does not answer within `timeout` seconds."""
    address = scheduler_address(address)
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("a Dask scheduler needs the distributed package", where="scheduler",
                         hint="pip install 'dask[distributed]'") from None
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise UsageError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
                         f"({type(e).__name__}: {e})", where="scheduler",
                         hint="start it (`dask scheduler`, then `dask worker ADDRESS` on each "
                              "machine), or leave out the scheduler to use local processes") \
            from None
    return DaskExecutor(client)


# -- choosing and using one ---------------------------------------------------------------------

def make_executor(workers: int = 1, scheduler: str | None = None, *,
                  retries: int = 2) -> cf.Executor:
    """The exploration's executor: a Dask cluster when `scheduler` is given (`workers` is then
    the cluster's business), else `workers` local processes (0: in-process, serially)."""
    if scheduler:
        return dask_executor(scheduler)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise UsageError(f"the number of workers must be 0 or more, not {workers!r}",
                         where="workers", hint="0 runs evaluations in-process, for debugging")
    if workers == 0:
        return SerialExecutor()
    return LocalExecutor(workers, retries=retries)


def map_unordered(executor: cf.Executor, fn: Callable, items: Iterable,
                  retries: int | None = None) -> Iterator[tuple[int, object]]:
    """fn(item) for every item, yielding (item's index, result or the exception) as each
    finishes, so the caller records a failed point instead of stopping. Every index comes once.

    `retries` is how many worker deaths one item survives on a LocalExecutor (None: the
    executor's own `retries`, as make_executor set it); a Dask cluster
    applies its scheduler's allowed-failures instead (the exception is then KilledWorker), and
    other executors their own rules. Closing the iterator early cancels what has not started.
    """
    items = list(items)
    finished: queue.SimpleQueue = queue.SimpleQueue()  # (index, future) as each one settles
    futures: dict[int, cf.Future] = {}
    try:
        for i, item in enumerate(items):
            if isinstance(executor, LocalExecutor) and retries is not None:
                future = executor._submit(fn, (item,), {}, retries)
            else:
                future = executor.submit(fn, item)
            futures[i] = future
            future.add_done_callback(functools.partial(_settled, finished, i))
        while futures:
            i, future = finished.get()
            del futures[i]
            if future.cancelled():
                yield i, cf.CancelledError(f"item {i} was cancelled")
                continue
            exc = future.exception()
            yield i, exc if exc is not None else future.result()
    finally:
        for future in futures.values():
            future.cancel()


def _settled(finished: queue.SimpleQueue, i: int, future: cf.Future) -> None:
    finished.put((i, future))
