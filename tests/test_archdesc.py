"""Architecture descriptions: the bundled platforms, the language's errors, extends, JSON, fuzzing."""

from __future__ import annotations

import json
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aloha_ir.errors import AlohaError, UsageError
from archdesc import loader
from archdesc.loader import ArchError, load_platform, loads, platform_names
from archdesc.model import Platform

MINIMAL = """
platform tiny {
  backend = host
  datatypes = f32
  static_power = 1 W
  pe core : cpu {
    count = 2
    ops = conv, dense, add
    clock = 1 GHz
    ops_per_cycle = f32: 2
  }
}
"""


def test_bundled_platforms_load_with_the_contract_names():
    names = platform_names()
    assert set(names) == {"neuraghe-losa", "neuraghe-arrubiu", "neuraghe-sabina",
                          "neuraghe-banzos", "orlando", "host-cpu"}
    for n in names:
        p = load_platform(n)
        assert isinstance(p, Platform) and p.name == n and p.pes


def test_neuraghe_figures_match_hardware_md():
    losa, arrubiu = load_platform("neuraghe-losa"), load_platform("neuraghe-arrubiu")
    sabina, banzos = load_platform("neuraghe-sabina"), load_platform("neuraghe-banzos")
    ce = losa.pe("ce")
    assert ce.clock_hz == 140e6 and ce.grid == (4, 4) and ce.count == 1
    # peak 16-bit GOps/s = 54 MAC x SoPs x 2 ops x f_CE (hardware.md's table, [D])
    for p, peak in ((losa, 241.9), (arrubiu, 241.9), (sabina, 34.6), (banzos, 8.64)):
        e = p.pe("ce")
        sops = e.grid[0] * e.grid[1] * e.count
        assert e.multipliers * e.pixels_per_cycle * sops * 2 * e.clock_hz / 1e9 == \
            pytest.approx(peak, rel=2e-3)
    assert arrubiu.pe("ce").count == 2 and arrubiu.pe("ce").grid == (4, 2)
    assert banzos.pe("arm").count == 1 and losa.pe("arm").count == 2
    assert losa.memory("tcdm").size_bytes == 1 << 20
    assert losa.link("act_dma").bandwidth_bps == 0.8e9
    rules = {r.kernel: r for r in ce.kernel_rules}
    assert rules[(7, 7)].jobs == 4 and rules[(7, 7)].native == (5, 5)
    assert rules[(7, 7)].merge_on == "arm" and rules[(1, 1)].native == (3, 3)


def test_orlando_has_operating_points_the_model_uses():
    o = load_platform("orlando")
    assert len(o.operating_points) >= 2 and o.default_operating_point == "low"
    ca = o.pe("ca")
    assert o.clock(ca, "low") == 200e6 and o.clock(ca, "high") == 1.175e9
    assert o.power(ca, "high")[0] > o.power(ca, "low")[0]
    assert ca.operating_point("low").voltage_v == 0.575


def _numeric_props(sec):
    for prop in sec.props.values():
        kinds = {v[0] if v[0] != "keyed" else v[1][1][0] for v in prop.values}
        if kinds & {"number", "quantity", "dims"}:
            yield prop
    for sub in sec.sections.values():
        yield from _numeric_props(sub)


def test_every_number_in_a_bundled_file_cites_a_label():
    for name in os.listdir(loader.PLATFORM_DIR):
        path = os.path.join(loader.PLATFORM_DIR, name)
        lines = open(path).read().splitlines()
        sec = loader.parse_arch("\n".join(lines), path)
        props = list(_numeric_props(sec))
        assert props, path
        for prop in props:
            line_no = int(prop.pos.rsplit(":", 2)[1])
            assert re.search(r"\[(P|C|D|R|E)\]", lines[line_no - 1]), \
                f"{path}:{line_no}: a number without its hardware.md label"
        for _, pos in sec.sections.get(("pe", "ce"), sec).rules.values():
            line_no = int(pos.rsplit(":", 2)[1])
            assert re.search(r"\[(P|C|D|R|E)\]", lines[line_no - 1]), pos


def test_json_export_round_trips_through_json():
    p = load_platform("neuraghe-arrubiu")
    data = json.loads(json.dumps(p.to_json()))
    assert data["name"] == "neuraghe-arrubiu" and data["pes"][0]["grid"] == [4, 2]
    assert data["static_w"] == pytest.approx(9.4)


def test_loaded_model_is_immutable():
    p = load_platform("neuraghe-losa")
    with pytest.raises(AttributeError):
        p.name = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        p.pes[0].count = 3  # type: ignore[misc]


def test_minimal_platform_and_units():
    p = loads(MINIMAL, "tiny.arch")
    assert [u for u, _ in p.units()] == ["core0", "core1"]
    assert p.pe("core").rate("f32") == 2 and p.static_w == 1.0


def test_extends_overrides_only_what_it_says(tmp_path):
    (tmp_path / "base.arch").write_text(MINIMAL.replace("platform tiny", "platform base"))
    (tmp_path / "child.arch").write_text(
        "platform child extends base {\n  pe core : cpu {\n    clock = 2 GHz\n  }\n}\n")
    p = load_platform(str(tmp_path / "child.arch"))
    assert p.name == "child" and p.pe("core").clock_hz == 2e9 and p.pe("core").count == 2


def _error(text: str, tmp_path=None, name="bad.arch") -> ArchError:
    with pytest.raises(ArchError) as info:
        if tmp_path is None:
            loads(text, name)
        else:
            load_platform(str(tmp_path / name))
    return info.value


def test_syntax_error_names_line_column_and_expected():
    e = _error(MINIMAL.replace("count = 2", "count 2"))
    assert "bad.arch:7:" in str(e) and "syntax error" in str(e) and "expected" in str(e)
    assert "'='" in str(e)


def test_unknown_unit_is_one_clear_error():
    e = _error(MINIMAL.replace("1 GHz", "1 GHZ"))
    assert "bad.arch:9:" in str(e) and "unknown unit 'GHZ'" in str(e) and "'GHz'" in str(e)


def test_wrong_dimension_is_an_error():
    e = _error(MINIMAL.replace("clock = 1 GHz", "clock = 256 KiB"))
    assert "is a size, expected a frequency" in str(e)


def test_negative_bandwidth_is_an_error():
    text = MINIMAL.replace("}\n}", "}\n  link bus {\n    bandwidth = -1 GB/s\n  }\n}")
    e = _error(text)
    assert "negative" in str(e) and "bad.arch:13:" in str(e)


def test_operator_no_pe_supports_is_an_error():
    e = _error(MINIMAL.replace("ops = conv, dense, add", "ops = convolution, dense"))
    assert "unknown operator 'convolution'" in str(e) and "did you mean 'conv'" in str(e)


def test_merge_on_a_pe_without_add_is_an_error():
    engine = """
  pe ce : conv-engine {
    ops = conv
    clock = 100 MHz
    grid = 2x2
    multipliers = 27
    pixels_per_cycle = 2
    kernels = 3x3, 5x5
    kernel 7x7 -> 4 * 5x5 merge core
    scratchpad = sram
    activation_dma = dma
    weight_dma = dma
  }
  memory sram { size = 64 KiB }
  link dma { bandwidth = 1 GB/s }
"""
    ok = MINIMAL.replace("static_power = 1 W", "static_power = 1 W\n" + engine)
    assert loads(ok, "ok.arch").pe("ce").kernel_rules[0].jobs == 4
    e = _error(ok.replace("ops = conv, dense, add", "ops = conv, dense"))
    assert "merge on 'core'" in str(e) and "'add'" in str(e)


def test_cycle_in_extends_is_an_error(tmp_path):
    (tmp_path / "a.arch").write_text("platform a extends b {\n}\n")
    (tmp_path / "b.arch").write_text("platform b extends a {\n}\n")
    e = _error("", tmp_path, "a.arch")
    assert "cycle" in str(e) and "a.arch -> b.arch -> a.arch" in str(e)


def test_unknown_property_and_missing_property():
    e = _error(MINIMAL.replace("clock = 1 GHz", "clok = 1 GHz"))
    assert "unknown property 'clok'" in str(e) and "did you mean 'clock'" in str(e)
    e = _error(MINIMAL.replace("backend = host\n", ""))
    assert "needs 'backend'" in str(e)


def test_unknown_platform_suggests():
    # an unknown name is a usage error (exit 2) like an unknown zoo model or pass
    with pytest.raises(UsageError, match="did you mean 'neuraghe-losa'"):
        load_platform("neuraghe-lose")


def test_the_error_is_an_input_error_with_exit_code_3():
    e = _error("platform {")
    assert isinstance(e, AlohaError) and e.exit_code == 3


_pieces = st.sampled_from(["platform", "p", "{", "}", "=", ",", ":", "pe", "x : cpu", "1 GHz",
                           "-2 W", "3x3", "kernel", "->", "*", "merge", "\"s\"", "ops", "# c\n",
                           "\n", "count = 1", "0.8 GB/s", "extends", "memory m", "link l"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_pieces, max_size=30).map(" ".join) | st.text(max_size=200))
def test_fuzz_the_parser_raises_only_arch_errors(text):
    try:
        loads(text, "fuzz.arch")
    except ArchError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(MINIMAL) - 1), st.integers(0, len(MINIMAL)), st.text(max_size=8))
def test_fuzz_mutations_of_a_valid_file(start, length, insert):
    text = MINIMAL[:start] + insert + MINIMAL[start + length:]
    try:
        loads(text, "fuzz.arch")
    except ArchError:
        pass


def test_zero_clock_is_an_error():
    e = _error(MINIMAL.replace("clock = 1 GHz", "clock = 0 Hz"))
    assert "clock must be > 0" in str(e) and "bad.arch:9:" in str(e)


def test_operators_are_the_nn_block_ops():
    from aloha_ir.dialects.nn import NN_OPS
    blocks = {op.name.split(".")[1] for op in NN_OPS} - {"graph", "input", "output", "const"}
    assert set(loader.OPERATORS) == blocks


# --- issue 18 item 9: zero, infinite and NaN quantities are refused where they would be silent ---

HOST = open(os.path.join(loader.PLATFORM_DIR, "host-cpu.arch")).read()


def _at(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of `needle` in `text` (where an error must point)."""
    before = text[:text.index(needle)]
    return before.count("\n") + 1, len(before) - before.rfind("\n")


@pytest.mark.parametrize("old, new, at, message", [
    ("fixed16: 4.1,", "fixed16: 0,", "0", "ops_per_cycle for fixed16 must be > 0"),
    ("memory_bandwidth = 1.54 GB/s", "memory_bandwidth = 0 GB/s", "0 GB/s",
     "memory_bandwidth must be > 0, got '0 GB/s'"),
    ("size = 4 GiB", "size = 1e400 MiB", "1e400", "size '1e400 MiB' is not a finite size"),
    ("clock = 2.6 GHz", "clock = 1e308 THz", "1e308", "is not a finite frequency"),
    ("f32: 6.6,", "f32: 1e999,", "1e999", "ops_per_cycle for f32 '1e999' is not a finite number"),
    ("bandwidth = 10 GB/s                 # [E] between",
     "bandwidth = 0 GB/s                 # [E] between", "0 GB/s", "bandwidth must be > 0"),
    ("size = 4 GiB", "size = 0", "0", "size must be > 0"),
])
def test_zero_and_infinite_quantities_are_refused_at_the_value(old, new, at, message):
    """Before: `fixed16: 0` was taken as missing, `0 GB/s` as unbounded, `1e400 MiB` crashed."""
    assert old in HOST
    text = HOST.replace(old, new)
    e = _error(text, name="host.arch")
    line, col = _at(text, new)
    assert f"host.arch:{line}:{col + new.index(at)}:" in str(e), str(e)
    assert message in str(e) and e.exit_code == 3


def test_a_cpu_needs_a_rate_for_every_declared_data_type():
    """Before: a missing (or zero) rate silently used the fastest other type's rate."""
    e = _error(HOST.replace("fixed16: 4.1, ", ""), name="host.arch")
    assert "ops_per_cycle gives no rate for fixed16" in str(e)
    e = _error(HOST.replace("fixed16: 4.1,", "fixed16: 4.1, fixed16: 3,"), name="host.arch")
    assert "names 'fixed16' twice" in str(e)


def test_zero_power_and_overheads_stay_legal():
    """0 W (a gated unit) and 0 us (no overhead) are real figures; they must still load."""
    text = HOST.replace("idle_power = 1 W", "idle_power = 0 W").replace(
        "call_overhead = 0.30 us", "call_overhead = 0 us")
    pe = loads(text, "host.arch").pe("core")
    assert pe.idle_w == 0.0 and pe.call_overhead_s == 0.0


def test_an_exponent_without_a_unit_is_a_number():
    """`66e-1` lexed as 66 of unit `e` followed by junk; it is the number 6.6."""
    p = loads(HOST.replace("f32: 6.6,", "f32: 66e-1,"), "host.arch")
    assert p.pe("core").rate("f32") == pytest.approx(6.6)


def test_zero_size_grid_and_kernels_are_refused():
    text = MINIMAL.replace("static_power = 1 W", """static_power = 1 W
  pe ce : conv-engine {
    ops = conv
    clock = 100 MHz
    grid = 0x4
    multipliers = 27
    pixels_per_cycle = 2
    kernels = 3x3
    scratchpad = sram
    activation_dma = dma
    weight_dma = dma
  }
  memory sram { size = 64 KiB }
  link dma { bandwidth = 1 GB/s }""")
    assert "grid must be at least 1x1, got 0x4" in str(_error(text))
    assert "multipliers must be an integer >= 1" in str(
        _error(text.replace("grid = 0x4", "grid = 2x2").replace("= 27", "= 0")))


def test_a_unit_count_the_mapper_cannot_handle_is_refused():
    """Found by fuzzing: `count = 2147483647` made the map pass enumerate billions of units."""
    e = _error(MINIMAL.replace("count = 2", "count = 2147483647"))
    assert "at most 1024" in str(e) and "bad.arch:7:" in str(e)
