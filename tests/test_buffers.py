"""Minimal FIFO capacities at maximal throughput (aloha_ir.buffers) against SDF3's buffer sizing
on this project's own exports (../shared/reference/sdf3-golden.md), and by hand."""

from __future__ import annotations

import pytest

from aloha_ir import buffers, selftimed
from aloha_ir.dataflow import DataflowError, Edge
from aloha_ir.dialects import csdf
from aloha_ir.errors import PassError
from aloha_ir.passmanager import PassManager
from frontends.loader import load_model
from test_steady_state import exported

# sdf3-golden.md: minimal inter-actor capacities (tokens) keeping the unbounded regime's period
SDF3_LENET5 = {"c0": 28, "c1": 28, "c2": 84, "c3": 336, "c4": 504, "c5": 480, "c6": 80, "c7": 400,
               "c8": 120, "c9": 84, "c10": 10, "c11": 10}  # total 2,164
SDF3_MNIST_CNN_TOTAL, SDF3_MNIST_CNN_FIRST = 18_208, {"c0": 28, "c1": 28, "c2": 84, "c3": 3_328}
# sdf3-golden.md's storage/throughput trade-off: lenet5 (total including the 26 tokens of the 1-token
# scheduling self-loops, which this project does not model as channels -> period); mnist_cnn periods
SDF3_LENET5_TRADEOFF = [(1_946, 241_952), (2_030, 241_600), (2_106, 240_672), (2_190, 240_000)]
SDF3_MNIST_CNN_TRADEOFF_PERIODS = [10_665_600, 10_653_696, 10_631_808, 10_616_832]


def project_capacities(model: str) -> dict[str, int]:
    """analyze-schedule's FIFO sizes of the unmapped graph (sdf3-golden.md: they never limit the
    throughput)."""
    m = load_model(f"zoo:{model}", {})
    PassManager.parse("canonicalize,convert-nn-to-csdf,analyze-schedule").run(m)
    return {c.sym_name.data: c.buffer for c in csdf.csdf_graphs(m)[0].channels()}


def sized(model: str) -> tuple[buffers.Sizing, dict[str, int]]:
    """Sizing from the project's own capacities, on SDF3's export times."""
    start = project_capacities(model)
    phases, edges, times, q, order = exported(model)
    return buffers.CapacitySearch(phases, edges, times, q, start, order=order).minimal(), start


def test_lenet5s_minimal_capacities_equal_sdf3s_channel_by_channel():
    s, start = sized("lenet5")
    assert {c: s.capacities[c] for c in s.searched} == SDF3_LENET5
    assert sum(start[c] for c in s.searched) == 6_308  # sdf3-golden.md: the project's today
    assert s.period == 240_000  # the unbounded regime's, kept


def test_mnist_cnns_minimal_total_equals_sdf3s():
    s, start = sized("mnist_cnn")
    assert sum(s.capacities[c] for c in s.searched) == SDF3_MNIST_CNN_TOTAL
    assert {c: s.capacities[c] for c in SDF3_MNIST_CNN_FIRST} == SDF3_MNIST_CNN_FIRST
    assert sum(start[c] for c in s.searched) == 61_196
    assert s.period == 10_616_832


@pytest.mark.parametrize("model", ["lenet5", "mnist_cnn"])
def test_the_tradeoff_equals_sdf3s(model):
    phases, edges, times, q, order = exported(model)
    result = buffers.CapacitySearch(phases, edges, times, q, project_capacities(model),
                                    order=order).tradeoff()
    assert result.complete
    points = result.points
    if model == "lenet5":
        assert [(p.total + 26, p.period) for p in points] == SDF3_LENET5_TRADEOFF
    else:
        assert [p.period for p in points] == SDF3_MNIST_CNN_TRADEOFF_PERIODS
        assert points[-1].total == SDF3_MNIST_CNN_TOTAL
    for p in points:  # each point's capacities give its period
        assert selftimed.simulate(phases, edges, times, q, order=order, frames=10_000,
                                  periodic=True, capacity=p.capacities).regime.period == p.period


def test_a_rate_changing_pair_by_hand():
    """a makes 2 tokens per firing (time 1), b takes 3 (time 3); an iteration is 3 firings of a
    and 2 of b, so b bounds the period at 6. Space is claimed when a starts and freed when b ends.
    Traced by hand (b's starts): capacity 7 -- 2, 5, 8, 11: b back to back, period 6; 6 -- 2, 5,
    9, 12: a stalls while b holds its 3 tokens, and every other time b waits a firing of a: 7;
    5 -- 2, 6, 10, 14: 8; 4 -- 2, 6, 11, 15: 9; 3 -- a makes 2, has no room for 2 more, b never
    has 3: deadlock. So 7 is the minimum at maximal throughput."""
    phases = {"a": 1, "b": 1}
    edges = [Edge("ab", "a", "b", ((1, 2),), ((1, 3),))]
    times, q = {"a": [1], "b": [3]}, {"a": 3, "b": 2}
    search = buffers.CapacitySearch(phases, edges, times, q, {"ab": 100}, order=["a", "b"])
    s = search.minimal()
    assert s.period == 6 and s.capacities == {"ab": 7}
    points = search.tradeoff().points
    assert [(p.total, p.period) for p in points] == [(4, 9), (5, 8), (6, 7), (7, 6)]
    full = buffers.CapacitySearch(phases, edges, times, q, {"ab": 100}, order=["a", "b"])
    cut = buffers.CapacitySearch(phases, edges, times, q, {"ab": 100}, order=["a", "b"])
    full, cut = full.tradeoff(), cut.tradeoff(max_simulations=1)
    assert full.complete and not cut.complete  # then the maximal-throughput end is appended
    assert [(p.total, p.period) for p in cut.points] == [(7, 6)]
    for cap, period, starts in ((7, 6, [2, 5, 8, 11]), (6, 7, [2, 5, 9, 12]), (5, 8, [2, 6, 10, 14]),
                                (4, 9, [2, 6, 11, 15])):
        run = selftimed.simulate(phases, edges, times, q, frames=100, periodic=True,
                                 capacity={"ab": cap}, record=True)
        assert run.regime.period == period
        assert [f.start for f in run.timeline if f.actor == "b"][:4] == starts
    with pytest.raises(DataflowError, match="stopped after 0"):
        selftimed.simulate(phases, edges, times, q, frames=100, periodic=True, capacity={"ab": 3})


def test_analyze_buffers_on_the_unmapped_lenet5_reports_sdf3s_sizes_in_bytes():
    """The pass keeps analyze-schedule's throughput (2 frames in flight: lenet5's period is its
    bottleneck's either way) and reports tokens and deployed bytes: f32 tokens are 4 bytes, so
    the 2,164 inter-actor tokens are 8,656 bytes, plus the reuse self-loops kept at analyze-
    schedule's size (224 + 672 tokens, sdf3-golden.md: 3,584 bytes)."""
    m = load_model("zoo:lenet5", {})
    r = PassManager.parse("canonicalize,convert-nn-to-csdf,analyze-buffers{pareto=true "
                          "budget_bytes=11700}").run(m).report("analyze-buffers")
    assert r.period_s == 240_000 and r.minimal.fifo_tokens == 2_164
    assert r.minimal.fifo_bytes == 4 * (2_164 + 224 + 672)
    assert r.schedule.fifo_tokens == 6_308
    assert [(p.fifo_tokens, p.period_s) for p in r.tradeoff] == [
        (t - 26, p) for t, p in SDF3_LENET5_TRADEOFF]
    assert r.tradeoff_complete
    # 11,700 bytes hold 2,004 inter-actor tokens (11,600 B) but not 2,080 (11,904 B)
    assert (r.within_budget.fifo_tokens, r.within_budget.period_s) == (2_004, 241_600)
    assert r.to_json()["within_budget"]["fifo_bytes"] == 4 * (2_004 + 224 + 672)


def test_analyze_buffers_options_are_checked():
    m = load_model("zoo:lenet5", {})
    with pytest.raises(PassError, match="budget_bytes >= 0"):
        PassManager.parse("canonicalize,convert-nn-to-csdf,analyze-buffers{budget_bytes=-5}"
                          ).run(m)


def test_a_static_order_needs_more_room_than_the_self_timed_one_by_hand():
    """a and b share unit u; a makes 1 token per firing, b takes 1, each fires twice a frame,
    time 1. Self-timed, u runs b as soon as a's token is there: a FIFO of 1 token suffices (a, b,
    a, b). A thread running the static order a, a, b, b needs room for both of a's tokens: with 1
    it blocks on a's second write, and b, next in no order but its own, never runs -- deadlock; 2
    tokens it needs. The order a, b, a, b needs 1, like the self-timed run."""
    phases = {"a": 1, "b": 1}
    edges = [Edge("ab", "a", "b", ((1, 1),), ((1, 1),))]
    times, q, unit = {"a": [1], "b": [1]}, {"a": 2, "b": 2}, {"a": "u", "b": "u"}
    common = dict(unit=unit, order=["a", "b"], in_flight=1)
    dynamic, batched, interleaved = (
        buffers.CapacitySearch(phases, edges, times, q, {"ab": 4}, **common,
                               static_order=static).minimal()
        for static in (None, {"u": ["a", "a", "b", "b"]}, {"u": ["a", "b", "a", "b"]}))
    assert (dynamic.capacities, batched.capacities, interleaved.capacities) == (
        {"ab": 1}, {"ab": 2}, {"ab": 1})
    assert dynamic.period == batched.period == interleaved.period == 4  # u busy 4 a frame
    with pytest.raises(DataflowError, match="stopped after 0"):
        selftimed.simulate(phases, edges, times, q, frames=10, capacity={"ab": 1},
                           static_order={"u": ["a", "a", "b", "b"]}, **common)
    with pytest.raises(ValueError, match="fire each of its actors q times"):
        selftimed.simulate(phases, edges, times, q, static_order={"u": ["a", "b"]}, **common)
