"""The analysis manager (issue 19 item 2): analyses cached per (analysis, graph) and dropped when a
pass does not preserve them, requirements checked before a pass runs, reports keyed by graph, the
pass registry given to the PassManager, and the two reproducers of the issue."""

import json
from dataclasses import dataclass

import pytest
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp

from aloha_ir import dataflow
from aloha_ir.analysis import (
    CSDF,
    NN,
    Preserves,
    RepetitionAnalysis,
    Requires,
    preserves_level,
    repetition,
)
from aloha_ir.context import make_context
from aloha_ir.errors import InternalError, PassError, UsageError
from aloha_ir.instruments import PassInstrument
from aloha_ir.passmanager import AnalysisPass, PassManager, PassRegistry, TransformPass
from aloha_ir.textio import save_module
from alohac.main import main
from archdesc.loader import load_platform
from frontends.loader import load_model
from passes.registry import PASSES

LOWERED = "canonicalize,analyze-cost,convert-nn-to-csdf"
REPRODUCER_1 = (f"{LOWERED},map{{strategy=greedy}},analyze-schedule,map{{strategy=fastest}},"
                "analyze-memory,analyze-energy")


def run(pipeline: str, model: str = "zoo:lenet5", target: str | None = "neuraghe-losa",
        **options):
    ctx = make_context()
    if target:
        ctx.target = load_platform(target)
    return PassManager.parse(pipeline, **options).run(load_model(model, {}), ctx), ctx


def figures(result) -> tuple[float, int]:
    return result.report("analyze-energy").energy_j, result.report("analyze-memory").buffer_bytes


def test_reproducer_1_a_second_map_drops_the_first_mappings_schedule():
    """Before: the first pipeline reported the greedy mapping's schedule (1.368 mJ, 31,248 B)
    although the graph had been mapped again with `fastest`."""
    stale, _ = run(REPRODUCER_1)
    rescheduled, _ = run(REPRODUCER_1.replace("map{strategy=fastest}",
                                              "map{strategy=fastest},analyze-schedule"))
    fresh, _ = run(f"{LOWERED},map{{strategy=fastest}},analyze-schedule,analyze-memory,"
                   "analyze-energy")
    greedy, _ = run(f"{LOWERED},map{{strategy=greedy}},analyze-schedule,analyze-memory,"
                    "analyze-energy")
    assert figures(greedy) != figures(fresh)  # the two mappings differ, so the test can tell
    assert figures(stale) == figures(rescheduled) == figures(fresh)
    # the stale schedule report is gone, not returned beside the figures it no longer matches,
    # and so are the FIFO sizes it wrote in the IR (code generation would have used them)
    assert "analyze-schedule" not in stale.analyses and "analyze-schedule" in rescheduled.analyses
    assert all(c.buffer is None and a.start_s is None and a.order is None
               for c, a in zip(csdf_graph(stale).channels(), csdf_graph(stale).actors()))
    assert buffers(rescheduled) == buffers(fresh) != buffers(greedy)


def csdf_graph(result):
    return next(g for g in result.module.ops if g.name == "csdf.graph")


def buffers(result) -> dict[str, int]:
    return {c.sym_name.data: c.buffer for c in csdf_graph(result).channels()}


def test_a_report_a_later_transform_made_stale_is_a_usage_error(capsys):
    result, _ = run("analyze-cost,canonicalize", target=None)
    with pytest.raises(UsageError, match="no analyze-cost report"):
        result.report("analyze-cost")
    graph = next(g for g in result.module.ops if g.name == "nn.graph")
    assert "macs" not in graph.attributes  # nor does its annotation stay
    assert main(["analyze", "zoo:lenet5", "-p", "analyze-cost,canonicalize"]) == 2
    assert "run analyze-cost after the last pass that changes the IR" in capsys.readouterr().err


def test_reproducer_2_an_nn_transform_after_lowering_is_refused():
    """Before: canonicalize fused relu8 into its conv after lowering, the csdf actor @relu8 stayed,
    and map failed blaming the platform ("no PE lists the operator")."""
    with pytest.raises(PassError) as info:
        run("convert-nn-to-csdf,canonicalize,partition,map", "zoo:mnist_cnn", "host-cpu")
    text = str(info.value)
    assert "pass 'canonicalize'" in text and "already lowered" in text
    assert "run canonicalize before convert-nn-to-csdf" in text and "PE" not in text


def test_reproducer_2_through_alohac_opt(tmp_path, capsys):
    module = load_model("zoo:mnist_cnn", {})
    PassManager.parse("convert-nn-to-csdf").run(module)
    path = str(tmp_path / "lowered.mlir")
    save_module(module, path)
    code = main(["opt", path, "-p", "canonicalize,partition,map"])
    err = capsys.readouterr().err
    assert code == PassError.exit_code == 8
    assert "canonicalize" in err and "before convert-nn-to-csdf" in err


@pytest.mark.parametrize("pipeline,target,needle", [
    ("map", "neuraghe-losa", "map needs a csdf graph (run convert-nn-to-csdf first)"),
    ("analyze-schedule", None, "analyze-schedule needs a csdf graph (run convert-nn-to-csdf"),
    ("convert-nn-to-csdf,analyze-memory", None, "analyze-memory needs a mapped graph (run map "
                                                "first)"),
    ("convert-nn-to-csdf,map", None, "map needs a target platform"),
    ("quantize", None, "quantize needs data"),
    ("convert-nn-to-csdf,prune", None, "prune transforms nn graph"),
    ("prune{method=activity}", None, "prune needs data"),
    ("canonicalize,convert-nn-to-csdf,partition", None, "partition needs a target platform"),
    ("align-to-arch", None, "align-to-arch needs a target platform"),
])
def test_requirements_are_checked_before_the_pass_runs(pipeline, target, needle):
    with pytest.raises(PassError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        run(pipeline, target=target)


def test_a_requirement_met_by_the_passs_own_option():
    result, _ = run("canonicalize,convert-nn-to-csdf,map{target=host-cpu}", target=None)
    assert result.report("map").platform == "host-cpu"


def test_requirements_that_depend_on_options():
    # threshold pruning without fine-tuning, a fixed multiple, a given split: no data, no target
    result, _ = run('prune{threshold=0.5},align-to-arch{multiple=4},convert-nn-to-csdf,'
                    'partition{actors="conv7:2" auto=false}', target=None)
    assert result.report("partition") == {"conv7": ["conv7_p0", "conv7_p1"]}


def test_analyses_are_computed_once_and_kept_by_analysis_passes():
    result, ctx = run(f"{LOWERED},map,analyze-memory,analyze-energy,analyze-processors")
    # memory computes the schedule, energy reuses it; the repetition vector is shared
    assert ctx.am.computed == {"schedule": 1, "repetition": 1}
    graph = next(g for g in result.module.ops if g.name == "csdf.graph")
    assert ctx.am.cached(RepetitionAnalysis, graph) is ctx.am.get(RepetitionAnalysis, graph)
    assert ctx.am.computed["repetition"] == 1


def test_analyze_schedule_feeds_later_passes_with_its_own_options():
    a, ctx = run(f"{LOWERED},map,analyze-schedule{{in_flight=1}},analyze-energy")
    assert "schedule" not in ctx.am.computed  # energy used the pass's schedule
    period = a.report("analyze-schedule").period_s
    default, _ = run(f"{LOWERED},map,analyze-schedule")
    assert period > default.report("analyze-schedule").period_s  # one frame at a time is slower
    assert a.report("analyze-energy").static_j == pytest.approx(
        load_platform("neuraghe-losa").static_w * period)


@dataclass(frozen=True)
class TouchCsdfPass(TransformPass):
    """A transform of the csdf graph only (keeps the nn graph's analyses)."""

    name = "touch-csdf"
    requires = Requires(level=CSDF)
    preserves = preserves_level(NN)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        pass


@dataclass(frozen=True)
class TouchAllPass(TransformPass):
    """A transform that preserves nothing (the default)."""

    name = "touch-all"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        pass


@dataclass(frozen=True)
class LookPass(AnalysisPass):
    """An analysis: keeps everything."""

    name = "look"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        pass


@dataclass(frozen=True)
class BrokenPass(AnalysisPass):
    """A pass with a bug."""

    name = "broken"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        {}["missing"]


def test_what_a_pass_does_not_preserve_is_dropped():
    module = load_model("zoo:lenet5", {})
    ctx = make_context()
    ctx.target = load_platform("neuraghe-losa")
    PassManager.parse(f"{LOWERED},map,analyze-schedule,analyze-repetition").run(module, ctx)
    graph = next(g for g in module.ops if g.name == "csdf.graph")
    rep = ctx.am.get(RepetitionAnalysis, graph)
    kept = {"analyze-cost", "analyze-schedule", "analyze-repetition"}
    PassManager([LookPass()]).run(module, ctx)
    assert ctx.am.cached(RepetitionAnalysis, graph) is rep and kept <= set(ctx.analyses)
    PassManager([TouchCsdfPass()]).run(module, ctx)
    assert ctx.am.cached(RepetitionAnalysis, graph) is None
    assert "analyze-cost" in ctx.analyses  # an nn graph's report survives a csdf transform
    assert not {"analyze-schedule", "analyze-repetition"} & set(ctx.analyses)
    assert "map" in ctx.analyses  # a transform's own report is its record, not an analysis
    PassManager([TouchAllPass()]).run(module, ctx)
    assert "analyze-cost" not in ctx.analyses and "map" in ctx.analyses


def test_a_transform_can_preserve_one_analysis_by_name():
    from passes.analyze_schedule import ScheduleAnalysis

    @dataclass(frozen=True)
    class KeepRatesPass(TransformPass):
        name = "keep-rates"  # changes times, not rates: the repetition vector stays valid
        preserves = Preserves(names=frozenset({RepetitionAnalysis.name}))

        def apply(self, ctx, op):
            pass

    result, ctx = run(f"{LOWERED},map,analyze-energy")
    graph = csdf_graph(result)
    rep, sched = ctx.am.cached(RepetitionAnalysis, graph), ctx.am.cached(ScheduleAnalysis, graph)
    assert rep is not None and sched is not None
    PassManager([KeepRatesPass()]).run(result.module, ctx)
    assert ctx.am.cached(RepetitionAnalysis, graph) is rep
    assert ctx.am.cached(ScheduleAnalysis, graph) is None


def test_reports_are_keyed_by_graph():
    result, ctx = run(f"{LOWERED},map,analyze-schedule")
    assert set(result.analyses["analyze-cost"]) == {"lenet5"}
    assert set(result.analyses["analyze-schedule"]) == {"lenet5_csdf"}
    assert result.report("analyze-schedule") is result.analyses["analyze-schedule"]["lenet5_csdf"]
    assert result.report("map", "lenet5_csdf").platform == "neuraghe-losa"
    assert ctx.report("analyze-cost") is result.report("analyze-cost")


def test_the_registry_is_a_parameter():
    registry = PassRegistry({**PASSES, "look": f"{__name__}:LookPass"})
    pm = PassManager.parse("canonicalize,look", registry=registry)
    assert [type(p) for p in pm.passes][1] is LookPass
    with pytest.raises(UsageError, match="unknown pass 'look'"):
        PassManager.parse("look")  # not among the installed passes
    with pytest.raises(UsageError, match="unknown pass 'map'"):
        PassManager.parse("map", registry=PassRegistry({}))


def test_an_internal_error_names_the_pass(tmp_path, capsys):
    with pytest.raises(InternalError, match="pass 'broken': KeyError") as info:
        PassManager([BrokenPass()]).run(load_model("zoo:lenet5", {}))
    assert info.value.exit_code == 1 and isinstance(info.value.__cause__, KeyError)


def test_a_callers_instrument_observes_every_pass():
    @dataclass
    class Seen(PassInstrument):
        names: list

        def run_after_pass(self, p, index, module, seconds):
            self.names.append((index, p.name))

    seen = Seen([])
    PassManager.parse("canonicalize,analyze-cost", instruments=[seen]).run(
        load_model("zoo:lenet5", {}))
    assert seen.names == [(1, "canonicalize"), (2, "analyze-cost")]


def test_the_repetition_vector_is_one_shared_computation():
    """The csdf verifier, the analysis and the plain-data callers share one cached solution,
    checked here against the balance equations by hand: a produces 2, b consumes 3 per firing,
    so r = (3, 2)."""
    edges = [dataflow.Edge("c", "a", "b", ((1, 2),), ((1, 3),))]
    first = repetition({"a": 1, "b": 1}, edges)
    assert first.repetition == {"a": 3, "b": 2} and first.firings == {"a": 3, "b": 2}
    assert repetition({"a": 1, "b": 1}, list(edges)) is first


def test_list_passes_shows_requires_and_preserves(capsys):
    assert main(["list", "passes", "--json"]) == 0
    passes = json.loads(capsys.readouterr().out)
    assert passes["map"]["requires"] == {"level": "csdf", "target": True, "data": False}
    assert passes["map"]["preserves"] == "analyses of nn graphs"
    assert passes["analyze-energy"]["requires"]["level"] == "csdf-mapped"
    assert passes["analyze-energy"]["preserves"] == "all"
    assert passes["canonicalize"]["preserves"] == "none"
    assert passes["quantize"]["requires"] == {"level": "nn", "target": False, "data": True}
    assert passes["prune"]["requires_depend_on_options"] is True
    assert passes["quantize"]["requires_depend_on_options"] is False
    assert main(["list", "passes"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["map"].endswith("[requires: a csdf graph, a target; preserves: analyses of nn "
                                 "graphs]")
    assert lines["canonicalize"].endswith("[requires: an nn graph not lowered yet; preserves: "
                                          "none]")


def test_a_transform_drops_stale_annotations_read_from_a_file(tmp_path):
    """A scheduled graph saved and read back carries analyze-schedule's FIFO sizes, static order
    and times, and no report of the new pipeline lists them. Mapping it again must drop them like
    it drops those of a schedule run in the same pipeline (before: they stayed, stale, and code
    generation would have used the first mapping's FIFO sizes)."""
    from aloha_ir.dialects import csdf
    from aloha_ir.textio import load_module

    result, _ = run(f"{LOWERED},map{{strategy=greedy}},analyze-schedule")
    path = str(tmp_path / "scheduled.mlir")
    save_module(result.module, path)
    module = load_module(path)
    graph = csdf.csdf_graphs(module)[0]
    assert graph.latency_s and all(c.buffer for c in graph.channels())
    assert all(a.order for a in graph.actors())
    ctx = make_context()
    ctx.target = load_platform("neuraghe-losa")
    PassManager.parse("map{strategy=fastest}").run(module, ctx)
    graph = csdf.csdf_graphs(module)[0]
    assert graph.latency_s is None and graph.period_s is None
    assert [c.buffer for c in graph.channels()] == [None] * len(graph.channels())
    assert {(a.order, a.start_s) for a in graph.actors()} == {(None, None)}
    assert all(a.pe is not None for a in graph.actors() if a.kind.data not in
               ("input", "output", "gather"))  # the new mapping's own annotations stay


def test_each_analysis_declares_the_csdf_annotations_it_writes_once():
    """An analysis pass's `annotates` (what the PassManager drops with its report) and the csdf
    annotations whose doc names it as their writer (what it drops from IR read from a file) are
    the same keys."""
    from aloha_ir.dialects import csdf
    from passes.registry import REGISTRY

    declared: dict[str, set[str]] = {}
    for cls in (csdf.GraphOp, csdf.ActorOp, csdf.ChannelOp):
        for key, a in cls.annotation_fields().items():
            if a.analysis:
                declared.setdefault(a.analysis, set()).add(key)
    annotates = {name: {k for k in REGISTRY.pass_class(name).annotates if k.startswith("csdf.")}
                 for name in REGISTRY.names()
                 if getattr(REGISTRY.pass_class(name), "annotates", None)}
    annotates = {n: keys for n, keys in annotates.items() if keys}
    assert declared == annotates
