"""The algorithm-level search: fronts against brute-force dominance, hypervolume against a hand
computation, constraints kept as constraints, exact budgets, determinism, grid counts, scenarios."""

import itertools
import math

import numpy as np
import pytest

from aloha_ir.errors import UsageError
from explore.objectives import EvalSettings, parse_objectives
from explore.scenarios import Scenario, choose, knee_distances, parse_constraint, parse_scenarios
from explore.search import (Point, SearchConfig, explore, grid, hypervolume, pareto_front,
                            scaled)
from explore.space import load_space, parse_space
from frontends.genotype import Gene, Genotype

ANALYTIC = EvalSettings((1, 8, 8), 10, ("latency_s", "energy_j", "params"),
                        target="neuraghe-sabina")


def fake_point(i, **figures):
    g = Genotype((Gene("dense", 0, (("neurons", i + 1),)),))
    return Point(g, g.key(), i, {"objectives": figures, "onnx": None})


def test_constraints_parse_units_and_refuse_nonsense():
    assert parse_constraint("latency<=2ms").bound == pytest.approx(0.002)
    assert parse_constraint("memory <= 1.5MiB").bound == 1.5 * 1024 ** 2
    assert parse_constraint("energy<=40uJ").bound == pytest.approx(40e-6)
    c = parse_constraint("accuracy>=90%")
    assert (c.figure, c.op, c.bound) == ("accuracy", ">=", pytest.approx(0.9))
    assert c.violation({"accuracy": 0.95}) < 0 < c.violation({"accuracy": 0.8})
    for bad in ("latency<2ms", "latency<=2parsecs", "speed<=3", "latency<=inf", "<=3"):
        with pytest.raises(UsageError):
            parse_constraint(bad)
    with pytest.raises(UsageError, match="two distinct") as e:
        parse_objectives("latency,latency_s")
    # the library names its parameter; `alohac explore` its flag (test_explore_cli)
    assert e.value.where == "objectives" and "--" not in e.value.one_line()


def test_front_equals_brute_force_dominance():
    rng = np.random.default_rng(0)
    objectives = ["accuracy", "latency_s", "energy_j"]
    pts = [fake_point(i, accuracy=float(rng.random()), latency_s=float(rng.random()),
                      energy_j=float(rng.random())) for i in range(60)]
    settings = EvalSettings((1, 8, 8), 10, tuple(objectives))
    front = pareto_front(pts, objectives, Scenario("s"), settings)

    def dominates(a, b):
        fa = (-a["accuracy"], a["latency_s"], a["energy_j"])
        fb = (-b["accuracy"], b["latency_s"], b["energy_j"])
        return all(x <= y for x, y in zip(fa, fb)) and fa != fb
    expected = {p.key for p in pts if not any(dominates(q.figures, p.figures) for q in pts)}
    assert {p.key for p in front} == expected
    # a constraint removes infeasible points before dominance, it does not penalise them
    fast = Scenario("fast", (parse_constraint("latency<=0.5s"),))
    front2 = pareto_front(pts, objectives, fast, settings)
    feas = [p for p in pts if p.figures["latency_s"] <= 0.5]
    assert {p.key for p in front2} == {p.key for p in feas if not any(
        dominates(q.figures, p.figures) for q in feas)}


def test_hypervolume_matches_a_hand_computation():
    objectives = ["accuracy", "latency_s"]
    bounds = {"accuracy": (0.0, 1.0), "latency_s": (0.0, 1.0)}
    pts = [fake_point(0, accuracy=1.0, latency_s=0.5), fake_point(1, accuracy=0.5,
                                                                  latency_s=0.0)]
    # scaled: (0, 0.5) and (0.5, 0); against (1.1, 1.1): 1.1*0.6 + 0.6*0.5 = 0.96
    assert hypervolume(pts, objectives, bounds) == pytest.approx(1.1 * 0.6 + 0.6 * 0.5)
    assert hypervolume([], objectives, bounds) == 0.0
    # positive minimised figures are scaled on a log axis
    assert scaled(10.0, "latency_s", (1.0, 100.0)) == pytest.approx(0.5)
    assert scaled(0.75, "accuracy", (0.5, 1.0)) == pytest.approx(0.5)


def test_choice_rules():
    objectives = ["accuracy", "latency_s"]
    pts = [{"accuracy": 0.9, "latency_s": 3.0}, {"accuracy": 0.8, "latency_s": 1.0},
           {"accuracy": 0.5, "latency_s": 0.5}]
    assert choose(Scenario("a", choose="max:accuracy"), pts, [0, 1, 2], objectives) == 0
    assert choose(Scenario("b", choose="min:latency_s"), pts, [0, 1, 2], objectives) == 2
    # knee: scaled (accuracy flipped) (0, 1), (0.25, 0.2), (1, 0): the middle one is nearest
    d = knee_distances(pts, objectives)
    assert d[1] == pytest.approx(math.hypot(0.25, 0.2))
    assert choose(Scenario("c"), pts, [0, 1, 2], objectives) == 1
    with pytest.raises(UsageError, match="not one of the objectives"):
        parse_scenarios([{"name": "x", "choose": "max:security"}], objectives)
    with pytest.raises(UsageError, match="unique"):
        parse_scenarios([{"name": "x"}, {"name": "x"}], objectives)


def test_grid_enumerates_every_count_and_level():
    space = parse_space("""
layers:
  - dataI
  - {type: Convolution, count: [1, 2], maps: [4, 8], kernel: 3}
  - {type: DenseBlock, count: [0, 1], neurons: {choices: [10, 20]}}
  - dataO
""", "g.yaml")
    points = grid(space, (1, 8, 8), levels=3)
    # conv: counts 1, 2 x maps levels {4, 6, 8} = 6 options; dense: 0 layers, or 1 of 2 = 3
    assert len(points) == 6 * 3
    assert len({p.key() for p in points}) == len(points)
    for p in points:
        space.check(p)


def test_nsga2_respects_budget_constraints_and_is_deterministic():
    space = load_space("space:seed-example")
    limit = parse_constraint("latency<=0.12ms")
    scenario = Scenario("fast", (limit,))
    runs = [explore(space, ANALYTIC, [scenario], SearchConfig("nsga2", 24, pop_size=8, seed=3))
            for _ in range(2)]
    a, b = runs
    assert a.evaluations == a.new_evaluations == 24
    assert [p.key for p in a.points] == [p.key for p in b.points]
    assert a.main.front and all(p.figures["latency_s"] <= 0.12e-3 for p in a.main.front)
    infeasible = [p for p in a.points if p.figures["latency_s"] > 0.12e-3]
    assert infeasible, "the test needs the constraint to bind"
    # the chosen point is on the front
    assert a.main.chosen in a.main.front


def test_scenarios_share_evaluations_and_get_their_own_front():
    space = load_space("space:seed-example")
    scen = [Scenario("tight", (parse_constraint("params<=2000"),), "min:energy_j"),
            Scenario("loose", (), "min:latency_s")]
    r = explore(space, ANALYTIC, scen, SearchConfig("random", 20, seed=1))
    assert r.evaluations == 20
    tight, loose = r.scenarios
    assert all(p.figures["params"] <= 2000 for p in tight.front)
    assert tight.chosen is None or tight.chosen.figures["energy_j"] == min(
        p.figures["energy_j"] for p in tight.front)
    assert loose.chosen.figures["latency_s"] == min(p.figures["latency_s"] for p in loose.front)
    # the loose front dominates-or-equals the tight one: every tight point is feasible for loose
    keys = {p.key for p in loose.front}
    for p in tight.front:
        assert p.key in keys or any(all(q.figures[o] <= p.figures[o] for o in
                                        ("latency_s", "energy_j", "params")) for q in loose.front)


def test_failed_points_are_recorded_not_fatal(monkeypatch):
    import explore.search as search
    calls = itertools.count()

    def flaky(settings, genotype_json):
        if next(calls) % 3 == 0:
            raise RuntimeError("boom")
        from explore.objectives import evaluate_point
        return evaluate_point(settings, genotype_json)
    monkeypatch.setattr(search, "evaluate_point", flaky)
    r = explore(load_space("space:seed-example"), ANALYTIC, [Scenario("d")],
                SearchConfig("random", 9, seed=0))
    assert r.failures == 3 and r.evaluations == 9
    assert all(p.ok for p in r.main.front)
    assert "RuntimeError: boom" in next(p.error for p in r.points if not p.ok)


def test_evaluating_a_candidate_that_overflows_prints_no_warning(tmp_path, capfd):
    """A candidate that does not fit the platform's memories is a figure (fits = false), not a
    warning line per evaluation on stderr (analyze-memory's, which the flow still prints)."""
    from archdesc.loader import PLATFORM_DIR
    from explore.objectives import evaluate_point
    with open(f"{PLATFORM_DIR}/host-cpu.arch") as f:
        arch = f.read().replace("size = 4 GiB", "size = 1 KiB")
    (tmp_path / "tiny.arch").write_text(arch)
    g = Genotype((Gene("convolution", 0, (("kernel", 3), ("maps", 8), ("padding", "same"),
                                          ("stride", 1))),
                  Gene("dense", 1, (("neurons", 16),))))
    settings = EvalSettings((1, 8, 8), 10, ("latency_s", "params"),
                            target=str(tmp_path / "tiny.arch"))
    figures = evaluate_point(settings, g.to_json())["objectives"]
    # 8 * 9 + 8 conv weights and biases, 8 * 8 * 8 * 16 + 16 dense, 10 * 16 + 10: far over 1 KiB
    assert figures["params"] == 80 + 8208 + 170 and figures["fits"] is False
    assert capfd.readouterr().err == ""


def test_security_objective_is_the_curve_of_the_saved_model(tmp_path):
    """The point's security figure is the fast PGD curve average of the model it saved: an
    independent `security.evaluate.evaluate` on the reloaded ONNX gives the same number."""
    from aloha_ir.dialects.nn import graph_of
    from explore.objectives import dataset_splits, evaluate_point
    from frontends.loader import load_model
    from passes.execution import data_for_model
    from security.evaluate import SecurityConfig, attack_data, evaluate
    g = Genotype((Gene("convolution", 0, (("kernel", 3), ("maps", 8), ("padding", "same"),
                                          ("stride", 1))),
                  Gene("pooling", 1, (("kernel", 2), ("mode", "max"), ("stride", 2))),
                  Gene("dense", 2, (("neurons", 16),))))
    settings = EvalSettings((1, 8, 8), 10, ("accuracy", "security"), data="digits",
                            lrs=(3e-3,), proxy_epochs=3, proxy_subset=512,
                            models_dir=str(tmp_path))
    figures = evaluate_point(settings, g.to_json())
    sec = figures["objectives"]["security"]
    assert 0.0 <= sec <= figures["objectives"]["test_accuracy"] + 1e-9
    module = load_model(figures["onnx"])
    graph = graph_of(module)
    splits = data_for_model(dataset_splits("digits", 0), graph)
    x01, y, rng = attack_data(graph, splits.test, None)
    report, _ = evaluate(module, x01, y, SecurityConfig(mode="fast", sanity=False),
                         input_range=rng)
    assert report.curve_average == pytest.approx(sec, abs=0.011)


def test_the_genotypes_own_failures_are_cached_crashes_are_not(monkeypatch):
    import explore.search as search
    from explore.cache import EvaluationCache
    from frontends.genotype import InvalidGenotype

    def failing(settings, genotype_json):
        n = len(genotype_json["layers"])
        if n % 2:
            raise InvalidGenotype(f"odd {n}")
        raise RuntimeError("a crash")
    monkeypatch.setattr(search, "evaluate_point", failing)
    space = load_space("space:seed-example")
    with EvaluationCache(None) as cache:
        first = explore(space, ANALYTIC, [Scenario("d")], SearchConfig("random", 8, seed=0),
                        cache=cache)
        odd = sum(1 for p in first.points if len(p.genotype.layers) % 2)
        assert 0 < odd < 8 and first.failures == 8
        again = explore(space, ANALYTIC, [Scenario("d")], SearchConfig("random", 8, seed=0),
                        cache=cache)
        assert again.new_evaluations == 8 - odd  # only the crashes are tried again
        assert all("odd" in p.error for p in again.points if p.cached)
