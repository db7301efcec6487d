"""The target flow as library data (issue 19 item 1): flows.target.TargetFlow builds the pass list
from pass objects, merges a user's passes as objects, takes a backend's passes, and reports what
`alohac analyze --target` prints; the explorer refines through it; a mapping file that does not
fit the model is a typed error."""

from __future__ import annotations

import json

import pytest

from aloha_ir.errors import MappingMismatch, MissingSetting, PlacementError, UsageError
from aloha_ir.passmanager import PassManager
from alohac.main import main
from archdesc.loader import load_platform, platform_names
from backends.api import Backend
from flows.target import Placement, TargetFlow
from frontends.loader import load_model
from passes.map import MapPass
from passes.partition import PartitionPass

def parsed(text: str) -> list:
    return PassManager.parse(text).passes


# The pipelines the driver ran before the flow existed (alohac/main.py's _with_target, text
# surgery on the README's `-p` pipelines and the default ones): user pipeline, deploy, timeline ->
# what ran. The flow must build the same passes with the same options.
LOSA_CASES = [
    ("", False, False,
     "canonicalize,analyze-cost,convert-nn-to-csdf,partition,map,analyze-schedule,"
     "analyze-memory,analyze-energy,analyze-processors"),
    ("", True, False,
     "canonicalize,quantize-for-target,analyze-cost,convert-nn-to-csdf,partition,map,"
     "analyze-schedule,analyze-memory,analyze-energy,analyze-processors"),
    ("canonicalize,convert-nn-to-csdf,map{strategy=fastest}", False, False,
     "canonicalize,analyze-cost,convert-nn-to-csdf,map{strategy=fastest},analyze-schedule,"
     "analyze-memory,analyze-energy,analyze-processors"),
    ('canonicalize,convert-nn-to-csdf,map{assign="conv7:ce;fc18:arm" units="ce,arm0"}', False,
     False, 'canonicalize,analyze-cost,convert-nn-to-csdf,map{assign="conv7:ce;fc18:arm" '
     'units="ce,arm0"},analyze-schedule,analyze-memory,analyze-energy,analyze-processors'),
    ("convert-nn-to-csdf,analyze-processors", False, False,
     "canonicalize,analyze-cost,convert-nn-to-csdf,partition,map,analyze-schedule,"
     "analyze-memory,analyze-energy,analyze-processors"),
    ("quantize{bits=8},analyze-cost", True, True,
     "quantize{bits=8},canonicalize,analyze-cost,convert-nn-to-csdf,partition,map,"
     "analyze-schedule{timeline=true},analyze-memory,analyze-energy,analyze-processors"),
    # an analysis of the csdf graph runs after the flow's transforms of it (map would drop it)
    ("analyze-buffers{pareto=true}", False, False,
     "canonicalize,analyze-cost,convert-nn-to-csdf,partition,map,analyze-buffers{pareto=true},"
     "analyze-schedule,analyze-memory,analyze-energy,analyze-processors"),
    ("analyze-repetition,analyze-cost", False, False,
     "canonicalize,convert-nn-to-csdf,partition,map,analyze-repetition,analyze-cost,"
     "analyze-schedule,analyze-memory,analyze-energy,analyze-processors"),
    ("prune,canonicalize", True, False,
     "prune,canonicalize,quantize-for-target,analyze-cost,convert-nn-to-csdf,partition,map,"
     "analyze-schedule,analyze-memory,analyze-energy,analyze-processors"),
]


@pytest.mark.parametrize("user, deploy, timeline, expected", LOSA_CASES)
def test_the_flow_builds_the_passes_the_driver_merged(user, deploy, timeline, expected):
    flow = TargetFlow(load_platform("neuraghe-losa"), timeline=timeline,
                      backend=Backend if deploy else None)
    assert flow.passes(parsed(user) if user else ()) == parsed(expected)


def test_the_flow_carries_bits_opp_overflow_and_data_into_the_passes():
    flow = TargetFlow(load_platform("orlando"), bits=8, opp="high", allow_overflow=True,
                      timeline=True, backend=Backend, data="digits")
    assert flow.passes() == parsed(
        'canonicalize,quantize-for-target{bits=8 data="digits"},analyze-cost,convert-nn-to-csdf,'
        "partition{bits=8 opp=high},map{bits=8 opp=high},analyze-schedule{timeline=true},"
        "analyze-memory{allow_overflow=true},analyze-energy,analyze-processors")


def test_a_user_option_holding_comma_and_brace_survives_the_merge():
    """Text surgery (splitting on ',' outside '{...}' by counting braces) cut a quoted option
    value holding an unbalanced '{' and swallowed every stage after it."""
    user = parsed('quantize{data="mnist:/tmp/a,b{c"},analyze-cost')
    assert user[0].data == "mnist:/tmp/a,b{c"
    got = TargetFlow(load_platform("neuraghe-losa"), backend=Backend).passes(user)
    assert got[0] == user[0]
    assert [p.name for p in got] == ["quantize", "canonicalize", "analyze-cost",
                                     "convert-nn-to-csdf", "partition", "map", "analyze-schedule",
                                     "analyze-memory", "analyze-energy", "analyze-processors"]


def test_typed_constructors_are_the_option_text_of_the_pipeline():
    assert MapPass.pinned({"conv7": "arm1", "fc18_p0": "arm"}, ("ce0", "arm0"), bits=8) == \
        parsed('map{assign="conv7:arm1;fc18_p0:arm" units="ce0,arm0" bits=8}')[0]
    assert PartitionPass.parts({"conv1": 2, "fc6": 4}, opp="low") == \
        parsed('partition{actors="conv1:2;fc6:4" auto=false opp=low}')[0]
    with pytest.raises(PlacementError, match="cannot be pinned"):
        MapPass.pinned({"a;b": "ce0"})
    with pytest.raises(PlacementError, match="bad plan entry conv1: 0"):
        PartitionPass.parts({"conv1": 0})


def test_a_backend_contributes_its_passes_to_the_flow():
    """Backend.pipeline() was dead code; extra_passes() is what the flow runs."""
    class Float(Backend):  # a code generator that runs float code everywhere
        @classmethod
        def extra_passes(cls, flow):
            return []

    class Aligned(Backend):  # one that needs the layer widths rounded to its grid
        @classmethod
        def extra_passes(cls, flow):
            from passes.align_to_arch import AlignToArchPass
            return [*super().extra_passes(flow), AlignToArchPass(direction="up")]
    losa = load_platform("neuraghe-losa")
    assert "quantize-for-target" not in [p.name for p in TargetFlow(losa, backend=Float).passes()]
    names = [p.name for p in TargetFlow(losa, backend=Aligned).passes()]
    assert names[:4] == ["canonicalize", "quantize-for-target", "align-to-arch", "analyze-cost"]


@pytest.mark.parametrize("platform", platform_names())
def test_the_flows_report_is_what_analyze_target_prints(platform, capsys):
    report = TargetFlow(load_platform(platform)).run(load_model("zoo:lenet5", {}))
    assert main(["analyze", "zoo:lenet5", "--target", platform, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == {"model": "zoo:lenet5", **json.loads(json.dumps(report.to_json()))}
    assert main(["analyze", "zoo:lenet5", "--target", platform]) == 0
    assert capsys.readouterr().out == report.markdown(f"zoo:lenet5 on {platform}")


def test_the_explorers_refinement_is_what_analyze_mapping_reports(tmp_path, capsys):
    """A design that splits, pins a split actor to a PE (a pin the flow applies to each part) and
    drops a unit: the explorer's figures equal the driver's for the mapping file it writes."""
    from explore.system.mapping_file import MAPPING_FORMAT
    from explore.system.refine import refine_design
    from explore.system.space import Design, SystemSpace
    arrubiu = "neuraghe-arrubiu"
    space = SystemSpace.load("zoo:lenet5", load_platform(arrubiu))
    design = Design((("conv7", 2), ("conv12", 4), ("fc18", 2), ("fc22", 1), ("fc26", 1)),
                    (("conv7", "ce"), ("conv12", "arm")), ("ce0", "arm0", "arm1"), None)
    point = refine_design(space, design)
    assert {point.assignment[f"conv12_p{k}"] for k in range(4)} <= {"arm0", "arm1"}
    assert "ce1" not in point.assignment.values()
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps({
        "format": MAPPING_FORMAT, "model": "zoo:lenet5", "platform": arrubiu, "bits": 16,
        "operating_point": None, "partition": dict(design.plan),
        "assignment": point.assignment, "units": list(design.units)}))
    assert main(["analyze", "zoo:lenet5", "--target", arrubiu, "--mapping", str(path),
                 "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == {"model": "zoo:lenet5", **json.loads(json.dumps(point.figures))}


def test_a_mapping_that_does_not_fit_the_model_is_a_mapping_mismatch(tmp_path, capsys):
    from explore.system.mapping_file import MAPPING_FORMAT, load_mapping
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps({
        "format": MAPPING_FORMAT, "model": "zoo:lenet5", "platform": "host-cpu", "bits": 32,
        "partition": {}, "assignment": {"conv7": "core0", "ghost": "core0"}}))
    assert main(["analyze", "zoo:lenet5", "--target", "host-cpu", "--mapping", str(path)]) == 3
    err = capsys.readouterr().err
    assert "does not fit zoo:lenet5: map: assign names no actor @ghost" in err
    placement = load_mapping(str(path)).placement(str(path))
    flow = TargetFlow(load_platform("host-cpu"), 32, placement=placement)
    with pytest.raises(MappingMismatch) as e:
        flow.run(load_model("zoo:lenet5", {}))
    assert e.value.exit_code == 3 and e.value.where == str(path)
    # the same placement built in code (no file) is the compiler's: a pass error, exit 8
    built = TargetFlow(load_platform("host-cpu"), 32, placement=Placement(
        assign=(("ghost", "core0"),)))
    with pytest.raises(PlacementError) as e:
        built.run(load_model("zoo:lenet5", {}))
    assert not isinstance(e.value, MappingMismatch) and e.value.exit_code == 8


SMALL_MEMORY_HOST = "size = 4 KiB"  # host-cpu with 4 KiB of memory: lenet5's weights do not fit


def small_memory_host_text() -> str:
    from archdesc.loader import PLATFORM_DIR
    with open(f"{PLATFORM_DIR}/host-cpu.arch") as f:
        return f.read().replace("size = 4 GiB", SMALL_MEMORY_HOST)


def small_memory_host():
    from archdesc.loader import loads
    return loads(small_memory_host_text())


def test_library_errors_speak_the_apis_words_and_the_driver_its_flags(tmp_path, capsys):
    """Before: TargetFlow.passes said `--mapping ... drop them from -p`, and the pass manager and
    analyze-memory told a library caller to give `--target` or `--allow-overflow`, flags only
    the driver has. The library names its parameters; alohac names its flags."""
    flow = TargetFlow(load_platform("host-cpu"), 32, placement=Placement(
        assign=(("conv7", "core0"),)))
    with pytest.raises(UsageError) as e:
        flow.passes(user=[MapPass()])
    assert "placement decides partition and map" in e.value.message
    assert "`user`" in e.value.hint and "--" not in e.value.one_line()
    with pytest.raises(MissingSetting) as e:
        PassManager.parse("convert-nn-to-csdf,map").run(load_model("zoo:lenet5", {}))
    assert e.value.setting == "target"
    assert e.value.hint == "write map{target=NAME}, or set the context's target"
    with pytest.raises(MissingSetting) as e:
        TargetFlow(small_memory_host()).run(load_model("zoo:lenet5", {}))
    assert e.value.setting == "allow_overflow" and "--" not in e.value.one_line()
    assert e.value.hint.endswith("or set allow_overflow to report it anyway")
    # the driver: the same errors in its flags
    assert main(["analyze", "zoo:lenet5", "-p", "convert-nn-to-csdf,map"]) == 8
    assert "map needs a target platform (write map{target=NAME}, or give --target PLATFORM)" \
        in capsys.readouterr().err
    arch = tmp_path / "small.arch"
    arch.write_text(small_memory_host_text())
    assert main(["analyze", "zoo:lenet5", "--target", str(arch)]) == 8
    assert "platform, or pass --allow-overflow to report it anyway)" in capsys.readouterr().err


def test_the_explorer_runs_quiet_without_swallowing_anothers_stderr(capfd, monkeypatch):
    """Before: the explorer's refinement redirected the process's stderr to silence analyze-
    memory's overflow warning, so whatever another thread printed meanwhile was lost too. Now the
    refinement's context collects the warning; a direct run of the same flow still prints it."""
    import sys
    import threading

    from aloha_ir.weights import clone_with_weights
    from explore.system.refine import design_flow, refine_design
    from explore.system.space import SystemSpace
    space = SystemSpace.load("zoo:lenet5", small_memory_host())
    design = space.greedy_design()
    flow = design_flow(space, design)
    ctx = flow.context()
    assert flow.run(clone_with_weights(space.source), ctx).to_json()["fits"] is False
    err = capfd.readouterr().err.splitlines()
    # one memory (dram, 4 KiB) holds everything: one warning, also kept in the diagnostics
    assert len(err) == 1 and err[0].startswith("warning: ") and "of weights and activations in " \
        "dram, which has 4.0 KiB on host-cpu" in err[0]
    assert ctx.diagnostics.messages == [err[0].removeprefix("warning: ")]

    real_run = TargetFlow.run

    def run_while_another_thread_prints(self, *args, **kwargs):
        other = threading.Thread(target=print, args=("another thread's line",),
                                 kwargs={"file": sys.stderr})
        other.start()
        other.join()
        return real_run(self, *args, **kwargs)
    monkeypatch.setattr(TargetFlow, "run", run_while_another_thread_prints)
    point = refine_design(space, design)
    assert point["fits"] is False
    assert capfd.readouterr().err == "another thread's line\n"


def test_a_user_analysis_a_later_transform_made_stale_is_run_again_for_the_report(capsys):
    """Issue 19's reproducer 1 through the driver: the user's analyze-schedule ran before their
    second map, so the report's schedule, memory and energy must come from a run after it (the
    same figures as a pipeline that maps with `fastest` only), not from the first mapping, and not
    a refusal."""
    def figures(pipeline: str) -> dict:
        assert main(["analyze", "zoo:lenet5", "--target", "neuraghe-losa", "-p", pipeline,
                     "--json"]) == 0
        return json.loads(capsys.readouterr().out)
    lowered = "canonicalize,analyze-cost,convert-nn-to-csdf"
    stale = figures(f"{lowered},map{{strategy=greedy}},analyze-schedule,map{{strategy=fastest}},"
                    "analyze-memory,analyze-energy")
    fresh = figures(f"{lowered},map{{strategy=fastest}}")
    greedy = figures(f"{lowered},map{{strategy=greedy}}")
    assert stale == fresh != greedy
    names = [p.name for p in TargetFlow(load_platform("neuraghe-losa")).passes(parsed(
        f"{lowered},map{{strategy=greedy}},analyze-schedule,map{{strategy=fastest}}"))]
    assert names == ["canonicalize", "analyze-cost", "convert-nn-to-csdf", "map",
                     "analyze-schedule", "map", "analyze-schedule", "analyze-memory",
                     "analyze-energy", "analyze-processors"]


@pytest.mark.slow
def test_a_users_buffer_analysis_joins_the_report(capsys):
    """`-p analyze-buffers` with --target: the report gains its figures, and the FIFO bytes it
    gives for analyze-schedule's sizes are analyze-memory's buffer bytes (two computations of the
    same program's FIFOs)."""
    # (the budget's trade-off search is tests/test_buffers.py's: here it would cost minutes)
    code = main(["analyze", "zoo:lenet5", "--target", "host-cpu", "-p", "analyze-buffers",
                 "--json"])
    assert code == 0
    fig = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    b = fig["buffers"]
    assert b["schedule"]["fifo_bytes"] == fig["buffer_bytes"]
    assert b["minimal"]["fifo_bytes"] < b["schedule"]["fifo_bytes"]
    assert b["minimal"]["period_s"] == fig["period_s"]
    assert b["within_budget"] is None and b["tradeoff"] == []
    code = main(["analyze", "zoo:lenet5", "--target", "host-cpu", "-p", "analyze-buffers"])
    assert "FIFOs at this throughput" in capsys.readouterr().out
