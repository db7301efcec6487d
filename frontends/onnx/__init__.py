"""ONNX frontend: `import_onnx(path)` -> a module holding one nn.graph, weights bound."""

from frontends.onnx import converters  # noqa: F401  (registers the converters)
from frontends.onnx.importer import import_model, import_onnx, load_onnx, supported_ops

__all__ = ["import_onnx", "import_model", "load_onnx", "supported_ops"]
