"""The csdf dialect, the nn -> csdf lowering and analyze-repetition.

Expected rates are hand computations: reference/csdf.md's normative worked example, the seeds'
U12 = 6 x 18, SDF3's own buffer-sizing example, and further cases worked out in the comments.
"""

from __future__ import annotations

import pytest

from aloha_ir import dataflow, rle, rowflow
from aloha_ir.dialects import csdf
from aloha_ir.errors import IRParseError, IRVerifyError, PassError
from aloha_ir.passmanager import PassManager
from aloha_ir.textio import parse_module, print_module, verify_module
from frontends.onnx.importer import import_model
from frontends.zoo import NetBuilder
from passes.convert_nn_to_csdf import lower_graph


def lower(builder: NetBuilder, out: str) -> csdf.GraphOp:
    module = import_model(builder.model(out))
    PassManager.parse("convert-nn-to-csdf,analyze-repetition").run(module)
    (graph,) = csdf.csdf_graphs(module)
    return graph


def channels_into(graph: csdf.GraphOp, actor: str) -> dict[str, csdf.ChannelOp]:
    return {c.dst_port.data: c for c in graph.channels() if c.dst_name == actor}


def actor_of(graph: csdf.GraphOp, kind_prefix: str) -> csdf.ActorOp:
    (a,) = [a for a in graph.actors() if a.kind.data.startswith(kind_prefix)]
    return a


def rows(channel_runs: rle.Runs, row_tokens: int) -> list[int]:
    values = rle.expand(channel_runs)
    assert all(v % row_tokens == 0 for v in values)
    return [v // row_tokens for v in values]


# ---------------------------------------------------------------------------------------------------
# reference/csdf.md's worked example, through the whole lowering


def test_conv3x3_stride1_pad1_h6_and_the_seeds_u12():
    b = NetBuilder("t", (1, 3, 6, 6))
    g = lower(b, b.conv("input", 4, 3, 1, 1))
    conv = actor_of(g, "conv3x3")
    assert conv.phase_count == 6
    ins = channels_into(g, conv.sym_name.data)
    # the seeds: an RGB 6x6 input actor produces 6 rows of 3 x 6 = 18 tokens
    assert ins["in0"].prod_runs == ((6, 18),)
    assert rows(ins["in0"].cons_runs, 18) == [2, 1, 1, 1, 1, 0]
    loop = ins["reuse_in0"]
    assert loop.is_self_loop and loop.initial_tokens == 0
    assert rows(loop.cons_runs, 18) == [0, 2, 2, 2, 2, 2]
    assert rows(loop.prod_runs, 18) == [2, 2, 2, 2, 2, 0]
    assert rle.total(loop.prod_runs) == rle.total(loop.cons_runs) == 10 * 18
    # one firing per output row, each computing 4 channels x 6 columns with 3*3*3 MACs
    assert conv.times_runs == ((6, 24),) and conv.work_runs == ((6, 24 * 27),)
    assert set(conv.memory_units()) == {"weights", "bias"}


@pytest.mark.parametrize("h, new, reuse_out, reuse_in", [
    (7, [3, 2, 2], [1, 1, 0], [0, 1, 1]),
    (8, [3, 2, 3], [1, 1, 0], [0, 1, 1]),  # row 7 is never used but still consumed, last firing
])
def test_conv3x3_stride2_pad0(h, new, reuse_out, reuse_in):
    b = NetBuilder("t", (1, 2, h, 5))
    g = lower(b, b.conv("input", 3, 3, 2, 0))
    ins = channels_into(g, actor_of(g, "conv3x3").sym_name.data)
    assert rows(ins["in0"].cons_runs, 10) == new
    assert rows(ins["reuse_in0"].prod_runs, 10) == reuse_out
    assert rows(ins["reuse_in0"].cons_runs, 10) == reuse_in


def test_maxpool2x2_stride2_has_no_self_loop():
    b = NetBuilder("t", (1, 4, 6, 6))
    g = lower(b, b.pool("input", 2, 2))
    pool = actor_of(g, "maxpool2x2")
    ins = channels_into(g, pool.sym_name.data)
    assert set(ins) == {"in0"}
    assert rows(ins["in0"].cons_runs, 24) == [2, 2, 2]


# ---------------------------------------------------------------------------------------------------
# further hand-computed cases


def test_asymmetric_padding():
    # 3x3, stride 1, pads top 0 / bottom 2, H = 5 -> 5 output rows reading [j, j+2] clipped to 0..4:
    # (0-2) (1-3) (2-4) (3-4) (4-4): new 3,1,1,0,0; kept for the next firing 2,2,2,1,0
    b = NetBuilder("t", (1, 1, 5, 5))
    g = lower(b, b.conv("input", 2, 3, pads=[0, 1, 2, 1]))
    ins = channels_into(g, actor_of(g, "conv3x3").sym_name.data)
    assert rows(ins["in0"].cons_runs, 5) == [3, 1, 1, 0, 0]
    assert rows(ins["reuse_in0"].prod_runs, 5) == [2, 2, 2, 1, 0]
    assert rows(ins["reuse_in0"].cons_runs, 5) == [0, 2, 2, 2, 1]
    # pads top 2 / bottom 0: [j-2, j] -> (0-0) (0-1) (0-2) (1-3) (2-4): one new row per firing
    b = NetBuilder("t", (1, 1, 5, 5))
    g = lower(b, b.conv("input", 2, 3, pads=[2, 1, 0, 1]))
    ins = channels_into(g, actor_of(g, "conv3x3").sym_name.data)
    assert rows(ins["in0"].cons_runs, 5) == [1, 1, 1, 1, 1]
    assert rows(ins["reuse_in0"].prod_runs, 5) == [1, 2, 2, 2, 0]


DILATED = """builtin.module {
  nn.graph @net {
    %0 = nn.input {port = "x"} : tensor<1x1x6x6xf32>
    %1 = nn.const {splat = 1.0 : f64} : tensor<1x1x3x3xf32>
    %2 = nn.conv %0, %1 {kernel = array<i64: 3, 3>, strides = array<i64: 1, 1>, pads = array<i64: 2, 2, 2, 2>, dilations = array<i64: 2, 2>, group = 1 : i64, name = "dil"} : tensor<1x1x6x6xf32>
    nn.output %2 {ports = ["y"]}
  }
}
"""


def test_dilation_holds_the_whole_span():
    # 3x3 dilation 2 (span 5), pad 2, H = 6: firing j reads [j-2, j+2] clipped:
    # (0-2) (0-3) (0-4) (1-5) (2-5) (3-5): new 3,1,1,1,0,0; overlaps 3,4,4,4,3
    module = parse_module(DILATED)
    (graph,) = [op for op in module.ops]
    g = lower_graph(graph)
    g.check()
    ins = channels_into(g, "dil")
    assert rows(ins["in0"].cons_runs, 6) == [3, 1, 1, 1, 0, 0]
    assert rows(ins["reuse_in0"].prod_runs, 6) == [3, 4, 4, 4, 3, 0]
    assert rows(ins["reuse_in0"].cons_runs, 6) == [0, 3, 4, 4, 4, 3]


def test_1x1_conv_reads_one_row_per_firing():
    b = NetBuilder("t", (1, 8, 4, 3))
    g = lower(b, b.conv("input", 2, 1, pad=0))
    ins = channels_into(g, actor_of(g, "conv1x1").sym_name.data)
    assert set(ins) == {"in0"} and ins["in0"].cons_runs == ((4, 24),)


def test_global_pooling_then_dense_after_flatten():
    b = NetBuilder("t", (1, 5, 4, 3))
    x = b.conv("input", 6, 3)
    g = lower(b, b.dense(b.flatten(b.gap(x)), 7))
    gap = actor_of(g, "global_avgpool")
    # reads the 4 rows of 6 x 3 tokens one per firing, produces the 6 averages at the last one
    assert gap.phase_count == 4
    assert channels_into(g, gap.sym_name.data)["in0"].cons_runs == ((4, 18),)
    (out,) = [c for c in g.channels() if c.src_name == gap.sym_name.data]
    assert out.prod_runs == ((3, 0), (1, 6))
    # [1, 6, 1, 1] is one row of 6 tokens: flatten and dense have one phase
    flat, dense = actor_of(g, "flatten"), actor_of(g, "dense")
    assert flat.phase_count == dense.phase_count == 1
    assert channels_into(g, dense.sym_name.data)["in0"].cons_runs == ((1, 6),)
    assert dense.work_runs == ((1, 42),) and dense.times_runs == ((1, 7),)


def test_dense_after_flatten_of_a_feature_map():
    b = NetBuilder("t", (1, 2, 5, 3))
    g = lower(b, b.dense(b.flatten("input"), 4))
    flat = actor_of(g, "flatten")
    assert flat.phase_count == 5
    assert channels_into(g, flat.sym_name.data)["in0"].cons_runs == ((5, 6),)
    (out,) = [c for c in g.channels() if c.src_name == flat.sym_name.data]
    assert out.prod_runs == ((4, 0), (1, 30)) and out.cons_runs == ((1, 30),)


def test_concat_and_residual_add_are_row_aligned():
    b = NetBuilder("t", (1, 3, 6, 4))
    a1 = b.conv("input", 2, 3)
    a2 = b.conv("input", 5, 1, pad=0)
    cat = b.concat([a1, a2])
    res = b.add(b.conv(cat, 7, 3), b.conv(cat, 7, 1, pad=0))
    g = lower(b, res)
    concat = actor_of(g, "concat")
    ins = channels_into(g, concat.sym_name.data)
    assert concat.phase_count == 6
    assert ins["in0"].cons_runs == ((6, 8),) and ins["in1"].cons_runs == ((6, 20),)
    add = actor_of(g, "add")
    ins = channels_into(g, add.sym_name.data)
    assert ins["in0"].cons_runs == ins["in1"].cons_runs == ((6, 28),)
    # the input feeds two convs: one output port each, the same production
    from_input = [c for c in g.channels() if c.src_name == "input"]
    assert sorted(c.src_port.data for c in from_input) == ["out0", "out1"]
    assert all(c.prod_runs == ((6, 12),) for c in from_input)


def test_rowflow_rules_directly():
    # stride larger than the window: rows 2 and 5 are skipped but consumed with the next firing
    r = rowflow.input_rates(rowflow.window_ranges(6, 2, 2, 3, 0), 6)
    assert r.new == (2, 4) and not r.has_reuse
    # reflect padding reads rows in decreasing order: the monotone hull keeps them
    assert rowflow.monotone_hull([(2, 2), (1, 1), (0, 0), (1, 1), (2, 2)]) == \
        [(0, 2), (0, 2), (0, 2), (1, 2), (2, 2)]
    assert rowflow.spread_ranges(4, 4) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert rowflow.rows_of((1, 3, 6, 6)) == (6, 18) and rowflow.rows_of((1, 10)) == (1, 10)


# ---------------------------------------------------------------------------------------------------
# algorithms


def test_sdf3_buffer_sizing_example_repetition_vector():
    # reference/csdf.md: a (out 3,1), b (in 4,2; out 2,4), c (in 6,6): firings a=6, b=4, c=2
    phases = {"a": 2, "b": 2, "c": 2}
    edges = [dataflow.Edge("ab", "a", "b", ((1, 3), (1, 1)), ((1, 4), (1, 2))),
             dataflow.Edge("bc", "b", "c", ((1, 2), (1, 4)), ((2, 6),))]
    edges += [dataflow.Edge(f"{x}{x}", x, x, ((2, 1),), ((2, 1),), 1) for x in "abc"]
    r = dataflow.repetition_vector(phases, edges)
    assert dataflow.firings(phases, r) == {"a": 6, "b": 4, "c": 2}
    dataflow.check_live(phases, edges, r)


def test_inconsistent_and_deadlocking_graphs_name_channel_and_actors():
    phases = {"a": 1, "b": 1, "c": 1}
    edges = [dataflow.Edge("ab", "a", "b", ((1, 2),), ((1, 1),)),
             dataflow.Edge("bc", "b", "c", ((1, 1),), ((1, 1),)),
             dataflow.Edge("ac", "a", "c", ((1, 1),), ((1, 1),))]
    with pytest.raises(dataflow.DataflowError) as e:
        dataflow.repetition_vector(phases, edges)
    assert e.value.channel in ("ab", "bc", "ac") and "@" in str(e.value)
    # a two-actor cycle without initial tokens deadlocks; one token on the back edge fixes it
    phases = {"a": 1, "b": 1}
    cycle = [dataflow.Edge("ab", "a", "b", ((1, 1),), ((1, 1),)),
             dataflow.Edge("ba", "b", "a", ((1, 1),), ((1, 1),))]
    with pytest.raises(dataflow.DataflowError, match="deadlock") as e:
        dataflow.check_live(phases, cycle)
    assert e.value.channel in ("ab", "ba")
    dataflow.check_live(phases, [cycle[0], dataflow.Edge("ba", "b", "a", ((1, 1),), ((1, 1),), 1)])


# ---------------------------------------------------------------------------------------------------
# the dialect: text round trip, malformed text


GOOD = """builtin.module {
  csdf.graph @g {
    csdf.actor @a "input" phases 2 times [2 x 3] work [2 x 0]
    csdf.actor @b "conv3x3" phases 2 times [2 x 3] work [1 x 9, 1 x 18]
    csdf.channel @c0 @a out0 -> @b in0 prod [2 x 3] cons [1 x 6, 1 x 0] init 0 : f32
    csdf.channel @b_reuse0 @b reuse_out0 -> @b reuse_in0 prod [1 x 3, 1 x 0] cons [1 x 0, 1 x 3] init 0 : f32
  }
}
"""


def test_text_round_trip():
    module = parse_module(GOOD)
    verify_module(module)
    assert print_module(module) == GOOD


@pytest.mark.parametrize("edit, message", [
    (("cons [1 x 0, 1 x 3]", "cons [1 x 0, 1 x 2]"), "inconsistent graph: channel @b_reuse0"),
    (("@a out0 -> @b in0", "@a out0 -> @zz in0"), "dangling channel"),
    (("init 0 : f32\n    csdf.channel @b_", "init -2 : f32\n    csdf.channel @b_"),
     "negative tokens"),
    (("cons [1 x 6, 1 x 0]", "cons [1 x 6, 2 x 0]"), "equal phase counts"),
    (("prod [1 x 3, 1 x 0] cons [1 x 0, 1 x 3]", "prod [1 x 0, 1 x 3] cons [1 x 3, 1 x 0]"),
     "deadlock"),
    (("work [2 x 0]", "work [2 x -1]"), "negative value"),
    (("init 0 : f32\n  }", "init 0 : f32\n    csdf.channel @c1 @a out0 -> @b in1 prod [2 x 3] "
                              "cons [1 x 6, 1 x 0] init 0 : f32\n  }"), "already used"),
])
def test_malformed_csdf_text_names_the_op(edit, message):
    text = GOOD.replace(*edit)
    assert text != GOOD
    with pytest.raises(IRVerifyError, match=message) as e:
        verify_module(parse_module(text))
    assert "csdf." in str(e.value)


def test_syntax_errors_have_a_position():
    with pytest.raises(IRParseError) as e:
        parse_module(GOOD.replace("prod [2 x 3]", "prod [2 3]"), "g.mlir")
    assert "g.mlir:5:" in str(e.value)


def test_analyze_repetition_annotates_and_requires_a_csdf_graph():
    module = parse_module(GOOD)
    result = PassManager.parse("analyze-repetition").run(module)
    report = result.report("analyze-repetition")
    assert report.firings == {"a": 2, "b": 2} and report.iteration_firings == 4
    b = csdf.csdf_graphs(module)[0].actor_map()["b"]
    assert b.firings == 2
    b2 = NetBuilder("t", (1, 1, 4, 4))
    empty = import_model(b2.model(b2.relu("input")))
    with pytest.raises(PassError, match="convert-nn-to-csdf first"):
        PassManager.parse("analyze-repetition").run(empty)


def test_lowering_again_replaces_the_csdf_graph():
    b = NetBuilder("t", (1, 1, 4, 4))
    module = import_model(b.model(b.relu("input")))
    PassManager.parse("convert-nn-to-csdf,convert-nn-to-csdf").run(module)
    assert len(csdf.csdf_graphs(module)) == 1
    verify_module(module)


UPSAMPLE = """builtin.module {
  nn.graph @net {
    %0 = nn.input {port = "x"} : tensor<1x2x3x4xf32>
    %1 = nn.resize %0 {mode = "nearest", scales = array<f64: 2.0, 2.0>, coord_mode = "asymmetric", nearest_mode = "floor", name = "up"} : tensor<1x2x6x8xf32>
    nn.output %1 {ports = ["y"]}
  }
}
"""


def test_nearest_upsample_reads_each_row_once_and_reuses_it():
    # output rows 0..5 read input rows 0,0,1,1,2,2: a new row every other firing, kept for the next
    g = lower_graph(next(iter(parse_module(UPSAMPLE).ops)))
    g.check()
    ins = channels_into(g, "up")
    assert rows(ins["in0"].cons_runs, 8) == [1, 0, 1, 0, 1, 0]
    assert rows(ins["reuse_in0"].prod_runs, 8) == [1, 0, 1, 0, 1, 0]
    assert rows(ins["reuse_in0"].cons_runs, 8) == [0, 1, 0, 1, 0, 1]
    (out,) = [c for c in g.channels() if c.src_name == "up" and not c.is_self_loop]
    assert out.prod_runs == ((6, 16),)


def test_token_type_follows_the_tensor_element_type():
    text = """builtin.module {
  nn.graph @q {
    %0 = nn.input {port = "x"} : tensor<1x2x4x4x!nn.fixed<8, 4>>
    %1 = nn.act %0 {kind = "relu", name = "r"} : tensor<1x2x4x4x!nn.fixed<8, 4, unsigned>>
    nn.output %1 {ports = ["y"]}
  }
}
"""
    module = parse_module(text)
    PassManager.parse("convert-nn-to-csdf").run(module)
    (g,) = csdf.csdf_graphs(module)
    tokens = {c.dst_name: c for c in g.channels()}
    assert str(tokens["r"].token) == "!nn.fixed<8, 4>" and tokens["r"].token_bytes == 1
    assert str(tokens["output_y"].token) == "!nn.fixed<8, 4, unsigned>"
    from backends.csdf.sdf3 import to_sdf3
    assert '<tokenSize sz="8" />' in to_sdf3(g)
    verify_module(parse_module(print_module(module)))


GOLDEN_IN = """builtin.module {
  nn.graph @net {
    %0 = nn.input {port = "x"} : tensor<1x3x6x6xf32>
    %1 = nn.const {splat = 1.0 : f64} : tensor<4x3x3x3xf32>
    %2 = nn.const {splat = 0.0 : f64} : tensor<4xf32>
    %3 = nn.conv %0, %1, %2 {kernel = array<i64: 3, 3>, strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, group = 1 : i64, activation = "relu", name = "conv"} : tensor<1x4x6x6xf32>
    %4 = nn.pool %3 {kind = "max", kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, name = "pool"} : tensor<1x4x3x3xf32>
    %5 = nn.flatten %4 {axis = 1 : i64, name = "flat"} : tensor<1x36xf32>
    %6 = nn.const {splat = 1.0 : f64} : tensor<10x36xf32>
    %7 = nn.dense %5, %6 {name = "fc"} : tensor<1x10xf32>
    nn.output %7 {ports = ["y"]}
  }
}
"""

# checked by hand: conv times = 4 channels x 6 columns, work x 27 MACs; the input reads rows 0-1, then
# one row per firing, none at the last; pool reads 2 rows of 4 x 6; flatten gathers 3 rows of 12 and
# emits 36 at its last firing; dense 10 x 36 MACs in one phase. Row plans (csdf.rows, (lo, hi) per
# phase): conv output row j reads rows j-1..j+1 clipped to 0..5; pool row j rows 2j..2j+1; flatten
# (reads whole) one row per phase; dense its one row; conv and pool read rows, flatten and fc whole.
GOLDEN_OUT = """  csdf.graph @net_csdf from @net {
    csdf.actor @x "input" block @net::@x phases 6 times [6 x 18] work [6 x 0]
    csdf.actor @conv "conv3x3" block @net::@conv phases 6 times [6 x 24] work [6 x 648] memory {weights = tensor<4x3x3x3xf32>, bias = tensor<4xf32>} attributes {csdf.reads = "rows"}
    csdf.actor @pool "maxpool2x2" block @net::@pool phases 3 times [3 x 12] work [3 x 48] attributes {csdf.reads = "rows"}
    csdf.actor @flat "flatten" block @net::@flat phases 3 times [3 x 12] work [3 x 0] attributes {csdf.reads = "whole"}
    csdf.actor @fc "dense" block @net::@fc phases 1 times [1 x 10] work [1 x 360] memory {weights = tensor<10x36xf32>} attributes {csdf.reads = "whole"}
    csdf.actor @output_y "output" port "y" phases 1 times [1 x 10] work [1 x 0]
    csdf.channel @c0 @x out0 -> @conv in0 prod [6 x 18] cons [1 x 36, 4 x 18, 1 x 0] init 0 attributes {csdf.shape = array<i64: 1, 3, 6, 6>, csdf.rows = array<i64: 0, 1, 0, 2, 1, 3, 2, 4, 3, 5, 4, 5>} : f32
    csdf.channel @conv_reuse0 @conv reuse_out0 -> @conv reuse_in0 prod [5 x 36, 1 x 0] cons [1 x 0, 5 x 36] init 0 : f32
    csdf.channel @c1 @conv out0 -> @pool in0 prod [6 x 24] cons [3 x 48] init 0 attributes {csdf.shape = array<i64: 1, 4, 6, 6>, csdf.rows = array<i64: 0, 1, 2, 3, 4, 5>} : f32
    csdf.channel @c2 @pool out0 -> @flat in0 prod [3 x 12] cons [3 x 12] init 0 attributes {csdf.shape = array<i64: 1, 4, 3, 3>, csdf.rows = array<i64: 0, 0, 1, 1, 2, 2>} : f32
    csdf.channel @c3 @flat out0 -> @fc in0 prod [2 x 0, 1 x 36] cons [1 x 36] init 0 attributes {csdf.shape = array<i64: 1, 36>, csdf.rows = array<i64: 0, 0>} : f32
    csdf.channel @c4 @fc out0 -> @output_y in0 prod [1 x 10] cons [1 x 10] init 0 : f32
  }
"""


def test_lowering_text_in_text_out():
    module = parse_module(GOLDEN_IN)
    PassManager.parse("convert-nn-to-csdf").run(module)
    text = print_module(module)
    assert text[text.index("  csdf.graph"):].rstrip().removesuffix("}").rstrip() == \
        GOLDEN_OUT.rstrip()


# ---------------------------------------------------------------------------------------------------
# the link to the nn graph: symbols, and the cross-dialect verifier (issue 19 item 3)

LOWERED = GOLDEN_IN.rstrip().removesuffix("}") + GOLDEN_OUT + "}\n"


def test_nn_graph_is_the_symbol_table_of_its_blocks():
    """Before: two blocks could share a name and the lowering silently renamed one of them."""
    text = GOLDEN_IN.replace('name = "flat"', 'name = "pool"')
    with pytest.raises(IRVerifyError, match="two blocks are named 'pool'"):
        verify_module(parse_module(text))


def test_an_actor_refers_to_its_block_by_a_symbol_reference_xdsl_resolves():
    from xdsl.traits import SymbolTable

    module = parse_module(LOWERED)
    verify_module(module)
    (graph,) = csdf.csdf_graphs(module)
    assert graph.source_name == "net"
    found = {a.sym_name.data: SymbolTable.lookup_symbol(module, a.block)
             for a in graph.actors() if a.block is not None}
    assert {k: v.name for k, v in found.items()} == {
        "x": "nn.input", "conv": "nn.conv", "pool": "nn.pool", "flat": "nn.flatten",
        "fc": "nn.dense"}
    assert graph.actor_map()["output_y"].port.data == "y"
    assert print_module(parse_module(print_module(module))) == print_module(module)


def test_the_importer_gives_a_repeated_node_name_its_own_symbol():
    """Before: both Relu nodes were blocks named "r" (and a node named like the input shared the
    input's symbol); the lowering renamed one behind the user's back."""
    import onnx
    from onnx import TensorProto, helper

    from aloha_ir.dialects import nn
    vi = helper.make_tensor_value_info
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["a"], name="r"),
                           helper.make_node("Sigmoid", ["a"], ["b"], name="r"),
                           helper.make_node("Relu", ["b"], ["y"], name="x")], "g",
                          [vi("x", TensorProto.FLOAT, [1, 2, 3, 3])],
                          [vi("y", TensorProto.FLOAT, [1, 2, 3, 3])])
    module = import_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    verify_module(module)
    (net,) = [op for op in module.ops if isinstance(op, nn.GraphOp)]
    assert {k: v.name for k, v in net.blocks().items()} == {
        "x": "nn.input", "r": "nn.act", "r_2": "nn.act", "x_2": "nn.act"}
    before = print_module(module)
    PassManager.parse("convert-nn-to-csdf").run(module)
    assert print_module(module).startswith(before.rstrip().removesuffix("}"))  # source untouched


@pytest.mark.parametrize("edit, actor, what", [
    ("block @net::@pool phases", "@pool", "does not have"),  # a dangling reference
    ("block @net::@flat phases", "@pool", "lowered twice"),  # two actors of one block
    ("tensor<10x36xf32>} attributes", "@fc", "memory units of shapes"),  # a constant's shape
    ("prod [2 x 0, 1 x 36] cons [1 x 36] init 0 attributes {csdf.shape = array<i64: 1, 36>",
     "@flat", "produces 30 tokens"),  # a shape mismatch (rates and row plan edited together)
])
def test_the_verifier_names_the_actor_that_no_longer_matches_its_block(tmp_path, edit, actor, what):
    changed = {"block @net::@pool phases": "block @net::@pool9 phases",
               "block @net::@flat phases": "block @net::@pool phases",
               "tensor<10x36xf32>} attributes": "tensor<10x35xf32>} attributes",
               "prod [2 x 0, 1 x 36] cons [1 x 36] init 0 attributes {csdf.shape = array<i64: 1, 36>":
               "prod [2 x 0, 1 x 30] cons [1 x 30] init 0 attributes {csdf.shape = array<i64: 1, 30>"
               }[edit]
    assert LOWERED.count(edit) == 1
    text = LOWERED.replace(edit, changed)
    with pytest.raises(IRVerifyError, match=what) as e:
        verify_module(parse_module(text))
    assert e.value.exit_code == 7 and f"{actor} " in str(e.value)
    if edit.startswith("block @net::@flat"):  # the pool block: computed by @pool and @flat
        assert "actors @pool, @flat" in str(e.value)


def test_split_parts_of_one_block_verify_unless_their_channels_overlap():
    module = parse_module(LOWERED)
    PassManager.parse('partition{actors="conv:2" auto=false}').run(module)
    (graph,) = csdf.csdf_graphs(module)
    parts = [a for a in graph.actors() if a.split is not None]
    assert [a.block_name for a in parts] == ["conv", "conv"]
    parts[1].split = parts[0].split  # both compute channels 0..1
    with pytest.raises(IRVerifyError, match=r"split actors @conv_p0 and @conv_p1 both compute "
                                            r"output channels 0\.\.1"):
        verify_module(module)


def test_an_nn_transform_after_lowering_is_caught_not_blamed_on_the_platform():
    """Issue 19's reproducer 2: canonicalize fuses relu8 into its conv after lowering; before,
    verification passed and `map` said no PE of host-cpu lists relu."""
    from xdsl.context import Context

    from aloha_ir.dialects import nn
    from aloha_ir.verify import LoweringMismatch, verify_fast
    from frontends.zoo import load_zoo
    from passes.canonicalize import CanonicalizePass
    from passes.convert_nn_to_csdf import ConvertNnToCsdfPass
    module = load_zoo("mnist_cnn")
    ConvertNnToCsdfPass().apply(Context(), module)
    verify_fast(module)
    CanonicalizePass().apply(Context(), module)
    (net,) = [op for op in module.ops if isinstance(op, nn.GraphOp)]
    assert "relu8" not in net.blocks()  # fused: the conv now carries the relu
    with pytest.raises(LoweringMismatch, match=r"csdf.actor @relu8 refers to block "
                                               r"@mnist_cnn::@relu8"):
        verify_fast(module)


def test_reproducer_2_through_the_driver_is_a_users_error_naming_the_cause():
    import contextlib
    import io

    from alohac.main import main
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["compile", "zoo:mnist_cnn", "--target", "host-cpu", "-p",
                     "convert-nn-to-csdf,canonicalize,partition,map", "-o", "/nonexistent/out"])
    # refused up front (the pass's declared requirements: 8) or caught by the verifier (7)
    assert code in (7, 8), err.getvalue()
    assert "no PE" not in err.getvalue() and "convert-nn-to-csdf" in err.getvalue()


# ---------------------------------------------------------------------------------------------------
# analyses' results: typed annotations in the csdf namespace (issue 19 item 3)


def _mapped(text: str = LOWERED):
    module = parse_module(text)
    PassManager.parse("map{target=host-cpu},analyze-schedule").run(module)
    (graph,) = csdf.csdf_graphs(module)
    return module, graph


def test_annotations_are_typed_namespaced_and_round_trip():
    """Before: `pe`, `buffer`, ... were bare string keys read with attributes.get("pe"): a typo
    read None silently, and the text did not say which were the compiler's."""
    from backends.csdf.jsonform import to_json

    module, graph = _mapped()
    conv = graph.actor_map()["conv"]
    assert conv.pe.startswith("core") and conv.pe_kind == "cpu" and conv.cost_s > 0
    # map shares the cost (ns) exactly over the phases in proportion to their work: 6 equal phases
    total = round(conv.cost_s * 1e9)
    assert sum(c * v for c, v in conv.exec_times) == total
    assert {v for _, v in conv.exec_times} <= {total // 6, total // 6 + 1}
    assert graph.platform == "host-cpu" and graph.latency_s > 0
    assert all(isinstance(c.buffer, int) and c.buffer >= 1 for c in graph.channels())
    text = print_module(module)
    assert 'csdf.pe = "core' in text and "csdf.buffer = " in text and "csdf.platform = " in text
    assert ' pe = "' not in text  # no bare key left
    assert print_module(parse_module(text)) == text
    with pytest.raises(AttributeError):
        conv.pee  # noqa: B018 (a misspelt reader)
    exported = {a["name"]: a["attributes"] for a in to_json(graph)["actors"]}
    assert exported["conv"]["pe"] == conv.pe  # the JSON keeps its plain keys


def test_a_misspelt_annotation_write_is_an_attribute_error_naming_the_annotation():
    """Before: `actor.pee = "x"` set a plain Python attribute that nothing reads, the IR kept no
    trace of it and the verifier passed."""
    module, graph = _mapped()
    conv, channel = graph.actor_map()["conv"], graph.channels()[0]
    before = print_module(module)
    with pytest.raises(AttributeError, match=r"csdf\.actor @conv has no annotation 'pee' "
                       r"\(did you mean 'pe'\?\).*: cost_s, end_s, exec_times, .*, pe, pe_kind,"):
        conv.pee = "core1"
    with pytest.raises(AttributeError, match=r"'bufer' \(did you mean 'buffer'\?\)"):
        channel.bufer = 4
    with pytest.raises(AttributeError, match=r"'latncy_s' \(did you mean 'latency_s'\?\)"):
        graph.latncy_s = 1.0
    with pytest.raises(AttributeError, match="has no setter"):  # a read-only property says so
        conv.phase_count = 3
    assert print_module(module) == before  # nothing was written
    conv.pe, channel.buffer = "core1", 4  # the real ones still write the IR
    text = print_module(module)
    assert text != before and "csdf.buffer = 4 : i64" in text
    assert print_module(parse_module(text)) == text


@pytest.mark.parametrize("edit, to, message", [
    ('csdf.pe = "', 'csdf.pee = "', r"unknown annotation csdf\.pee"),
    ("csdf.buffer = ", 'csdf.buffer = "big", other = ', r"csdf\.buffer must be of kind int"),
])
def test_a_misspelt_or_mistyped_annotation_in_ir_text_is_a_verifier_error(edit, to, message):
    module, _ = _mapped()
    bad = print_module(module).replace(edit, to, 1)
    with pytest.raises(IRVerifyError, match=message):
        verify_module(parse_module(bad))
