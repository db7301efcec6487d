"""What the csdf IR records for later stages (issue 19 item 3): the lowering's row plans (`rows`,
`shape` on a channel, `reads` on its reader), the one-frame static order analyze-schedule writes
(`order`), their verification, and code generation and analyze-memory reading them instead of
running the lowering and the schedule again."""

from __future__ import annotations

import re

import pytest

from aloha_ir.context import make_context
from aloha_ir.errors import IRVerifyError, PassError, UnsupportedError
from aloha_ir.passmanager import PassManager
from aloha_ir.textio import parse_module, print_module, verify_module
from alohac.main import main
from archdesc.loader import load_platform
from frontends.loader import load_model
from test_csdf import LOWERED

# ---------------------------------------------------------------------------------------------------
# row plans: recorded by the lowering, checked against the rates by the verifier

C0_ROWS = "csdf.rows = array<i64: 0, 1, 0, 2, 1, 3, 2, 4, 3, 5, 4, 5>"


@pytest.mark.parametrize("edit, changed, names", [
    # conv's first output row reads rows 0..2 (no top padding): 3 new rows of 18 tokens, then
    # none (rows 0..2 again), one each up to row 5, none; the channel says 2, 1, 1, 1, 1, 0
    (C0_ROWS, "csdf.rows = array<i64: 0, 2, 0, 2, 1, 3, 2, 4, 3, 5, 4, 5>",
     ("@c0", "@conv", "consumption [1 x 54, 1 x 0, 3 x 18, 1 x 0]", "[1 x 36, 4 x 18, 1 x 0]")),
    # the reuse loop carries one row (18 tokens) where the plan keeps two (36) per phase
    ("prod [5 x 36, 1 x 0] cons [1 x 0, 5 x 36]", "prod [5 x 18, 1 x 0] cons [1 x 0, 5 x 18]",
     ("@c0", "@conv", "@conv_reuse0", "[1 x 0, 5 x 36]")),
    # a plan with a phase too few
    (C0_ROWS, "csdf.rows = array<i64: 0, 1, 0, 2, 1, 3, 2, 4, 3, 5>",
     ("@c0", "@conv", "holds 10 values", "is 12")),
])
def test_a_row_plan_that_disagrees_with_the_rates_is_refused_when_read(tmp_path, capsys, edit,
                                                                       changed, names):
    assert LOWERED.count(edit) == 1
    text = LOWERED.replace(edit, changed)
    with pytest.raises(IRVerifyError) as e:
        verify_module(parse_module(text))
    assert e.value.exit_code == 7
    for name in names:
        assert name in str(e.value)
    path = tmp_path / "edited.mlir"
    path.write_text(text)
    capsys.readouterr()
    assert main(["opt", str(path), "-p", "analyze-repetition"]) == 7
    assert "@c0" in capsys.readouterr().err


def test_a_row_plan_of_another_tensor_than_the_block_reads_is_a_lowering_mismatch():
    # [1, 12, 3, 1] has pool's 3 rows of 12 tokens: the rates agree, only the tensor is wrong
    text = LOWERED.replace("csdf.shape = array<i64: 1, 4, 3, 3>",
                           "csdf.shape = array<i64: 1, 12, 3, 1>")
    with pytest.raises(IRVerifyError, match=r"csdf.shape.*\[1, 4, 3, 3\]") as e:
        verify_module(parse_module(text))
    assert "@c2" in str(e.value) and "@flat" in str(e.value) and e.value.exit_code == 7


def test_partition_gives_each_part_the_row_plan_of_the_actor_it_splits():
    ctx = make_context()
    ctx.target = load_platform("neuraghe-arrubiu")
    module = load_model("zoo:lenet5", {})
    PassManager.parse("canonicalize,convert-nn-to-csdf").run(module, ctx)
    graph = next(g for g in module.ops if g.name == "csdf.graph")
    before = {c.dst_name: (c.rows, c.shape) for c in graph.channels() if not c.is_self_loop}
    reads = {a.sym_name.data: a.reads for a in graph.actors()}
    PassManager.parse("partition").run(module, ctx)
    parts = [a for a in graph.actors() if a.split is not None]
    assert parts
    for a in parts:
        base = re.sub(r"_p\d+$", "", a.sym_name.data)
        assert a.reads == reads[base] is not None
        (ch,) = [c for c in graph.channels() if c.dst_name == a.sym_name.data
                 and not c.is_self_loop]
        assert (ch.rows, ch.shape) == before[base] and ch.rows is not None
    for g in (a for a in graph.actors() if a.kind.data == "gather"):
        assert g.reads is None  # a boundary actor reads one row per firing


# ---------------------------------------------------------------------------------------------------
# the static order analyze-schedule records

CHAIN = """builtin.module {
  csdf.graph @chain {
    csdf.actor @a "src" phases 1 times [1 x 1] work [1 x 1] attributes {csdf.pe = "p", csdf.exec_times = array<i64: 1, 5>}
    csdf.actor @c "sink" phases 1 times [1 x 1] work [1 x 1] attributes {csdf.pe = "p", csdf.exec_times = array<i64: 1, 7>}
    csdf.actor @b "f" phases 1 times [1 x 1] work [1 x 1] attributes {csdf.pe = "p", csdf.exec_times = array<i64: 1, 2>}
    csdf.channel @ab @a out0 -> @b in0 prod [1 x 2] cons [1 x 1] init 0 : f32
    csdf.channel @bc @b out0 -> @c in0 prod [1 x 1] cons [1 x 3] init 0 : f32
  }
}
"""


def test_the_recorded_static_order_of_a_chain_on_one_unit_is_the_order_by_hand():
    """a -2:1-> b -1:3-> c, all on unit p: one iteration fires a 3, b 6, c 2 times. The unit runs,
    among its enabled actors, the earliest in the graph's order (a, c, b): a while it has firings
    left (positions 0-2); then only b is enabled; after b's third firing c has 3 tokens and comes
    before b (position 6); b fires three more times and c once (position 10)."""
    module = parse_module(CHAIN)
    PassManager.parse("analyze-schedule").run(module)
    graph = module.ops.first
    order = {a.sym_name.data: a.order for a in graph.actors()}
    assert order == {"a": (0, 1, 2), "b": (3, 4, 5, 7, 8, 9), "c": (6, 10)}
    again = parse_module(print_module(module))  # it prints, parses and verifies
    verify_module(again)
    assert {a.sym_name.data: a.order for a in again.ops.first.actors()} == order


@pytest.mark.parametrize("edit, changed, message", [
    ("csdf.order = array<i64: 6, 10>", "csdf.order = array<i64: 6>",
     "places 1 firing(s) of @c, but it fires 2 times"),
    ("csdf.order = array<i64: 6, 10>", "csdf.order = array<i64: 6, 9>",
     "each of the 11 firings of one iteration its own position"),
    ("csdf.order = array<i64: 6, 10>", "csdf.order = array<i64: 6, 11>",
     "each of the 11 firings of one iteration its own position"),
])
def test_a_broken_static_order_is_refused_when_read(edit, changed, message):
    module = parse_module(CHAIN)
    PassManager.parse("analyze-schedule").run(module)
    text = print_module(module)
    assert text.count(edit) == 1
    with pytest.raises(IRVerifyError, match=re.escape(message)) as e:
        verify_module(parse_module(text.replace(edit, changed)))
    assert e.value.exit_code == 7


# ---------------------------------------------------------------------------------------------------
# code generation and analyze-memory read the records

def _lowered(target: str = "host-cpu"):
    from flows.target import TargetFlow
    module = load_model("zoo:lenet5", {})
    flow = TargetFlow(load_platform(target))
    flow.run(module)
    graph = next(g for g in module.ops if g.name == "csdf.graph")
    return module, graph, flow.platform


def test_code_generation_without_the_static_order_says_to_run_analyze_schedule():
    from backends.codegen import build_view
    module, graph, platform = _lowered()
    assert build_view(module, platform).threads  # with the record it builds
    for a in graph.actors():
        a.order = None
    with pytest.raises(UnsupportedError, match="static order") as e:
        build_view(module, platform)
    assert "run analyze-schedule" in str(e.value) and e.value.exit_code == 4


def test_an_actor_without_a_position_verifies_but_code_generation_refuses_naming_it():
    """A graph read from a file keeps analyze-schedule's annotations (no report of this run says
    they are stale), so a transform that adds an actor leaves it without a position: the order is
    incomplete, not wrong, and verifies; code generation refuses it by name."""
    from backends.codegen import build_view
    module, graph, platform = _lowered()
    victim = next(a for a in graph.actors() if a.kind.data.startswith("conv"))
    victim.order = None
    verify_module(module)
    with pytest.raises(UnsupportedError, match=f"@{victim.sym_name.data}") as e:
        build_view(module, platform)
    assert "run analyze-schedule" in str(e.value)


def test_code_generation_and_analyze_memory_without_row_plans_say_to_lower_again():
    from backends.codegen import build_view
    from passes.analyze_memory import AnalyzeMemoryPass
    module, graph, platform = _lowered()
    conv = next(a for a in graph.actors() if a.kind.data.startswith("conv"))
    conv.reads = None
    with pytest.raises(UnsupportedError, match=f"@{conv.sym_name.data}.*csdf.reads") as e:
        build_view(module, platform)
    assert "convert-nn-to-csdf" in str(e.value)
    ctx = make_context()
    ctx.target = platform
    with pytest.raises(PassError, match=f"@{conv.sym_name.data} has no row plan") as e:
        PassManager([AnalyzeMemoryPass()], verify_each=False).run(module, ctx)
    assert "convert-nn-to-csdf" in str(e.value)


def test_threads_follow_the_recorded_order():
    """The generated threads run each unit's actors in the order analyze-schedule recorded: swap
    the positions of two neighbouring firings of different actors of one thread and the thread
    follows (a schedule run again would not)."""
    from backends.codegen import build_view
    module, graph, platform = _lowered()

    def threads():
        view = build_view(module, platform)
        names = [a.name for a in view.actors]
        return {t.unit: [names[a] for a, n in t.order for _ in range(n)] for t in view.threads}

    before = threads()
    slots = sorted((s, a.sym_name.data) for a in graph.actors() for s in a.order)
    unit, fired = next((u, f) for u, f in before.items() if len(set(f)) > 1)
    assert fired == [a for _, a in slots if a in set(fired)]  # the recorded subsequence
    i = next(i for i in range(len(fired) - 1) if fired[i] != fired[i + 1])
    mine = [(s, a) for s, a in slots if a in set(fired)]
    (s1, a1), (s2, a2) = mine[i], mine[i + 1]
    actors = graph.actor_map()
    for name, old, new in ((a1, s1, s2), (a2, s2, s1)):
        actors[name].order = tuple(new if s == old else s for s in actors[name].order)
    after = threads()
    assert after[unit] == fired[:i] + [fired[i + 1], fired[i]] + fired[i + 2:]
