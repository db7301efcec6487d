"""Static shape rules shared by the nn verifiers and the ONNX frontend.

Plain Python on tuples: the frontend infers shapes with these instead of onnx.shape_inference (whose
first call costs ~11 ms), and the verifiers re-check them, so one formula serves both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Shape = tuple[int, ...]

# The largest tensor the compiler handles, in elements: generated code indexes with C ints, and a
# larger one in an input file is a typo (a shape of 4294967297) that would exhaust memory.
MAX_ELEMENTS = 2 ** 31 - 1


def window_out(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int = 1,
               ceil_mode: bool = False) -> int:
    """Output length of a sliding window (conv or pool) along one axis, as ONNX defines it."""
    span = dilation * (kernel - 1) + 1
    padded = size + pad_begin + pad_end - span
    if padded < 0:
        return 0
    if ceil_mode:
        out = -(-padded // stride) + 1
        # ONNX/PyTorch: the last window must start inside the input or the begin padding.
        if (out - 1) * stride >= size + pad_begin:
            out -= 1
        return out
    return padded // stride + 1


def conv_out_shape(x: Shape, out_channels: int, kernel: Sequence[int], strides: Sequence[int],
                   pads: Sequence[int], dilations: Sequence[int], ceil_mode: bool = False) -> Shape:
    """NCHW output of a 2-D window op; pads are ONNX order (top, left, bottom, right)."""
    n, _, h, w = x
    ho = window_out(h, kernel[0], strides[0], pads[0], pads[2], dilations[0], ceil_mode)
    wo = window_out(w, kernel[1], strides[1], pads[1], pads[3], dilations[1], ceil_mode)
    return (n, out_channels, ho, wo)


def same_pads(size: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
              dilations: Sequence[int], upper: bool) -> list[int]:
    """Explicit pads (ONNX order) for auto_pad SAME_UPPER / SAME_LOWER."""
    begins, ends = [], []
    for s, k, st, d in zip(size, kernel, strides, dilations):
        out = -(-s // st)
        total = max(0, (out - 1) * st + (k - 1) * d + 1 - s)
        small, big = total // 2, total - total // 2
        begins.append(small if upper else big)
        ends.append(big if upper else small)
    return begins + ends


def broadcast(a: Shape, b: Shape) -> Shape | None:
    """Numpy broadcasting of two shapes, or None when they do not broadcast."""
    out = []
    for x, y in zip(reversed((1,) * (len(b) - len(a)) + tuple(a)),
                    reversed((1,) * (len(a) - len(b)) + tuple(b))):
        if x != y and x != 1 and y != 1:
            return None
        out.append(max(x, y) if x != 0 and y != 0 else 0)
    return tuple(reversed(out))


def numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def reshape_target(src: Shape, spec: Sequence[int], allowzero: bool = False) -> Shape | None:
    """Resolve an ONNX Reshape spec (0 = copy, -1 = infer); None when it cannot match."""
    dims = []
    infer = -1
    for i, d in enumerate(spec):
        if d == 0 and not allowzero:
            if i >= len(src):
                return None
            dims.append(src[i])
        elif d == -1:
            if infer >= 0:
                return None
            infer = i
            dims.append(1)
        elif d < 0:
            return None
        else:
            dims.append(int(d))
    total = numel(src)
    if infer >= 0:
        rest = numel(dims)
        if rest == 0 or total % rest:
            return None
        dims[infer] = total // rest
    return tuple(dims) if numel(dims) == total else None


RESIZE_COORD_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
                      "tf_half_pixel_for_nn")
RESIZE_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def resize_out(size: int, scale: float) -> int:
    """ONNX Resize output length: floor(size * scale) (a hair of tolerance for sizes given as
    out/in ratios)."""
    return int(math.floor(size * scale + 1e-9))


def resize_source(x: int, in_size: int, out_size: int, scale: float, coord_mode: str) -> float:
    """Source coordinate of output index x along one axis (ONNX Resize's coordinate transforms)."""
    if coord_mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if coord_mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_size > 1 else 0.0
    if coord_mode == "align_corners":
        return x * (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    if coord_mode == "asymmetric":
        return x / scale
    if coord_mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    raise ValueError(f"unknown coordinate_transformation_mode '{coord_mode}'")


def resize_taps(x: int, in_size: int, out_size: int, scale: float, mode: str, coord_mode: str,
                nearest_mode: str = "round_prefer_floor") -> tuple[int, int]:
    """(first, last) input index output index x reads: one for nearest, two neighbours for linear,
    clamped to the input."""
    src = resize_source(x, in_size, out_size, scale, coord_mode)
    if mode == "nearest":
        fl = math.floor(src)
        frac = src - fl
        if nearest_mode == "floor":
            i = fl
        elif nearest_mode == "ceil":
            i = math.ceil(src)
        elif nearest_mode == "round_prefer_ceil":
            i = fl + 1 if frac >= 0.5 else fl
        else:  # round_prefer_floor
            i = fl + 1 if frac > 0.5 else fl
        i = min(max(i, 0), in_size - 1)
        return i, i
    lo = math.floor(src)
    return min(max(lo, 0), in_size - 1), min(max(lo + 1, 0), in_size - 1)
