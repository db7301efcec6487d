"""Every nn op of the dialect has an entry in each per-op table keyed by op class: its shape rule
(the op class's own `check`, aloha_ir/dialects/nn.py), its MACs (aloha_ir/cost.py), the format of
its quantized output (quant/formats.py), whether a width change (aloha_ir/channels.py) and a
pruned kernel's removal (passes/prune.py) pass through it, the constants and staging buffer the
program stores for it and whether its kernel runs once per item of a batch
(passes/analyze_memory.py), its cost-model Layer's window (passes/target.py),
the C kernel record (backends/codegen/kernels), the numpy fixed-point reference, the torch
fixed-point and the torch float executors, the ONNX export (backends/onnx/export.py) and the row
plan of the csdf lowering (passes/convert_nn_to_csdf.py). An op added to the dialect without one
fails here, naming the op and the table; an op that needs none, or lacks one for a known reason,
is listed below with why."""

import sys

import pytest

from aloha_ir.dialects import nn

DIALECT_OPS = list(nn.NN.operations)

# Ops that compute nothing in a frame, so no kernel table has (or needs) an entry for them.
NEEDS_NO_KERNEL = {
    nn.GraphOp: "the container of the others",
    nn.InputOp: "the network's input: the csdf input actor streams it in, the executors take it",
    nn.OutputOp: "the network's output: the csdf output actor streams it out",
    nn.ConstOp: "a weight: the kernel records put it in the weights blob, the executors read it "
                "from the weight store",
}

# The ONNX export writes the graph's ports itself; a constant is an initializer, so has an entry.
NEEDS_NO_ONNX_EXPORT = {
    nn.GraphOp: "the container of the others: the ONNX graph itself",
    nn.InputOp: "GraphExporter.export declares it as a graph input",
    nn.OutputOp: "GraphExporter.export declares its ports as graph outputs (Identity or Cast)",
}

# The row plan gives the input its own actor; a constant and an output have none of their own.
NEEDS_NO_ROW_PLAN = {
    nn.GraphOp: "the container of the others: lower_graph builds the csdf graph from it",
    nn.OutputOp: "lower_graph builds one sink actor per output port",
    nn.ConstOp: "a weight: the actor of the block reading it lists it as a memory unit",
}

# The shape rule is the op class's own `check` (its verifier runs it); the graph verifies itself.
NEEDS_NO_SHAPE_RULE = {
    nn.GraphOp: "no block: GraphOp.verify_ checks its blocks' order, ports and names",
}

# Costs and memory count blocks (aloha_ir.cost.is_block): the graph, its constants and its output
# are none.
NO_BLOCK = {
    nn.GraphOp: "the container of the others",
    nn.OutputOp: "no block: it marks the graph's outputs",
    nn.ConstOp: "no block: a weight, counted and stored with the blocks reading it",
}
NEEDS_NO_MACS = NO_BLOCK

# choose_formats formats every block's output; the input's comes with its normalisation.
NEEDS_NO_OUTPUT_FORMAT = {
    nn.GraphOp: "the container of the others",
    nn.InputOp: "choose_formats gives it the input bits over its value_range (or the calibrated "
                "range), shared by the mul/add normalising it",
    nn.OutputOp: "no value of its own: the outputs keep their producers' formats",
    nn.ConstOp: "a weight: choose_formats formats it with the block reading it (weight, bias or "
                "constant operand)",
}

# Width changes (align-to-arch, prune) pass through the channel-wise ops; the others pin the width
# of their group (aloha_ir.channels.WidthGroups).
NOT_CHANNELWISE = {
    nn.GraphOp: "the container of the others",
    nn.InputOp: "the network's input: its width is the model's interface",
    nn.OutputOp: "the network's outputs: their widths are the model's interface",
    nn.ConstOp: "a weight: retarget_channels cuts it with the block reading it",
    nn.ConvOp: "mixes channels: a group-1 conv starts a width group (WidthGroups), a grouped one "
               "pins it",
    nn.DenseOp: "rank 2, no channel axis: a flatten feeding dense layers follows a width change",
    nn.ConcatOp: "its channels are its inputs' one after the other",
    nn.ReshapeOp: "may move channels to other axes",
    nn.FlattenOp: "moves channels into the feature axis",
    nn.TransposeOp: "may move channels to other axes",
    nn.SliceOp: "may cut the channels",
    nn.ChannelShuffleOp: "interleaves the channels of its groups",
    nn.ReduceOp: "may reduce over the channels",
}

# Removing pruned kernels passes only through channel-wise ops that keep a zero channel zero.
NOT_ZERO_PRESERVING = {
    **NOT_CHANNELWISE,
    nn.BatchNormOp: "adds its bias: a zero channel comes out as the bias",
    nn.LrnOp: "a channel's value depends on its neighbours, which removing one changes",
    nn.AddOp: "adds the channel of another operand, which need not be zero",
    nn.MulOp: "the channel of its other operand would be removed too, which need not be zero "
              "(not modelled)",
}

# The constants the program stores for a block (analyze-memory's parameter_bytes).
STORES_NO_CONSTANTS = {
    **NO_BLOCK,
    nn.InputOp: "the network's input: its frame counts as io",
    **dict.fromkeys(
        [nn.PoolOp, nn.ConcatOp, nn.ActOp, nn.LrnOp, nn.ReshapeOp, nn.FlattenOp, nn.TransposeOp,
         nn.SliceOp, nn.ChannelShuffleOp, nn.PadOp, nn.ResizeOp, nn.ReduceOp, nn.DropoutOp],
        "its operands are activations: its parameters are properties, passed in the kernel call"),
}

# A whole-tensor layout buffer beside an actor's windows (analyze-memory's staging_bytes).
NEEDS_NO_STAGING = {
    **NO_BLOCK,
    nn.InputOp: "the network's input: its frame counts as io",
    **dict.fromkeys(
        [nn.ConvOp, nn.DenseOp, nn.AddOp, nn.MulOp, nn.ConcatOp, nn.ActOp, nn.LrnOp,
         nn.BatchNormOp, nn.ChannelShuffleOp, nn.TransposeOp, nn.SliceOp, nn.PadOp, nn.ReduceOp,
         nn.ResizeOp],
        "its kernel reads its input windows in place (the windows count what its row plan reads)"),
}

# The window of the cost models' Layer (passes/target.py layer_of).
NEEDS_NO_LAYER_WINDOW = {
    **NO_BLOCK,
    **dict.fromkeys(
        [nn.InputOp, nn.DenseOp, nn.AddOp, nn.MulOp, nn.ConcatOp, nn.ActOp, nn.LrnOp,
         nn.BatchNormOp, nn.ReshapeOp, nn.FlattenOp, nn.TransposeOp, nn.SliceOp,
         nn.ChannelShuffleOp, nn.PadOp, nn.ResizeOp, nn.ReduceOp, nn.DropoutOp],
        "no spatial window: its Layer reads 1x1 (NO_WINDOW)"),
}

# At batch N > 1 the program runs these kernels once per item (analyze_memory.PER_ITEM_BLOCKS: a
# set of op classes); the others run over the whole batch at once.
RUN_OVER_THE_BATCH = {
    **NO_BLOCK,
    nn.InputOp: "the network's input: its frame is streamed whole",
    nn.PoolOp: "pools each of the N x C planes alone",
    nn.ActOp: "element by element (softmax along its axis)",
    **dict.fromkeys([nn.ReshapeOp, nn.FlattenOp, nn.DropoutOp],
                    "copies the whole tensor through its staging buffer"),
    nn.TransposeOp: "one strided copy of the whole tensor, batch axis included",
    nn.SliceOp: "one strided copy of the whole slice, batch axis included",
    nn.PadOp: "row by row with the batch folded into the row (a rank-4 pad), or the whole tensor",
    nn.ReduceOp: "row by row with the batch folded into the row, or the whole tensor",
    nn.ResizeOp: "row by row with the batch folded into the row",
}

# Ops a table lacks today, by table. An op listed here that gains an entry fails the test as
# stale, so the list cannot outlive its reason.
C_KERNEL_GAPS: dict = {}  # code generation refuses them (UnsupportedError)
# an op's C kernel decides whether it stages its whole input and whether it runs per item
STAGING_GAPS = PER_ITEM_GAPS = C_KERNEL_GAPS


def _shape_rules():
    """op class -> its shape rule: the `check` it defines or inherits from a family (nn._Binary),
    not NnOp's empty default."""
    return {op: op.check for op in DIALECT_OPS
            if getattr(op, "check", nn.NnOp.check) is not nn.NnOp.check}


def _macs():
    from aloha_ir.cost import MACS
    return MACS


def _output_formats():
    from quant.formats import OUTPUT_FORMATS
    return OUTPUT_FORMATS


def _channelwise():
    from aloha_ir.channels import CHANNELWISE
    return CHANNELWISE


def _zero_preserving():
    from passes.prune import ZERO_PRESERVING
    return ZERO_PRESERVING


def _stored_constants():
    from passes.analyze_memory import STORED_CONSTANTS
    return STORED_CONSTANTS


def _staging():
    from passes.analyze_memory import STAGING
    return STAGING


def _per_item_kernels():
    from passes.analyze_memory import PER_ITEM_BLOCKS
    return dict.fromkeys(PER_ITEM_BLOCKS)


def _layer_windows():
    from passes.target import LAYER_WINDOWS
    return LAYER_WINDOWS


def _c_kernel_records():
    from backends.codegen import KERNEL_RECORDS
    return KERNEL_RECORDS


def _reference_kernels():
    from runtime.reference import KERNELS
    return KERNELS


def _torch_fixed_kernels():
    from runtime.torch.fixed import KERNELS
    return KERNELS


def _torch_float_kernels():
    from runtime.torch.module import FLOAT_KERNELS
    return FLOAT_KERNELS


def _onnx_exports():
    from backends.onnx.export import ONNX_EXPORTS
    return ONNX_EXPORTS


def _row_plans():
    from passes.convert_nn_to_csdf import ROW_PLANS
    return ROW_PLANS


# one row per concern: (where the table is, how to load it, the ops that need no entry, the ops it
# lacks today)
CONCERNS = {
    "shape rule": ("aloha_ir.dialects.nn (a `check` method on the op class)", _shape_rules,
                   NEEDS_NO_SHAPE_RULE, {}),
    "MAC rule": ("aloha_ir.cost.MACS", _macs, NEEDS_NO_MACS, {}),
    "output format rule": ("quant.formats.OUTPUT_FORMATS", _output_formats, NEEDS_NO_OUTPUT_FORMAT,
                           {}),
    "channel-wise rule": ("aloha_ir.channels.CHANNELWISE", _channelwise, NOT_CHANNELWISE, {}),
    "zero-preserving rule": ("passes.prune.ZERO_PRESERVING", _zero_preserving, NOT_ZERO_PRESERVING,
                             {}),
    "stored-constants rule": ("passes.analyze_memory.STORED_CONSTANTS", _stored_constants,
                              STORES_NO_CONSTANTS, {}),
    "staging rule": ("passes.analyze_memory.STAGING", _staging, NEEDS_NO_STAGING, STAGING_GAPS),
    "layer window": ("passes.target.LAYER_WINDOWS", _layer_windows, NEEDS_NO_LAYER_WINDOW, {}),
    "per-item kernel": ("passes.analyze_memory.PER_ITEM_BLOCKS", _per_item_kernels,
                        RUN_OVER_THE_BATCH, PER_ITEM_GAPS),
    "C kernel record": ("backends.codegen.KERNEL_RECORDS", _c_kernel_records, NEEDS_NO_KERNEL,
                        C_KERNEL_GAPS),
    "fixed-point reference kernel": ("runtime.reference.KERNELS", _reference_kernels,
                                     NEEDS_NO_KERNEL, {}),
    "torch fixed-point kernel": ("runtime.torch.fixed.KERNELS", _torch_fixed_kernels,
                                 NEEDS_NO_KERNEL, {}),
    "torch float kernel": ("runtime.torch.module.FLOAT_KERNELS", _torch_float_kernels,
                           NEEDS_NO_KERNEL, {}),
    "ONNX export": ("backends.onnx.export.ONNX_EXPORTS", _onnx_exports, NEEDS_NO_ONNX_EXPORT, {}),
    "row plan": ("passes.convert_nn_to_csdf.ROW_PLANS", _row_plans, NEEDS_NO_ROW_PLAN, {}),
}


@pytest.mark.parametrize("concern", CONCERNS)
def test_every_nn_op_has_an_entry(concern):
    where, load, needs_none, gaps = CONCERNS[concern]
    table = load()
    missing = [op.name for op in DIALECT_OPS
               if op not in table and op not in needs_none and op not in gaps]
    assert not missing, f"no {concern} for {', '.join(missing)}: add one to {where}, or list the " \
        "op in tests/test_op_coverage.py with the reason it has none"
    stale = [op.name for op in gaps if op in table]
    assert not stale, f"{', '.join(stale)} now has a {concern}: drop it from the gaps of " \
        "tests/test_op_coverage.py"
    needless = [op.name for op in needs_none if op in table]
    assert not needless, f"{', '.join(needless)} has a {concern} although listed as needing none"
    foreign = [getattr(op, "name", repr(op)) for op in table if op not in DIALECT_OPS]
    assert not foreign, f"{where} has entries for ops outside the nn dialect: {foreign}"


def test_a_missing_entry_is_named(monkeypatch):
    """The failure names the op and the table (what a developer adding an op reads)."""
    table = dict(_c_kernel_records())
    del table[nn.LrnOp]
    monkeypatch.setitem(CONCERNS, "C kernel record",
                        ("backends.codegen.KERNEL_RECORDS", lambda: table, NEEDS_NO_KERNEL,
                         C_KERNEL_GAPS))
    with pytest.raises(AssertionError, match=r"no C kernel record for nn\.lrn: add one to "
                                             r"backends\.codegen\.KERNEL_RECORDS"):
        test_every_nn_op_has_an_entry("C kernel record")


def test_an_op_inheriting_no_shape_rule_is_named(monkeypatch):
    """An op class that defines no `check` (so verifies nothing of its result shape) fails the
    shape-rule row, naming it; the same class with a check passes."""
    from xdsl.dialects.builtin import TensorType
    from xdsl.irdl import irdl_op_definition, operand_def, result_def

    class Unary(nn.NnOp):
        input = operand_def(TensorType)
        output = result_def(TensorType)

    @irdl_op_definition
    class BareOp(Unary):
        name = "nn.bare"

    @irdl_op_definition
    class CheckedOp(Unary):
        name = "nn.checked"

        def check(self) -> None:
            self._expect_shape(nn.shape_of(self.input), "elementwise")

    monkeypatch.setattr(sys.modules[__name__], "DIALECT_OPS", DIALECT_OPS + [CheckedOp])
    test_every_nn_op_has_an_entry("shape rule")
    monkeypatch.setattr(sys.modules[__name__], "DIALECT_OPS", DIALECT_OPS + [BareOp])
    with pytest.raises(AssertionError, match=r"no shape rule for nn\.bare: add one to "
                                             r"aloha_ir\.dialects\.nn \(a `check` method"):
        test_every_nn_op_has_an_entry("shape rule")


def test_a_rule_registered_twice_is_an_internal_error():
    """Two families claiming one op class fail at import, naming both (not the later silently
    winning)."""
    from aloha_ir.errors import InternalError
    from aloha_ir.optable import registrar
    table = {}
    register = registrar(table, "row plan")

    @register(nn.AddOp)
    def add_plan():
        pass

    with pytest.raises(InternalError, match="nn.add has two row plans: add_plan and other_plan"):
        @register(nn.AddOp)
        def other_plan():
            pass


def test_a_block_without_a_mac_rule_is_an_internal_error(monkeypatch):
    """analyze-cost asks MACS of every block: a block whose op lost its rule fails naming the op
    (a compiler bug, exit 1), where the isinstance chain it replaced counted 0 silently."""
    from aloha_ir.cost import MACS, block_macs
    from aloha_ir.errors import InternalError
    from aloha_ir.textio import parse_module
    module = parse_module("""builtin.module {
  nn.graph @net {
    %0 = nn.input {port = "x"} : tensor<1x2x4x4xf32>
    %1 = nn.lrn %0 {size = 3 : i64, alpha = 1.000000e-04 : f64, beta = 7.500000e-01 : f64, bias = 1.000000e+00 : f64} : tensor<1x2x4x4xf32>
    nn.output %1 {ports = ["y"]}
  }
}""")
    lrn = next(op for op in nn.graph_of(module).ops if isinstance(op, nn.LrnOp))
    assert block_macs(lrn) == 0
    monkeypatch.delitem(MACS, nn.LrnOp)
    with pytest.raises(InternalError, match=r"no MAC rule for nn\.lrn"):
        block_macs(lrn)
