"""The ONNX backend test cases ALOHA claims (frontends/onnx/claimed_cases.txt) pass their claimed
stages against the cases' expected outputs: import (the imported module run in float) and round
trip (our ONNX export run by onnxruntime) for every claimed case, the generated C for a sample of
ten (the rest are slow). And the runner tells a silent error, a refusal, a crash and the numbers
the import warned of apart."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnx_backend as ob

CLAIMS = ob.read_claims()
FAST_C = sorted(name for name, stages in CLAIMS.items() if stages.get("c") == "passed")
FAST_C = set(FAST_C[::max(1, len(FAST_C) // 10)])


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_claimed_case_passes_import_and_round_trip(name, tmp_path):
    stages = [s for s in CLAIMS[name] if s != "c"]
    got = ob.run_case(ob.case(name), stages, str(tmp_path))
    assert {s: o for s, o in got.items() if o.result != CLAIMS[name][s]} == {}, name


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST_C else pytest.mark.slow)
                                  for n in sorted(n for n, s in CLAIMS.items() if "c" in s)])
def test_claimed_case_passes_generated_c(name, tmp_path):
    got = ob.run_case(ob.case(name), ["c"], str(tmp_path))
    assert got["c"].result == CLAIMS[name]["c"], (name, got["c"])


def test_the_claims_list_names_existing_cases_sorted_once_with_known_stages():
    with open(ob.CLAIMS, encoding="utf-8") as f:
        names = [ln.split()[0] for ln in f if ln.strip() and not ln.startswith("#")]
    assert names == sorted(set(names))
    assert set(names) <= ob.case_names(), set(names) - ob.case_names()
    for name, stages in CLAIMS.items():
        assert list(stages)[:1] == ["import"] and list(stages) == sorted(stages, key=ob.STAGES.index)
        assert set(stages.values()) <= {"passed", "warned"}, name
    # the list is not empty: the importer does take part of the suite
    assert len(CLAIMS) > 100


# --- the runner's judgement, against hand-made cases ----------------------------------------------

def _case(nodes, inputs, outputs, x, want, name="hand"):
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return ob.Case(f"node/{name}", lambda: model, lambda: ([x], [want]))


def _relu_case(want):
    x = np.array([[[[-1.0, 2.0], [3.0, -4.0]]]], np.float32)
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 2, 2])  # noqa: E731
    return _case([helper.make_node("Relu", ["x"], ["y"])], [vi("x")], [vi("y")], x,
                 np.asarray(want, np.float32).reshape(1, 1, 2, 2))


def test_a_relu_computed_by_hand_passes_every_stage(tmp_path):
    got = ob.run_case(_relu_case([0.0, 2.0, 3.0, 0.0]), ob.STAGES, str(tmp_path))
    assert got == {s: ob.Outcome("passed") for s in ob.STAGES}


def test_other_numbers_are_wrong_in_every_stage(tmp_path):
    """Expected outputs where the hand computation gives other numbers (4 where relu(-4) is 0):
    every stage runs and differs."""
    got = ob.run_case(_relu_case([0.0, 2.0, 3.0, 4.0]), ob.STAGES, str(tmp_path))
    assert {s: o.result for s, o in got.items()} == {s: "wrong" for s in ob.STAGES}
    assert got["import"].why == "output 0: 1 of 4 values differ, the most at [0, 0, 1, 1]: 0, 4 " \
        "expected"


def test_a_wrong_result_names_what_the_import_warned_it_changed(tmp_path):
    """Cast to float16 of 70000: inf in float16 (its largest is 65504); the importer keeps float32
    and says so, and a wrong outcome carries that warning."""
    x = np.array([70000.0, 1.0], np.float32)
    c = _case([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT16)],
              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2])], x,
              np.array([np.inf, 1.0], np.float16))
    got = ob.run_case(c, ["import"], str(tmp_path))["import"]
    assert got.result == "wrong"
    assert got.why.startswith("output 0: 1 of 2 values differ, the most at [0]: 70000, inf "
                              "expected (the import warned: ")
    assert "Cast to float16 is not applied" in got.why


def _double_add_case(want):
    """x + 1 in double; x holds 1e300, beyond float32's range."""
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.DOUBLE, [1, 2])  # noqa: E731
    one = helper.make_tensor("one", TensorProto.DOUBLE, [1], [1.0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "double_add",
                              [vi("x")], [vi("y")], [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    x = np.array([[1e300, 2.0]])
    return ob.Case("node/double_add", lambda: model, lambda: ([x], [np.array([want])]))


def test_a_double_beyond_float32_gives_what_the_import_warned_in_every_stage(tmp_path):
    """1e300 + 1 is 1e300 in double; the import warned that the input is rounded to float32, where
    1e300 is inf: every stage gives inf + 1 = inf (and 2 + 1 = 3), which the case's model gives on
    the rounded input: warned, not a silent error."""
    got = ob.run_case(_double_add_case([1e300, 3.0]), ob.STAGES, str(tmp_path))
    assert {s: o.result for s, o in got.items()} == {s: "warned" for s in ob.STAGES}, got
    assert got["c"].why.startswith("output 0: 1 of 2 values differ, the most at [0, 0]: inf, 1e+300 "
                                   "expected; the case's model gives these outputs on its inputs "
                                   "rounded to float32")


def test_a_double_input_does_not_excuse_other_numbers(tmp_path):
    """Expected outputs the case's model does not give (2 + 1 is not 5): wrong, the warning
    notwithstanding."""
    got = ob.run_case(_double_add_case([1e300, 5.0]), ["import"], str(tmp_path))["import"]
    assert got.result == "wrong" and "is double: rounded to float32" in got.why


def test_within_tolerance_passes_beyond_it_is_wrong():
    want = [np.array([1.0, 0.0], np.float32)]
    assert ob.mismatch([np.array([1.0009, 5e-8])], want, 1e-3, 1e-7) is None
    assert "1 of 2" in ob.mismatch([np.array([1.0011, 0.0])], want, 1e-3, 1e-7)
    assert "shape [1, 2]" in ob.mismatch([np.array([[1.0, 0.0]])], want, 1e-3, 1e-7)
    assert ob.mismatch([np.array([np.nan])], [np.array([np.nan])], 1e-3, 1e-7) is None


def test_an_unsupported_operator_is_refused_and_later_stages_skipped(tmp_path):
    x = np.array([1.0, -2.0], np.float32)
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [2])  # noqa: E731
    c = _case([helper.make_node("Hardmax", ["x"], ["y"])], [vi("x")], [vi("y")], x,
              np.array([1.0, 0.0], np.float32))
    got = ob.run_case(c, ob.STAGES, str(tmp_path))
    assert got["import"].result == "refused" and got["import"].why.startswith("exit 4 ")
    assert "Hardmax" in got["import"].why
    assert got["round-trip"] == got["c"] == ob.Outcome("skipped", "import refused")


def test_an_exception_that_is_no_aloha_error_is_a_crash(tmp_path, monkeypatch):
    import runtime.torch.module as executor

    def broken(module):
        raise KeyError("a bug")
    monkeypatch.setattr(executor, "build", broken)
    got = ob.run_case(_relu_case([0.0, 2.0, 3.0, 0.0]), ["import"], str(tmp_path))
    assert got["import"] == ob.Outcome("crashed", "KeyError: 'a bug'")


def test_a_case_is_found_by_name_and_an_unknown_name_is_a_key_error():
    c = ob.case("node/test_relu")
    inputs, outputs = ob.arrays(c.data())
    np.testing.assert_array_equal(outputs[0], np.maximum(inputs[0], 0))
    assert isinstance(c.load(), onnx.ModelProto)
    with pytest.raises(KeyError, match="no ONNX backend test case"):
        ob.case("node/test_no_such_case")
