"""The torch executor of the nn IR against onnxruntime (float), on every light model and zoo builder."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from runtime.torch.module import build  # noqa: E402
from frontends.onnx import import_model  # noqa: E402
from frontends.zoo import BUILDERS, zoo_onnx  # noqa: E402
from model_helpers import (LIGHT_MODELS, graph_inputs, light_path, materialize_random,  # noqa: E402
                           randomize_weights, relative_error, run_ort, strip_final_softmax)
from aloha_ir.context import make_context  # noqa: E402
from aloha_ir.passmanager import PassManager  # noqa: E402


def _compare(model: onnx.ModelProto, canonicalize: bool, batch: int = 2, seed: int = 0) -> float:
    (name, shape), = graph_inputs(model).items()
    module = import_model(model, source="test")
    if canonicalize:
        PassManager.parse("canonicalize").run(module, make_context())
    rng = np.random.default_rng(seed)
    xs = rng.uniform(0, 1, (batch,) + tuple(shape[1:])).astype(np.float32)
    expected = np.concatenate([run_ort(model, {name: xs[i:i + 1]})[0] for i in range(batch)])
    m = build(module).eval()
    with torch.no_grad():
        got = m(torch.from_numpy(xs)).numpy()
    assert got.shape == expected.shape
    return relative_error(got, expected)


# the VGGs and zfnet512 (13-20 s each) run in `make test-all`; every other model in `make test`
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  if n.startswith("vgg") or n == "zfnet512" else n
                                  for n in LIGHT_MODELS])
def test_light_models_match_onnxruntime(name):
    model = strip_final_softmax(randomize_weights(onnx.load(light_path(name)), seed=3))
    assert _compare(model, canonicalize=True, batch=1) < 1e-4


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n.startswith("vgg")
                                  else n for n in sorted(BUILDERS)])
def test_zoo_builders_match_onnxruntime(name):
    model = strip_final_softmax(zoo_onnx(name))
    model = materialize_random(model)
    assert _compare(model, canonicalize=name != "vgg16", batch=2 if name != "vgg16" else 1) < 1e-4
