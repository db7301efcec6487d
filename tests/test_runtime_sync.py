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

from codegen_helpers import build, digits_inputs, generate, have_gcc, lower, run

pytestmark = pytest.mark.skipif(not have_gcc(), reason="gcc and make are needed to build code")


def _digits():
    from frontends.loader import load_model
    return load_model("zoo:digits_cnn", {})


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
    r, _ = run(code, digits_inputs(frames), env={"ALOHA_PROFILE": "1"})
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("sync:")]
    assert len(line) == 1, r.stderr
    sync = {k: float(v) for k, v in re.findall(r"(\w+) ([0-9.e+-]+)", line[0])}
    assert sync["fifo_ops"] == ops
    assert sync["sleeps"] <= sync["waits"] <= cross
    assert sync["locks"] <= sync["waits"] + cross


@pytest.mark.slow  # a ThreadSanitizer build; test_backends runs one at the schedule's sizes
def test_the_lock_free_fifos_have_no_data_race_at_the_least_sizes(tmp_path):
    """ThreadSanitizer over the float digits CNN at size-buffers' least FIFO capacities (the
    threads wait on nearly every FIFO between them), with and without spinning before a sleep:
    no report, and the outputs are those of the program at the schedule's sizes."""
    code = generate(_digits(), "host-cpu", str(tmp_path / "least"), buffers="minimal")
    ref = generate(_digits(), "host-cpu", str(tmp_path / "schedule"))
    build(code, "network-tsan")
    build(ref)
    x = digits_inputs(24)
    _, want = run(ref, x)
    for env in ({"ALOHA_PROFILE": "1"}, {"ALOHA_SPIN_US": "20"}):
        r, y = run(code, x, "network-tsan", env={"TSAN_OPTIONS": "halt_on_error=1", **env})
        if "FATAL: ThreadSanitizer" in r.stderr:  # e.g. an unsupported memory layout (ASLR)
            pytest.skip("ThreadSanitizer cannot run here: " + r.stderr.splitlines()[0])
        assert r.returncode == 0 and "ThreadSanitizer" not in r.stderr, r.stderr[-3000:]
        np.testing.assert_array_equal(y, want)


def _arch_with_handover(directory, handover_us: float) -> str:
    """host-cpu with its cores' hand-over cost set to `handover_us`."""
    import os
    path = os.path.join(str(directory), "host-h.arch")
    with open(path, "w") as f:
        f.write("platform host-h extends host-cpu {\n  description = \"host-cpu, another "
                f"hand-over cost (test)\"\n  pe core : cpu {{\n    handover = {handover_us} us\n"
                "  }\n}\n")
    return path


@pytest.mark.slow
def test_auto_runs_one_thread_where_the_hand_overs_cost_more_than_the_threads_save(tmp_path):
    """`runtime="auto"` on the digits CNN: the threads save the cost model's one-thread seconds
    (the csdf actors' cost_s, summed) minus the schedule's period; they pay a hand-over per FIFO
    transfer between threads (counted here from the threads' view). The choice follows the sign
    of saving - handovers x handover: one thread at host-cpu's measured cost, and at a cost just
    below the break-even the threads; the one thread's program is bit-exact with the threads'."""
    from aloha_ir.dialects import csdf
    from archdesc.loader import load_platform
    from backends.registry import get_backend
    module = _digits()
    platform = lower(module, "host-cpu")
    threads = get_backend("host")(runtime="threads").view(module, platform)
    graph = csdf.csdf_graphs(module)[0]
    one = sum(a.cost_s for a in graph.actors())
    _, cross = transfers_per_frame(threads)
    saving = one - graph.period_s
    assert saving > 0
    handover = load_platform("host-cpu").pe("core").handover_s
    assert handover > 0
    auto = get_backend("host")(runtime="auto").view(module, platform)
    want = "static" if saving <= cross * handover else "threads"
    assert auto.runtime == want == "static"
    assert auto.runtime_choice.handovers == cross
    assert len(auto.threads) == 1
    # at 0.9 of the break-even cost the threads pay
    arch = _arch_with_handover(tmp_path, 0.9 * 1e6 * saving / cross)
    other = _digits()
    assert get_backend("host")(runtime="auto").view(other, lower(other, arch)).runtime == \
        "threads"
    x = digits_inputs(6)
    outs = {}
    for rt in ("auto", "threads"):
        code = generate(_digits(), "host-cpu", str(tmp_path / rt), runtime=rt)
        build(code)
        r, outs[rt] = run(code, x)
        assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(outs["auto"], outs["threads"])


def test_auto_keeps_the_threads_where_the_fifos_do_not_hold_one_threads_order(tmp_path):
    """The least FIFO sizes (size-buffers) are the threads': the digits CNN's cannot hold the
    one-frame start order's tokens (simulated here firing by firing from the view's rates), so
    auto keeps the threads however cheap they would be; the static program at those sizes stops
    (exit 3)."""
    from backends.registry import get_backend
    module = _digits()
    platform = lower(module, "host-cpu", buffers="minimal")
    view = get_backend("host")(runtime="static").view(module, platform)
    count = {f.index: 0 for f in view.fifos}
    overflow = False
    phase = {a.index: 0 for a in view.actors}
    for i, n in view.threads[0].order:
        a = view.actors[i]
        for _ in range(n):
            k = phase[i]
            for p in a.ins:
                count[p.fifo] -= p.new[k] * p.row_tokens
                if p.reuse >= 0:
                    count[p.reuse] += (p.reuse_out[k] - p.reuse_in[k]) * p.row_tokens
            for f in a.outs:
                count[f] += a.prod[k]
            overflow |= any(count[f.index] > f.capacity for f in view.fifos)
            phase[i] = (k + 1) % a.phases
    assert overflow
    auto = get_backend("host")(runtime="auto").view(module, platform)
    assert not auto.runtime_choice.fits_one_thread and auto.runtime == "threads"
    # and the one thread's program at those sizes does stop on the FIFO it overflows
    code = generate(_digits(), "host-cpu", str(tmp_path), buffers="minimal", runtime="static")
    build(code)
    r, _ = run(code, digits_inputs(2))
    assert r.returncode == 3 and "too small" in r.stderr, r.stderr
