"""size-buffers: the generated program's least FIFO capacities, under its own execution (threads in
the one-frame schedule's static order, the C runtime's FIFO semantics), by hand and on the zoo
models (the conformance runs of the generated code at these sizes are in tests/test_backends.py)."""

from __future__ import annotations

import pytest

from aloha_ir import buffers, selftimed
from aloha_ir.context import make_context
from aloha_ir.dataflow import DataflowError, Edge
from aloha_ir.dialects import csdf
from aloha_ir.errors import PassError, UsageError
from aloha_ir.passmanager import PassManager
from aloha_ir.textio import parse_module
from aloha_ir.threads import home_threads, static_orders
from archdesc.loader import load_platform


def test_program_fifos_free_space_at_the_read_and_claim_it_at_the_write_by_hand():
    """a makes 2 tokens per firing (time 1), b takes 3 (time 3): 3 firings of a and 2 of b a frame,
    b bounds the period at 6. SDF3's reverse channel needs 7 tokens for it and deadlocks at 3
    (tests/test_buffers.py traces it). The program's FIFO: a writes at its end, b's read frees
    the space at its start. Capacity 4, by hand: a writes 2 at 1, 2 more at 2 (4); b reads 3 at 2
    (1 left) and runs to 5; a writes at 3 (3), its next write at 4 finds 3 + 2 > 4 and waits,
    holding a's thread; at 5 b reads 3 (0 left), a writes (2) and goes on, writes at 6 (4); b
    reads at 8, ... : b starts at 2, 5, 8, 11, back to back, period 6. Capacity 3: a writes 2
    at 1, its next 2 find no room, b never has 3: deadlock. So 4 is the least."""
    phases = {"a": 1, "b": 1}
    edges = [Edge("ab", "a", "b", ((1, 2),), ((1, 3),))]
    times, q = {"a": [1], "b": [3]}, {"a": 3, "b": 2}
    run = selftimed.simulate(phases, edges, times, q, frames=100, periodic=True, record=True,
                             capacity={"ab": 4}, fifo="program")
    assert run.regime.period == 6
    assert [f.start for f in run.timeline if f.actor == "b"][:4] == [2, 5, 8, 11]
    assert [f.start for f in run.timeline if f.actor == "a"][:5] == [0, 1, 2, 3, 5]
    with pytest.raises(DataflowError, match="stopped after 0"):
        selftimed.simulate(phases, edges, times, q, frames=100, periodic=True,
                           capacity={"ab": 3}, fifo="program")
    s = buffers.CapacitySearch(phases, edges, times, q, {"ab": 100}, fifo="program").minimal()
    assert s.capacities == {"ab": 4} and s.period == 6
    with pytest.raises(ValueError, match="fifo must be"):
        selftimed.simulate(phases, edges, times, q, fifo="kahn")


# a -> b, a firing of a makes 1 token (time 1), one of b takes it (time 0); each twice a frame
PAIR = """builtin.module {
  csdf.graph @g {
    csdf.actor @a "input" phases 2 times [2 x 1] work [2 x 1]
    csdf.actor @b "output" phases 2 times [2 x 1] work [2 x 0]
    csdf.channel @ab @a out0 -> @b in0 prod [2 x 1] cons [2 x 1] init 0 : f32
  }
}
"""


def _sized(target: str | None) -> tuple[int, int]:
    """(size-buffers' capacity of @ab, analyze-buffers' self-timed minimum)."""
    module = parse_module(PAIR)
    ctx = make_context()
    if target:
        ctx.target = load_platform(target)
    result = PassManager.parse("analyze-schedule,analyze-buffers,size-buffers").run(module, ctx)
    minimal = result.analyses["analyze-buffers"]["g"].minimal.capacities["ab"]
    return csdf.csdf_graphs(module)[0].channels()[0].buffer, minimal


def test_a_static_order_needs_more_than_the_self_timed_minimum_by_hand():
    """PAIR, unmapped. Self-timed (each actor its own processor, SDF3's FIFO): a runs 0-1 and 1-2,
    b takes each token the moment it is made (b at 1, 2): 1 token suffices at the period 2, a
    back to back (analyze-buffers: 1). The one-frame schedule starts a at 0, then at 1 a's second
    firing before b's first (ties by processor), b's second at 2: the order a, a, b, b. On
    host-cpu both actors are unplaced and nothing near them is placed, so both join the first cpu
    unit's thread, which runs a, a, b, b frame after frame: a writes its token at 1, its second
    firing ends at 2 and finds the FIFO full, and b, after it on the same thread, never reads:
    deadlock with 1 token; 2 tokens let a write both, then b reads both, period 2 (1 + 1 + 0 + 0).
    Without a platform each actor keeps a thread of its own, and 1 token suffices again."""
    assert _sized("host-cpu") == (2, 1)
    assert _sized(None) == (1, 1)
    one = csdf.csdf_graphs(parse_module(PAIR))[0]
    thread = home_threads(["a", "b"], {"a": "", "b": ""}, [("a", "b")], ["cpu0", "cpu1"])
    assert thread == {"a": "cpu0", "b": "cpu0"}
    orders = static_orders({"a": [0, 1], "b": [2, 3]}, thread)
    assert orders == {"cpu0": ["a", "a", "b", "b"]}
    phases, edges = one.dataflow_graph()
    times, q = {"a": [1, 1], "b": [0, 0]}, {"a": 2, "b": 2}
    common = dict(unit=thread, static_order=orders, fifo="program", in_flight=2, frames=50,
                  periodic=True)
    with pytest.raises(DataflowError, match="stopped after 0"):
        selftimed.simulate(phases, edges, times, q, capacity={"ab": 1}, **common)
    assert selftimed.simulate(phases, edges, times, q, capacity={"ab": 2},
                              **common).regime.period == 2


def test_home_threads_fold_unplaced_actors_into_the_nearest_cpu_unit():
    """in -> conv (on the accelerator ce) -> pool (arm1) -> out: `in` is nearest to conv, whose
    unit is no cpu, then to pool's arm1 two hops away; `out` is next to pool. No cpu unit: each
    unplaced actor keeps a thread of its own."""
    unit = {"in": "", "conv": "ce", "pool": "arm1", "out": ""}
    chain = [("in", "conv"), ("conv", "pool"), ("pool", "out")]
    assert home_threads(list(unit), unit, chain, ["arm0", "arm1"]) == {
        "in": "arm1", "conv": "ce", "pool": "arm1", "out": "arm1"}
    assert home_threads(list(unit), {**unit, "pool": "ce"}, chain, ["arm0", "arm1"])["in"] == \
        "arm0"  # no cpu unit near: the first
    assert home_threads(list(unit), unit, chain, [])["in"] == "@in"


def one_token_less(graph, cpu: list[str]):
    """(size-buffers' sizing of `graph`, the threads' period at it, and per channel between actors
    the period with that channel one token smaller, the others as sized: None for a deadlock),
    all in the simulator's time units."""
    from passes.analyze_schedule import timed_graph
    from passes.size_buffers import program_sizing
    s = program_sizing(graph, cpu)
    tg = timed_graph(graph)
    options = dict(unit=home_threads(tg.order, tg.unit, [(e.src, e.dst) for e in tg.edges
                                                         if e.src != e.dst], cpu),
                   static_order=s.threads, fifo="program", in_flight=2, frames=10_000,
                   periodic=True, delay=tg.delay, order=tg.order)

    def period(caps):
        try:
            return selftimed.simulate(tg.phases, tg.edges, tg.ticks, tg.firings, capacity=caps,
                                      **options).regime.period
        except DataflowError:
            return None

    at = period(s.capacities)
    assert at * tg.scale == pytest.approx(s.period_s, rel=1e-12)
    return s, at, {c: period({**s.capacities, c: s.capacities[c] - 1}) for c in s.searched}


@pytest.mark.parametrize("model,target", [("lenet5", "host-cpu"), ("mnist_cnn", "neuraghe-losa")])
def test_one_token_less_on_any_fifo_deadlocks_or_slows_the_threads(model, target):
    """The capacities are minimal: each channel between actors made one token smaller (the others
    as sized) deadlocks the program's modelled execution or lengthens its period; all of them
    smaller than the schedule's sizes on the whole."""
    from flows.target import TargetFlow
    from frontends.loader import load_model
    module = load_model(f"zoo:{model}", {})
    flow = TargetFlow(load_platform(target))
    flow.run(module)
    cpu = [u for u, pe in flow.platform.units() if pe.kind == "cpu"]
    s, period, smaller = one_token_less(csdf.csdf_graphs(module)[0], cpu)
    assert s.total < sum(s.schedule[c] for c in s.searched)
    assert all(p is None or p > period for p in smaller.values()), smaller
    assert None in smaller.values()  # most channels: the first token less stops the threads


def test_the_flow_and_the_cli_take_the_buffer_sizing():
    from flows.target import TargetFlow
    platform = load_platform("host-cpu")
    names = [p.name for p in TargetFlow(platform, buffers="minimal").passes()]
    assert names.index("size-buffers") == names.index("analyze-schedule") + 1
    assert "size-buffers" not in [p.name for p in TargetFlow(platform).passes()]
    user = PassManager.parse("size-buffers{in_flight=1}").passes
    merged = TargetFlow(platform).passes(user)
    assert [p for p in merged if p.name == "size-buffers"] == user  # at its stage, options kept
    assert [p.name for p in merged].index("size-buffers") == \
        [p.name for p in merged].index("analyze-schedule") + 1
    with pytest.raises(UsageError, match="unknown FIFO sizing"):
        TargetFlow(platform, buffers="smallest")
    with pytest.raises(PassError, match="in_flight must be"):
        PassManager.parse("size-buffers{in_flight=-1}").run(parse_module(PAIR), make_context())


def test_compile_buffers_minimal_from_the_cli(tmp_path):
    """`alohac compile --buffers minimal` writes a program with fewer FIFO tokens, and the report's
    FIFO bytes are the ones the program allocates; --buffers without --target is a usage error."""
    import json
    import subprocess
    import sys

    def compile_(out, *flags):
        return subprocess.run([sys.executable, "-m", "alohac.main", "compile", "zoo:lenet5",
                               "--target", "host-cpu", "-o", str(out), *flags],
                              capture_output=True, text=True, timeout=300)

    fifos, reported, program = {}, {}, {}
    for buffers in ("schedule", "minimal"):
        r = compile_(tmp_path / buffers, "--buffers", buffers)
        assert r.returncode == 0, r.stderr
        manifest = json.load(open(tmp_path / buffers / "code" / "network.json"))
        fifos[buffers] = sum(f["capacity"] for f in manifest["fifos"])
        program[buffers] = manifest["memory"]["buffer_bytes"]
        report = json.load(open(tmp_path / buffers / "report.json"))
        reported[buffers] = report["memory"]["buffer_bytes"]
    assert fifos["minimal"] < fifos["schedule"]
    assert reported == program
    r = subprocess.run([sys.executable, "-m", "alohac.main", "compile", "zoo:lenet5",
                        "--buffers", "minimal", "-o", str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--buffers needs --target" in r.stderr
