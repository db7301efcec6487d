"""`alohac explore` end to end: outputs checked against onnxruntime, the cache making a rerun free and
a killed run resume without re-evaluating, scenarios from a space file, a Dask cluster, errors."""

import contextlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from alohac.main import main

ort = pytest.importorskip("onnxruntime")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANALYTIC = ["space:seed-example", "--target", "neuraghe-sabina", "--objectives",
            "latency,energy,params", "--workers", "0"]


def run_json(argv) -> dict:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["explore"] + argv + ["--json"]) == 0
    return json.loads(buf.getvalue().strip().splitlines()[-1])


def run_code(argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["explore"] + argv)
    return code, err.getvalue()


@pytest.mark.slow
def test_digits_run_writes_fronts_whose_models_onnxruntime_confirms(tmp_path):
    from frontends.datasets import load
    out = tmp_path / "out"
    argv = ["space:seed-example", "--target", "neuraghe-sabina", "--data", "digits",
            "--objectives", "accuracy,latency,energy", "--budget", "6", "--pop-size", "4",
            "--proxy-epochs", "4", "--lrs", "3e-3,1e-3", "--proxy-subset", "512",
            "--workers", "0", "-o", str(out)]
    summary = run_json(argv)
    for key in ("pareto", "evaluations", "new_evaluations", "hypervolume"):
        assert key in summary
    assert summary["evaluations"] == summary["new_evaluations"] == 6
    assert summary["pareto"] and summary["hypervolume"] > 0
    test = load("digits").test.to_range(0.0, 1.0)
    for point in summary["pareto"]:
        assert set(point["objectives"]) == {"accuracy", "latency_s", "energy_j"}
        assert point["onnx"].startswith(str(out)) and os.path.exists(point["onnx"])
        # the saved model is the proxy-trained one: onnxruntime gets its test accuracy
        sess = ort.InferenceSession(point["onnx"])
        name = sess.get_inputs()[0].name
        pred = [int(sess.run(None, {name: x[None]})[0].argmax()) for x in test.x]
        acc = float((np.array(pred) == test.y).mean())
        assert acc == pytest.approx(point["figures"]["test_accuracy"], abs=2 / len(test))
    for name in ("pareto.json", "pareto.csv", "evaluations.csv", "pareto.png",
                 "scenarios/default.json", "scenarios/default.onnx", "explore.sqlite"):
        assert (out / name).exists(), name
    rows = (out / "pareto.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(summary["pareto"])
    assert len((out / "evaluations.csv").read_text().strip().splitlines()) == 1 + 6
    # the same run again is answered from the cache, with the same front
    again = run_json(argv)
    assert again["new_evaluations"] == 0 and again["evaluations"] == 6
    assert [p["key"] for p in again["pareto"]] == [p["key"] for p in summary["pareto"]]


def _rows(path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            tables = [r[0] for r in db.execute(
                "select name from sqlite_master where type='table'")]
            return max((db.execute(f"select count(*) from {t}").fetchone()[0] for t in tables
                        if "eval" in t or "result" in t or "point" in t), default=0)
    except sqlite3.Error:
        return 0


def test_a_killed_run_resumes_without_re_evaluating(tmp_path):
    budget = 30
    cache = tmp_path / "cache.sqlite"
    argv = ANALYTIC + ["--budget", str(budget), "--pop-size", "6", "--cache", str(cache)]
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "alohac.main", "explore"] + argv +
                            ["-o", str(tmp_path / "killed")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _rows(cache) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _rows(cache)
    assert 8 <= done < budget, f"killed after {done} of {budget}"
    resumed = run_json(argv + ["-o", str(tmp_path / "resumed")])
    assert resumed["evaluations"] == budget
    assert resumed["new_evaluations"] == budget - done
    fresh = run_json(ANALYTIC + ["--budget", str(budget), "--pop-size", "6",
                                 "--cache", str(tmp_path / "other.sqlite"),
                                 "-o", str(tmp_path / "fresh")])
    assert fresh["new_evaluations"] == budget
    assert [p["key"] for p in fresh["pareto"]] == [p["key"] for p in resumed["pareto"]]


def test_scenarios_in_a_space_file(tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("""
name: two-modes
input: [1, 16, 16]
classes: 10
layers:
  - dataI
  - {type: Convolution, count: [1, 3], maps: [4, 32], kernel: {choices: [3, 5]}}
  - {type: Pooling, count: [0, 1], kernel: 2, stride: 2}
  - {type: DenseBlock, count: [0, 2], neurons: [8, 64]}
  - dataO
scenarios:
  - {name: small, constraints: ["params<=16000"], choose: "min:latency_s"}
  - {name: quick, constraints: ["latency<=100us"], choose: "min:params"}
""")
    out = tmp_path / "out"
    s = run_json([str(space), "--target", "neuraghe-sabina", "--objectives",
                  "latency,energy,params", "--workers", "0", "--budget", "24", "-o", str(out)])
    assert set(s["scenarios"]) == {"small", "quick"}
    small, quick = s["scenarios"]["small"], s["scenarios"]["quick"]
    assert all(p["objectives"]["params"] <= 16000 for p in small["pareto"])
    assert all(p["objectives"]["latency_s"] <= 100e-6 for p in quick["pareto"])
    assert small["chosen"] and quick["chosen"], "the test needs both scenarios to be satisfiable"
    assert small["chosen"]["objectives"]["latency_s"] == min(
        p["objectives"]["latency_s"] for p in small["pareto"])
    assert quick["chosen"]["objectives"]["params"] == min(
        p["objectives"]["params"] for p in quick["pareto"])
    assert (out / "scenarios" / "small.onnx").exists()
    assert s["pareto"] == small["pareto"]  # the first scenario is the main front


def test_grid_mode_and_a_dask_cluster_agree_with_in_process(tmp_path):
    distributed = pytest.importorskip("distributed")
    base = ANALYTIC[:-2] + ["--algorithm", "grid", "--budget", "6"]
    local = run_json(base + ["--workers", "0", "-o", str(tmp_path / "a")])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        remote = run_json(base + ["--scheduler", cluster.scheduler_address,
                                  "-o", str(tmp_path / "b")])
    assert remote["new_evaluations"] == local["new_evaluations"] == 6
    assert [(p["key"], p["objectives"]) for p in remote["pareto"]] == \
        [(p["key"], p["objectives"]) for p in local["pareto"]]


@pytest.mark.parametrize("argv,message", [
    (["space:seed-example", "--objectives", "accuracy,latency", "--target", "neuraghe-sabina"],
     "need --data"),
    (["space:seed-example", "--objectives", "params,latency"], "need --target"),
    (["space:nope", "--objectives", "params,macs"], "unknown bundled space"),
    (["space:seed-example", "--objectives", "params,macs", "--constraint", "latency<3"],
     "FIGURE<=VALUE"),
    (["space:seed-example", "--objectives", "params,macs", "--budget", "0"], "budget"),
    (["space:seed-example", "--objectives", "params,wisdom"], "unknown objective"),
    (["space:seed-example", "--objectives", "params,macs", "--lrs", "x"], "--lrs"),
    (["space:seed-example", "--objectives", "params,params"],
     "--objectives: 'params,params' must name at least two distinct objectives"),
])
def test_bad_options_are_usage_errors(tmp_path, argv, message):
    code, err = run_code(argv + ["-o", str(tmp_path / "o")])
    assert code == 2 and message in err


def test_analytic_objectives_without_target_figures_need_no_target(tmp_path):
    import csv
    out = tmp_path / "o"
    s = run_json(["space:vgg-like", "--objectives", "params,macs", "--workers", "0",
                  "--algorithm", "random", "--budget", "8", "-o", str(out)])
    assert s["evaluations"] == 8
    rows = list(csv.DictReader(open(out / "evaluations.csv")))
    figs = [(int(r["params"]), int(r["macs"]), r["key"]) for r in rows]
    # the front is exactly the non-dominated set of every evaluated point (brute force)
    expected = {k for p, m, k in figs
                if not any(p2 <= p and m2 <= m and (p2, m2) != (p, m) for p2, m2, _ in figs)}
    assert {p["key"][:16] for p in s["pareto"]} == expected


def test_constraints_on_figures_nobody_computes_are_refused(tmp_path):
    code, err = run_code(["space:seed-example", "--objectives", "params,macs", "--constraint",
                          "latency<=1ms", "-o", str(tmp_path / "o")])
    assert code == 2 and "latency_s (objectives or constraints) need --target" in err
    code, err = run_code(["space:seed-example", "--objectives", "params,macs", "--algorithm",
                          "random", "--pop-size", "4", "-o", str(tmp_path / "o")])
    assert code == 2 and "--pop-size applies to nsga2" in err
    code, err = run_code(["space:seed-example", "--objectives", "params,macs", "--workers", "2",
                          "--scheduler", "tcp://127.0.0.1:1", "-o", str(tmp_path / "o")])
    assert code == 2 and "--scheduler" in err


def test_runs_with_other_settings_sharing_a_cache_keep_their_own_models(tmp_path):
    cache = str(tmp_path / "shared.sqlite")
    base = ["space:seed-example", "--data", "digits", "--objectives", "accuracy,params",
            "--algorithm", "grid", "--budget", "2", "--proxy-epochs", "2", "--lrs", "3e-3",
            "--proxy-subset", "256", "--workers", "0", "--cache", cache]
    a = run_json(base + ["--eval-seed", "0", "-o", str(tmp_path / "a")])
    b = run_json(base + ["--eval-seed", "1", "-o", str(tmp_path / "b")])
    assert a["new_evaluations"] == b["new_evaluations"] == 2  # another seed: other results
    models = sorted((tmp_path / "models").rglob("*.onnx"))
    assert len(models) == 4 and len({m.parent for m in models}) == 2
    # the search's own seed is not part of the key: a grid run with another --seed is free
    c = run_json(base + ["--eval-seed", "0", "--seed", "7", "-o", str(tmp_path / "c")])
    assert c["new_evaluations"] == 0


def test_the_default_worker_count_runs(tmp_path):
    """Without --workers (the README's commands) the run uses one local worker process; it used
    to crash on max(1, None)."""
    argv = [a for a in ANALYTIC if a not in ("--workers", "0")]
    s = run_json(argv + ["--algorithm", "random", "--budget", "4", "-o", str(tmp_path / "o")])
    assert s["evaluations"] == s["new_evaluations"] == 4
    assert all(p["objectives"]["params"] > 0 for p in s["pareto"])


def test_an_empty_front_is_a_failure_after_the_outputs_are_written(tmp_path):
    """No point of seed-example has 10 parameters: the run says so (exit 9, the closest point's
    figure) instead of exit 0 with an empty front; its evaluations are still written."""
    out = tmp_path / "o"
    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        code = main(["explore"] + ANALYTIC + ["--constraint", "params<=10", "--algorithm",
                                              "random", "--budget", "4", "--json", "-o", str(out)])
    assert code == 9
    summary = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert summary["empty_scenarios"] == ["default"] and summary["pareto"] == []
    import csv
    smallest = min(int(r["params"]) for r in csv.DictReader(open(out / "evaluations.csv")))
    line = err.getvalue().strip().splitlines()[-1]
    assert "no feasible point" in line and f"closest: params {smallest:,}" in line
