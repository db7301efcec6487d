"""Verification levels.

`verify_fast` runs every op's own invariant (`check`: the shape rules, operand kinds) in one walk:
what a pass can break. `verify_full` is xDSL's generic verification (IRDL constraints on every operand,
result and attribute, traits), ~3x slower; it runs on parsed text, in tests, and with --verify-full.
"""

from __future__ import annotations

from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.exceptions import VerifyException


def verify_fast(module: ModuleOp) -> None:
    for op in module.walk():
        if op is module:
            continue
        for operand in op.operands:
            owner = operand.owner
            if getattr(owner, "parent", True) is None:
                raise VerifyException(f"{op.name} uses a value whose defining op was erased")
        check = getattr(op, "check", None)
        (check or op.verify_)()


def verify_full(module: ModuleOp) -> None:
    module.verify()
