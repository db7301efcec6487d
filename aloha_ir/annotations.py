"""Typed annotations: results a pass records on an op as a discardable attribute in the op's
dialect namespace (`csdf.pe` on a csdf.actor, `nn.fracs` on an nn.const), read and written
through a Python accessor of the same name, their types checked by the op's verifier.

    class ConstOp(NnOp):
        name = "nn.const"
        fracs = Annotation("ints", "quantize: per-output-channel fracs ...")

    op.fracs                     # (7, 7, 6, ...) or None when absent
    op.fracs = [7, 6]            # writes nn.fracs; None removes it
    check_annotations(op)        # in the op's verifier: kinds, and no unknown `nn.` key

Both dialects use it; it imports no dialect (the attribute builders are builtin's).
"""

from __future__ import annotations

import functools

from xdsl.dialects.builtin import DenseArrayBase, FloatAttr, IntegerAttr, StringAttr, f64, i64
from xdsl.utils.exceptions import VerifyException

from aloha_ir import rle


def _sym(op) -> str:
    s = op.properties.get("sym_name")
    return f" @{s.data}" if isinstance(s, StringAttr) else ""


class Annotation(property):
    """A typed result a pass records on an op, stored as the discardable attribute `DIALECT.NAME`
    (the dialect of the op class it is declared on): `op.NAME` reads it (None when absent),
    `op.NAME = value` writes it (None removes it), the op's verifier checks its type
    (`check_annotations`). A misspelt reader is an AttributeError, not a key that is silently
    absent.

    Kinds: "str" (StringAttr), "int" (i64), "float" (f64), "ints" (an i64 array), "runs" ((count x
    value) runs as an i64 array, like csdf's `times`).

    A doc that begins `analyze-NAME:` names the analysis pass that writes it (`analysis`): a
    transform that does not preserve that analysis drops the annotation (aloha_ir.passmanager),
    whether the analysis ran in the same pipeline or the IR was read from a file with it."""

    ATTRS = {"str": StringAttr, "int": IntegerAttr, "float": FloatAttr, "ints": DenseArrayBase,
             "runs": DenseArrayBase}

    def __init__(self, kind: str, doc: str):
        super().__init__()
        self.kind = kind
        self.doc = self.__doc__ = doc
        self.name = self.key = ""
        writer = doc.split(":", 1)[0]
        self.analysis = writer if writer.startswith("analyze-") and " " not in writer else ""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name
        self.key = f"{namespace(owner)}{name}"

    def __get__(self, op, owner=None):
        if op is None:
            return self
        a = op.attributes.get(self.key)
        if a is None:
            return None
        if self.kind == "str":
            return a.data
        if self.kind in ("int", "float"):
            return a.value.data
        values = tuple(a.get_values())
        return rle.unflat(values) if self.kind == "runs" else values

    def __set__(self, op, value) -> None:
        if value is None:
            op.attributes.pop(self.key, None)
        elif self.kind == "str":
            op.attributes[self.key] = StringAttr(value)
        elif self.kind == "int":
            op.attributes[self.key] = IntegerAttr(int(value), i64)
        elif self.kind == "float":
            op.attributes[self.key] = FloatAttr(float(value), f64)
        else:
            values = rle.flat(value) if self.kind == "runs" else value
            op.attributes[self.key] = DenseArrayBase.from_list(i64, [int(v) for v in values])

    def check(self, op) -> None:
        a = op.attributes.get(self.key)
        if a is not None and not isinstance(a, self.ATTRS[self.kind]):
            raise VerifyException(f"{op.name}{_sym(op)}: {self.key} must be of kind {self.kind} "
                                  f"({self.doc})")


def namespace(cls: type) -> str:
    """The annotation namespace of an op class: its dialect's name and a dot (`csdf.`)."""
    return cls.name.split(".", 1)[0] + "."


@functools.cache
def annotation_fields(cls: type) -> dict[str, Annotation]:
    """The annotations an op of class `cls` may carry, by attribute key (`csdf.pe`)."""
    return {a.key: a for klass in cls.__mro__ for a in vars(klass).values()
            if isinstance(a, Annotation)}


def check_annotations(op) -> None:
    """The verifier's part: every annotation of the right kind, no unknown key in the op's
    dialect namespace (a misspelt `csdf.pee` in IR text)."""
    known = annotation_fields(type(op))
    prefix = namespace(type(op))
    for key in op.attributes:
        if key.startswith(prefix) and key not in known:
            raise VerifyException(f"{op.name}{_sym(op)}: unknown annotation {key} "
                                  f"(known: {', '.join(sorted(known)) or 'none'})")
    for a in known.values():
        a.check(op)
