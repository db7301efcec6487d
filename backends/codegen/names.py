"""C spellings of the view's objects: identifiers made from ONNX names, and float literals."""

from __future__ import annotations

import math
import re

import numpy as np

from aloha_ir.errors import UnsupportedError

C_KEYWORDS = frozenset("""auto break case char const continue default do double else enum extern
float for goto if inline int long register restrict return short signed sizeof static struct switch
typedef union unsigned void volatile while _Bool _Complex _Imaginary main""".split())
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def c_identifier(name: str, index: int, prefix: str = "a") -> str:
    """A valid, unique C identifier for the `index`-th object named `name` (ONNX names hold '/',
    ':', '.', leading digits, keywords): the prefix and index make it unique and valid whatever
    the name is; the sanitised name keeps it readable."""
    body = _UNSAFE.sub("_", name).strip("_")[:40]
    ident = f"{prefix}{index}_{body}" if body else f"{prefix}{index}"
    return re.sub(r"__+", "_", ident)


def c_float(v: float) -> str:
    """`v` as a C float literal, exactly the float32 the kernels compute with."""
    if math.isnan(v) or math.isinf(v):
        raise UnsupportedError("a weight is not finite; the generated code cannot hold it")
    text = repr(float(np.float32(v)))
    return text + ("f" if ("." in text or "e" in text) else ".0f")
