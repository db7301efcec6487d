"""The codegen view: the mapped csdf graph as plain data a C template can render."""

from backends.codegen.view import C_KEYWORDS, CodegenView, build_view, c_identifier

__all__ = ["C_KEYWORDS", "CodegenView", "build_view", "c_identifier"]
