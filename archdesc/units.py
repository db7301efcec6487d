"""Physical units of architecture descriptions: `140 MHz`, `0.8 GB/s`, `256 KiB`, `10 W`, `3 us`.

Every number in an .arch file carries its unit; the loader converts it to SI base units (Hz, B/s, B, W,
V, s, J) and checks its dimension against what the field expects, so `bandwidth = 256 KiB` is an error,
not a silent 262144 B/s. Decimal prefixes are powers of 1000, binary ones (Ki, Mi, Gi) powers of 1024.
"""

from __future__ import annotations

from dataclasses import dataclass

DIMENSIONS = ("frequency", "bandwidth", "size", "power", "voltage", "time", "energy")

_BASES = {"Hz": "frequency", "B/s": "bandwidth", "B": "size", "W": "power", "V": "voltage",
          "s": "time", "J": "energy"}
_DECIMAL = {"": 1.0, "p": 1e-12, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "K": 1e3, "M": 1e6,
            "G": 1e9, "T": 1e12}
_BINARY = {"Ki": 1024.0, "Mi": 1024.0 ** 2, "Gi": 1024.0 ** 3, "Ti": 1024.0 ** 4}
# bytes and byte rates take no sub-unit prefixes; the others no binary ones
_BYTE_PREFIXES = ("", "k", "K", "M", "G", "T")


def _table() -> dict[str, tuple[float, str]]:
    units: dict[str, tuple[float, str]] = {}
    for base, dim in _BASES.items():
        byte_like = base.startswith("B")
        for prefix, factor in _DECIMAL.items():
            if byte_like and prefix not in _BYTE_PREFIXES:
                continue
            units[prefix + base] = (factor, dim)
        if byte_like:
            for prefix, factor in _BINARY.items():
                units[prefix + base] = (factor, dim)
    units["bit"] = (0.125, "size")
    units["bit/s"] = (0.125, "bandwidth")
    units["min"] = (60.0, "time")
    return units


UNITS = _table()


class UnitError(ValueError):
    """A unit that is unknown, or of another dimension than the field needs."""


@dataclass(frozen=True)
class Quantity:
    value: float  # in the SI base unit of its dimension
    dimension: str
    text: str  # as written, for messages and JSON

    def to(self, dimension: str) -> float:
        """The value in base units, after checking the dimension."""
        if dimension != self.dimension:
            raise UnitError(f"'{self.text}' is a {self.dimension}, expected a {dimension} "
                            f"(e.g. {example(dimension)})")
        return self.value


def example(dimension: str) -> str:
    return {"frequency": "140 MHz", "bandwidth": "0.8 GB/s", "size": "256 KiB", "power": "10 W",
            "voltage": "0.575 V", "time": "2 us", "energy": "5 nJ"}[dimension]


def quantity(number: float, unit: str) -> Quantity:
    """`number unit` as a Quantity; UnitError (with the units of the closest dimension) if unknown."""
    entry = UNITS.get(unit)
    if entry is None:
        hint = _suggest(unit)
        raise UnitError(f"unknown unit '{unit}'" + (f"; did you mean {hint}?" if hint else
                                                     f"; known: {', '.join(_BASES)} with prefixes"))
    factor, dim = entry
    if number < 0:
        raise UnitError(f"'{number:g} {unit}' is negative; a {dim} must be >= 0")
    return Quantity(number * factor, dim, f"{number:g} {unit}")


def _suggest(unit: str) -> str:
    same = [f"'{u}'" for u in UNITS if u.lower() == unit.lower()]
    if same:
        return " or ".join(same)
    if unit.endswith("ps") and unit[:-2] + "/s" in UNITS:
        return f"'{unit[:-2]}/s'"
    return ""
