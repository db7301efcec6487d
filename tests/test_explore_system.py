"""System-level exploration (explore/system/): map's explicit assignment, the closed-form
estimate against the real pipeline, the search against the greedy default, mapping files, and
`alohac explore-mapping` / `--mapping` end to end. Small models only; inception_v1 is in
benchmarks/explore_system.py."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from aloha_ir.context import make_context
from aloha_ir.errors import InputFileError, PlacementError
from aloha_ir.passmanager import PassManager
from archdesc.loader import load_platform
from explore.system.estimate import design_energy, estimate_design
from explore.system.mapping_file import MAPPING_FORMAT, load_mapping, mapping_json
from explore.system.refine import design_flow, refine_design
from explore.system.search import search, spearman
from explore.system.space import Design, SystemSpace
from frontends.loader import load_model

ARRUBIU = "neuraghe-arrubiu"
ANALYSES = "analyze-schedule,analyze-memory,analyze-energy,analyze-processors"


@pytest.fixture(scope="module")
def lenet():
    return SystemSpace.load("zoo:lenet5", load_platform(ARRUBIU))


@pytest.fixture(scope="module")
def lenet_search(lenet):
    return search(lenet, budget=120, refine=4, seed=0)


def mapped(pipeline: str, model: str = "zoo:lenet5", target: str = ARRUBIU):
    """The analyses of `pipeline` (-p text) after canonicalize and the lowering."""
    m = load_model(model, {})
    ctx = make_context()
    ctx.target = load_platform(target)
    passes = PassManager.parse("canonicalize,convert-nn-to-csdf").passes
    res = PassManager(passes + PassManager.parse(pipeline).passes).run(m, ctx)
    return {name: res.report(name) for name in res.analyses}  # the one graph's


# -- map{assign, units} ---------------------------------------------------------------------------

def test_assign_pins_actors_to_units_and_pes_the_rest_keep_the_greedy_rule():
    greedy = mapped("partition,map")["map"].assignment
    pins = {"conv7": "arm1", "pool9": "arm1", "conv12_p0": "ce1", "conv12_p1": "ce1"}
    got = mapped('partition,map{assign="conv7:arm1;pool9:arm1;conv12_p0:ce1;conv12_p1:ce1;'
                 'fc18_p0:arm"}')["map"].assignment
    assert {a: got[a] for a in pins} == pins
    assert got["fc18_p0"] in ("arm0", "arm1")  # a PE: the rule picks one of its units
    # with the options empty, nothing changes
    assert mapped('partition,map{assign="" units=""}')["map"].assignment == greedy
    assert greedy["conv7"].startswith("ce")  # so the pin above did change something


def test_units_limit_what_the_greedy_rule_uses():
    a = mapped('partition,map{units="ce0,arm0"},' + ANALYSES)
    assert set(a["map"].assignment.values()) - {""} == {"ce0", "arm0"}
    assert a["analyze-processors"].processors == 2
    # a pin to a unit wins over units=, a pin to a PE stays within them
    got = mapped('partition,map{units="ce0,arm0" assign="pool9:arm1;pool14:arm"}')["map"]
    assert got.assignment["pool9"] == "arm1" and got.assignment["pool14"] == "arm0"


@pytest.mark.parametrize("pipeline,match", [
    ('partition,map{assign="nosuch:arm0"}', "assign names no actor @nosuch"),
    ('partition,map{assign="pool9:gpu0"}', "has no unit or PE 'gpu0'"),
    ('partition,map{assign="pool9:ce0"}',
     r"@pool9 cannot run on unit ce0 \(units that run it: arm0, arm1"),
    ('partition,map{assign="pool9:ce"}', "@pool9 cannot run on PE ce"),
    ('partition,map{assign="input:arm0"}', "@input is a input: no unit runs it"),
    ('partition,map{assign="pool9"}', "must be ACTOR:UNIT or ACTOR:PE"),
    ('partition,map{assign="pool9:arm0;pool9:arm1"}', "assigned twice"),
    ('partition,map{units="arm7"}', "has no unit arm7"),
    ('partition,map{units="ce0,ce1"}', "no allowed unit runs @norm_mul3"),
])
def test_assign_and_units_errors(pipeline, match):
    """Each is a PlacementError: a mapping file's would be the file's fault (MappingMismatch)."""
    with pytest.raises(PlacementError, match=match):
        mapped(pipeline)


# -- the closed-form estimate ---------------------------------------------------------------------

def random_designs(space: SystemSpace, n: int, seed: int, rate: float = 0.3):
    rng = np.random.default_rng(seed)
    upper = np.array(space.bounds)
    x0 = space.encode(space.greedy_design())
    out = [space.greedy_design()]
    while len(out) < n:
        x = x0.copy()
        hit = rng.random(len(x)) < rate
        x[hit] = np.floor(rng.random(hit.sum()) * (upper[hit] + 1)).astype(int)
        d = space.decode(x)
        if estimate_design(space, d).feasible and d not in out:
            out.append(d)
    return out


def test_the_greedy_point_is_what_the_driver_computes(lenet):
    from flows.target import TargetFlow
    fig = TargetFlow(load_platform(ARRUBIU)).run(load_model("zoo:lenet5", {})).to_json()
    point = refine_design(lenet, lenet.greedy_design())
    for key in ("latency_s", "period_s", "energy_j", "processors", "memory_bytes"):
        assert point[key] == fig[key]
    assert lenet.decode(lenet.encode(lenet.greedy_design())) == lenet.greedy_design()


@pytest.mark.parametrize("model", ["zoo:lenet5", "zoo:mnist_cnn"])
def test_the_estimate_replays_the_map_pass(model):
    """Same assignment as the real map pass (so the search reasons about what map will do) and
    processors; the busiest unit's time bounds the stream's period from below (times differ by
    map's rounding to nanoseconds), and so its energy. The exact steady state adds the time that
    unit waits for its inputs each frame: up to 9% on these designs (the finite-run average the
    schedule used before hid it behind the same lower bound)."""
    space = SystemSpace.load(model, load_platform(ARRUBIU))
    for d in random_designs(space, 6, seed=1):
        e = estimate_design(space, d)
        p = refine_design(space, d, e)
        assert e.assignment == p.assignment
        assert e.processors == p["processors"]
        assert e.period_s <= p["period_s"] * (1 + 1e-4)
        assert e.period_s == pytest.approx(p["period_s"], rel=0.1)
        assert e.energy_j <= p["energy_j"] * (1 + 1e-4)
        assert e.energy_j == pytest.approx(p["energy_j"], rel=0.1)


def test_the_estimate_and_map_place_every_actor_with_one_function(lenet, monkeypatch):
    """A pinned split actor (pinned to a PE) and a restricted unit set, where a re-implemented
    placement could differ from map's: both call passes.map.place_actor, with the same pin and
    allowed units for every actor, and it places each the same way."""
    import explore.system.estimate
    import passes.map
    calls: dict[str, list] = {"estimate": [], "map": []}

    def spy(record, real):
        def place_actor(sched, name, layer, preds, options, pins, allowed, **kw):
            placed = real(sched, name, layer, preds, options, pins, allowed, **kw)
            record.append((name, pins.get(name), sorted(allowed) if allowed else None,
                           [(p.actor, p.unit, p.pe) for p in placed]))
            return placed
        return place_actor
    monkeypatch.setattr(explore.system.estimate, "place_actor",
                        spy(calls["estimate"], passes.map.place_actor))
    monkeypatch.setattr(passes.map, "place_actor", spy(calls["map"], passes.map.place_actor))
    design = Design((("conv7", 1), ("conv12", 2), ("fc18", 2), ("fc22", 1), ("fc26", 1)),
                    (("conv7", "ce"), ("conv12", "arm")), ("ce0", "arm0"), None)
    e = estimate_design(lenet, design)
    p = refine_design(lenet, design, e)
    assert calls["estimate"] and sorted(calls["estimate"]) == sorted(calls["map"])
    pinned = {c[0]: c for c in calls["map"] if c[1]}
    assert pinned["conv12_p0"][1:] == ("arm", ["arm0", "ce0"], [("conv12_p0", "arm0", "arm")])
    assert e.assignment == p.assignment and p.assignment["conv7"] == "ce0"


def test_the_estimate_places_a_conv_engines_merge_as_map_does():
    """resnet18's 7x7 conv on NEURAghe runs as four 5x5 jobs and a merge actor on an ARM core:
    place_actor places the merge for the estimate as for map."""
    space = SystemSpace.load("zoo:resnet18", load_platform("neuraghe-losa"))
    design = space.greedy_design()
    e = estimate_design(space, design)
    p = refine_design(space, design, e)
    merges = [a for a in e.assignment if a.endswith("_merge")]
    assert len(merges) == 1 and e.assignment[merges[0]].startswith("arm")
    assert e.assignment == p.assignment


def test_the_estimated_energy_is_analyze_energys_on_the_same_schedule():
    """analyze-energy's own formula: given the refined design's schedule (period, busy seconds
    per unit) and map's assignment, the estimate's energy is the refinement's analyze-energy
    figure, link transfers included (Orlando's links spend energy per byte)."""
    from aloha_ir.weights import clone_with_weights
    space = SystemSpace.load("zoo:lenet5", load_platform("orlando"))
    moved = 0.0
    for d in random_designs(space, 4, seed=2):
        report = design_flow(space, d).run(clone_with_weights(space.source))
        busy = {u: usage.busy_s for u, usage in report.schedule.per_pe.items()}
        got = design_energy(space, d, report.mapping.assignment, report.schedule.period_s, busy)
        assert (got.static_j, got.dynamic_j) == (report.energy.static_j, report.energy.dynamic_j)
        assert got.transfer_j == pytest.approx(report.energy.transfer_j, rel=1e-12)
        assert got.energy_j == pytest.approx(report.energy.energy_j, rel=1e-12)
        moved += got.transfer_j
    assert moved > 0


def test_estimate_ranks_designs_like_the_self_timed_schedule(lenet):
    """Measured on 12 designs: the row-pipelined estimate ranks them as the self-timed latency
    does (rho >= 0.9; 0.99 when written), and at least as well as the list schedule's makespan."""
    est, makespan, real = [], [], []
    for d in random_designs(lenet, 12, seed=0):
        e = estimate_design(lenet, d)
        est.append(e.latency_s)
        makespan.append(e.makespan_s)
        real.append(refine_design(lenet, d, e)["latency_s"])
    rho, rho_makespan = spearman(est, real), spearman(makespan, real)
    print(f"lenet5 on {ARRUBIU}: Spearman estimate {rho:.3f}, makespan {rho_makespan:.3f}")
    assert rho >= 0.9 and rho >= rho_makespan - 1e-9


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties take their mean rank: ranks (1.5, 1.5, 3) vs (1, 2, 3)
    assert spearman([5, 5, 7], [1, 2, 3]) == pytest.approx(0.8660254, rel=1e-6)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


# -- the search -----------------------------------------------------------------------------------

def plain_latency(capsys, model: str = "zoo:lenet5", target: str = ARRUBIU) -> float:
    """The greedy default's latency as the normal pipeline computes it (alohac analyze
    --target, no mapping): independent of the search's own greedy point."""
    code, stdout, err = run_cli(capsys, "analyze", model, "--target", target, "--json")
    assert code == 0, err
    return json.loads(stdout.strip().splitlines()[-1])["latency_s"]


def test_search_beats_the_plain_pipeline_and_its_front_is_non_dominated(lenet_search, capsys):
    r = lenet_search
    assert r.greedy.label == "greedy" and r.greedy in r.refined
    assert r.greedy["fits"] and r.chosen["fits"]
    # against `alohac analyze --target` run separately (lenet5 leaves room: ~20% faster)
    assert r.chosen["latency_s"] < plain_latency(capsys)
    assert 1 <= r.evaluations <= 120 and len(r.refined) <= 5

    def objectives(p):
        return (p["latency_s"], p["energy_j"], p["processors"])

    def dominated(a, b):  # b dominates a
        return all(y <= x for x, y in zip(a, b)) and a != b
    front = [objectives(p) for p in r.pareto]
    assert front and all(not dominated(a, b) for a in front for b in front)
    for p in r.refined:  # everything off the front is dominated by a point on it
        if p not in r.pareto and p["fits"]:
            assert any(dominated(objectives(p), f) for f in front)
    best = min(objectives(p) for p in r.refined)
    assert objectives(r.chosen)[:2] == best[:2]
    assert len({p["processors"] for p in r.refined}) >= 2  # the processors axis is explored


def test_search_is_deterministic_for_a_seed():
    space = SystemSpace.load("zoo:mnist_cnn", load_platform(ARRUBIU))

    def run(seed):
        d = search(space, budget=60, refine=2, seed=seed).to_json()
        return {k: v for k, v in d.items() if not k.endswith("seconds")}
    assert run(5) == run(5)


def test_operating_points_are_searched_on_orlando():
    space = SystemSpace.load("zoo:lenet5", load_platform("orlando"))
    assert space.opps == ("low", "high")
    high = replace(space.greedy_design(), opp="high")
    assert space.decode(space.encode(high)) == high
    r = search(space, budget=60, refine=3, seed=0)
    assert r.chosen["latency_s"] < r.greedy["latency_s"] and r.chosen.design.opp == "high"
    data = mapping_json(r)
    assert data["operating_point"] == "high" and data["predicted"]["latency_s"] == \
        r.chosen["latency_s"]


# -- mapping files and the CLI --------------------------------------------------------------------

def run_cli(capsys, *argv):
    from alohac.main import main
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_explore_mapping_then_compile_reproduces_the_prediction(tmp_path, capsys):
    out = tmp_path / "ex"
    code, stdout, err = run_cli(capsys, "explore-mapping", "zoo:lenet5", "--target", ARRUBIU,
                                "--budget", "80", "--refine", "3", "--seed", "1", "--json",
                                "-o", str(out))
    assert code == 0, err
    data = json.loads(stdout.strip().splitlines()[-1])
    for key in ("greedy", "chosen"):
        assert {"latency_s", "energy_j", "processors"} <= set(data[key])
    assert data["pareto"] and data["evaluations"] >= 1
    assert {p.name for p in out.iterdir()} >= {"mapping.json", "pareto.json", "pareto.csv",
                                               "pareto.png"}
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (out / "pareto.csv").read_text().splitlines()
    assert rows[0].startswith("label,on_front,chosen,latency_s") and \
        len(rows) == 1 + len(json.loads((out / "pareto.json").read_text())["refined"])
    mapping = json.loads((out / "mapping.json").read_text())
    assert mapping["format"] == MAPPING_FORMAT and mapping["platform"] == ARRUBIU
    assert mapping["predicted"]["latency_s"] == data["chosen"]["latency_s"]
    # compile (and analyze) with the file reproduce the predicted figures exactly
    comp = tmp_path / "comp"
    code, _, err = run_cli(capsys, "compile", "zoo:lenet5", "--target", ARRUBIU, "--emit", "nn",
                           "--mapping", str(out / "mapping.json"), "-o", str(comp))
    assert code == 0, err
    report = json.loads((comp / "report.json").read_text())
    for key in ("latency_s", "period_s", "energy_j", "processors", "memory_bytes"):
        assert report[key] == pytest.approx(mapping["predicted"][key], rel=1e-12)
    units = {a["actor"]: a["pe"] for a in report["per_actor"] if a["pe"]}
    assert units == mapping["assignment"]
    assert mapping["fits"] is True and mapping["inputs"] == {"input": [1, 1, 28, 28]}
    # what --mapping compiles is no slower than a separate plain compile (the greedy default)
    plain = tmp_path / "plain"
    code, _, err = run_cli(capsys, "compile", "zoo:lenet5", "--target", ARRUBIU, "--emit", "nn",
                           "-o", str(plain))
    assert code == 0, err
    assert report["latency_s"] <= json.loads((plain / "report.json").read_text())["latency_s"]
    code, stdout, err = run_cli(capsys, "analyze", "zoo:lenet5", "--target", ARRUBIU,
                                "--mapping", str(out / "mapping.json"), "--json")
    assert code == 0, err
    assert json.loads(stdout.strip().splitlines()[-1])["latency_s"] == \
        pytest.approx(mapping["predicted"]["latency_s"], rel=1e-12)


def test_mapping_file_errors(tmp_path, capsys, lenet_search):
    good = mapping_json(lenet_search)

    def write(name, data):
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return str(path)

    def analyze(path, *extra, model="zoo:lenet5", target=ARRUBIU):
        return run_cli(capsys, "analyze", model, "--target", target, "--mapping", path, *extra)
    cases = [
        (write("broken.json", "{not json"), "not a JSON mapping file"),
        (write("format.json", {**good, "format": "other/1"}), "not an aloha-mapping/1 file"),
        (write("parts.json", {**good, "partition": {"conv12": 0}}), "bad entries: conv12: 0"),
        (write("types.json", {**good, "assignment": ["x"]}), "'assignment' must be a dict"),
        (write("actor.json", {**good, "assignment": {**good["assignment"], "ghost": "arm0"}}),
         "does not fit zoo:lenet5: map: assign names no actor @ghost"),
        (write("split.json", {**good, "partition": {"ghost": 2}}),
         "does not fit zoo:lenet5: partition: no actor @ghost"),
        (write("unit.json", {**good, "assignment": {**good["assignment"], "pool9": "ce0"}}),
         "cannot run on unit ce0"),
        (str(tmp_path / "missing.json"), "no such mapping file"),
    ]
    for path, message in cases:
        code, _, err = analyze(path)
        assert code == InputFileError.exit_code and message in err, (path, err)
    path = write("good.json", good)
    code, _, err = analyze(path, target="neuraghe-losa")
    assert code == 3 and "the mapping is for neuraghe-arrubiu, not neuraghe-losa" in err
    code, _, err = analyze(path, model="zoo:mnist_cnn")
    assert code == 3 and "the mapping is for zoo:lenet5, not zoo:mnist_cnn" in err
    code, _, err = analyze(path, "--bits", "8")
    assert code == 2 and "made for 16 bits" in err
    code, _, err = analyze(path, "-p", "canonicalize,map")
    assert code == 2 and "--mapping decides partition and map" in err
    code, _, err = run_cli(capsys, "analyze", "zoo:lenet5", "--mapping", path)
    assert code == 2 and "--mapping needs --target" in err
    assert load_mapping(path, ARRUBIU, "zoo:lenet5").assignment == good["assignment"]
    # the input shapes it was made for are checked when the caller gives the model's
    assert load_mapping(path, inputs={"input": [1, 1, 28, 28]}).inputs == good["inputs"]
    with pytest.raises(InputFileError, match=r"made for input shapes input=1,1,28,28, not "
                                             r"input=1,1,32,32"):
        load_mapping(path, inputs={"input": [1, 1, 32, 32]})
    code, _, err = analyze(write("shapes.json", {**good, "inputs": {"input": "28x28"}}))
    assert code == InputFileError.exit_code and "'inputs' must map input names" in err


def test_mapping_placement_applies_the_units(lenet_search):
    from flows.target import TargetFlow
    m = load_mapping_from(mapping_json(lenet_search))
    assert m.units == tuple(lenet_search.chosen.design.units) == m.placement().units
    limited = replace(m, units=("ce0", "arm0"), assignment={})
    flow = TargetFlow(load_platform(ARRUBIU), placement=limited.placement())
    got = flow.run(load_model("zoo:lenet5", {})).mapping
    assert set(got.assignment.values()) - {""} <= {"ce0", "arm0"}


def load_mapping_from(data: dict):
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/m.json"
        with open(path, "w") as f:
            json.dump(data, f)
        return load_mapping(path)
