"""Kubernetes quantities: sizes in bytes and CPU in cores, as users write and read them.

The forms ``kubectl`` and the Kubernetes API accept, so that a label, a setting or a
flag copied from a pod spec means the same here:

- **bytes**: a plain number (``1073741824``), a decimal suffix ``k M G T P E`` (powers
  of 1000: ``2G`` = 2,000,000,000), a binary suffix ``Ki Mi Gi Ti Pi Ei`` (powers of
  1024: ``2Gi`` = 2,147,483,648) or a decimal exponent (``1e9`` = 1,000,000,000);
  ``KiB``/``MiB``/``GiB``/… (Docker's spelling) are the binary ones too.
  ``512Mi`` = 536,870,912; ``1.5Gi`` = 1,610,612,736.
- **cores**: a plain number (``1.5``) or millicores (``500m`` = 0.5, ``250m`` = 0.25).

Anything else (a unit of another kind, a negative, ``nan``, ``inf``) raises
``ValueError`` naming the field (when given), the text and the forms accepted:
``parse_bytes("2Gb", field="--pool-memory")`` → ``--pool-memory: '2Gb' is not a size:
expected ...``.

The way back, for people: :func:`format_bytes` (``2147483648`` → ``"2.00 GiB"``),
:func:`format_cores` (``0.5`` → ``"0.50 cores"``), and for a file that must read back
exactly, :func:`to_quantity` (``2147483648`` → ``"2Gi"``).
"""

from __future__ import annotations

import math
import re

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
            "E": 10**18}
# a number, then a decimal exponent (e3, E-2: digits must follow, so "2E" is exa) or a
# suffix
_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*([A-Za-z]*)\s*$")

BYTES_FORMS = ("a number of bytes, or with k/M/G/T (×1000) or Ki/Mi/Gi/Ti (×1024): "
               "512Mi, 2Gi, 1.5G")
CORES_FORMS = "a number of cores (1.5) or millicores (500m)"


def _split(text: str | float | int) -> tuple[float, str]:
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a quantity")
    if isinstance(text, int | float):
        return float(text), ""
    m = _NUMBER.match(str(text))
    if m is None or (m.group(2) and m.group(3)):  # 1e3 or 1k, never 1e3Mi (as Kubernetes)
        raise ValueError(f"{text!r} is not a quantity")
    return float(m.group(1) + (m.group(2) or "")), m.group(3)


def _named(field: str | None, message: str) -> str:
    return f"{field}: {message}" if field else message


def parse_bytes(text: str | float | int, field: str | None = None) -> float:
    """Bytes of a Kubernetes memory quantity (module docstring). ``parse_bytes("2Gi")``
    = 2147483648.0; ``parse_bytes("2G")`` = 2e9; ``parse_bytes("64MiB")`` = 67108864.0;
    ``parse_bytes("1e3")`` = 1000.0. ``field`` (a flag or setting) leads the error."""
    bad = _named(field, f"{text!r} is not a size: expected {BYTES_FORMS}")
    try:
        value, unit = _split(text)
    except ValueError:
        raise ValueError(bad) from None
    if unit.endswith("iB"):
        unit = unit[:-1]
    factor = _BINARY.get(unit, _DECIMAL.get(unit))
    if factor is None or not math.isfinite(value) or value < 0:
        raise ValueError(bad)
    return value * factor


def parse_cores(text: str | float | int, field: str | None = None) -> float:
    """Cores of a Kubernetes CPU quantity. ``parse_cores("500m")`` = 0.5;
    ``parse_cores("2")`` = 2.0; ``parse_cores("1.5")`` = 1.5. ``field`` leads the
    error."""
    bad = _named(field, f"{text!r} is not a CPU amount: expected {CORES_FORMS}")
    try:
        value, unit = _split(text)
    except ValueError:
        raise ValueError(bad) from None
    if unit not in ("", "m") or not math.isfinite(value) or value < 0:
        raise ValueError(bad)
    return value / 1000 if unit == "m" else value


def format_bytes(v: float, per_s: bool = False) -> str:
    """A size for people, in the binary unit that keeps it short (``"/s"`` appended for a
    rate). Worked examples: ``512`` → ``"512 B"``; ``1536`` → ``"1.5 KiB"``;
    ``100 * 2**20`` → ``"100.0 MiB"``; ``1.5 * 2**30`` → ``"1.50 GiB"``;
    ``3 * 2**40`` → ``"3.00 TiB"``; ``inf`` → ``"unlimited"``; ``nan`` → ``"-"``;
    ``2 * 2**20, per_s=True`` → ``"2.0 MiB/s"``."""
    rate = "/s" if per_s else ""
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "unlimited" if v > 0 else "-"
    a = abs(v)
    if a < 2**10:
        return f"{v:.0f} B{rate}"
    if a < 2**20:
        return f"{v / 2**10:.1f} KiB{rate}"
    if a < 2**30:
        return f"{v / 2**20:,.1f} MiB{rate}"
    if a < 2**40:
        return f"{v / 2**30:,.2f} GiB{rate}"
    return f"{v / 2**40:,.2f} TiB{rate}"


def format_cores(v: float) -> str:
    """CPU for people, with its unit. ``0.5`` → ``"0.50 cores"``; ``1`` → ``"1.00 cores"``;
    ``0.0123`` → ``"0.012 cores"`` (three decimals below 0.1 so 12m is not 0.01);
    ``inf`` → ``"unlimited"``; ``nan`` → ``"-"``."""
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "unlimited" if v > 0 else "-"
    return f"{v:.3f} cores" if 0 < abs(v) < 0.1 else f"{v:,.2f} cores"


def to_quantity(v: float) -> str | int:
    """Bytes in the shortest Kubernetes form that reads back exactly (for files a user
    may copy back into a config), else the whole number. ``2**31`` → ``"2Gi"``;
    ``3 * 2**19`` → ``"1536Ki"``; ``2 * 10**9`` → ``"2G"``; ``1000001`` → ``1000001``;
    ``0`` → ``0``. ``parse_bytes(to_quantity(v)) == v`` for every whole ``0 ≤ v ≤ 2**53``
    (8 PiB: sizes are floats, exact that far)."""
    n = int(v)
    if n != v or n <= 0:
        return n
    for suffix, factor in sorted({**_BINARY, **{k: f for k, f in _DECIMAL.items() if k}}
                                 .items(), key=lambda kv: -kv[1]):
        if n % factor == 0:
            return f"{n // factor}{suffix}"
    return n


__all__ = ["BYTES_FORMS", "CORES_FORMS", "format_bytes", "format_cores", "parse_bytes",
           "parse_cores", "to_quantity"]
