"""Kubernetes quantities: sizes in bytes and CPU in cores, as users write them.

The forms ``kubectl`` and the Kubernetes API accept, so that a label or a setting
copied from a pod spec means the same here:

- **bytes**: a plain number (``1073741824``), a decimal suffix ``k M G T P E`` (powers
  of 1000: ``2G`` = 2,000,000,000) or a binary suffix ``Ki Mi Gi Ti Pi Ei`` (powers of
  1024: ``2Gi`` = 2,147,483,648); ``KiB``/``MiB``/``GiB``/… (Docker's spelling) are the
  binary ones too. ``512Mi`` = 536,870,912; ``1.5Gi`` = 1,610,612,736.
- **cores**: a plain number (``1.5``) or millicores (``500m`` = 0.5).

Anything else (a unit of another kind, a negative, ``nan``, ``inf``) raises
``ValueError`` naming the text and the forms accepted.
"""

from __future__ import annotations

import math
import re

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
            "E": 10**18}
_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")

BYTES_FORMS = "a number of bytes, or with k/M/G/T (×1000) or Ki/Mi/Gi/Ti (×1024): 512Mi, 2Gi"
CORES_FORMS = "a number of cores (1.5) or millicores (500m)"


def _split(text: str | float | int) -> tuple[float, str]:
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a quantity")
    if isinstance(text, int | float):
        return float(text), ""
    m = _NUMBER.match(str(text))
    if m is None:
        raise ValueError(f"{text!r} is not a quantity")
    return float(m.group(1)), m.group(2)


def parse_bytes(text: str | float | int) -> float:
    """Bytes of a Kubernetes memory quantity (module docstring). ``parse_bytes("2Gi")``
    = 2147483648.0; ``parse_bytes("2G")`` = 2e9; ``parse_bytes("64MiB")`` = 67108864.0."""
    try:
        value, unit = _split(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a size: expected {BYTES_FORMS}") from None
    if unit.endswith("iB"):
        unit = unit[:-1]
    factor = _BINARY.get(unit, _DECIMAL.get(unit))
    if factor is None or not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} is not a size: expected {BYTES_FORMS}")
    return value * factor


def parse_cores(text: str | float | int) -> float:
    """Cores of a Kubernetes CPU quantity. ``parse_cores("500m")`` = 0.5;
    ``parse_cores("2")`` = 2.0."""
    try:
        value, unit = _split(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a CPU amount: expected {CORES_FORMS}") from None
    if unit not in ("", "m") or not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} is not a CPU amount: expected {CORES_FORMS}")
    return value / 1000 if unit == "m" else value


__all__ = ["BYTES_FORMS", "CORES_FORMS", "parse_bytes", "parse_cores"]
