"""Genotypes and search spaces: decoding checked against onnxruntime and hand-computed MACs, repair,
space files (YAML/TOML, malformed ones), and the variable-length operators' invariants."""

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aloha_ir.errors import InputFileError, UsageError
from explore.operators import crossover, mutate, segments
from explore.space import load_space, parse_space
from frontends.genotype import Gene, Genotype, InvalidGenotype, to_module, to_onnx, trace

ort = pytest.importorskip("onnxruntime")

SEED_SPACE = """
name: seed
input: [1, 28, 28]
classes: 10
layers:
  - dataI
  - {type: Convolution, count: [2, 5], maps: [5, 20], kernel: {choices: [3, 5]}, stride: 1}
  - {type: Pooling, mode: max, kernel: 2, stride: 2}
  - {type: DenseBlock, count: [1, 5], neurons: [10, 20]}
  - dataO
"""

SEED_TOML = """
name = "seed"
input = [1, 28, 28]
classes = 10
[[layers]]
type = "dataI"
[[layers]]
type = "Convolution"
count = [2, 5]
maps = [5, 20]
kernel = {choices = [3, 5]}
stride = 1
[[layers]]
type = "Pooling"
mode = "max"
kernel = 2
stride = 2
[[layers]]
type = "DenseBlock"
count = [1, 5]
neurons = [10, 20]
[[layers]]
type = "dataO"
"""


def conv(maps, k=3, s=1, pad="same", slot=0):
    return Gene("convolution", slot, (("kernel", k), ("maps", maps), ("padding", pad),
                                      ("stride", s)))


def pool(k=2, s=2, slot=1):
    return Gene("pooling", slot, (("kernel", k), ("mode", "max"), ("stride", s)))


def dense(n, slot=2):
    return Gene("dense", slot, (("neurons", n),))


def hand_macs(g: Genotype, shape, classes) -> int:
    """MACs of the decoded network, from the genotype alone (bias not counted)."""
    c, h, w = shape
    macs = 0
    for gene in g.layers:
        if gene.kind == "convolution":
            k, s = gene["kernel"], gene["stride"]
            p = k // 2 if gene["padding"] == "same" else 0
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            macs += gene["maps"] * h * w * c * k * k
            c = gene["maps"]
        elif gene.kind == "conv-group":
            for _ in range(gene["convs"]):
                macs += gene["maps"] * h * w * c * gene["kernel"] ** 2
                c = gene["maps"]
            h, w = h // 2, w // 2
        elif gene.kind == "pooling":
            h, w = (h - gene["kernel"]) // gene["stride"] + 1, (w - gene["kernel"]) // \
                gene["stride"] + 1
        else:
            macs += c * h * w * gene["neurons"]
            c, h, w = gene["neurons"], 1, 1
    return macs + c * h * w * classes


@pytest.mark.parametrize("space_name,shape", [("space:seed-example", (1, 28, 28)),
                                              ("space:seed-example", (1, 8, 8)),
                                              ("space:vgg-like", (3, 32, 32)),
                                              ("space:vgg-like", (1, 8, 8))])
def test_decoded_models_run_in_onnxruntime_with_hand_counted_macs(space_name, shape):
    from aloha_ir.context import make_context
    from aloha_ir.passmanager import PassManager
    space = load_space(space_name)
    rng = np.random.default_rng(0)
    for _ in range(4):
        g = space.sample(rng, shape)
        model = to_onnx(g, shape, 10)
        onnx.checker.check_model(model, full_check=True)
        sess = ort.InferenceSession(model.SerializeToString())
        y = sess.run(None, {"input": rng.random((1, *shape), dtype=np.float32)})[0]
        assert y.shape == (1, 10) and abs(float(y.sum()) - 1.0) < 1e-5
        module = to_module(g, shape, 10)
        result = PassManager.parse("analyze-cost").run(module, make_context())
        assert result.report("analyze-cost").macs == hand_macs(g, shape, 10)


def test_decoding_is_deterministic_and_keys_are_canonical():
    g = Genotype((conv(8), pool(), dense(12)))
    a, b = to_onnx(g, (1, 8, 8), 10), to_onnx(g, (1, 8, 8), 10)
    assert a.SerializeToString() == b.SerializeToString()
    same = Genotype.from_json(g.to_json())
    assert same == g and same.key() == g.key()
    assert Genotype((conv(9), pool(), dense(12))).key() != g.key()


def test_trace_names_the_layer_that_leaves_nothing():
    g = Genotype((conv(8, k=5, pad="valid"), pool(), pool(), pool(), dense(10)))
    with pytest.raises(InvalidGenotype, match="layer 3"):
        trace(g, (1, 8, 8))  # 8 -> 4 (valid 5x5) -> 2 -> 1 -> the third pool leaves nothing
    assert trace(g, (1, 16, 16))[-2] == (8, 1, 1)  # 16 -> 12 -> 6 -> 3 -> 1
    with pytest.raises(InvalidGenotype, match="after a dense"):
        trace(Genotype((dense(10), conv(4))), (1, 8, 8))


def test_repair_refits_drops_or_rejects():
    space = parse_space("""
name: tiny
layers:
  - dataI
  - {type: Convolution, count: [1, 3], maps: 4, kernel: {choices: [3, 5]}, padding: valid}
  - {type: Pooling, count: [0, 2], kernel: {choices: [2, 3]}, stride: 2}
  - {type: DenseBlock, count: 1, neurons: 8}
  - dataO
""", "tiny.yaml")
    k5 = conv(4, k=5, pad="valid")
    # 5x5 input: a valid 5x5 conv leaves 1x1, a second one nothing: refit to kernel 3? no (1 < 3):
    # dropped, the slot keeps 1; the pooling on 1x1 is dropped (its slot allows 0)
    g = Genotype((k5, k5, pool(slot=1), dense(8)))
    repaired, notes = space.repair(g, (1, 5, 5))
    assert [x.label() for x in repaired.layers] == ["C4k5s1v", "D8"]
    assert len(notes) == 2 and all("leaves no output" in n for n in notes)
    # a 4x4 input: the valid 5x5 conv is refitted to 3x3 (the nearest kernel that fits)
    repaired, notes = space.repair(Genotype((k5, dense(8))), (1, 4, 4))
    assert repaired.layers[0]["kernel"] == 3 and "now C4k3s1v" in notes[0]
    # 2x2: no kernel fits and the slot needs one convolution: rejected with the reason
    with pytest.raises(InvalidGenotype, match="needs at least 1"):
        space.repair(Genotype((k5, dense(8))), (1, 2, 2))
    strict = parse_space(SEED_SPACE.replace("classes: 10", "classes: 10\ninvalid: reject"),
                         "s.yaml")
    with pytest.raises(InvalidGenotype, match="rejects"):
        strict.repair(Genotype((conv(5), conv(5), pool(), dense(10))), (1, 1, 1))


def test_repair_refuses_genes_outside_the_space():
    space = parse_space(SEED_SPACE, "s.yaml")
    with pytest.raises(InvalidGenotype, match="outside the space"):
        space.repair(Genotype((conv(50), conv(5), pool(), dense(10))), (1, 28, 28))
    with pytest.raises(InvalidGenotype, match="holds 1 layers"):
        space.repair(Genotype((conv(5), pool(), dense(10))), (1, 28, 28))
    with pytest.raises(InvalidGenotype, match="slot order"):
        space.repair(Genotype((pool(), conv(5), conv(5), dense(10))), (1, 28, 28))


def test_yaml_and_toml_spaces_agree():
    a = parse_space(SEED_SPACE, "a.yaml")
    b = parse_space(SEED_TOML, "b.toml")
    assert a.slots == b.slots and a.input_shape == b.input_shape == (1, 28, 28)
    assert a.slots[0].params["maps"] == tuple(range(5, 21))
    assert a.slots[0].params["kernel"] == (3, 5) and a.slots[0].count == (2, 5)
    # the seeds' space size: conv: sum over 2..5 layers of 32^n, dense: sum over 1..5 of 11^n
    assert a.size() == sum(32.0 ** n for n in range(2, 6)) * sum(11.0 ** n for n in range(1, 6))


@pytest.mark.parametrize("text,where,message", [
    ("layers: [dataI, {type: Convolution, maps: [5, 20]]", "tiny.yaml:1", "not valid YAML"),
    ("layers: [dataI, dataO, dataO]", "layers", "one output"),
    ("layers: [{type: Convolution}, dataO]", "layers", "first layer"),
    ("layers: [dataI, {type: Warp}, dataO]", "layers[1]", "unknown layer type"),
    ("layers: [dataI, {type: Convolution, maps: [20, 5]}, dataO]", "maps", "lo <= hi"),
    ("layers: [dataI, {type: Convolution, maps: 0}, dataO]", "maps", ">= 1"),
    ("layers: [dataI, {type: Convolution, wings: 2}, dataO]", "layers[1]", "no parameter wings"),
    ("layers: [dataI, {type: Pooling, mode: median}, dataO]", "mode", "among max, avg"),
    ("layers: [dataI, {type: DenseBlock}, {type: Convolution}, dataO]", "layers[2]",
     "after a dense"),
    ("layers: [dataI, {type: Convolution, count: [1, 100]}, dataO]", "count", "at most 64"),
    ("layers: [dataI, dataO]\ninput: [1, 8]", "input", "[C, H, W]"),
    ("layers: [dataI, dataO]\nclasses: 1", "classes", ">= 2"),
    ("layers: [dataI, dataO]\ninvalid: maybe", "invalid", "repair, reject"),
    ("layers: [dataI, dataO]\nspeed: 3", "tiny.yaml", "unknown key"),
    ("- a list", "tiny.yaml", "a mapping"),
])
def test_malformed_space_files_are_clear_input_errors(text, where, message):
    with pytest.raises(InputFileError) as e:
        parse_space(text, "tiny.yaml")
    assert message in e.value.message and where in (e.value.where or "")


def test_bad_space_specs():
    with pytest.raises(UsageError, match="space:seed-example"):
        load_space("space:nope")
    with pytest.raises(InputFileError, match="no such file"):
        load_space("/nonexistent/space.yaml")
    with pytest.raises(InputFileError, match="not valid TOML"):
        parse_space("layers = [", "x.toml")


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 31), shape=st.sampled_from([(1, 4, 4), (1, 8, 8), (1, 28, 28)]),
       name=st.sampled_from(["space:seed-example", "space:vgg-like"]))
def test_operators_only_emit_valid_genotypes_of_varying_length(seed, shape, name):
    space = load_space(name)
    rng = np.random.default_rng(seed)
    a, b = space.sample(rng, shape), space.sample(rng, shape)
    kids = list(crossover(space, a, b, rng, shape)) + [mutate(space, a, rng, shape)
                                                       for _ in range(5)]
    for g in kids:
        space.check(g)
        trace(g, shape)
    # a crossover child's slot holds its parents' genes of that slot, plus fresh ones only where
    # clamping had to fill the slot up to its minimum count (no repair happens at 28x28)
    if shape == (1, 28, 28):
        for child in kids[:2]:
            for i, seg in enumerate(segments(space, child)):
                pool = set(segments(space, a)[i]) | set(segments(space, b)[i])
                fresh = [g for g in seg if g not in pool]
                assert not fresh or len(seg) == space.slots[i].count[0]


def test_even_kernels_with_same_padding_are_refused():
    with pytest.raises(InputFileError, match="even kernel"):
        parse_space("layers: [dataI, {type: Convolution, kernel: [2, 4]}, dataO]", "e.yaml")
    with pytest.raises(InputFileError, match="even kernel"):
        parse_space("layers: [dataI, {type: Convolution+Relu, kernel: 4}, dataO]", "e.yaml")
    space = parse_space("layers: [dataI, {type: Convolution, kernel: 4, padding: valid}, dataO]",
                        "v.yaml")
    g = Genotype((Gene("convolution", 0, (("kernel", 4), ("maps", 16), ("padding", "valid"),
                                          ("stride", 1))),))
    space.check(g)
    model = to_onnx(g, (1, 8, 8), 10)  # 8 -> 5: onnxruntime agrees with the traced shape
    assert trace(g, (1, 8, 8))[0] == (16, 5, 5)
    ort.InferenceSession(model.SerializeToString()).run(None, {"input": np.zeros((1, 1, 8, 8),
                                                                                  np.float32)})


def test_reject_mode_operators_keep_parents_instead_of_invalid_children():
    space = parse_space("""
invalid: reject
layers:
  - dataI
  - {type: Pooling, count: [0, 4], kernel: 2, stride: 2}
  - {type: DenseBlock, neurons: 8}
  - dataO
""", "r.yaml")
    rng = np.random.default_rng(0)
    shape = (1, 4, 4)  # at most 2 poolings fit
    seen = set()
    g = space.sample(rng, shape)
    for _ in range(100):
        g = mutate(space, g, rng, shape)
        trace(g, shape)
        seen.add(len(g.layers))
    assert seen <= {1, 2, 3} and len(seen) > 1


def test_mutation_and_crossover_change_lengths():
    space = load_space("space:seed-example")
    rng = np.random.default_rng(3)
    lengths, kinds = set(), set()
    g = space.sample(rng, (1, 28, 28))
    for _ in range(200):
        child = mutate(space, g, rng, (1, 28, 28))
        lengths.add(len(child.layers) - len(g.layers))
        g = child
    assert {-1, 0, 1} <= lengths
    a, b = space.sample(rng, (1, 28, 28)), space.sample(rng, (1, 28, 28))
    for _ in range(50):
        x, y = crossover(space, a, b, rng, (1, 28, 28))
        kinds.add(tuple(len(s) for s in segments(space, x)))
    assert len(kinds) > 3
