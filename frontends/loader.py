"""MODEL arguments -> modules: `zoo:NAME`, an .onnx file, or an .mlir file (with its weights)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from xdsl.dialects.builtin import ModuleOp

from aloha_ir.errors import InputFileError, UsageError


def load_model(spec: str, input_shapes: dict[str, Sequence[int]] | None = None) -> ModuleOp:
    if spec.startswith("zoo:"):
        from frontends.zoo import canonical_name, load_zoo
        if input_shapes:
            raise UsageError("--input-shape does not apply to zoo models (their shapes are fixed)")
        return load_zoo(canonical_name(spec[4:]))
    if spec.endswith(".mlir"):
        from aloha_ir.textio import load_module
        return load_module(spec)
    if not os.path.exists(spec):
        raise InputFileError("no such file", where=spec,
                             hint="MODEL is an .onnx or .mlir path, or zoo:NAME (alohac list zoo)")
    from frontends.onnx import import_onnx
    return import_onnx(spec, input_shapes=input_shapes)


def model_stem(spec: str) -> str:
    if spec.startswith("zoo:"):
        return spec[4:]
    base = os.path.basename(spec)
    return base.rsplit(".", 1)[0] if "." in base else base
