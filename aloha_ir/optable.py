"""Per-op tables: one concern (a C kernel record, an ONNX export, a row plan, ...) keyed by nn op
class, filled by a decorator on one small function per op family. tests/test_op_coverage.py checks
that each table covers the nn dialect."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aloha_ir.errors import InternalError

Rule = TypeVar("Rule", bound=Callable[..., Any])


def registrar(table: dict[type, Any], concern: str) -> Callable[..., Callable[[Rule], Rule]]:
    """The decorator of `table`: `@register(nn.AddOp, nn.MulOp)` makes the decorated function the
    `concern` of those op classes; a class registered twice is an InternalError naming both."""
    def register(*ops: type) -> Callable[[Rule], Rule]:
        def add(rule: Rule) -> Rule:
            for op in ops:
                if op in table:
                    raise InternalError(f"{getattr(op, 'name', op.__name__)} has two {concern}s: "
                                        f"{table[op].__name__} and {rule.__name__}")
                table[op] = rule
            return rule
        return add
    return register
