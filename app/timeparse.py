"""Parse the times users type: ``--since 2h``, ``--since 2026-11-28T10:00``, epoch seconds."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

_REL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_time_s(text: str, now_s: float) -> float:
    """Seconds since the epoch for ``text``.

    ``"90s"``, ``"15m"``, ``"2h"``, ``"3d"``, ``"1w"`` mean that long before ``now_s``;
    a number above 10⁹ is epoch seconds; anything else is ISO 8601 (UTC if no zone).
    Worked example: ``parse_time_s("2h", 10_000)`` = 2800.
    """
    m = _REL.match(text)
    if m:
        return now_s - float(m.group(1)) * _UNIT_S[m.group(2)]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and value > 1e9:
        return value
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"cannot read time {text!r}: use e.g. 2h, 30m, 3d, epoch seconds or "
            "2026-11-28T10:00:00"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
