"""Fuzzing the two parsers: any mutation gives an AlohaError (one clear line), never a crash."""

from __future__ import annotations

import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aloha_ir.errors import AlohaError
from aloha_ir.passmanager import PassManager
from aloha_ir.textio import parse_module, print_module, verify_module
from frontends.onnx import import_model
from frontends.zoo import load_zoo, zoo_onnx

_TEXT = None
_ONNX = None


def _valid_text() -> str:
    global _TEXT
    if _TEXT is None:
        module = load_zoo("lenet5")
        PassManager.parse("canonicalize,convert-nn-to-csdf").run(module)  # both dialects
        _TEXT = print_module(module)
    return _TEXT


def _valid_onnx() -> bytes:
    global _ONNX
    if _ONNX is None:
        _ONNX = zoo_onnx("mnist_cnn").SerializeToString()
    return _ONNX


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_ir_text_never_crashes(data):
    text = _valid_text()
    pos = data.draw(st.integers(0, len(text) - 1))
    cut = data.draw(st.integers(0, 12))
    insert = data.draw(st.text(alphabet="%@{}[]<>:=,x0123456789.-\"nn ", max_size=6))
    mutated = text[:pos] + insert + text[pos + cut:]
    try:
        verify_module(parse_module(mutated, "fuzz.mlir"))
    except AlohaError as e:
        assert "\n" not in e.one_line()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_corrupted_onnx_never_crashes(data):
    raw = bytearray(_valid_onnx())
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    model = onnx.ModelProto()
    try:
        model.ParseFromString(bytes(raw))
    except Exception:
        return  # not a protobuf: load_onnx's own error, covered elsewhere
    try:
        verify_module(import_model(model, source="fuzz.onnx"))
    except AlohaError as e:
        assert "\n" not in e.one_line()
