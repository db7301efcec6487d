"""Fixed point: the arithmetic by hand, and the torch simulation equal to the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

from aloha_ir import fixedpoint as fp
from aloha_ir.context import make_context
from aloha_ir.passmanager import PassManager
from aloha_ir.weights import weights_of
from frontends.datasets import Dataset, Normalization
from frontends.loader import load_model


def test_rounding_and_saturation_by_hand():
    f = fp.Fixed(8, 4)
    # 0.03125 * 16 = 0.5 -> rounds half up to 1; -0.03125 -> -0.5 -> 0; 100 saturates to 127
    assert fp.to_fixed(np.array([0.03125, -0.03125, 100.0, -100.0]), f).tolist() == [1, 0, 127, -128]
    # shift right by 2 rounding half up: 6/4 = 1.5 -> 2, -6/4 = -1.5 -> -1, 5/4 -> 1
    assert fp.shift_round(np.array([6, -6, 5]), 2).tolist() == [2, -1, 1]
    assert fp.shift_round(np.array([3]), -2).tolist() == [12]
    assert fp.round_div(np.array([5, -5, 7]), 2).tolist() == [3, -2, 4]


@pytest.mark.parametrize("value,bits,signed,frac", [(1.0, 8, True, 6), (1.0, 8, False, 7),
                                                    (0.9, 8, True, 7), (200.0, 16, True, 7),
                                                    (3.2457, 8, True, 5)])
def test_frac_for_is_the_finest_format_without_overflow(value, bits, signed, frac):
    assert fp.frac_for(value, bits, signed) == frac
    f = fp.Fixed(bits, frac, signed)
    assert np.floor(value * 2 ** frac + 0.5) <= f.qmax  # fits
    assert np.floor(value * 2 ** (frac + 1) + 0.5) > fp.Fixed(bits, frac + 1, signed).qmax


def tiny_residual():
    """Every integer kernel in a few layers: BN, leaky ReLU, padded average and max pooling, a
    residual add, concat, global pooling, dense, softmax."""
    from frontends.onnx import import_model
    from frontends.zoo import NetBuilder
    b = NetBuilder("tiny", (1, 3, 16, 16), seed=5)
    x = b.leaky(b.bn(b.conv("input", 8, 3)))
    y = b.relu(b.conv(x, 8, 3))
    s = b.add(x, y)
    a = b.pool(s, 3, 1, kind="AveragePool", pad=1)
    m = b.pool(s, 3, 2, ceil=True)
    c = b.concat([b.pool(a, 2, 2), m])
    return import_model(b.model(b.softmax(b.dense(b.flatten(b.gap(c)), 10))), source="tiny")


def _quantized(name: str, shape, bits: int, per_channel: bool, seed: int = 0):
    from quant.formats import apply_formats, choose_formats
    from runtime.torch.calibrate import calibrate
    from aloha_ir.dialects.nn import graph_of
    module = tiny_residual() if name == "tiny" else load_model(f"zoo:{name}")
    PassManager.parse("canonicalize").run(module, make_context())
    x = np.random.default_rng(seed).uniform(0, 1, (6,) + shape).astype(np.float32)
    data = Dataset("random", x, np.zeros(6), 10, Normalization((0.0, 1.0)))
    graph = graph_of(module)
    stats = calibrate(module, data, 6, None)
    apply_formats(graph, choose_formats(graph, weights_of(module), stats, bits, bits, per_channel))
    return module, x


@pytest.mark.parametrize("name,shape", [("mnist_cnn", (1, 28, 28)), ("lenet5", (1, 28, 28)),
                                        ("squeezenet1_1", (3, 224, 224)),
                                        ("tiny", (3, 16, 16))])
@pytest.mark.parametrize("bits,per_channel", [(8, False), (16, True), (4, True)])
def test_torch_simulation_equals_the_numpy_reference_bit_for_bit(name, shape, bits, per_channel):
    torch = pytest.importorskip("torch")
    from runtime.reference import reference
    from runtime.torch.fixed import build_fixed
    module, x = _quantized(name, shape, bits, per_channel)
    ref = reference(module).integers(x[:2])
    with torch.no_grad():
        sim = build_fixed(module).integers(torch.from_numpy(x[:2]))
    assert list(ref) == list(sim)
    for label, q in ref.items():
        np.testing.assert_array_equal(sim[label].numpy(), q, err_msg=label)
    # the values are not degenerate: some block uses most of its range
    assert any(np.abs(q).max() > 2 ** (bits - 3) for q in ref.values())
