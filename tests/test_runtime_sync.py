"""The threaded runtime's synchronisation (issue 24 item 1): a FIFO between two threads is a
lock-free single-producer single-consumer ring, so a read or write that finds its tokens (its
room) takes no lock; only one that must wait does, and the side that wakes it. Checked against
counts computed here from the codegen view (which FIFOs join two threads, how many transfers a
frame makes on them), and under ThreadSanitizer with the least FIFO sizes, where threads wait
most often."""

from __future__ import annotations

import re

import numpy as np
import pytest

from codegen_helpers import build, generate, have_gcc, lower, run

pytestmark = pytest.mark.skipif(not have_gcc(), reason="gcc and make are needed to build code")


def _digits():
    from frontends.loader import load_model
    return load_model("zoo:digits_cnn", {})


def _inputs(k: int) -> np.ndarray:
    from sklearn.datasets import load_digits
    x = load_digits().images[:k].astype(np.float32) / 16.0
    return x.reshape(k, 1, 8, 8)


def transfers_per_frame(view) -> tuple[int, int]:
    """(every FIFO read and write of a frame that moves tokens, those on a FIFO whose producer and
    consumer run on different threads), from the view: a port reads its channel in every phase
    that takes new rows, an actor writes each output in every phase that produces; a reuse
    self-loop is not counted (it never leaves its actor's thread)."""
    thread = {a: t.index for t in view.threads for a, _ in t.order}
    src = {f.index: next(a.index for a in view.actors if f.index in a.outs)
           for f in view.fifos if not f.self_loop}
    ops = cross = 0
    for a in view.actors:
        for p in a.ins:
            n = sum(1 for rows in p.new if rows > 0)
            ops += n
            cross += n if thread[src[p.fifo]] != thread[a.index] else 0
        for f in a.outs:
            dst = next(b.index for b in view.actors if any(p.fifo == f for p in b.ins))
            n = sum(1 for tokens in a.prod if tokens > 0)
            ops += n
            cross += n if thread[dst] != thread[a.index] else 0
    return ops, cross


def test_a_fifo_operation_that_need_not_wait_takes_no_lock(tmp_path):
    """ALOHA_PROFILE=1's sync line, per frame: the FIFO operations are those the view's rates
    give; only those on FIFOs between threads ever wait, and g_lock is taken once per wait and at
    most once more per operation between threads (waking a sleeper). Before, every FIFO
    operation took the global lock twice."""
    from backends.registry import get_backend
    module = _digits()
    platform = lower(module, "host-cpu")
    view = get_backend("host")().view(module, platform)
    assert len(view.threads) == 2
    ops, cross = transfers_per_frame(view)
    assert 0 < cross < ops
    code = generate(_digits(), "host-cpu", str(tmp_path))
    build(code)
    frames = 16
    r, _ = run(code, _inputs(frames), env={"ALOHA_PROFILE": "1"})
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("sync:")]
    assert len(line) == 1, r.stderr
    sync = {k: float(v) for k, v in re.findall(r"(\w+) ([0-9.e+-]+)", line[0])}
    assert sync["fifo_ops"] == ops
    assert sync["sleeps"] <= sync["waits"] <= cross
    assert sync["locks"] <= sync["waits"] + cross


def test_the_lock_free_fifos_have_no_data_race_at_the_least_sizes(tmp_path):
    """ThreadSanitizer over the float digits CNN at size-buffers' least FIFO capacities (the
    threads wait on nearly every FIFO between them), with and without spinning before a sleep:
    no report, and the outputs are those of the program at the schedule's sizes."""
    code = generate(_digits(), "host-cpu", str(tmp_path / "least"), buffers="minimal")
    ref = generate(_digits(), "host-cpu", str(tmp_path / "schedule"))
    build(code, "network-tsan")
    build(ref)
    x = _inputs(24)
    _, want = run(ref, x)
    for env in ({"ALOHA_PROFILE": "1"}, {"ALOHA_SPIN_US": "20"}):
        r, y = run(code, x, "network-tsan", env={"TSAN_OPTIONS": "halt_on_error=1", **env})
        if "FATAL: ThreadSanitizer" in r.stderr:  # e.g. an unsupported memory layout (ASLR)
            pytest.skip("ThreadSanitizer cannot run here: " + r.stderr.splitlines()[0])
        assert r.returncode == 0 and "ThreadSanitizer" not in r.stderr, r.stderr[-3000:]
        np.testing.assert_array_equal(y, want)

