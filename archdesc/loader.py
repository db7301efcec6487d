"""Parse and check `.arch` files into `Platform` dataclasses.

    platform = load_platform("neuraghe-losa")      # a bundled name, or a path to an .arch file

Three stages, each with its own errors naming file:line:column: lark parses the syntax (the error says
which tokens were expected); `extends` chains are resolved on the syntax tree (a child's section or
property replaces the parent's of the same name; a cycle is an error); the merged tree is checked
against a schema (known sections and keys, each value's type and unit, references between PEs,
memories and links) and built into immutable dataclasses.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
from dataclasses import dataclass, field
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput

from aloha_errors import InputFileError, UsageError, did_you_mean
from archdesc import units
from archdesc.model import (
    DATATYPE_BITS,
    PE_KINDS,
    KernelRule,
    Link,
    Memory,
    OperatingPoint,
    Platform,
    ProcessingElement,
)

# nn operator families a PE may list in `ops` (the nn dialect's block ops; a test keeps them equal)
OPERATORS = ("conv", "pool", "dense", "add", "mul", "concat", "act", "lrn", "batchnorm", "reshape",
             "flatten", "transpose", "slice", "channel_shuffle", "pad", "resize", "reduce",
             "dropout")
PLATFORM_DIR = os.path.join(os.path.dirname(__file__), "platforms")


class ArchError(InputFileError):
    """An architecture description that does not parse or does not make sense."""


@dataclass
class Prop:
    key: str
    values: list  # of (kind, value, Token)
    pos: str


@dataclass
class Section:
    kind: str  # "platform", "pe", "memory", "link", "operating_point"
    name: str | None
    type: str | None
    pos: str
    props: dict[str, Prop] = field(default_factory=dict)
    sections: dict[tuple[str, str | None], "Section"] = field(default_factory=dict)
    rules: dict[tuple[int, int], tuple] = field(default_factory=dict)  # kernel -> (rule, pos)
    extends: str | None = None


@functools.cache
def _parser() -> Lark:
    grammar = resources.files("archdesc").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


_TOKEN_NAMES = {"LBRACE": "'{'", "RBRACE": "'}'", "EQUAL": "'='", "COLON": "':'", "COMMA": "','",
                "NAME": "a name", "QUANTITY": "a number with a unit", "INT": "an integer",
                "NUMBER": "a number", "DIMS": "a size like 3x3", "STRING": "a quoted string",
                "SEMICOLON": "';'", "__ANON_0": "'->'", "STAR": "'*'", "$END": "end of file",
                "PLATFORM": "'platform'", "EXTENDS": "'extends'", "KERNEL": "'kernel'",
                "MERGE": "'merge'", "PE": "'pe'", "MEMORY": "'memory'", "LINK": "'link'",
                "OPERATING_POINT": "'operating_point'"}


def _syntax_error(path: str, e: UnexpectedInput) -> ArchError:
    where = f"{path}:{e.line}:{e.column}" if getattr(e, "line", -1) not in (-1, None) else path
    if isinstance(e, UnexpectedCharacters):
        found = repr(e.char)
    elif isinstance(e, UnexpectedEOF):
        found = "end of file"
    else:
        tok = getattr(e, "token", None)
        found = "end of file" if tok is None or tok.type == "$END" else repr(str(tok))
    expected = sorted({_TOKEN_NAMES.get(t, t) for t in (getattr(e, "expected", None) or
                                                         getattr(e, "allowed", None) or ())})
    more = f"; expected {', '.join(expected[:8])}" if expected else ""
    return ArchError(f"syntax error at {found}{more}", where=where)


def _pos(path: str, item) -> str:
    line = getattr(item, "line", None)
    if line is None and hasattr(item, "meta") and not item.meta.empty:
        return f"{path}:{item.meta.line}:{item.meta.column}"
    return f"{path}:{line}:{getattr(item, 'column', 0)}" if line is not None else path


def _value(path: str, t) -> tuple:
    if isinstance(t, Token):  # a keyed entry's value
        return _scalar(t.type, t)
    kind = t.data
    if kind == "keyed":
        key, val = t.children
        return ("keyed", (str(key), _value(path, val)), key)
    (tok,) = t.children
    return _scalar({"quantity": "QUANTITY", "number": "NUMBER", "dims": "DIMS", "name": "NAME",
                    "string": "STRING"}[kind], tok)


def _scalar(ttype: str, tok: Token) -> tuple:
    s = str(tok)
    if ttype == "QUANTITY":
        num = s.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ/").strip()
        return ("quantity", (float(num), s[len(num):].strip()), tok)
    if ttype in ("NUMBER", "INT"):
        return ("number", float(s) if any(c in s for c in ".eE") else int(s), tok)
    if ttype == "DIMS":
        a, b = s.split("x")
        return ("dims", (int(a), int(b)), tok)
    if ttype == "STRING":
        return ("string", s[1:-1], tok)
    return ("name", s, tok)


def _section(path: str, tree: Tree, kind: str, name, typ) -> Section:
    sec = Section(kind, name, typ, _pos(path, tree))
    (body,) = [c for c in tree.children if isinstance(c, Tree) and c.data == "body"]
    for entry in body.children:
        if entry.data == "prop":
            key, *vals = [c for c in entry.children if c is not None]
            if str(key) in sec.props:
                raise ArchError(f"'{key}' is set twice in {_describe(sec)}", where=_pos(path, key))
            sec.props[str(key)] = Prop(str(key), [_value(path, v) for v in vals], _pos(path, key))
        elif entry.data == "section":
            skind, sname, stype, _ = entry.children
            sub = _section(path, entry, str(skind.children[0]), str(sname) if sname else None,
                           str(stype) if stype else None)
            key = (sub.kind, sub.name)
            if key in sec.sections:
                raise ArchError(f"{sub.kind} {sub.name or ''} is declared twice", where=sub.pos)
            sec.sections[key] = sub
        else:  # kernel_rule
            kernel, jobs, native, merge = entry.children
            k = _scalar("DIMS", kernel)[1]
            rule = KernelRule(k, _scalar("DIMS", native)[1], int(jobs) if jobs else 1,
                              str(merge) if merge else None)
            sec.rules[k] = (rule, _pos(path, kernel))
    return sec


def parse_arch(text: str, path: str = "<string>") -> Section:
    """The syntax tree of one .arch file (before `extends` is resolved)."""
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(path, e) from None
    (plat,) = tree.children
    name, parent, _ = plat.children
    sec = _section(path, plat, "platform", str(name), None)
    sec.extends = (str(parent)[1:-1] if parent.type == "STRING" else str(parent)) if parent \
        else None
    return sec


def _merge(parent: Section, child: Section) -> Section:
    out = Section(child.kind, child.name, child.type or parent.type, child.pos,
                  {**parent.props, **child.props}, dict(parent.sections), {**parent.rules,
                                                                            **child.rules})
    for key, sub in child.sections.items():
        out.sections[key] = _merge(parent.sections[key], sub) if key in parent.sections else sub
    return out


def _find(name: str, near: str | None) -> str:
    if name.endswith(".arch") or "/" in name or os.sep in name:  # `extends "a/b.arch"`: a file
        path = os.path.join(os.path.dirname(near) if near else "", name)
        if not os.path.exists(path):
            raise ArchError(f"extends \"{name}\": no such file", where=near or path)
        return path
    for d in ([os.path.dirname(near)] if near else []) + [PLATFORM_DIR]:
        p = os.path.join(d, f"{name}.arch")
        if os.path.exists(p):
            return p
    raise ArchError(f"no platform '{name}'", hint="bundled: " + ", ".join(platform_names()))


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ArchError(f"cannot read: {e.__class__.__name__}: {e}", where=path) from None


def _resolve(path: str, chain: tuple[str, ...] = ()) -> Section:
    real = os.path.realpath(path)
    if real in chain:
        names = [os.path.basename(p) for p in chain + (real,)]
        raise ArchError("'extends' forms a cycle: " + " -> ".join(names), where=path)
    sec = parse_arch(_read(path), path)
    if sec.extends is None:
        return sec
    parent = _resolve(_find(sec.extends, path), chain + (real,))
    return _merge(parent, sec)


# ---------------------------------------------------------------------------------------------------
# schema: key -> (value type, required); a type is a units dimension or one of the plain kinds

_COMMON_PE = {"count": ("posint", False), "ops": ("names", True), "clock": ("frequency", False),
              "active_power": ("power", False), "idle_power": ("power", False)}
SCHEMA = {
    "platform": {"description": ("string", False), "backend": ("name", True),
                 "datatypes": ("names", True), "default_datatype": ("name", False),
                 "static_power": ("power", True), "default_operating_point": ("name", False)},
    "cpu": {**_COMMON_PE, "ops_per_cycle": ("keyed_number", True),
            "memory_bandwidth": ("bandwidth", False), "call_overhead": ("time", False),
            "handover": ("time", False)},
    "conv-engine": {**_COMMON_PE, "grid": ("dims", True), "multipliers": ("posint", True),
                    "pixels_per_cycle": ("posint", True), "simd": ("keyed_posint", False),
                    "kernels": ("dims_list", True), "stride": ("name", False),
                    "max_pad": ("int", False), "job_overhead": ("time", False),
                    "pipeline_fill": ("int", False), "accumulator_bytes": ("posint", False),
                    "scratchpad": ("name", True), "activation_dma": ("name", True),
                    "weight_dma": ("name", True)},
    "memory": {"size": ("size", True), "bandwidth": ("bandwidth", False), "banks": ("posint", False),
               "holds": ("names", False)},
    "link": {"bandwidth": ("bandwidth", True), "latency": ("time", False),
             "between": ("names", False), "energy_per_byte": ("energy", False)},
    "operating_point": {"clock": ("frequency", True), "voltage": ("voltage", False),
                        "active_power": ("power", False), "idle_power": ("power", False)},
}
_SECTIONS_IN = {"platform": ("pe", "memory", "link"), "pe": ("operating_point",)}


def _describe(sec: Section) -> str:
    return f"{sec.kind} {sec.name}" if sec.name else sec.kind


def _check_keys(sec: Section, schema: dict) -> None:
    for key, prop in sec.props.items():
        if key not in schema:
            close = difflib.get_close_matches(key, schema, 1)
            raise ArchError(f"unknown property '{key}' in {_describe(sec)}", where=prop.pos,
                            hint=f"did you mean '{close[0]}'?" if close else
                            "known: " + ", ".join(sorted(schema)))
    for key, (_, required) in schema.items():
        if required and key not in sec.props:
            raise ArchError(f"{_describe(sec)} needs '{key}'", where=sec.pos)
    allowed = _SECTIONS_IN.get("pe" if sec.kind == "pe" else sec.kind, ())
    for (kind, _), sub in sec.sections.items():
        if kind not in allowed:
            raise ArchError(f"a {kind} section cannot appear inside {_describe(sec)}",
                            where=sub.pos)
    if sec.rules and sec.kind != "pe":
        raise ArchError(f"'kernel' rules belong in a conv-engine pe, not in {_describe(sec)}",
                        where=next(iter(sec.rules.values()))[1])


def _get(sec: Section, schema: dict, key: str, default=None):
    prop = sec.props.get(key)
    if prop is None:
        return default
    typ = schema[key][0]
    vals = prop.values
    try:
        return _convert(typ, vals, key)
    except units.UnitError as e:
        raise ArchError(f"{key}: {e}", where=_token_pos(prop, e)) from None
    except _TypeMismatch as e:
        raise ArchError(f"{key} must be {e}", where=_token_pos(prop, e)) from None
    except _BadValue as e:
        raise ArchError(f"{key} {e}", where=_token_pos(prop, e), hint=e.hint) from None


def _token_pos(prop: Prop, e: Exception) -> str:
    """file:line:column of the offending value (the property's key when it is not known)."""
    tok = getattr(e, "token", None)
    if tok is not None and getattr(tok, "line", None) is not None:
        return f"{prop.pos.rsplit(':', 2)[0]}:{tok.line}:{tok.column}"
    return prop.pos


class _TypeMismatch(Exception):
    pass


class _BadValue(Exception):
    """A value of the right type that cannot be meant: zero where zero means nothing, infinite."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


_DESCRIBE_TYPE = {"int": "a non-negative integer", "posint": "an integer >= 1",
                  "number": "a number", "string": "a quoted string",
                  "name": "a name", "names": "a list of names", "dims": "a size like 4x4",
                  "dims_list": "a list of sizes like 3x3, 5x5",
                  "keyed_number": "a list of datatype: number pairs",
                  "keyed_posint": "a list of datatype: integer pairs"}
# Dimensions where 0 is a real figure (no overhead, a power-gated unit); in the others (a clock, a
# bandwidth, a size, a voltage) 0 would silently stand for "missing" or "unbounded" in the cost
# model, so it is refused: leave an optional line out instead.
ZERO_ALLOWED = ("power", "time", "energy")
MAX_INT = 2 ** 31 - 1  # counts and sizes end up as C ints
MAX_UNITS = 1024  # units of one PE: the map pass tries every unit for every actor


def _one(typ: str, v: tuple):
    try:
        return _checked(typ, v)
    except (units.UnitError, _TypeMismatch, _BadValue) as e:
        raise _with_token(e, v[2])


def _checked(typ: str, v: tuple):
    kind, val, _ = v
    if typ in units.DIMENSIONS:
        if kind == "number" and val == 0:
            value, text = 0.0, "0"
        elif kind != "quantity":
            raise _TypeMismatch(f"a {typ} with its unit (e.g. {units.example(typ)})")
        else:
            value, text = units.quantity(*val).to(typ), " ".join(str(v[2]).split())
        if not math.isfinite(value):
            raise _BadValue(f"'{text}' is not a finite {typ}")
        if value == 0 and typ not in ZERO_ALLOWED:
            raise _BadValue(f"must be > 0, got '{text}'",
                            hint=f"a {typ} of 0 has no meaning; leave an optional property out "
                                 "instead of writing 0")
        return value
    if typ in ("int", "posint"):
        if kind != "number" or not isinstance(val, int) or val < (typ == "posint"):
            raise _TypeMismatch(_DESCRIBE_TYPE[typ])
        if val > MAX_INT:
            raise _BadValue(f"{val} is too large (at most {MAX_INT})")
        return val
    if typ == "number":
        if kind != "number" or val < 0:
            raise _TypeMismatch("a non-negative number")
        if not math.isfinite(val):
            raise _BadValue(f"'{str(v[2]).strip()}' is not a finite number")
        if val == 0:
            raise _BadValue("must be > 0, got 0", hint="a rate of 0 has no meaning; a data type "
                                                       "the unit lacks cannot be declared")
        return float(val)
    expected = {"string": "string", "name": "name", "dims": "dims"}[typ]
    if kind != expected:
        raise _TypeMismatch(_DESCRIBE_TYPE[typ])
    if typ == "dims" and min(val) < 1:
        raise _BadValue(f"must be at least 1x1, got {val[0]}x{val[1]}")
    return val


def _convert(typ: str, vals: list, key: str = ""):
    if typ in ("names", "dims_list"):
        return tuple(_one("name" if typ == "names" else "dims", v) for v in vals)
    if typ.startswith("keyed_"):
        out = []
        for v in vals:
            if v[0] != "keyed":
                raise _TypeMismatch(_DESCRIBE_TYPE[typ])
            name, inner = v[1]
            if any(name == k for k, _ in out):
                raise _with_token(_BadValue(f"names '{name}' twice"), v[2])
            try:
                out.append((name, _one(typ[len("keyed_"):], inner)))
            except _BadValue as e:
                raise _with_token(_BadValue(f"for {name} {e}", e.hint), e.token) from None
        return tuple(out)
    if len(vals) != 1:
        raise _TypeMismatch(f"{_DESCRIBE_TYPE.get(typ, 'a ' + typ)}, one value")
    return _one(typ, vals[0])


def _with_token(e: Exception, token) -> Exception:
    e.token = token
    return e


def _operating_point(sec: Section) -> OperatingPoint:
    s = SCHEMA["operating_point"]
    _check_keys(sec, s)
    return OperatingPoint(sec.name or "", _get(sec, s, "clock"), _get(sec, s, "voltage"),
                          _get(sec, s, "active_power"), _get(sec, s, "idle_power"))


def _pe(sec: Section, datatypes: tuple[str, ...]) -> ProcessingElement:
    if sec.type not in PE_KINDS:
        raise ArchError(f"pe {sec.name} has kind '{sec.type}'", where=sec.pos,
                        hint=f"write 'pe {sec.name} : KIND' with KIND one of {', '.join(PE_KINDS)}")
    s = SCHEMA[sec.type]
    _check_keys(sec, s)
    ops = _get(sec, s, "ops")
    for op in ops:
        if op not in OPERATORS:
            close = [o for o in OPERATORS if op.startswith(o) or o.startswith(op)] or \
                difflib.get_close_matches(op, OPERATORS, 1)
            raise ArchError(f"pe {sec.name}: unknown operator '{op}'", where=sec.props["ops"].pos,
                            hint=f"did you mean '{close[0]}'?" if close else
                            "operators: " + ", ".join(OPERATORS))
    points = tuple(_operating_point(sub) for (k, _), sub in sec.sections.items())
    clock = _get(sec, s, "clock")
    if clock is None:
        if not points:
            raise ArchError(f"pe {sec.name} needs 'clock' or operating points", where=sec.pos)
        clock = points[0].clock_hz
    count = _get(sec, s, "count", 1)
    if count > MAX_UNITS:
        raise ArchError(f"pe {sec.name}: count {count} is more units than the mapper handles "
                        f"(at most {MAX_UNITS})", where=sec.props["count"].pos)
    common = dict(name=sec.name or "", kind=sec.type, count=count, ops=ops, clock_hz=clock,
                  active_w=_get(sec, s, "active_power", 0.0),
                  idle_w=_get(sec, s, "idle_power", 0.0), operating_points=points)
    for key in ("ops_per_cycle", "simd"):
        for dt, _ in (_get(sec, s, key, ()) if key in s else ()):
            if dt not in datatypes:
                raise ArchError(f"pe {sec.name}: {key} names data type '{dt}' the platform does "
                                f"not declare", where=sec.props[key].pos,
                                hint="datatypes = " + ", ".join(datatypes))
    if sec.type == "cpu":
        if sec.rules:
            raise ArchError(f"pe {sec.name}: 'kernel' rules belong in a conv-engine",
                            where=next(iter(sec.rules.values()))[1])
        rates = _get(sec, s, "ops_per_cycle")
        missing = [dt for dt in datatypes if dt not in dict(rates)]
        if missing:
            # the cost model would otherwise silently time these at another type's rate
            raise ArchError(f"pe {sec.name}: ops_per_cycle gives no rate for "
                            f"{', '.join(missing)}", where=sec.props["ops_per_cycle"].pos,
                            hint="give one per declared data type (datatypes = " +
                                 ", ".join(datatypes) + ")")
        return ProcessingElement(**common, ops_per_cycle=rates,
                                 memory_bandwidth_bps=_get(sec, s, "memory_bandwidth", 0.0),
                                 call_overhead_s=_get(sec, s, "call_overhead", 0.0),
                                 handover_s=_get(sec, s, "handover", 0.0))
    stride = _get(sec, s, "stride", "native")
    if stride not in ("native", "subsample"):
        raise ArchError(f"pe {sec.name}: stride must be native or subsample, got '{stride}'",
                        where=sec.props["stride"].pos)
    grid = _get(sec, s, "grid")
    kernels = _get(sec, s, "kernels")
    for rule, pos in sec.rules.values():
        if min(rule.kernel) < 1:
            raise ArchError(f"pe {sec.name}: a kernel rule for a {rule.kernel[0]}x"
                            f"{rule.kernel[1]} kernel", where=pos, hint="sizes are at least 1x1")
        if rule.native not in kernels:
            raise ArchError(f"pe {sec.name}: kernel {rule.kernel[0]}x{rule.kernel[1]} is mapped to "
                            f"{rule.native[0]}x{rule.native[1]}, which is not a native kernel",
                            where=pos, hint="kernels = " + ", ".join(f"{a}x{b}" for a, b in kernels))
        if rule.jobs < 1:
            raise ArchError(f"pe {sec.name}: a kernel rule needs >= 1 jobs", where=pos)
    return ProcessingElement(
        **common, grid=grid, multipliers=_get(sec, s, "multipliers"),
        pixels_per_cycle=_get(sec, s, "pixels_per_cycle"), simd=_get(sec, s, "simd", ()),
        kernels=kernels, kernel_rules=tuple(r for r, _ in sec.rules.values()), stride=stride,
        max_pad=_get(sec, s, "max_pad", 0), job_overhead_s=_get(sec, s, "job_overhead", 0.0),
        pipeline_fill_cycles=_get(sec, s, "pipeline_fill", 0),
        accumulator_bytes=_get(sec, s, "accumulator_bytes", 4),
        scratchpad=_get(sec, s, "scratchpad"), activation_dma=_get(sec, s, "activation_dma"),
        weight_dma=_get(sec, s, "weight_dma"))


def build_platform(sec: Section, source: str = "") -> Platform:
    """Check a resolved syntax tree against the schema and build the Platform."""
    s = SCHEMA["platform"]
    _check_keys(sec, s)
    datatypes = _get(sec, s, "datatypes")
    for dt in datatypes:
        if dt not in DATATYPE_BITS:
            raise ArchError(f"unknown data type '{dt}'", where=sec.props["datatypes"].pos,
                            hint="known: " + ", ".join(DATATYPE_BITS))
    default_dt = _get(sec, s, "default_datatype", datatypes[0])
    if default_dt not in datatypes:
        raise ArchError(f"default_datatype '{default_dt}' is not in datatypes",
                        where=sec.props["default_datatype"].pos)
    memories, links, pes = [], [], []
    for (kind, _), sub in sec.sections.items():
        if kind == "memory":
            ms = SCHEMA["memory"]
            _check_keys(sub, ms)
            memories.append(Memory(sub.name or "", _get(sub, ms, "size"),
                                   _get(sub, ms, "bandwidth", 0.0), _get(sub, ms, "banks", 1),
                                   _get(sub, ms, "holds", ())))
        elif kind == "link":
            ls = SCHEMA["link"]
            _check_keys(sub, ls)
            bw = _get(sub, ls, "bandwidth")
            if bw <= 0:
                raise ArchError(f"link {sub.name}: bandwidth must be > 0",
                                where=sub.props["bandwidth"].pos)
            links.append((Link(sub.name or "", bw, _get(sub, ls, "latency", 0.0),
                               _get(sub, ls, "between", ()), _get(sub, ls, "energy_per_byte", 0.0)),
                          sub))
        elif kind == "pe":
            pes.append((_pe(sub, datatypes), sub))
    if not pes:
        raise ArchError(f"platform {sec.name} has no processing element", where=sec.pos,
                        hint="add a 'pe NAME : cpu { ... }' section")
    names = {m.name for m in memories} | {x.name for x, _ in links} | {p.name for p, _ in pes}
    if len(names) != len(memories) + len(links) + len(pes):
        raise ArchError("PEs, memories and links need distinct names", where=sec.pos)
    mem_names, link_names = {m.name for m in memories}, {x.name for x, _ in links}
    pe_names = {p.name for p, _ in pes}
    for link, sub in links:
        for end in link.between:
            if end not in pe_names | mem_names:
                raise ArchError(f"link {link.name} joins '{end}', which is no PE or memory",
                                where=sub.props["between"].pos)
    for pe, sub in pes:
        if pe.kind == "conv-engine":
            for key, pool in (("scratchpad", mem_names), ("activation_dma", link_names),
                              ("weight_dma", link_names)):
                if getattr(pe, key) not in pool:
                    raise ArchError(f"pe {pe.name}: {key} '{getattr(pe, key)}' is not a declared "
                                    f"{'memory' if key == 'scratchpad' else 'link'}",
                                    where=sub.props[key].pos)
            for rule in pe.kernel_rules:
                if rule.merge_on is None:
                    continue
                target = next((p for p, _ in pes if p.name == rule.merge_on), None)
                if target is None or not target.supports("add"):
                    raise ArchError(f"pe {pe.name}: kernel {rule.kernel[0]}x{rule.kernel[1]} "
                                    f"partial results merge on '{rule.merge_on}', but no PE of "
                                    "that name supports the operator 'add'",
                                    where=sec.pos if target else sub.pos)
    point_sets = {tuple(p.name for p in pe.operating_points) for pe, _ in pes if pe.operating_points}
    if len(point_sets) > 1:
        raise ArchError("every PE with operating points must declare the same ones",
                        where=sec.pos, hint=" vs ".join(str(list(x)) for x in point_sets))
    points = next(iter(point_sets), ())
    default_opp = _get(sec, s, "default_operating_point", points[0] if points else None)
    if default_opp is not None and default_opp not in points:
        raise ArchError(f"default_operating_point '{default_opp}' is not declared",
                        where=sec.props["default_operating_point"].pos,
                        hint="declared: " + (", ".join(points) or "none"))
    return Platform(sec.name or "", _get(sec, s, "description", ""), _get(sec, s, "backend"),
                    datatypes, default_dt, _get(sec, s, "static_power"),
                    tuple(p for p, _ in pes), tuple(memories), tuple(x for x, _ in links), points,
                    default_opp,
                    source)


def loads(text: str, path: str = "<string>") -> Platform:
    """A Platform from .arch text (`extends` looks beside `path`, then among the bundled files)."""
    sec = parse_arch(text, path)
    if sec.extends is not None:
        parent = _resolve(_find(sec.extends, path if os.path.exists(path) else None),
                          (os.path.realpath(path),))
        sec = _merge(parent, sec)
    return build_platform(sec, path)


def load_platform(name_or_path: str) -> Platform:
    """A bundled platform by name, or an .arch file by path."""
    if is_path(name_or_path):
        return build_platform(*resolve(name_or_path))
    return _load_bundled(name_or_path)


def is_path(name_or_path: str) -> bool:
    """Whether a platform argument names a file (else a bundled platform)."""
    return name_or_path.endswith(".arch") or os.sep in name_or_path


def resolve(name_or_path: str) -> tuple[Section, str]:
    """The syntax tree of a platform with its `extends` chain merged, and the file it is read from:
    what `build_platform` checks and builds (archdesc.parameters edits its values first)."""
    if is_path(name_or_path):
        if not os.path.exists(name_or_path):
            raise ArchError("no such file", where=name_or_path)
        return _resolve(name_or_path), name_or_path
    path = os.path.join(PLATFORM_DIR, f"{name_or_path}.arch")
    if not os.path.exists(path):
        raise UsageError(f"no platform '{name_or_path}'",
                         hint=did_you_mean(name_or_path, platform_names(), "bundled") +
                         " (or the path of an .arch file)")
    return _resolve(path), path


@functools.cache
def _load_bundled(name: str) -> Platform:
    return build_platform(*resolve(name))


def platform_names() -> list[str]:
    """Bundled platforms (files whose name starts with '_' are bases others extend)."""
    return sorted(f[:-5] for f in os.listdir(PLATFORM_DIR)
                  if f.endswith(".arch") and not f.startswith("_"))
