"""The quantize pass on a digits CNN trained here: accuracy against float, the relaxation heuristic,
formats, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from aloha_ir import fixedpoint as fp  # noqa: E402
from aloha_ir.context import make_context  # noqa: E402
from aloha_ir.errors import PassError, UsageError  # noqa: E402
from aloha_ir.passmanager import PassManager  # noqa: E402
from aloha_ir.weights import attach_weights, clone_with_weights, weights_of  # noqa: E402
from backends.reference import graph_of, reference  # noqa: E402
from frontends.datasets import load  # noqa: E402
from frontends.loader import load_model  # noqa: E402
from passes.quantize import QuantizePass  # noqa: E402


@pytest.fixture(scope="module")
def trained():
    """digits_cnn trained for a few epochs (the float reference), canonicalized."""
    from backends.torch.module import build
    from backends.torch.train import TrainConfig, train
    torch.set_num_threads(1)
    module = load_model("zoo:digits_cnn")
    model = build(module, logits=True)
    train(model, load("digits"), TrainConfig(epochs=8, progress=False))
    model.write_back(module)
    PassManager.parse("canonicalize").run(module, make_context())
    return module


def _copy(module):
    return clone_with_weights(module)


def _quantize(module, **options):
    ctx = make_context()
    QuantizePass(data="digits", **options).apply(ctx, module)
    return ctx.analyses["quantize"]


def test_ptq_8_bits_keeps_float_accuracy_and_types_every_value(trained):
    m = _copy(trained)
    r = _quantize(m, method="ptq", bits=8)
    assert r.float_accuracy > 0.9
    assert r.quantized_accuracy >= r.float_accuracy - 0.01
    g = graph_of(m)
    from aloha_ir.dialects import nn
    assert all(fp.format_of(op.results[0]) for op in g.ops if op.results)
    # weights: the smallest format without overflow, checked against the float values
    for op in g.ops:
        if isinstance(op, nn.ConvOp):
            fmt = fp.format_of(op.weight)
            w = np.abs(weights_of(m)[op.weight.owner.blob.data]).max()
            assert w <= fmt.max_real + fmt.step / 2 and 2 * w > fmt.max_real
    convs = [row for row in r.formats.values() if row["op"] == "nn.conv"]
    assert len(convs) == 2 and all(row["weight"]["bits"] == 8 for row in convs)
    # the recorded accuracy is the fixed-point reference's, not the float model's
    data = load("digits").test
    ref = reference(m).real(data.x[:64])
    from backends.torch.fixed import build_fixed
    with torch.no_grad():
        sim = build_fixed(m)(torch.from_numpy(data.x[:64])).numpy()
    np.testing.assert_array_equal(sim, ref.astype(np.float32))


def test_pact_relaxation_drops_precision_to_the_target(trained):
    m = _copy(trained)
    r = _quantize(m, method="pact", bits=4, epochs=10, start_bits=6, delta_loss_window=2,
                  stale_checks=1, delta_loss_avg_thresh=50, delta_loss_stdev_thresh=50)
    bits = [e["weight_bits"] for e in r.log if "weight_bits" in e]
    assert bits[0] == 6 and min(bits) == 4
    assert all(b - a in (0, -0.5) for a, b in zip(bits, bits[1:]))  # half a bit per drop
    assert r.quantized_accuracy >= r.float_accuracy - 0.05


@pytest.mark.parametrize("method", ["dorefa", "inq"])
def test_other_schemes_deploy_in_four_bits(trained, method):
    m = _copy(trained)
    r = _quantize(m, method=method, bits=4, abits=8, epochs=4)
    assert r.quantized_accuracy >= r.float_accuracy - 0.1
    g = graph_of(m)
    from aloha_ir.dialects import nn
    conv = next(op for op in g.ops if isinstance(op, nn.ConvOp))
    assert fp.format_of(conv.weight).bits == 4


def test_grid_suggests_the_best_configuration_below_95_percent(trained):
    from passes.quantize import explore_precision
    splits = load("digits")
    g = explore_precision(trained, splits, weight_bits=(8, 3), activation_bits=(8, 3))
    assert len(g.points) == 4
    below = [p for p in g.points if p["accuracy"] < 0.95 * g.float_accuracy]
    if below:
        assert g.suggested["accuracy"] == max(p["accuracy"] for p in below)


@pytest.mark.parametrize("bits", [1, 17])
def test_bits_outside_2_to_16_are_refused(bits):
    with pytest.raises(UsageError, match="outside 2..16"):
        QuantizePass(bits=bits)


def test_nan_weights_are_refused(trained):
    m = _copy(trained)
    store = weights_of(m)
    from aloha_ir.weights import WeightStore
    arrays = dict(store.arrays)
    key = next(k for k, v in arrays.items() if v.ndim == 4)
    arrays[key] = arrays[key].copy()
    arrays[key].flat[0] = np.nan
    attach_weights(m, WeightStore(arrays))
    with pytest.raises(PassError, match="NaN"):
        _quantize(m)


def test_labels_that_do_not_fit_the_model_are_refused():
    from alohac.main import main
    assert main(["train", "zoo:lenet5", "--data", "digits", "-o", "/tmp/unused.onnx"]) == 2


def test_cli_quantize_json(trained, tmp_path, capsys):
    pytest.importorskip("backends.onnx.qdq")
    from alohac.main import main
    from aloha_ir.textio import save_module
    src = tmp_path / "digits.mlir"
    save_module(trained, str(src))
    assert main(["quantize", str(src), "--data", "digits", "--bits", "8", "--method", "ptq",
                 "-o", str(tmp_path / "q"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("float_accuracy", "quantized_accuracy", "weight_bits", "activation_bits",
                "formats"):
        assert key in data
    assert (tmp_path / "q" / "digits.onnx").exists()


def test_interrupted_fine_tuning_resumes_from_its_checkpoint(trained, tmp_path, monkeypatch):
    """PACT with relaxation stopped after epoch 2 and rerun with the same checkpoint ends where an
    uninterrupted run ends: same relaxation log, same formats, same weights."""
    from backends.torch import qat
    opts = dict(method="pact", bits=4, epochs=4, start_bits=8, delta_loss_window=1,
                stale_checks=1, delta_loss_avg_thresh=50, delta_loss_stdev_thresh=50,
                samples=128, evaluate=False)
    expected_module = _copy(trained)
    expected = _quantize(expected_module, **opts)
    assert any(e.get("relaxed") for e in expected.log)  # the state to carry over is non-trivial
    ckpt = str(tmp_path / "pact.ckpt")
    relax = qat.Relaxation.__call__

    def interrupted(self, epoch, record):
        out = relax(self, epoch, record)
        if epoch == 3:
            raise KeyboardInterrupt
        return out
    monkeypatch.setattr(qat.Relaxation, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _quantize(_copy(trained), checkpoint=ckpt, **opts)
    monkeypatch.undo()
    m = _copy(trained)
    resumed = _quantize(m, checkpoint=ckpt, **opts)
    assert resumed.log == expected.log and resumed.formats == expected.formats
    a, b = weights_of(m), weights_of(expected_module)
    for op_m, op_e in zip(graph_of(m).ops, graph_of(expected_module).ops):
        blob = op_m.properties.get("blob") if hasattr(op_m, "properties") else None
        if blob is not None:
            assert np.array_equal(a[blob.data], b[op_e.properties["blob"].data])


def test_insert_bn_trains_with_batch_norms_and_deploys_them_folded(trained, tmp_path):
    """The seeds' PACT scheme: BN after every conv while training (identity to start: the network
    computes what it did, checked with onnxruntime), none left in the deployed graph."""
    import onnx

    from aloha_ir.dialects import nn
    from backends.onnx.export import save_onnx
    from backends.torch.qat import insert_batchnorms
    from model_helpers import run_ort
    x = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    m = _copy(trained)
    save_onnx(m, str(tmp_path / "a.onnx"))
    convs = sum(isinstance(op, nn.ConvOp) for op in graph_of(m).ops)
    assert insert_batchnorms(m) == convs
    graph_of(m).verify()
    save_onnx(m, str(tmp_path / "b.onnx"))
    a, b = (run_ort(onnx.load(str(tmp_path / f"{n}.onnx")), {"input": x})[0] for n in "ab")
    assert np.allclose(a, b, rtol=1e-5, atol=1e-6)
    m = _copy(trained)
    r = _quantize(m, method="pact", bits=4, epochs=4, start_bits=8, delta_loss_window=1,
                  stale_checks=1, delta_loss_avg_thresh=50, delta_loss_stdev_thresh=50,
                  insert_bn=True)
    assert {"phase": "fold batch norms", "count": convs} in r.log
    assert not any(isinstance(op, nn.BatchNormOp) for op in graph_of(m).ops)
    assert r.quantized_accuracy > 0.8
    with pytest.raises(PassError, match="insert_bn goes with"):
        QuantizePass(method="inq", insert_bn=True)
