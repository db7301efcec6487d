"""IR text in and out, and modules saved with their weights (`NAME.mlir` + `NAME.weights.npz`)."""

from __future__ import annotations

import io
import struct

from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.utils.exceptions import ParseError, VerifyException

from aloha_ir.context import make_context
from aloha_ir.shapes import MAX_ELEMENTS, numel
from aloha_ir.verify import verify_full
from aloha_ir.errors import InputFileError, IRParseError, IRVerifyError
from aloha_ir.outputs import write_text
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


def _utf8_strings_are_strings() -> None:
    """xDSL prints a StringAttr holding non-ASCII text as escaped UTF-8 bytes ("r\\C3\\A9lu"), but
    lexes such a literal as bytes, not a string (its own docstring says a literal is a string when it
    decodes as UTF-8; the code tests isascii). An ONNX node named 'rélu' thus gave .mlir files the
    compiler could not read back. Literals that decode as UTF-8 are lexed as strings again."""
    from xdsl.utils.mlir_lexer import MLIRLexer, MLIRTokenKind, StringLiteral
    lex = MLIRLexer._lex_string_literal
    if getattr(lex, "_aloha_utf8", False):
        return

    def lex_string_literal(self, start_pos):
        token = lex(self, start_pos)
        if token.kind is MLIRTokenKind.BYTES_LIT:
            try:
                StringLiteral.from_span(token.span).bytes_contents.decode("utf-8")
            except UnicodeDecodeError:
                return token
            return type(token)(MLIRTokenKind.STRING_LIT, token.span)
        return token

    lex_string_literal._aloha_utf8 = True
    MLIRLexer._lex_string_literal = lex_string_literal


def _bounded_integer_widths() -> None:
    """xDSL accepts any integer type width and checks attribute values against 2**width, so a
    one-token typo (`: i64294967297`) allocated gigabytes while parsing (found by tests/test_fuzz.py).
    Widths are bounded as MLIR bounds them (IntegerType::kMaxWidth, 2**24 - 1)."""
    from xdsl.dialects.builtin import IntegerType
    verify = IntegerType.verify
    if getattr(verify, "_aloha_bounded", False):
        return

    def bounded(self):
        if self.width.data > (1 << 24) - 1:
            raise VerifyException(f"integer type width {self.width.data} exceeds MLIR's limit "
                                  f"of {(1 << 24) - 1} bits")
        verify(self)
    bounded._aloha_bounded = True
    IntegerType.verify = bounded


_harden_string_lexer()
_utf8_strings_are_strings()
_bounded_integer_widths()


def print_module(module: ModuleOp) -> str:
    out = io.StringIO()
    Printer(stream=out).print_op(module)
    out.write("\n")
    return out.getvalue()


def parse_module(text: str, source: str = "<string>") -> ModuleOp:
    """Parse IR text; errors become one IRParseError line with file:line:col."""
    try:
        module = Parser(make_context(), text, source).parse_module()
    except RecursionError:
        # xDSL's parser recurses per nesting level; real IR nests a few (module, graph, op, attr)
        raise IRParseError("the IR nests too deeply to parse", where=source,
                           hint="real IR nests a few levels; the file is damaged or generated "
                                "wrongly") from None
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
    """xDSL's full verification, as an IRVerifyError naming the op; tensors larger than the
    compiler handles are refused before any pass materialises them."""
    for op in module.walk():
        for r in op.results:
            if isinstance(r.type, TensorType) and \
                    numel(r.type.get_shape()) > MAX_ELEMENTS:
                raise IRVerifyError(f"{op.name}: tensor {list(r.type.get_shape())} has more than "
                                    f"{MAX_ELEMENTS:,} elements, more than the compiler handles",
                                    where=where or None)
    try:
        verify_full(module)
    except VerifyException as e:
        raise IRVerifyError(str(e).splitlines()[0], where=where or None,
                            hint=getattr(e, "hint", None)) from None
    except RecursionError:
        raise IRVerifyError("the IR nests too deeply to verify", where=where or None) from None


def blob_keys(module: ModuleOp) -> set[str]:
    return set(blob_shapes(module))


def blob_shapes(module: ModuleOp) -> dict[str, tuple[int, ...]]:
    """Weight-store key -> the shape its nn.const declares."""
    from aloha_ir.dialects.nn import ConstOp
    return {op.blob.data: tuple(op.output.type.get_shape()) for op in module.walk()
            if isinstance(op, ConstOp) and isinstance(op.blob, StringAttr)
            and isinstance(op.output.type, TensorType)}


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
    if verify:
        verify_module(module, path)
    expected = blob_shapes(module)
    if expected:
        side = sidecar_path(path)
        store = WeightStore.load(side)
        store.check(expected, side)
        attach_weights(module, store)
    return module
