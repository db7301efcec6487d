"""The prune pass on a digits CNN trained here: which weights collapse (against numpy), what kernel
removal does to shapes, costs and outputs (against onnxruntime on the unpruned model), fine-tuning
that holds pruned weights, quantized graphs, the IR and sidecar records, the CLI, and errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

torch = pytest.importorskip("torch")

from aloha_ir.context import make_context  # noqa: E402
from aloha_ir.dialects import nn  # noqa: E402
from aloha_ir.dialects.nn import graph_of  # noqa: E402
from aloha_ir.errors import PassError  # noqa: E402
from aloha_ir.passmanager import PassManager  # noqa: E402
from aloha_ir.weights import clone_with_weights, weights_of  # noqa: E402
from backends.onnx.export import save_onnx  # noqa: E402
from frontends.datasets import load  # noqa: E402
from frontends.loader import load_model  # noqa: E402
from model_helpers import run_ort  # noqa: E402
from passes.analyze_cost import analyze_graph  # noqa: E402
from passes.prune import PrunePass  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return load("digits")


@pytest.fixture(scope="module")
def trained(digits):
    from runtime.torch.module import build
    from runtime.torch.train import TrainConfig, train
    torch.set_num_threads(1)
    module = load_model("zoo:digits_cnn")
    model = build(module, logits=True)
    train(model, digits, TrainConfig(epochs=8, progress=False))
    model.write_back(module)
    PassManager.parse("canonicalize").run(module, make_context())
    return module


def _prune(module, digits=None, **options):
    ctx = make_context()
    ctx.dataset = digits
    PrunePass(**options).apply(ctx, module)
    return ctx.report("prune")


def _weights(module, op) -> np.ndarray:
    from aloha_ir.consts import const_tensor
    return np.array(const_tensor(op.weight.owner, weights_of(module)).materialize())


def _layers(module):
    return [op for op in graph_of(module).ops if isinstance(op, (nn.ConvOp, nn.DenseOp))]


def _ort_logits(module, x, tmp_path, name) -> np.ndarray:
    path = str(tmp_path / f"{name}.onnx")
    save_onnx(module, path)
    model = onnx.load(path)
    feed = model.graph.input[0].name
    return np.concatenate([run_ort(model, {feed: x[i:i + 1]})[0] for i in range(len(x))])


def test_threshold_collapses_exactly_the_weights_within_t_sigma(trained, digits):
    m = clone_with_weights(trained)
    before = [_weights(m, op) for op in _layers(m)]
    report = _prune(m, digits, threshold=0.75)
    cost = analyze_graph(graph_of(m), annotate=False, store=weights_of(m))
    total_pruned = means = 0
    for op, w, layer in zip(_layers(m), before, report.layers):
        mu, sigma = w.astype(np.float64).mean(), w.astype(np.float64).std()
        mask = np.abs(w.astype(np.float64) - mu) < 0.75 * sigma
        assert np.array_equal(_weights(m, op), np.where(mask, np.float32(mu), w))
        assert layer.pruned == op.attributes["pruning"].data["pruned"].value.data == mask.sum()
        assert 0 < mask.sum() < mask.size
        total_pruned += int(mask.sum())
        means += np.float32(mu) != 0
    assert cost.params_pruned == total_pruned
    # deployed mean-subtracted, the pruned weights are zeros not stored; each layer's mean is
    assert report.params_before - report.params_after == total_pruned - means
    # the dense layer's MACs by hand: N x (M x K - pruned) kept, plus N x K for the mean's share
    dense = [b for b in cost.blocks if b.op == "nn.dense"][-1]
    op = _layers(m)[-1]
    (n, k), (mo, _) = nn.shape_of(op.input), nn.shape_of(op.weight)
    pruned = op.attributes["pruning"].data["pruned"].value.data
    assert dense.macs_sparse == n * (mo * k - pruned) + n * k
    assert report.accuracy_before > 0.85 and report.accuracy_after is not None


def test_sparse_macs_of_a_grouped_strided_conv_by_hand():
    """A group-2, stride-2 conv with a collapse value: the kept MACs plus one window sum per output
    position and group (C_in/group x kh x kw each), counted by hand."""
    from aloha_ir.cost import block_macs, sparse_macs
    from aloha_ir.textio import parse_module
    module = parse_module("""builtin.module {
  nn.graph @net {
    %0 = nn.input {port = "x"} : tensor<1x4x6x6xf32>
    %1 = nn.const {splat = 1.000000e+00 : f64} : tensor<6x2x3x3xf32>
    %2 = nn.conv %0, %1 {kernel = array<i64: 3, 3>, strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, group = 2 : i64, pruning = {value = 5.000000e-01 : f64}} : tensor<1x6x3x3xf32>
    nn.output %2 {ports = ["y"]}
  }
}""")
    conv = next(op for op in graph_of(module).ops if isinstance(op, nn.ConvOp))
    macs = 6 * 3 * 3 * (2 * 3 * 3)  # each of 54 outputs: C_in/group x kh x kw
    assert block_macs(conv) == macs == 972
    pruned = 27  # of the 108 weights
    kept = macs * (108 - pruned) // 108
    window_sums = (3 * 3) * 2 * (2 * 3 * 3)  # output positions x groups x window
    assert sparse_macs(conv, pruned) == kept + window_sums == 729 + 324


def test_more_threshold_prunes_more_and_zero_prunes_nothing(trained, digits):
    after = []
    for t in (0.0, 0.5, 1.0, 1.5):
        r = _prune(clone_with_weights(trained), digits, threshold=t)
        after.append(r.params_after)
        if t == 0:
            assert (r.params_after, r.macs_after) == (r.params_before, r.macs_before)
            assert r.accuracy_after == r.accuracy_before
    assert after == sorted(after, reverse=True) and len(set(after)) == 4


def test_iterative_pruning_holds_the_collapsed_weights_through_fine_tuning(trained, digits):
    one_shot = _prune(clone_with_weights(trained), digits, threshold=1.0)
    m = clone_with_weights(trained)
    r = _prune(m, digits, threshold=1.0, iterations=2, epochs=2)
    assert [s["threshold"] for s in r.log] == [0.5, 1.0]
    assert all(len(s["history"]) == 2 for s in r.log)
    for op in _layers(m):
        p = op.attributes["pruning"].data
        w = _weights(m, op)
        assert np.count_nonzero(w == np.float32(p["value"].value.data)) == p["pruned"].value.data
    assert r.accuracy_after > one_shot.accuracy_after  # fine-tuning recovers what one shot lost


def test_kernel_activity_removes_dead_kernels_without_changing_outputs(trained, digits, tmp_path):
    from aloha_ir.consts import set_blob
    m = clone_with_weights(trained)
    conv = _layers(m)[0]
    store = weights_of(m)
    w = _weights(m, conv)
    w[3] = 0  # kernel 3 never fires: zero weights, negative bias
    set_blob(conv.weight.owner, store, w)
    b = np.array(store[conv.bias.owner.blob.data])
    b[3] = -1
    set_blob(conv.bias.owner, store, b)
    x = digits.train.head(300).x
    expected = _ort_logits(m, x, tmp_path, "dead")
    before = analyze_graph(graph_of(m), annotate=False)
    shapes = [nn.shape_of(op.weight) for op in _layers(m)]
    r = _prune(m, digits, method="activity", max_activity=0.0, activity_eps=0.0, samples=300)
    layer = r.layers[0]
    assert layer.activity[3] == 0 and layer.kernels_removed >= 1 and layer.kernels_zeroed == 0
    removed = [lay.kernels_removed for lay in r.layers]
    assert removed == [shapes[i][0] - nn.shape_of(op.weight)[0]
                       for i, op in enumerate(_layers(m)[:2])]
    assert nn.shape_of(_layers(m)[1].weight)[1] == shapes[1][1] - removed[0]
    # MACs by hand from the original shapes and the kernels removed from each conv
    (c1, c2, dense, _), (r1, r2) = _layers(m), removed  # digits_cnn: conv conv dense dense
    (o1, _, k1h, k1w), (o2, _, k2h, k2w), (mo, k), (m2, k2) = shapes
    hw1, hw2 = (int(np.prod(nn.shape_of(c.output)[2:])) for c in (c1, c2))
    assert nn.shape_of(dense.weight)[1] == (o2 - r2) * (k // o2)
    after = analyze_graph(graph_of(m), annotate=False)
    assert after.macs == (o1 - r1) * hw1 * k1h * k1w + (o2 - r2) * hw2 * (o1 - r1) * k2h * k2w + \
        mo * (o2 - r2) * (k // o2) + m2 * k2
    assert after.macs < before.macs
    assert r.macs_after == after.macs and r.params_after == after.params_deployed
    # never fired on these images, so the pruned network computes the same logits (onnxruntime)
    got = _ort_logits(m, x, tmp_path, "pruned")
    assert np.abs(got - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())


def _residual_model(path) -> None:
    """conv A (4 maps, relu) -> conv B (relu) -> add(A, B) -> flatten -> dense: A and B feed an add,
    so their widths are pinned and idle kernels can only be zeroed. Kernel 1 of A is dead."""
    rng = np.random.default_rng(0)
    wa = rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32)
    ba = np.full(4, 0.1, np.float32)
    wa[1], ba[1] = 0, -1
    wb = rng.normal(0, 0.3, (4, 4, 3, 3)).astype(np.float32)
    bb = np.zeros(4, np.float32)
    wd = rng.normal(0, 0.1, (10, 256)).astype(np.float32)
    bd = np.zeros(10, np.float32)
    init = [helper.make_tensor(n, TensorProto.FLOAT, a.shape, a.flatten())
            for n, a in (("wa", wa), ("ba", ba), ("wb", wb), ("bb", bb), ("wd", wd), ("bd", bd))]
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a0"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a0"], ["a"]),
             helper.make_node("Conv", ["a", "wb", "bb"], ["b0"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["b0"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["s"]),
             helper.make_node("Flatten", ["s"], ["f"]),
             helper.make_node("Gemm", ["f", "wd", "bd"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "residual", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 1, 8, 8])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 10])], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_kernels_feeding_an_add_are_zeroed_not_removed(digits, tmp_path):
    path = str(tmp_path / "residual.onnx")
    _residual_model(path)
    m = load_model(path)
    x = digits.train.head(100).x
    expected = run_ort(onnx.load(path), {"x": x[:1]})[0]
    r = _prune(m, digits, method="activity", max_activity=0.0, activity_eps=0.0, samples=100,
               evaluate=False)
    a = r.layers[0]
    assert a.activity[1] == 0 and a.kernels_zeroed >= 1 and a.kernels_removed == 0
    assert nn.shape_of(_layers(m)[0].weight) == (4, 1, 3, 3)
    assert np.all(_weights(m, _layers(m)[0])[1] == 0)
    got = _ort_logits(m, x[:1], tmp_path, "zeroed")
    assert np.allclose(got, expected, atol=1e-5)


def test_sparsify_silences_kernels_and_each_layer_keeps_one(trained, digits, tmp_path):
    m = clone_with_weights(trained)
    r = _prune(m, digits, method="activity", sparsify=1000.0, epochs=1, samples=200)
    assert r.log[0]["phase"] == "sparsify"
    convs = [op for op in _layers(m) if isinstance(op, nn.ConvOp)]
    assert [nn.shape_of(op.weight)[0] for op in convs] == [1, 1]
    assert r.params_after < r.params_before / 10
    logits = _ort_logits(m, digits.test.head(5).x, tmp_path, "one")  # still a valid network
    assert logits.shape == (5, 10)


def test_quantized_graph_prunes_one_shot_and_stays_bit_exact(trained, digits):
    from runtime.reference import reference
    from runtime.torch.fixed import build_fixed
    from passes.quantize import QuantizePass
    m = clone_with_weights(trained)
    ctx = make_context()
    ctx.dataset = digits
    QuantizePass(method="ptq", bits=8, evaluate=False).apply(ctx, m)
    r = _prune(m, digits, threshold=0.5)
    assert r.accuracy_after > 0.6 and r.params_after < r.params_before
    x = digits.test.head(16).x
    ints = build_fixed(m).integers(torch.from_numpy(x))
    ref = reference(m).integers(x)
    assert all(np.array_equal(ints[k].numpy().astype(np.int64), ref[k]) for k in ref)
    with pytest.raises(PassError, match="fine-tuning a quantized graph"):
        _prune(m, digits, threshold=0.5, iterations=2, epochs=1)


def test_pruning_survives_the_ir_round_trip_and_reaches_the_qdq_sidecar(trained, digits,
                                                                         tmp_path):
    from aloha_ir.textio import load_module, save_module
    from backends.onnx.qdq import save_quantized
    from passes.quantize import QuantizePass
    m = clone_with_weights(trained)
    _prune(m, digits, threshold=0.5)
    save_module(m, str(tmp_path / "p.mlir"))
    back = load_module(str(tmp_path / "p.mlir"))
    for a, b in zip(_layers(m), _layers(back)):
        assert a.attributes["pruning"] == b.attributes["pruning"]
        assert np.array_equal(_weights(m, a), _weights(back, b))
    assert analyze_graph(graph_of(back), False, weights_of(back)).params_pruned == \
        analyze_graph(graph_of(m), False, weights_of(m)).params_pruned > 0
    ctx = make_context()
    ctx.dataset = digits
    QuantizePass(method="ptq", bits=8, evaluate=False).apply(ctx, back)
    _, side = save_quantized(back, str(tmp_path / "q.onnx"))
    pruning = json.load(open(side))["pruning"]
    assert len(pruning) == len(_layers(m)) and all(p["method"] == "threshold"
                                                   for p in pruning.values())


def test_cli_prune_sweeps_thresholds_and_writes_a_model_ort_runs(trained, digits, tmp_path,
                                                                  capsys):
    from alohac.main import main
    src = str(tmp_path / "d.onnx")
    save_onnx(trained, src)
    out = tmp_path / "out"
    assert main(["prune", src, "--data", "digits", "--threshold", "0.1,0.25,2", "--max-drop",
                 "0.02", "-o", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    sweep = data["sweep"]
    assert [s["threshold"] for s in sweep] == [0.1, 0.25, 2.0]
    ok = [s for s in sweep if data["accuracy_before"] - s["accuracy_after"] <= 0.02]
    assert data["threshold"] == ok[-1]["threshold"] < 2.0
    assert data["params_removed"] == data["params_before"] - data["params_after"] > 0
    model = onnx.load(data["onnx"])
    test = digits.test
    pred = np.concatenate([run_ort(model, {model.graph.input[0].name: test.x[i:i + 1]})[0]
                           .argmax(1) for i in range(len(test))])
    assert abs(float((pred == test.y).mean()) - data["accuracy_after"]) < 1e-9
    assert json.load(open(out / "d.prune.json"))["threshold"] == data["threshold"]


def test_errors_are_clear(trained, digits):
    with pytest.raises(PassError, match="unknown pruning method"):
        PrunePass(method="magnitude")
    with pytest.raises(PassError, match="iterative pruning fine-tunes"):
        PrunePass(iterations=3)
    with pytest.raises(PassError, match="threshold must be >= 0"):
        PrunePass(threshold=-1)
    with pytest.raises(PassError, match="max_activity must be in"):
        PrunePass(method="activity", max_activity=1.5)
    with pytest.raises(PassError, match="prune needs data"):
        PrunePass(method="activity").apply(make_context(), clone_with_weights(trained))
    r = _prune(clone_with_weights(trained), None, threshold=0.5)  # no data: pruned, not measured
    assert r.accuracy_before is None and r.params_after < r.params_before
    from aloha_ir.consts import set_blob
    m = clone_with_weights(trained)
    op = _layers(m)[0]
    w = _weights(m, op)
    w[0, 0, 0, 0] = np.nan
    set_blob(op.weight.owner, weights_of(m), w)
    with pytest.raises(PassError, match="NaN or infinite"):
        _prune(m, digits)


def test_kernel_removal_on_a_quantized_graph_keeps_formats_and_bit_exactness(trained, digits):
    from runtime.reference import reference
    from runtime.torch.fixed import build_fixed
    from passes.quantize import QuantizePass
    m = clone_with_weights(trained)
    ctx = make_context()
    ctx.dataset = digits
    QuantizePass(method="ptq", bits=8, granularity="channel", evaluate=False).apply(ctx, m)
    r = _prune(m, digits, method="activity", max_activity=0.0, activity_eps=0.0)
    assert sum(lay.kernels_removed for lay in r.layers) >= 1
    assert r.accuracy_after == r.accuracy_before  # removed kernels never fired
    x = digits.test.head(16).x
    ints = build_fixed(m).integers(torch.from_numpy(x))
    ref = reference(m).integers(x)
    assert all(np.array_equal(ints[k].numpy().astype(np.int64), ref[k]) for k in ref)


# --- pruning visible downstream (issue 18, item 5) ------------------------------------------------

def _run_json(args) -> dict:
    import contextlib
    import io

    from alohac.main import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(args) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_cli_prune_says_which_threshold_it_kept_and_why(trained, tmp_path, capsys):
    """The largest threshold within --max-drop, whatever the order given (the last one within was
    kept), printed with every candidate's accuracy loss and recorded in the JSON and sidecar."""
    from alohac.main import main
    src = str(tmp_path / "d.onnx")
    save_onnx(trained, src)
    assert main(["prune", src, "--data", "digits", "--threshold", "0.25,0.1,2", "--max-drop",
                 "0.02", "-o", str(tmp_path / "p"), "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out.strip().splitlines()[-1])
    drops = {s["threshold"]: data["accuracy_before"] - s["accuracy_after"] for s in data["sweep"]}
    assert max(t for t, d in drops.items() if d <= 0.02) == 0.25 and drops[2.0] > 0.02
    assert data["threshold"] == 0.25 and [s["kept"] for s in data["sweep"]] == [True, False, False]
    assert [s["within_max_drop"] for s in data["sweep"]] == [True, True, False]
    line = next(x for x in captured.err.splitlines() if x.startswith("kept "))
    assert line.startswith("kept t=0.25: the largest threshold losing at most --max-drop 0.02")
    assert f"t=2 loses {drops[2.0]:.4f}" in line
    assert data["selection"] == line[len("kept t=0.25: "):]
    side = json.load(open(tmp_path / "p" / "d.prune.json"))
    assert side["selection"] == data["selection"] and side["sweep"] == data["sweep"]
    assert main(["prune", src, "--data", "digits", "--threshold", "2,3", "-o",
                 str(tmp_path / "p2")]) == 0
    captured = capsys.readouterr()
    assert "kept t=2: no threshold loses at most --max-drop 0.01" in captured.out
    assert "warning: every threshold loses more than --max-drop 0.01" in captured.err


def _onnx_weights(path):
    """Conv/Gemm weight initializers of an ONNX file, by node output, and all initializer sizes."""
    model = onnx.load(path)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    layers = {n.output[0]: inits[n.input[1]] for n in model.graph.node
              if n.op_type in ("Conv", "Gemm")}
    return model, layers, sum(a.size for a in inits.values())


def _bias_split(path) -> tuple[int, int]:
    """(elements of the Conv/Gemm bias initializers, elements of all other initializers)."""
    model = onnx.load(path)
    biases = {n.input[2] for n in model.graph.node
              if n.op_type in ("Conv", "Gemm") and len(n.input) > 2}
    sizes = {i.name: int(np.prod(i.dims)) for i in model.graph.initializer}
    return (sum(v for k, v in sizes.items() if k in biases),
            sum(v for k, v in sizes.items() if k not in biases))


def test_analyze_shows_threshold_pruning_and_says_no_target_exploits_it(trained, tmp_path,
                                                                       monkeypatch, capsys):
    """params_deployed, params_pruned and macs_sparse by hand from the pruned ONNX file's weights
    (numpy), the same from the .mlir and the .onnx; on every target the latency, energy and memory
    are the dense model's (no unit skips a weight, the code stores them all), and it says so."""
    from alohac.main import main
    src = str(tmp_path / "d.onnx")
    save_onnx(trained, src)
    assert main(["prune", src, "--data", "digits", "--threshold", "0.5", "--max-drop", "1",
                 "-o", str(tmp_path / "p")]) == 0
    layers = json.load(open(tmp_path / "p" / "d.prune.json"))["layers"]
    model, weights, total = _onnx_weights(str(tmp_path / "p" / "d.onnx"))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    pruned = means = sparse = 0
    for (out, w), layer in zip(weights.items(), layers):
        n = int(np.count_nonzero(w == np.float32(layer["mean"])))
        assert n == layer["pruned"] > 0
        pruned, means = pruned + n, means + (np.float32(layer["mean"]) != 0)
        positions = int(np.prod(shapes[out])) // shapes[out][1]  # output pixels (x batch)
        per_position = w[0].size if w.ndim == 4 else w.shape[1]  # one window (or row) sum
        sparse += positions * (w.size - n) + positions * per_position
    for path in (str(tmp_path / "p" / "d.mlir"), str(tmp_path / "p" / "d.onnx")):
        data = _run_json(["analyze", path, "--json"])
        assert (data["params"], data["params_pruned"]) == (total, pruned)
        assert data["params_deployed"] == total - pruned + means
        assert data["macs_sparse"] == sparse < data["macs"]
    dense = _run_json(["analyze", src, "--json"])
    assert (dense["params_deployed"], dense["params_pruned"], dense["macs_sparse"]) == \
        (total, 0, dense["macs"])
    for target in ("neuraghe-losa", "host-cpu", "orlando"):
        before = _run_json(["analyze", src, "--target", target, "--json"])
        after = _run_json(["analyze", str(tmp_path / "p" / "d.onnx"), "--target", target,
                           "--json"])
        assert before["sparsity"] is None and after["params_pruned"] == pruned
        for key in ("latency_s", "energy_j", "memory_bytes", "parameter_bytes"):
            assert after[key] == before[key], (target, key)
        assert after["sparsity"]["exploited"] is False
        assert after["sparsity"]["note"].startswith(f"pruned weights are not exploited on {target}")
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["analyze", str(tmp_path / "p" / "d.mlir")]) == 0
    text = capsys.readouterr().out
    assert "sparse MACs" in text and "pruned" in text
    assert f"deployed {total - pruned + means:,}; {pruned:,} pruned" in text
    assert main(["compile", str(tmp_path / "p" / "d.mlir"), "--target", "neuraghe-losa",
                 "--emit", "nn", "-o", str(tmp_path / "c")]) == 0
    report = (tmp_path / "c" / "report.md").read_text()
    assert f"Pruned: {pruned:,} weights (params deployed {total - pruned + means:,})" in report
    assert "pruned weights are not exploited on neuraghe-losa" in report
    assert f"| params pruned | {pruned:,} |" in report


def test_activity_pruning_shrinks_every_figure_on_every_target(trained, digits, tmp_path):
    """Removed kernels leave the shapes: MACs, parameters, activations, memory, energy and latency
    all fall. Parameter bytes fall by the removed initializer elements (counted in the ONNX files)
    in their storage types: weights at the target's width, 2 B (fixed16) on NEURAghe and Orlando,
    4 B (f32) on host-cpu; biases at 4 B everywhere (int32 in the accumulator's format, or
    float32). Four dead kernels of
    16 make the first conv's 12 maps a multiple of NEURAghe's 4 rows and the second conv's inputs
    one group of 12 fewer, so even the conv engine's time falls (hardware.md's granularity)."""
    from aloha_ir.consts import set_blob
    m = clone_with_weights(trained)
    conv = _layers(m)[0]
    store = weights_of(m)
    w, b = _weights(m, conv), np.array(store[conv.bias.owner.blob.data])
    w[:4], b[:4] = 0, -1  # kernels 0..3 never fire
    set_blob(conv.weight.owner, store, w)
    set_blob(conv.bias.owner, store, b)
    dense_path = str(tmp_path / "dense.onnx")
    save_onnx(m, dense_path)
    r = _prune(m, digits, method="activity", max_activity=0.0, activity_eps=0.0, samples=300,
               evaluate=False)
    assert r.layers[0].kernels_removed >= 4
    pruned_path = str(tmp_path / "pruned.onnx")
    save_onnx(m, pruned_path)
    (dense_b, dense_w), (pruned_b, pruned_w) = _bias_split(dense_path), _bias_split(pruned_path)
    removed, removed_bias = dense_w - pruned_w, dense_b - pruned_b
    assert removed > 0 and removed_bias >= 4
    for target, width in (("neuraghe-losa", 2), ("host-cpu", 4), ("orlando", 2)):
        before = _run_json(["analyze", dense_path, "--target", target, "--json"])
        after = _run_json(["analyze", pruned_path, "--target", target, "--json"])
        for key in ("macs", "params_deployed", "activation_bytes", "latency_s", "energy_j",
                    "memory_bytes"):
            assert after[key] < before[key], (target, key)
        assert before["parameter_bytes"] - after["parameter_bytes"] == \
            width * removed + 4 * removed_bias, target
        assert after["sparsity"] is None  # nothing left that a dense unit would multiply in vain


@pytest.mark.parametrize("key, value", [("aloha.pruning.nowhere", '{"value": 0.5}'),
                                        ("aloha.pruning.{conv}", "[1, 2]"),
                                        ("aloha.pruning.{conv}", '{"value": NaN}'),
                                        ("aloha.pruning.{conv}", "not json")])
def test_pruning_metadata_that_does_not_fit_is_an_input_error(trained, tmp_path, key, value):
    from alohac.main import main
    model = _export(trained)
    conv = next(n.output[0] for n in model.graph.node if n.op_type == "Conv")
    model.metadata_props.add(key=key.format(conv=conv), value=value)
    path = str(tmp_path / "bad.onnx")
    onnx.save(model, path)
    assert main(["analyze", path, "--json"]) == 3


def _export(module):
    from backends.onnx.export import export_onnx
    return export_onnx(module)


def test_pruning_an_untrained_model_warns(digits):
    m = load_model("zoo:digits_cnn")
    PassManager.parse("canonicalize").run(m, make_context())
    r = _prune(m, digits, threshold=0.5)
    assert r.accuracy_before < 0.19 and len(r.warnings) == 1 and "near chance" in r.warnings[0]
