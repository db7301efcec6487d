"""DNN-to-CSDF conversion speed against the seeds' Table 5 (deliverable D2.2, section 2.5.4.4).

Per model: `convert` = the convert-nn-to-csdf pass with the verification the PassManager runs after it
(references, phase counts, balance, liveness), on an imported and canonicalized module; `total` = read
the file, import, canonicalize, convert (what Table 5's tool did from an ONNX file). Medians of
repeated in-process runs, process start and module imports excluded. The peer measured in the same run
is onnx.load + onnx.shape_inference on the same file. Budget: `convert` at most the seeds' time; the aim
is a third of it. mnist-8 needs $ALOHA_DATA (skipped with a note otherwise).

    python benchmarks/conversion.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import sys

import onnx
from timing import median_ms, report_budgets

from aloha_ir.passmanager import PassManager
from frontends.onnx import import_model, import_onnx
from frontends.zoo import tiny_yolov2, zoo_path

# model -> the seeds' conversion time in ms (Table 5; bvlc_googlenet and inception_v1 both 59 ms)
SEEDS_MS = {"mnist-8": 13, "bvlc_alexnet": 15, "inception_v1": 59, "tiny_yolov2": 18, "vgg19": 19}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), "aloha-bench-tiny_yolov2.onnx")
    onnx.save(tiny_yolov2(), tmp)  # the builder's model as a file, so `total` reads a file too
    paths = {"bvlc_alexnet": zoo_path("bvlc_alexnet"), "inception_v1": zoo_path("inception_v1"),
             "tiny_yolov2": tmp, "vgg19": zoo_path("vgg19")}
    data = os.environ.get("ALOHA_DATA")
    if data:
        paths = {"mnist-8": os.path.join(data, "onnx", "mnist-8.onnx"), **paths}
    else:
        print("note: ALOHA_DATA is unset, mnist-8 skipped (set it to shared/data)")
    canon = PassManager.parse("canonicalize")
    convert = PassManager.parse("convert-nn-to-csdf")
    full = PassManager.parse("canonicalize,convert-nn-to-csdf")

    print(f"{'model':<14} {'convert ms':>10} {'total ms':>9} {'seeds ms':>9} {'convert/seeds':>13} "
          f"{'onnx ms':>8} {'total/onnx':>10}")
    over = []
    for name, path in paths.items():
        model = onnx.load(path)

        def fresh(model=model):
            module = import_model(model)
            canon.run(module)
            return module

        conv = median_ms(lambda m: convert.run(m), args.repeat, setup=fresh)
        total = median_ms(lambda _: full.run(import_onnx(path)), args.repeat)
        peer = median_ms(lambda _: onnx.shape_inference.infer_shapes(onnx.load(path)), args.repeat)
        seeds = SEEDS_MS[name]
        ratio = conv / seeds
        if ratio > 1:
            over.append(f"{name} conversion {conv:.1f} ms > the seeds' {seeds} ms")
        mark = "OVER" if ratio > 1 else ("ok, <= 1/3" if ratio <= 1 / 3 else "ok")
        print(f"{name:<14} {conv:10.2f} {total:9.2f} {seeds:9g} {ratio:13.2f} {peer:8.2f} "
              f"{total / peer:10.1f}  {mark}")
    os.remove(tmp)
    return report_budgets(over)


if __name__ == "__main__":
    sys.exit(main())
