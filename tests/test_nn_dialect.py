"""The nn dialect: shape verifiers against onnxruntime, text round trips, weights."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from aloha_ir.errors import InputFileError, IRParseError, IRVerifyError
from aloha_ir.textio import load_module, parse_module, print_module, save_module, verify_module
from aloha_ir.weights import weights_of
from frontends.onnx import import_model

HEADER = """builtin.module {
  nn.graph @net {
    %0 = nn.input {port = "x"} : tensor<1x3x8x8xf32>
"""
FOOTER = """  }
}
"""


def module_text(body: str) -> str:
    return HEADER + body + FOOTER


CONV = """    %1 = nn.const {splat = 2.000000e-02 : f32} : tensor<4x3x3x3xf32>
    %2 = nn.conv %0, %1 {kernel = array<i64: 3, 3>, strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, group = 1 : i64} : tensor<1x4xHx4xf32>
    nn.output %2 {ports = ["y"]}
"""


def test_conv_shape_rule_accepts_the_formula_and_rejects_others():
    # (8 + 1 + 1 - 3) // 2 + 1 = 4, computed by hand
    verify_module(parse_module(module_text(CONV.replace("xHx", "x4x"))))
    with pytest.raises(IRVerifyError, match=r"expected \[1, 4, 4, 4\]"):
        verify_module(parse_module(module_text(CONV.replace("xHx", "x5x"))))


@pytest.mark.parametrize("body, message", [
    ("""    %1 = nn.const {splat = 1.0 : f32} : tensor<4x2x3x3xf32>
    %2 = nn.conv %0, %1 {kernel = array<i64: 3, 3>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, group = 1 : i64} : tensor<1x4x6x6xf32>
    nn.output %2 {ports = ["y"]}
""", "input channels"),
    ("""    %1 = nn.reshape %0 : tensor<1x190xf32>
    nn.output %1 {ports = ["y"]}
""", "element count"),
    ("""    %1 = nn.concat %0, %0 {axis = 1 : i64} : tensor<1x5x8x8xf32>
    nn.output %1 {ports = ["y"]}
""", r"expected \[1, 6, 8, 8\]"),
    ("""    %1 = nn.pool %0 {kind = "max", kernel = array<i64: 3, 3>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 1, 1>, dilations = array<i64: 1, 1>, ceil_mode = 1 : i64} : tensor<1x3x3x3xf32>
    nn.output %1 {ports = ["y"]}
""", r"expected \[1, 3, 4, 4\]"),
    ("""    %1 = nn.flatten %0 {axis = 1 : i64} : tensor<1x192xf32>
    %2 = nn.const {splat = 1.0 : f32} : tensor<10x190xf32>
    %3 = nn.dense %1, %2 : tensor<1x10xf32>
    nn.output %3 {ports = ["y"]}
""", "must be"),
    ("""    %1 = nn.act %0 {kind = "gelu"} : tensor<1x3x8x8xf32>
    nn.output %1 {ports = ["y"]}
""", "kind must be one of"),
])
def test_verifier_rejects_inconsistent_ops(body, message):
    with pytest.raises(IRVerifyError, match=message):
        verify_module(parse_module(module_text(body)))


def _onnx_window_model(op: str, size: int, k: int, stride: int, pads: list[int], dilation: int,
                       group: int, ceil: int) -> onnx.ModelProto:
    cin = 2 * group
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, size, size + 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = []
    if op == "Conv":
        w = np.random.default_rng(0).standard_normal((3 * group, 2, k, k)).astype(np.float32)
        inits.append(onnx.numpy_helper.from_array(w, "w"))
        node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[k, k],
                                strides=[stride, stride], pads=pads, dilations=[dilation] * 2,
                                group=group)
    else:
        node = helper.make_node(op, ["x"], ["y"], kernel_shape=[k, k], strides=[stride, stride],
                                pads=pads, ceil_mode=ceil,
                                **({"dilations": [dilation] * 2} if op == "MaxPool" else {}))
    g = helper.make_graph([node], "g", [x], [y], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(["Conv", "MaxPool", "AveragePool"]), size=st.integers(4, 20),
       k=st.integers(1, 4), stride=st.integers(1, 3), pads=st.lists(st.integers(0, 2), min_size=4,
                                                                   max_size=4),
       dilation=st.integers(1, 2), group=st.integers(1, 3), ceil=st.integers(0, 1))
def test_window_shapes_match_onnxruntime(op, size, k, stride, pads, dilation, group, ceil):
    if op != "Conv":
        group = 1
        if op == "AveragePool":
            dilation = 1
        pads = [min(p, k - 1) for p in pads]  # ONNX requires pads smaller than the window
    if dilation * (k - 1) + 1 > size + min(pads[0], pads[2]):
        return
    model = _onnx_window_model(op, size, k, stride, pads, dilation, group, ceil if op != "Conv"
                               else 0)
    # onnxruntime, not onnx.shape_inference: with ceil_mode the runtime (like PyTorch) drops a last
    # window that would start past the input; onnx 1.23's shape inference does not.
    from model_helpers import run_ort
    x = np.ones((1, 2 * group if op == "Conv" else 2, size, size + 1), np.float32)
    expected = list(run_ort(model, {"x": x})[0].shape)
    module = import_model(model)
    verify_module(module)
    out = module.body.block.first_op.body.block.last_op.operands[0]
    assert list(out.type.get_shape()) == expected


def test_fixed_point_type_and_module_round_trip():
    text = module_text("""    %1 = nn.act %0 {kind = "relu"} : tensor<1x3x8x8x!nn.fixed<8, 5, unsigned>>
    %2 = nn.act %1 {kind = "clip", params = array<f64: -1.0, 1.0>} : tensor<1x3x8x8x!nn.fixed<16, 8>>
    nn.output %2 {ports = ["y"]}
""")
    printed = print_module(parse_module(text))
    assert "!nn.fixed<8, 5, unsigned>" in printed and "!nn.fixed<16, 8>" in printed
    assert print_module(parse_module(printed)) == printed


FRACS = """    %1 = nn.const {seed = 1 : i64, std = 1.000000e-01 : f32, nn.fracs = array<i64: 7, 6, 7, 8>} : tensor<4x3x3x3x!nn.fixed<8, 6>>
    %2 = nn.act %0 {kind = "relu"} : tensor<1x3x8x8xf32>
    nn.output %2 {ports = ["y"]}
"""


@pytest.mark.parametrize("edit, to, message", [
    (None, None, None),
    ("nn.fracs", "nn.frac", r"unknown annotation nn\.frac \(known: nn\.fracs\)"),
    ("array<i64: 7, 6, 7, 8>", '"7,6,7,8"', r"nn\.fracs must be of kind ints"),
    ("7, 6, 7, 8>", "7, 6, 7>", r"nn\.fracs has 3 values for 4 slices along axis 0"),
    ("!nn.fixed<8, 6>", "f32", r"nn\.fracs on a f32 constant"),
])
def test_per_channel_fracs_are_a_typed_verified_annotation(edit, to, message):
    """Before: a bare `fracs` attribute read with attributes.get("fracs"): a misspelt key read
    None (the constant silently took the per-layer frac) and nothing checked kind or length."""
    from aloha_ir import fixedpoint as fp
    from aloha_ir.dialects.nn import ConstOp
    text = module_text(FRACS)
    if edit is None:
        module = parse_module(text)
        verify_module(module)
        const = next(op for op in module.walk() if isinstance(op, ConstOp))
        assert const.fracs == (7, 6, 7, 8) and list(fp.const_fracs(const)) == [7, 6, 7, 8]
        assert print_module(module) == text
        fp.set_const_fracs(const, [6, 6, 6, 6])  # all equal: the type's frac says it
        assert const.fracs is None and fp.const_fracs(const) == 6
        assert "fracs" not in print_module(module)
        return
    with pytest.raises(IRVerifyError, match=message):
        verify_module(parse_module(text.replace(edit, to, 1)))


def test_parse_error_names_file_line_and_column():
    text = module_text(CONV.replace("xHx", "x4x")).replace("nn.conv", "nn.cnov")
    with pytest.raises(IRParseError, match=r"^bad\.mlir:5:\d+: .*nn\.cnov"):
        parse_module(text, "bad.mlir")


def test_weights_save_and_load_with_the_module(tmp_path):
    from aloha_ir.consts import const_tensor
    from aloha_ir.dialects.nn import ConstOp
    from frontends.zoo import load_zoo
    module = load_zoo("lenet5")
    from aloha_ir.passmanager import PassManager
    PassManager.parse("canonicalize").run(module)
    # materialise one weight into a blob so the sidecar is exercised with real arrays
    store = weights_of(module)
    consts = [op for op in module.walk() if isinstance(op, ConstOp)]
    before = {i: const_tensor(op, store).materialize().copy() for i, op in enumerate(consts)}
    files = save_module(module, str(tmp_path / "lenet5.mlir"))
    assert files[1].endswith("lenet5.weights.npz")
    loaded = load_module(str(tmp_path / "lenet5.mlir"))
    assert print_module(loaded) == print_module(module)
    after = [op for op in loaded.walk() if isinstance(op, ConstOp)]
    for i, op in enumerate(after):
        np.testing.assert_array_equal(const_tensor(op, weights_of(loaded)).materialize(), before[i])
    (tmp_path / "lenet5.weights.npz").unlink()
    with pytest.raises(InputFileError, match="weights sidecar not found"):
        load_module(str(tmp_path / "lenet5.mlir"))


def test_splats_stay_splats_and_text_stays_small():
    from frontends.zoo import load_zoo
    from aloha_ir.passmanager import PassManager
    module = load_zoo("vgg19")
    PassManager.parse("canonicalize").run(module)
    text = print_module(module)
    assert len(text) < 20_000  # 143 M parameters, a few KB of IR
    assert weights_of(module).nbytes() < 1_000_000  # only the small bias blobs are arrays
    assert text.count("splat =") >= 19
