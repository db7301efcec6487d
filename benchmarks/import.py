"""Import speed: ALOHA's load + import + canonicalize vs. onnx.load + onnx.shape_inference, same run.

Budget (issue 2, against the seeds' 13-59 ms for the whole DNN-to-CSDF conversion, deliverable
Table 5): under 10 ms for mnist-8, alexnet and vgg19, under 30 ms for inception_v1 (median of repeated
in-process runs; process start and imports excluded). mnist-8 is read from $ALOHA_DATA/onnx and is
skipped, with a message, when ALOHA_DATA is unset.

    python benchmarks/import.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import sys

import onnx

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from model_helpers import LIGHT_MODELS, light_path  # noqa: E402

from aloha_ir.passmanager import PassManager  # noqa: E402
from frontends.onnx import import_onnx  # noqa: E402
from timing import median_ms, report_budgets  # noqa: E402

BUDGET_MS = {"mnist-8": 10, "bvlc_alexnet": 10, "vgg19": 10, "inception_v1": 30}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    models = [(n, light_path(n)) for n in LIGHT_MODELS]
    data = os.environ.get("ALOHA_DATA")
    if data:
        models.insert(0, ("mnist-8", os.path.join(data, "onnx", "mnist-8.onnx")))
    else:
        print("note: ALOHA_DATA is unset, mnist-8 skipped (set it to shared/data)")
    pm = PassManager.parse("canonicalize", verify_each=True)

    def ours(path):
        return lambda _: pm.run(import_onnx(path))

    def peer(path):
        return lambda _: onnx.shape_inference.infer_shapes(onnx.load(path))

    print(f"{'model':<14} {'aloha ms':>9} {'onnx ms':>9} {'ratio':>6}  budget")
    over = []
    for name, path in models:
        a = median_ms(ours(path), args.repeat)
        b = median_ms(peer(path), args.repeat)
        budget = BUDGET_MS.get(name)
        verdict = "" if budget is None else (f"< {budget} ms ok" if a < budget else
                                             f"OVER {budget} ms")
        if budget and a >= budget:
            over.append(f"{name} {a:.1f} ms > {budget} ms")
        print(f"{name:<14} {a:9.2f} {b:9.2f} {a / b:6.2f}  {verdict}")
    print("aloha = read file + ONNX -> nn import (shape inference included) + canonicalize + verify;"
          " onnx = onnx.load + onnx.shape_inference.infer_shapes")
    return report_budgets(over)


if __name__ == "__main__":
    sys.exit(main())
