"""The row calculus of the nn -> csdf lowering (DESIGN.md "Lowering nn -> csdf", reference/csdf.md).

Granularity is the row: a line of the H axis with all channels (C x W tokens of a [N, C, H, W] tensor;
a tensor of any other rank is one row). An actor's firing j needs a contiguous range of input rows;
from the ranges of all firings this module derives, per firing, how many rows are newly read from
the input channel and how many pass through the actor's reuse self-loop:

- rows newly needed are read from the input channel; rows already read by firing j-1 and needed again
  come back through the self-loop (consumption at j = overlap with firing j-1, production at j =
  overlap with firing j+1);
- rows never needed (stride > window, trailing rows) are still read, in the firing that reaches past
  them or the last one, so every channel balances;
- padding rows are not tokens: windows are clipped to the input.

Pure functions on integers, shared by the lowering pass and its tests.
"""

from __future__ import annotations

from dataclasses import dataclass

Range = tuple[int, int]  # inclusive input rows (lo, hi); empty when lo > hi
EMPTY: Range = (1, 0)


def rows_of(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, tokens per row) of a tensor under the row decomposition."""
    n = 1
    for d in shape:
        n *= d
    if len(shape) == 4 and shape[2] > 0:
        return shape[2], n // shape[2]
    return 1, n


def window_ranges(h_in: int, h_out: int, kernel: int, stride: int, pad_top: int,
                  dilation: int = 1) -> list[Range]:
    """Rows read by output row j of a sliding window: [j*s - p_top, j*s - p_top + span - 1] clipped.

    With dilation the actor holds the whole span (the rows between taps are needed by neighbouring
    output rows anyway when the stride is smaller than the dilation)."""
    span = dilation * (kernel - 1) + 1
    out = []
    for j in range(h_out):
        lo = j * stride - pad_top
        out.append((max(lo, 0), min(lo + span - 1, h_in - 1)))
    return out


def aligned_ranges(h_in: int, h_out: int) -> list[Range]:
    """Row-aligned ops: output row j reads input row j; a one-row input broadcast over H is read once
    and kept (every firing needs row 0)."""
    if h_in == h_out:
        return [(j, j) for j in range(h_out)]
    if h_in == 1:
        return [(0, 0)] * h_out
    raise ValueError(f"cannot align {h_in} input rows with {h_out} output rows")


def spread_ranges(h_in: int, phases: int) -> list[Range]:
    """Ops that need the whole input: firing j reads its share of the rows (row j when there are as
    many firings as rows) and the result appears at the last firing."""
    return [(j * h_in // phases, (j + 1) * h_in // phases - 1) for j in range(phases)]


def shifted_ranges(h_in: int, h_out: int, offset: int) -> list[Range]:
    """Output row j copies input row j - offset when it exists (padding along H, concat along H)."""
    out = []
    for j in range(h_out):
        i = j - offset
        out.append((i, i) if 0 <= i < h_in else EMPTY)
    return out


def monotone_hull(ranges: list[Range]) -> list[Range]:
    """Make range bounds non-decreasing (lo_j = min over later firings, hi_j = max over earlier
    ones) so a FIFO can serve them: a non-monotone row map (reflect padding) keeps what later
    firings need. Monotone inputs come back unchanged."""
    n = len(ranges)
    lo = [0] * n
    hi = [0] * n
    best = None
    for j in range(n - 1, -1, -1):
        a, b = ranges[j]
        if a <= b and (best is None or a < best):
            best = a
        lo[j] = best if best is not None else 1 << 62
    best = None
    for j in range(n):
        a, b = ranges[j]
        if a <= b and (best is None or b > best):
            best = b
        hi[j] = best if best is not None else -1
    return [(a, b) if a <= b else EMPTY for a, b in zip(lo, hi)]


@dataclass(frozen=True)
class InputRates:
    """Per firing, in rows: read from the input channel, taken from / put into the reuse loop."""

    new: tuple[int, ...]
    reuse_in: tuple[int, ...]
    reuse_out: tuple[int, ...]

    @property
    def has_reuse(self) -> bool:
        return any(self.reuse_out)


def input_rates(ranges: list[Range], h_in: int) -> InputRates:
    ranges = monotone_hull(ranges)
    n = len(ranges)
    new = [0] * n
    reuse_in = [0] * n
    reuse_out = [0] * n
    read = 0  # rows consumed from the channel so far
    prev: Range = EMPTY
    for j, (lo, hi) in enumerate(ranges):
        if lo <= hi:
            if hi + 1 > read:
                new[j] = hi + 1 - read
                read = hi + 1
            a, b = prev
            if a <= b:
                overlap = min(hi, b) - max(lo, a) + 1
                if overlap > 0:
                    reuse_in[j] = overlap
                    reuse_out[j - 1] = overlap
            prev = (lo, hi)
        else:
            prev = EMPTY
    if n:
        new[-1] += h_in - read
    return InputRates(tuple(new), tuple(reuse_in), tuple(reuse_out))
