"""Units of architecture descriptions, against hand conversions of hardware.md's figures."""

from __future__ import annotations

import pytest

from archdesc.units import UnitError, quantity


@pytest.mark.parametrize("number, unit, si, dim", [
    (140, "MHz", 140e6, "frequency"),          # NEURAghe LOSA CE clock
    (1.175, "GHz", 1.175e9, "frequency"),      # Orlando top operating point
    (0.8, "GB/s", 0.8e9, "bandwidth"),         # NEURAghe weights-in link
    (256, "KiB", 262144, "size"),              # LOSA weight memory
    (1, "MiB", 1048576, "size"),               # TCDM
    (4.26, "GB/s", 4.26e9, "bandwidth"),
    (32, "bit/s", 4, "bandwidth"),
    (2.62, "W", 2.62, "power"),
    (40, "mW", 0.04, "power"),
    (0.575, "V", 0.575, "voltage"),
    (3, "us", 3e-6, "time"),
    (5, "nJ", 5e-9, "energy"),
])
def test_conversions(number, unit, si, dim):
    q = quantity(number, unit)
    assert q.to(dim) == pytest.approx(si, rel=1e-12)


def test_errors_say_what_was_expected():
    with pytest.raises(UnitError, match="is a size, expected a bandwidth .*0.8 GB/s"):
        quantity(256, "KiB").to("bandwidth")
    with pytest.raises(UnitError, match="did you mean .*'MHz'"):
        quantity(140, "mhz")
    with pytest.raises(UnitError, match="did you mean 'GB/s'"):
        quantity(1, "GBps")
    with pytest.raises(UnitError, match="unknown unit 'furlong'"):
        quantity(1, "furlong")
    with pytest.raises(UnitError, match="negative"):
        quantity(-0.8, "GB/s")
    with pytest.raises(UnitError, match="unknown unit 'mB'"):
        quantity(1, "mB")  # no milli-bytes
