"""Property test of the lowering: random chains and branches of conv/pool/dense/concat/add.

For every generated network the csdf graph must be consistent and live with one firing cycle per
inference, every channel must carry in one iteration exactly what it is fed, and every consumer must
take in total (input channel + reuse loop) what its block reads from the tensor, counted here by brute
force over the window's row sets (independent of aloha_ir.rowflow's interval arithmetic).
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aloha_ir import rle
from aloha_ir.dialects import csdf, nn
from aloha_ir.passmanager import PassManager
from aloha_ir.shapes import conv_out_shape
from frontends.onnx.importer import import_model
from frontends.zoo import NetBuilder


def _window(draw, shape):
    """Kernel, stride, pads (top, left, bottom, right) that keep the output at least 1 x 1."""
    _, _, h, w = shape
    k = draw(st.integers(1, 4))
    s = draw(st.integers(1, 3))
    pads = [draw(st.integers(0, k - 1)) for _ in range(4)]
    out = conv_out_shape(shape, 1, (k, k), (s, s), pads, (1, 1))
    if out[2] < 1 or out[3] < 1:
        return 1, 1, [0, 0, 0, 0]
    return k, s, pads


def _random_net(draw) -> tuple[NetBuilder, str]:
    c = draw(st.integers(1, 3))
    h = draw(st.integers(1, 12))
    w = draw(st.integers(1, 5))
    b = NetBuilder("prop", (1, c, h, w), seed=1)
    x = "input"
    for _ in range(draw(st.integers(1, 5))):
        shape = b.shapes[x]
        kind = draw(st.sampled_from(["conv", "pool", "concat", "add", "residual"]))
        k, s, pads = _window(draw, shape)
        if kind == "conv":
            x = b.conv(x, draw(st.integers(1, 4)), k, s, pads=pads)
        elif kind == "pool":
            kind = draw(st.sampled_from(["MaxPool", "AveragePool"]))
            x = b.pool(x, k, s, kind, pads=pads)
        elif kind in ("concat", "add"):
            c1 = draw(st.integers(1, 4))
            c2 = c1 if kind == "add" else draw(st.integers(1, 4))
            left = b.conv(x, c1, k, s, pads=pads)
            right = b.pool(b.conv(x, c2, 1, pad=0), k, s, "MaxPool", pads=pads) if kind == "concat" \
                else b.conv(x, c2, k, s, pads=pads)
            x = b.concat([left, right]) if kind == "concat" else b.add(left, right)
        else:  # residual: same-size conv added to its input
            x = b.add(x, b.conv(x, shape[1], 3, 1, 1))
    if draw(st.booleans()):
        x = b.dense(b.flatten(b.gap(x) if draw(st.booleans()) else x), draw(st.integers(1, 5)))
    return b, x


def _rows_read(op) -> int:
    """Rows of its input a block reads in one inference, counting a row once per firing that uses it,
    plus rows no firing uses (still consumed so the channel balances)."""
    h_in = nn.shape_of(op.operands[0])[2]
    h_out = nn.shape_of(op.results[0])[2]
    k, s, top = op.prop_ints("kernel")[0], op.prop_ints("strides")[0], op.prop_ints("pads")[0]
    used, total = set(), 0
    for j in range(h_out):
        rows = {j * s - top + i for i in range(k)} & set(range(h_in))
        total += len(rows)
        used |= rows
    return total + h_in - len(used)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_networks_lower_to_consistent_live_balanced_graphs(data):
    b, out = _random_net(data.draw)
    module = import_model(b.model(out))
    result = PassManager.parse("convert-nn-to-csdf,analyze-repetition").run(module)
    report = result.report("analyze-repetition")
    (g,) = csdf.csdf_graphs(module)
    assert set(report.repetition.values()) == {1}  # one inference = one cycle of every actor
    actors = g.actor_map()
    for ch in g.channels():
        assert rle.total(ch.prod_runs) == rle.total(ch.cons_runs), ch.sym_name.data
        assert rle.length(ch.prod_runs) == actors[ch.src_name].phase_count
        assert rle.length(ch.cons_runs) == actors[ch.dst_name].phase_count
    blocks = {op.attributes["name"].data: op for op in module.ops.first.ops
              if "name" in op.attributes}
    taken: dict[tuple[str, str], int] = {}
    for ch in g.channels():
        if ch.dst_port.data.startswith(("in", "reuse_in")):
            port = ch.dst_port.data.replace("reuse_", "")
            taken[(ch.dst_name, port)] = taken.get((ch.dst_name, port), 0) + rle.total(ch.cons_runs)
    for a in g.actors():
        op = a.block_in(blocks)
        if op is None:
            continue
        ins = [v for v in op.operands if not isinstance(v.owner, nn.ConstOp)]
        for port, v in enumerate(ins):
            shape = nn.shape_of(v)
            got = taken[(a.sym_name.data, f"in{port}")]
            windowed = isinstance(op, nn.ConvOp) or (isinstance(op, nn.PoolOp) and not op.is_global)
            if windowed:
                row_tokens = math.prod(shape) // shape[2]
                assert got == _rows_read(op) * row_tokens, a.sym_name.data
                assert a.phase_count == nn.shape_of(op.results[0])[2]
            else:
                assert got == math.prod(shape), a.sym_name.data
        # what the actor produces in one inference is its whole output tensor
        produced = {rle.total(c.prod_runs) for c in g.channels()
                    if c.src_name == a.sym_name.data and not c.is_self_loop}
        assert produced <= {math.prod(nn.shape_of(op.results[0]))}
