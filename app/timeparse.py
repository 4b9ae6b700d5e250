"""The times and durations users type, and times as people read them.

- Durations (:func:`parse_duration_s`): a number of seconds (``90``) or a compound of
  whole or decimal amounts with units, largest first: ``ms s m h d w``
  (``1h30m`` = 5400 s, ``90s``, ``2d``, ``1.5h``, ``1w2d``, ``500ms``).
- Points in time (:func:`parse_time_s`, ``--since``/``--until``): a duration before now
  (``2h``, ``1h30m``), ``now``, epoch seconds (a number above 10⁹) or ISO 8601
  (``2026-11-28T10:00``, UTC when it has no zone).
- Shown (:func:`format_time`): ISO 8601 with its zone, to the second, in the local zone
  (``TZ``): ``2026-12-02T10:15:03+00:00``.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d|w)\s*")
DURATION_FORMS = "seconds (90) or amounts with units ms/s/m/h/d/w, largest first: 1h30m, 90s, 2d"


def _named(field: str | None, message: str) -> str:
    return f"{field}: {message}" if field else message


def parse_duration_s(text: str | float | int, field: str | None = None) -> float:
    """Seconds of a duration (module docstring). Worked examples:
    ``"1h30m"`` → 5400.0; ``"90s"`` → 90.0; ``"2d"`` → 172800.0; ``"1.5h"`` → 5400.0;
    ``"500ms"`` → 0.5; ``"1w2d"`` → 777600.0; ``45`` or ``"45"`` → 45.0.
    ``"30m1h"`` (units out of order), ``"1h1h"``, ``"-5s"``, ``"5x"``, ``""`` raise
    ``ValueError`` naming ``field`` (when given), the text and the forms accepted."""
    bad = _named(field, f"{text!r} is not a duration: expected {DURATION_FORMS}")
    if isinstance(text, bool):
        raise ValueError(bad)
    if isinstance(text, int | float):
        value = float(text)
        if not math.isfinite(value) or value < 0:
            raise ValueError(bad)
        return value
    s = str(text).strip()
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0:
            raise ValueError(bad)
        return value
    total, pos, last = 0.0, 0, math.inf
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValueError(bad)
        size = _UNIT_S[m.group(2)]
        if size >= last:  # each unit once, largest first (1h30m, not 30m1h or 1h1h)
            raise ValueError(_named(field, f"{text!r} is not a duration: units must come "
                                           f"largest first, each once (e.g. 1h30m)"))
        last = size
        total += float(m.group(1)) * size
        pos = m.end()
    if pos == 0:
        raise ValueError(bad)
    return total


def parse_time_s(text: str, now_s: float) -> float:
    """Seconds since the epoch for ``text``.

    A duration (:func:`parse_duration_s` with a unit: ``"90s"``, ``"2h"``, ``"1h30m"``,
    ``"3d"``, ``"1w"``) means that long before ``now_s``; ``"now"`` is ``now_s``; a
    number above 10⁹ is epoch seconds; anything else is ISO 8601 (UTC if no zone).
    Worked examples: ``parse_time_s("2h", 10_000)`` = 2800;
    ``parse_time_s("1h30m", 10_000)`` = 4600;
    ``parse_time_s("2026-11-28T10:00:00+01:00", 0)`` = 1795856400.
    """
    s = text.strip()
    if s.lower() == "now":
        return float(now_s)
    try:
        value = float(s)
    except ValueError:
        value = math.nan
    if math.isfinite(value):
        if value > 1e9:
            return value
        raise ValueError(f"cannot read time {text!r}: a bare number is epoch seconds (above "
                         f"10⁹); for a time before now give a unit, e.g. {s}s")
    try:
        return now_s - parse_duration_s(s)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(
            f"cannot read time {text!r}: use a duration before now (2h, 1h30m, 3d), now, "
            "epoch seconds or ISO 8601 (2026-11-28T10:00:00)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def format_time(ts_s: float | int | None) -> str:
    """An epoch time as ISO 8601 with its zone, to the second, in the local zone;
    ``-`` when there is none. With ``TZ=UTC``: ``1795860903`` →
    ``"2026-11-28T10:15:03+00:00"``; with ``TZ=Europe/Paris`` the same instant is
    ``"2026-11-28T11:15:03+01:00"``; ``None`` or ``nan`` → ``"-"``."""
    if isinstance(ts_s, bool) or not isinstance(ts_s, int | float) or not math.isfinite(ts_s):
        return "-"
    return datetime.fromtimestamp(ts_s).astimezone().isoformat(timespec="seconds")


__all__ = ["DURATION_FORMS", "format_time", "parse_duration_s", "parse_time_s"]
