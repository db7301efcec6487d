"""A user's torch model, exported with torch.onnx.export's default exporter in this environment (the
torch extra brings onnxscript, which that exporter needs), compiles with alohac."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")


def test_a_torch_export_with_the_default_exporter_compiles(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 10)).eval()
    x = torch.rand(1, 1, 8, 8)
    path = tmp_path / "user.onnx"
    torch.onnx.export(model, (x,), str(path))  # the default exporter: needs onnxscript
    sess = ort.InferenceSession(str(path))
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-4, atol=1e-5)
    r = subprocess.run([sys.executable, "-m", "alohac.main", "analyze", str(path), "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    # by hand: conv 4 maps x 8 x 8 outputs x 9 taps, dense 256 -> 10
    assert json.loads(r.stdout.strip().splitlines()[-1])["macs"] == 4 * 8 * 8 * 9 + 256 * 10
