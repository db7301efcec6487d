"""IR text in and out, and modules saved with their weights (`NAME.mlir` + `NAME.weights.npz`)."""

from __future__ import annotations

import io
import struct

from xdsl.dialects.builtin import ModuleOp
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.utils.exceptions import ParseError, VerifyException

from aloha_ir.context import make_context
from aloha_ir.errors import InputFileError, IRParseError, IRVerifyError
from aloha_ir.outputs import write_bytes, write_text  # noqa: F401  (their old home)
from aloha_ir.weights import WeightStore, attach_weights, sidecar_path, weights_of


def _harden_string_lexer() -> None:
    """xDSL 0.74 lexes string literals with `"(?:[^"...]+|escape)*"`: a nested quantifier that
    backtracks exponentially on a line with an unterminated string (a one-character typo in an
    .mlir file hangs the parser; found by tests/test_fuzz.py). The possessive form matches the same
    language without backtracking. Applied only to the exact pattern we know."""
    import re

    from xdsl.utils.mlir_lexer import MLIRLexer
    bad = r'"(?:[^"\\\n\v\f]+|\\(?:["nt\\]|[0-9A-Fa-f]{2}))*"'
    if MLIRLexer._unescaped_characters_regex.pattern == bad:
        MLIRLexer._unescaped_characters_regex = re.compile(
            r'"(?:[^"\\\n\v\f]++|\\(?:["nt\\]|[0-9A-Fa-f]{2}))*+"')


_harden_string_lexer()


def print_module(module: ModuleOp) -> str:
    out = io.StringIO()
    Printer(stream=out).print_op(module)
    out.write("\n")
    return out.getvalue()


def parse_module(text: str, source: str = "<string>") -> ModuleOp:
    """Parse IR text; errors become one IRParseError line with file:line:col."""
    try:
        module = Parser(make_context(), text, source).parse_module()
    except ParseError as e:
        raise IRParseError(_parse_message(e, text), where=_position(e, source)) from None
    except VerifyException as e:  # attribute verifiers run while parsing
        raise IRParseError(str(e).splitlines()[0], where=source) from None
    except (NotImplementedError, ValueError, OverflowError, struct.error) as e:
        # xDSL builds some attributes while parsing and fails outside its ParseError family
        # (e.g. `array<i604: 1>`: "Format not implemented for i604"; found by tests/test_fuzz.py)
        raise IRParseError(f"invalid attribute: {str(e).splitlines()[0] if str(e) else e!r}",
                           where=source) from None
    return module


def _position(e: ParseError, source: str) -> str:
    span = getattr(e, "span", None)
    if span is None:
        return source
    loc = span.get_location()
    return f"{source}:{loc.line}:{loc.col}"


def _parse_message(e: ParseError, text: str) -> str:
    # str(e) is a multi-line caret diagram; the bare message is `msg`.
    msg = " ".join(str(getattr(e, "msg", "") or "syntax error").split())
    near = e.span.text.strip() if getattr(e, "span", None) is not None else ""
    return f"{msg} (at '{near[:40]}')" if near else msg


def verify_module(module: ModuleOp, where: str = "") -> None:
    """xDSL's full verification, as an IRVerifyError naming the op."""
    try:
        module.verify()
    except VerifyException as e:
        raise IRVerifyError(str(e).splitlines()[0], where=where or None) from None


def blob_keys(module: ModuleOp) -> set[str]:
    from aloha_ir.dialects.nn import ConstOp
    return {op.blob.data for op in module.walk() if isinstance(op, ConstOp) and op.blob is not None}


def save_module(module: ModuleOp, path: str) -> list[str]:
    """Write `path` (IR text) and, when blobs are referenced, its weights sidecar. Returns the files.

    Each is written through a temporary and a rename; write both into a `Staged` folder
    (aloha_ir/outputs.py) so that the pair, too, is all old or all new.
    """
    text = print_module(module)
    keys = blob_keys(module)
    written = []
    if keys:
        side = sidecar_path(path)
        weights_of(module).save(side, keys)
        written.append(side)
    write_text(path, text)
    return [path] + written


def load_module(path: str, verify: bool = True) -> ModuleOp:
    """Parse `path`, bind its weights sidecar (if any blobs are referenced) and verify."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise InputFileError("no such file", where=path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"cannot read IR text ({e.__class__.__name__})", where=path) from None
    module = parse_module(text, path)
    if blob_keys(module):
        attach_weights(module, WeightStore.load(sidecar_path(path)))
    if verify:
        verify_module(module, path)
    return module
