"""Self-timed schedule, mapping and the analyses against closed forms, hand computations and the
published NEURAghe measurements (hardware.md's calibration rows)."""

from __future__ import annotations

import math

import pytest

from aloha_ir import dataflow, rle, selftimed
from aloha_ir.context import make_context
from aloha_ir.dataflow import Edge
from aloha_ir.errors import PassError, UnsupportedError
from aloha_ir.passmanager import PassManager
from archdesc.loader import load_platform
from flows.target import TargetFlow
from frontends.loader import load_model
from passes.analyze_processors import strictly_periodic
from passes.map import MapPass
from passes.partition import PartitionPass

ANALYSES = "analyze-schedule,analyze-memory,analyze-energy,analyze-processors"


def sdf(*pairs) -> rle.Runs:
    return rle.encode(pairs)


def run(phases, edges, times, **kw):
    q = dataflow.firings(phases, dataflow.repetition_vector(phases, edges))
    return selftimed.simulate(phases, edges, times, q, **kw), q


def test_chain_on_one_pe_takes_the_sum_of_the_work():
    # a -2-> b -1:3-> c, all on one unit: nothing overlaps, latency = sum over firings
    phases = {"a": 1, "b": 1, "c": 1}
    edges = [Edge("ab", "a", "b", sdf(2), sdf(1)), Edge("bc", "b", "c", sdf(1), sdf(3))]
    times = {"a": [5.0], "b": [2.0], "c": [7.0]}
    r, q = run(phases, edges, times, unit=dict.fromkeys(phases, "p"))
    assert q == {"a": 3, "b": 6, "c": 2}
    assert r.latency == pytest.approx(3 * 5 + 6 * 2 + 2 * 7)
    assert r.busy["p"] == pytest.approx(r.latency)


def test_fork_join_on_two_pes_is_the_critical_path():
    phases = dict.fromkeys("sxyj", 1)
    edges = [Edge("sx", "s", "x", sdf(1), sdf(1)), Edge("sy", "s", "y", sdf(1), sdf(1)),
             Edge("xj", "x", "j", sdf(1), sdf(1)), Edge("yj", "y", "j", sdf(1), sdf(1))]
    times = {"s": [1.0], "x": [4.0], "y": [9.0], "j": [2.0]}
    r, _ = run(phases, edges, times, unit={"s": "p0", "x": "p0", "y": "p1", "j": "p0"})
    assert r.latency == pytest.approx(1 + max(4, 9) + 2)
    # both branches on one unit: they serialise
    r, _ = run(phases, edges, times, unit=dict.fromkeys(phases, "p0"))
    assert r.latency == pytest.approx(1 + 4 + 9 + 2)


def test_sdf3_check_case_period_is_12():
    # reference/csdf.md: SDF3's buffer-sizing example; throughput 1/12 iterations per time unit
    phases = {"a": 2, "b": 2, "c": 2}
    edges = [Edge("ab", "a", "b", sdf(3, 1), sdf(4, 2)), Edge("bc", "b", "c", sdf(2, 4), sdf(6, 6))]
    times = {"a": [1.0, 3.0], "b": [2.0, 2.0], "c": [2.0, 3.0]}
    r, q = run(phases, edges, times, frames=20)
    assert q == {"a": 6, "b": 4, "c": 2}
    assert r.period() == pytest.approx(12.0)


def _closed_form(graph) -> float:
    phases, edges = graph.dataflow_graph()
    r = dataflow.repetition_vector(phases, edges)
    return max(r[a.sym_name.data] * rle.total(a.work_runs) for a in graph.actors())


@pytest.mark.parametrize("model", ["lenet5", "squeezenet1_1"])
def test_unmapped_period_equals_the_closed_form(model):
    m = load_model(f"zoo:{model}", {})
    res = PassManager.parse("canonicalize,convert-nn-to-csdf,"
                            "analyze-schedule{in_flight=0}").run(m)
    report = res.report("analyze-schedule")
    graph = [g for g in m.ops if g.name == "csdf.graph"][0]
    assert not report.mapped
    assert report.period_s == pytest.approx(_closed_form(graph), rel=1e-9)


def test_darts_processors_by_hand():
    # q = (a: 2, b: 1); C = (3, 4): lcm 2, alpha = 2 * ceil(max(6, 4) / 2) = 6; U = 6/6 + 4/6
    phases = {"a": 1, "b": 1}
    edges = [Edge("ab", "a", "b", sdf(1), sdf(2))]
    alpha, u = strictly_periodic(phases, edges, {"a": 3, "b": 4})
    assert alpha == 6 and u == {"a": 1.0, "b": pytest.approx(4 / 6)}
    assert math.ceil(sum(u.values())) == 2


def analyze(model: str, target: str, bits: int = 0, allow_overflow: bool = False):
    """The module after the target flow, and its analyses."""
    m = load_model(f"zoo:{model}", {})
    flow = TargetFlow(load_platform(target), bits, allow_overflow=allow_overflow)
    res = flow.run(m)
    return m, {name: res.report(name) for name in res.analyses}  # the one graph's


# hardware.md's measured rows: (platform, network, bits, GOps/s, GOps/s/W)
CALIBRATION = [("neuraghe-losa", "vgg16", 16, 172.67, 17.26),
               ("neuraghe-losa", "vgg16", 8, 335.09, None),
               ("neuraghe-losa", "resnet18", 16, 61.91, 6.19),
               ("neuraghe-sabina", "vgg16", 16, 29.32, 8.37)]


@pytest.mark.parametrize("target,model,bits,gops,gops_w", CALIBRATION)
def test_calibration_rows_within_10_percent(target, model, bits, gops, gops_w):
    _, a = analyze(model, target, bits)
    macs = a["analyze-cost"].macs
    fps = a["analyze-schedule"].throughput_fps
    assert 2 * macs * fps / 1e9 == pytest.approx(gops, rel=0.10)
    if gops_w is not None:
        assert 2 * macs / a["analyze-energy"].energy_j / 1e9 == pytest.approx(gops_w, rel=0.10)


def test_vgg16_overlaps_the_classifier_with_the_next_frame():
    _, a = analyze("vgg16", "neuraghe-losa")
    s = a["analyze-schedule"]
    # the stream is faster than one frame: the ARM finishes frame n while the CE runs frame n+1
    assert s.period_s < 0.75 * s.latency_s
    assert s.per_pe["ce"].utilisation == pytest.approx(1.0, abs=0.02)
    busiest = max(u.busy_s for u in s.per_pe.values())
    assert s.period_s >= busiest * (1 - 1e-9)


def test_resnet18_7x7_runs_as_four_5x5_jobs_with_an_arm_merge():
    m, a = analyze("resnet18", "neuraghe-losa")
    mapping = a["map"]
    merges = [n for n in mapping.assignment if n.endswith("_merge")]
    assert len(merges) == 1 and mapping.assignment[merges[0]].startswith("arm")
    conv = merges[0][:-len("_merge")]
    assert mapping.assignment[conv] == "ce" and "7x7 as 4 x 5x5" in mapping.notes[conv]


def test_partition_uses_both_ces_of_arrubiu_and_keeps_the_graph_consistent():
    m, a = analyze("vgg16", "neuraghe-arrubiu")
    units = set(a["map"].assignment.values())
    assert {"ce0", "ce1"} <= units
    s = a["analyze-schedule"]
    assert s.per_pe["ce0"].busy_s == pytest.approx(s.per_pe["ce1"].busy_s, rel=0.05)


def test_energy_is_static_power_times_period_plus_busy_power():
    _, a = analyze("resnet18", "neuraghe-losa")
    e, s = a["analyze-energy"], a["analyze-schedule"]
    plat = load_platform("neuraghe-losa")
    by_hand = plat.static_w * s.period_s
    for unit, pe in plat.units():
        busy = s.per_pe[unit].busy_s if unit in s.per_pe else 0.0
        by_hand += pe.active_w * busy + pe.idle_w * (s.period_s - busy)
    assert e.energy_j == pytest.approx(by_hand)
    assert e.static_j / e.energy_j > 0.9  # hardware.md: board power dominates


def test_orlando_high_operating_point_is_faster_and_costs_more_power():
    outs = {}
    for opp in ("low", "high"):
        res = TargetFlow(load_platform("orlando")).run(
            load_model("zoo:lenet5", {}), user=[PartitionPass(), MapPass(opp=opp)])
        outs[opp] = {name: res.report(name) for name in res.analyses}
    assert outs["high"]["analyze-schedule"].latency_s < outs["low"]["analyze-schedule"].latency_s
    assert outs["high"]["analyze-energy"].average_power_w > \
        outs["low"]["analyze-energy"].average_power_w


def test_memory_buffers_plus_parameters_and_overflow():
    _, a = analyze("vgg16", "neuraghe-losa")
    mem = a["analyze-memory"]
    # parameters as deployed in fixed16: VGG-16's 138,344,128 weights at 2 bytes, its 13,416
    # biases at 4 (the 32-bit accumulator format) and the 6 constants of its in-graph input
    # normalisation at 2 (138,357,550 parameters in all)
    assert a["analyze-cost"].params_deployed == 138_357_550 == 138_344_128 + 13_416 + 6
    assert mem.parameter_bytes == 2 * 138_344_128 + 4 * 13_416 + 2 * 6
    assert mem.memory_bytes == mem.buffer_bytes + mem.parameter_bytes + mem.scratch_bytes
    assert mem.fits
    assert 0 < mem.peak_activation_bytes <= mem.buffer_bytes
    with pytest.raises(PassError, match="does not fit|needs .* in sram"):
        analyze("vgg16", "orlando")
    _, a = analyze("vgg16", "orlando", allow_overflow=True)
    assert a["analyze-memory"].fits is False


def test_an_operator_the_platform_cannot_run_names_actor_and_platform():
    from archdesc.loader import loads
    m = load_model("zoo:lenet5", {})
    ctx = make_context()
    ctx.target = loads("""
platform convonly {
  backend = host
  datatypes = f32
  static_power = 1 W
  pe core : cpu {
    ops = conv
    clock = 1 GHz
    ops_per_cycle = f32: 1
  }
}""", "convonly.arch")
    with pytest.raises(UnsupportedError) as info:
        PassManager.parse("canonicalize,convert-nn-to-csdf,map").run(m, ctx)
    text = str(info.value)
    assert "convonly" in text and "actor @" in text and "cannot run" in text


def test_map_needs_a_target():
    m = load_model("zoo:lenet5", {})
    with pytest.raises(PassError, match="needs a target platform"):
        PassManager.parse("canonicalize,convert-nn-to-csdf,map").run(m)


def test_mapped_graph_prints_parses_and_exports_sdf3_exec_times():
    from aloha_ir.textio import parse_module, print_module
    from backends.csdf.sdf3 import to_sdf3
    m, _ = analyze("lenet5", "neuraghe-losa")
    text = print_module(m)
    assert 'pe = "ce"' in text and "exec_times" in text
    again = parse_module(text)
    graph = [g for g in again.ops if g.name == "csdf.graph"][0]
    assert "executionTime" in to_sdf3(graph)


def test_map_strategies():
    def units(strategy):
        flow = TargetFlow(load_platform("neuraghe-losa"))
        user = [MapPass(strategy=strategy)]  # names map: no partition
        report = flow.run(load_model("zoo:resnet18", {}), user=user)
        return set(report.mapping.assignment.values()) - {""}
    assert units("fastest") == {"ce", "arm0"}  # each actor on its fastest PE's first unit
    assert units("greedy") == {"ce", "arm0", "arm1"}  # earliest finish spreads the ARM work
    with pytest.raises(PassError, match="unknown strategy"):
        units("random")


def test_review_cases_map_twice_unmapped_energy_and_grouped_convs():
    m = load_model("zoo:resnet18", {})
    ctx = make_context()
    ctx.target = load_platform("neuraghe-losa")
    with pytest.raises(PassError, match="mapped already"):
        PassManager.parse("canonicalize,convert-nn-to-csdf,map,map").run(m, ctx)
    m = load_model("zoo:lenet5", {})
    with pytest.raises(PassError, match="needs a mapped graph"):
        PassManager.parse("canonicalize,convert-nn-to-csdf,analyze-energy").run(m)
    # depthwise convs are not split along output channels (their groups would not follow)
    m = load_model("zoo:mobilenet_v1", {})
    ctx = make_context()
    ctx.target = load_platform("orlando")
    res = PassManager.parse("canonicalize,convert-nn-to-csdf,partition").run(m, ctx)
    from aloha_ir.dialects import nn as nn_dialect
    graph = [g for g in m.ops if isinstance(g, nn_dialect.GraphOp)][0]
    grouped = {nn_dialect.block_label(op) for op in graph.ops
               if isinstance(op, nn_dialect.ConvOp) and op.prop_int("group", 1) > 1}
    assert grouped and not grouped & set(res.report("partition"))


def test_a_custom_arch_file_is_the_platform_the_analyses_use(tmp_path):
    # a file named like a bundled platform but with other figures: its own figures are used
    text = open(load_platform("neuraghe-losa").source).read().replace("neuraghe-losa extends",
                                                                       "mine extends")
    path = tmp_path / "mine.arch"
    path.write_text(text.replace("platform mine extends _neuraghe {",
                                 "platform mine extends _neuraghe {\n  static_power = 1 W  # [E]"))
    import shutil
    shutil.copy(load_platform("neuraghe-losa").source.replace("neuraghe-losa", "_neuraghe"),
                tmp_path / "_neuraghe.arch")
    m = load_model("zoo:lenet5", {})
    ctx = make_context()
    ctx.target = load_platform(str(path))
    res = PassManager.parse("canonicalize,convert-nn-to-csdf,map,analyze-schedule,"
                            "analyze-energy").run(m, ctx)
    e = res.report("analyze-energy")
    # the file's 1 W static power, not the bundled LOSA's 9.4 W
    assert e.platform == "mine"
    assert e.static_j == pytest.approx(1.0 * res.report("analyze-schedule").period_s)


def test_a_platform_number_that_overflows_the_schedules_clock_is_a_pass_error(tmp_path, capsys):
    """Found by the slow .arch fuzz test: an ARM clock of 1e-30 MHz makes a pooling take 2e26 s,
    which the IR's i64 nanoseconds cannot hold (an internal error before). It is the platform's
    number, and the error says so."""
    import os

    from alohac.main import main
    from archdesc.loader import PLATFORM_DIR
    for name in ("_neuraghe.arch", "neuraghe-losa.arch"):
        text = open(os.path.join(PLATFORM_DIR, name)).read()
        (tmp_path / name).write_text(text.replace("clock = 800 MHz", "clock = 1e-30 MHz"))
    code = main(["analyze", "zoo:lenet5", "--target", str(tmp_path / "neuraghe-losa.arch")])
    err = capsys.readouterr().err
    assert code == PassError.exit_code
    assert "on arm0 would take" in err and "2^63 ns" in err and "check the platform's clocks" in err
