"""The host kernel library's convolution, one layer at a time, against onnxruntime's Conv on the
same layer: where the generated programs' compute goes, kernel by kernel, without the runtime.

For each layer geometry (representative layers of the zoo's models), the float kernel
(aloha_conv_row_f32 over every output row, bias and ReLU fused) and onnxruntime's Conv + Relu
on one thread each, the best of several repetitions in thread CPU time (so the other core's
load does not count): milliseconds, GMAC/s and the ratio C/ORT. Beside them, the fixed-point
kernels on the same layer (8-bit operands summed in int32, 16-bit ones in 64-bit sums: the two
accumulators the generator picks), as a ratio to the float kernel's time: the issue's aim is
fixed point no slower than float. The outputs are checked against onnxruntime's (float: to
1e-4 relative; they differ only in the order of the sums, ORT fusing multiply-adds).

    python benchmarks/conv_kernels.py [--layers all|NAME,...] [--repeat 5]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from aloha_ir.console import console as console_for_tables
from rich.table import Table

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

SOURCE = os.path.join(os.path.dirname(HERE), "backends", "templates", "aloha_kernels.c")
# name: cin, cout, h, w, kernel, stride, pad
LAYERS = {
    "mnist_cnn.conv2": (32, 64, 26, 26, 3, 1, 0),
    "squeezenet.conv1": (3, 96, 224, 224, 7, 2, 0),
    "squeezenet.squeeze": (128, 16, 55, 55, 1, 1, 0),
    "squeezenet.expand1x1": (16, 64, 55, 55, 1, 1, 0),
    "squeezenet.expand3x3": (16, 64, 55, 55, 3, 1, 1),
    "squeezenet.fire9.expand3x3": (64, 256, 13, 13, 3, 1, 1),
    "resnet.3x3": (64, 64, 56, 56, 3, 1, 1),
    "resnet.1x1": (256, 64, 56, 56, 1, 1, 0),
    "resnet.3x3.512": (512, 512, 7, 7, 3, 1, 1),
}
F32, I8, I16 = 5, 1, 3  # aloha_kernels.h element types
RELU = 1


class Win(ctypes.Structure):
    _fields_ = [("p", ctypes.c_void_p), ("base", ctypes.c_int), ("rows", ctypes.c_int),
                ("c", ctypes.c_int), ("h", ctypes.c_int), ("w", ctypes.c_int),
                ("type", ctypes.c_int)]


class Conv(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int) for n in ("cin", "cout", "h", "w", "oh", "ow", "kh", "kw", "sh",
                                             "sw", "pt", "pl", "dh", "dw", "group", "wtype",
                                             "acc32")]


class Act(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("alpha", ctypes.c_float), ("lo", ctypes.c_float),
                ("hi", ctypes.c_float)]


class Rq(ctypes.Structure):
    _fields_ = [("shift", ctypes.c_void_p), ("shift0", ctypes.c_int32), ("kind", ctypes.c_int),
                ("leaky_mult", ctypes.c_int32), ("qmin", ctypes.c_int32),
                ("qmax", ctypes.c_int32), ("clip_lo", ctypes.c_int32),
                ("clip_hi", ctypes.c_int32), ("type", ctypes.c_int)]


def build_library(work: str) -> ctypes.CDLL:
    """aloha_kernels.c as the generated Makefile builds it on this machine (-O3 -march=native),
    with the integer variants this benchmark calls."""
    lib = os.path.join(work, "libaloha_kernels.so")
    subprocess.run(["gcc", "-std=c99", "-O3", "-march=native", "-DNDEBUG", "-fPIC", "-shared",
                    "-DALOHA_VARIANTS", "-DALOHA_V_i8_i8_a32", "-DALOHA_V_i16_i16_a64", "-o", lib,
                    SOURCE, "-lm"], check=True)
    return ctypes.CDLL(lib)


def cpu_best(run, repeat: int) -> float:
    """The least thread CPU time of `repeat` runs (after one warm-up)."""
    run()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.thread_time()
        run()
        best = min(best, time.thread_time() - t0)
    return best


def geometry(layer):
    cin, cout, h, w, k, s, p = layer
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    return Conv(cin, cout, h, w, oh, ow, k, k, s, s, p, p, 1, 1, 1, F32, 0)


def c_conv(lib, layer, x, wt, bias, bits: int):
    """A callable running the kernel over every output row, and the output array it fills."""
    g = geometry(layer)
    cin, cout, h, w = layer[:4]
    if bits:
        g.wtype, g.acc32 = (I8, 1) if bits == 8 else (I16, 0)
        dtype = np.int8 if bits == 8 else np.int16
        top = 2 ** (bits - 1) - 1
        xs = np.ascontiguousarray((x * top).astype(dtype).transpose(1, 0, 2))  # rows: [h][c][w]
        ws = np.ascontiguousarray((wt * top).astype(dtype))
        rq = Rq(None, bits - 1, RELU, 0, -top - 1, top, -top - 1, top, I8 if bits == 8 else I16)
        out = np.zeros((g.oh, cout, g.ow), dtype=dtype)
        bq = np.zeros(cout, dtype=np.int32)
        win = Win(xs.ctypes.data, 0, h, cin, h, w, I8 if bits == 8 else I16)
        kernel, weights, b, post = lib.aloha_conv_row_q, ws, bq, rq
    else:
        xs = np.ascontiguousarray(x.transpose(1, 0, 2))
        out = np.zeros((g.oh, cout, g.ow), dtype=np.float32)
        win = Win(xs.ctypes.data, 0, h, cin, h, w, F32)
        kernel, weights, b, post = lib.aloha_conv_row_f32, wt, bias, Act(RELU, 0, 0, 0)

    def run():
        for oy in range(g.oh):
            kernel(ctypes.byref(win), ctypes.c_void_p(weights.ctypes.data),
                   ctypes.c_void_p(b.ctypes.data), ctypes.byref(g), ctypes.byref(post), oy, 0,
                   cout, ctypes.c_void_p(out[oy].ctypes.data))
    run.keep = (xs, weights, b)  # the arrays the kernel reads live as long as the callable
    return run, out


def ort_conv(layer, wt, bias):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    cin, cout, h, w, k, s, p = layer
    g = geometry(layer)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[k, k], strides=[s, s],
                          pads=[p, p, p, p]),
         helper.make_node("Relu", ["c"], ["y"])], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, g.oh, g.ow])],
        [numpy_helper.from_array(wt, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), opts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", default="all", help="comma-separated names, or all: "
                    + ", ".join(LAYERS))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    names = list(LAYERS) if args.layers == "all" else args.layers.split(",")
    unknown = [n for n in names if n not in LAYERS]
    if unknown:
        ap.error(f"unknown layer(s) {', '.join(unknown)}; known: {', '.join(LAYERS)}")
    table = Table(title="conv kernels, one thread, thread CPU time (best of --repeat)")
    for col in ("layer", "MMAC", "C ms", "C GMAC/s", "ORT ms", "C/ORT", "8-bit / float",
                "16-bit / float", "max rel. err"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as work:
        lib = build_library(work)
        for name in names:
            layer = LAYERS[name]
            cin, cout, h, w, k = layer[:5]
            g = geometry(layer)
            macs = cout * g.oh * g.ow * cin * k * k
            x = rng.uniform(-0.3, 0.7, (cin, h, w)).astype(np.float32)
            wt = rng.uniform(-0.5, 0.5, (cout, cin, k, k)).astype(np.float32)
            wt /= np.sqrt(cin * k * k)
            bias = rng.uniform(-0.1, 0.1, cout).astype(np.float32)
            run, out = c_conv(lib, layer, x, wt, bias, 0)
            c_s = cpu_best(run, args.repeat)
            sess = ort_conv(layer, wt, bias)
            feed = {"x": x[None]}
            ort_s = cpu_best(lambda: sess.run(None, feed), args.repeat)
            want = sess.run(None, feed)[0][0]
            got = out.transpose(1, 0, 2)
            err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
            fixed = [cpu_best(c_conv(lib, layer, x, wt / np.abs(wt).max(), bias, b)[0],
                              args.repeat) for b in (8, 16)]
            table.add_row(name, f"{macs / 1e6:.1f}", f"{1e3 * c_s:.3f}", f"{macs / c_s / 1e9:.1f}",
                          f"{1e3 * ort_s:.3f}", f"{c_s / ort_s:.2f}", f"{fixed[0] / c_s:.2f}",
                          f"{fixed[1] / c_s:.2f}", f"{err:.1e}")
            if err > 1e-4:
                console_for_tables().print(f"[red]{name}: C and onnxruntime differ by {err:.1e}")
                return 1
    console_for_tables().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
