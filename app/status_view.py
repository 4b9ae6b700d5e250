"""``prescale status --watch``: a live table of ``<data_dir>/status.json``.

The coordinator rewrites ``status.json`` atomically after every tick (see
``actors/coordinator.py::_write_status``). :func:`watch` re-reads it every
``interval_s`` and redraws a rich ``Live`` table until Ctrl-C; :func:`build_table` is
the pure part (a snapshot and the time in, a table out).

The snapshot's **age** is ``now_s − ts_s`` (the time of its tick). It is **stale**
when older than ``stale_after_s`` — the loop is stopped, stuck or far slower than
configured — and the table then says so in red. Worked example: a snapshot of
``ts_s = 1000`` read at ``now_s = 1042`` with ``stale_after_s = 10`` → "updated 42 s
ago" and "STALE: no tick for 42 s (expected every ≤ 10 s) — is `prescale up`
running?".

JSON has no inf/nan: ``status.json`` holds ``null`` for them (unlimited limits,
p_fail not yet known, usage not heading for the limit), shown as ``-``.

:func:`health` is the verdict ``prescale status --check`` exits with (0 ok, 3 stale,
4 degraded), and the formatters here are the human forms every table of the CLI uses:
sizes in MiB/GiB, CPU in cores, rates in MiB/s, times ISO 8601 with their zone,
probabilities as ``<0.001`` rather than ``2.36e-213``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from prescale.app.core.quantity import format_bytes, format_cores
from prescale.app.store import jsonfile
from prescale.app.timeparse import format_time

MiB = 2**20
STALE_AFTER_S = 10.0
TIERS = ("memory", "cpu")  # the p_fail columns, in this order, when the rows have them


def stale_after(loop_interval_s: float) -> float:
    """Age beyond which a snapshot is stale: five loop intervals, at least 10 s.
    Example: interval 1 s → 10 s; interval 5 s → 25 s."""
    return max(STALE_AFTER_S, 5.0 * loop_interval_s)


def _finite(v: Any) -> float | None:
    if v is None or isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def _number(v: Any) -> float | None:
    if v is None or isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def fmt_bytes(v: Any) -> str:
    """``104857600`` → ``"100.0 MiB"``; ``3 * 2**30`` → ``"3.00 GiB"``; ``inf`` →
    ``"unlimited"``; ``None`` → ``"-"`` (:func:`~app.core.quantity.format_bytes`)."""
    x = _number(v)
    return "-" if x is None else format_bytes(x)


def fmt_rate(v: Any) -> str:
    """Bytes per second: ``2 * 2**20`` → ``"2.0 MiB/s"``; ``None`` → ``"-"``."""
    x = _number(v)
    return "-" if x is None else format_bytes(x, per_s=True)


def fmt_cores(v: Any) -> str:
    """``0.25`` → ``"0.25 cores"``; ``None`` → ``"-"``."""
    x = _number(v)
    return "-" if x is None else format_cores(x)


#: the human form of each tier's limit: memory and disk in bytes, CPU in cores, network
#: and block-I/O bandwidth in bytes/s
TIER_FORMAT: dict[str, Callable[[Any], str]] = {
    "memory": fmt_bytes, "disk": fmt_bytes, "cpu": fmt_cores, "network": fmt_rate,
    "io": fmt_rate}


def fmt_limit(tier: Any, v: Any) -> str:
    """A limit of ``tier`` in its unit: ``("memory", 2**27)`` → ``"128.0 MiB"``;
    ``("cpu", 0.5)`` → ``"0.50 cores"``; ``("io", 2**20)`` → ``"1.0 MiB/s"``; an unknown
    tier gives the plain number."""
    f = TIER_FORMAT.get(str(tier))
    if f is not None:
        return f(v)
    x = _finite(v)
    return "-" if x is None else f"{x:g}"


def fmt_probability(v: Any) -> str:
    """A probability for people: two decimals, two significant digits below 0.1, three
    decimals above 0.99 (so 0.996 is not "1.00"), and the ends said as bounds. ``0.83`` →
    ``"0.83"``; ``0.05`` → ``"0.05"``; ``0.0042`` → ``"0.0042"``; ``2.36e-213`` →
    ``"<0.001"``; ``0.996`` → ``"0.996"``; ``0.99987`` → ``">0.999"``; ``0`` → ``"0"``;
    ``1`` → ``"1"``; ``None`` → ``"-"``."""
    x = _finite(v)
    if x is None:
        return "-"
    if x <= 0 or x >= 1:
        return "0" if x <= 0 else "1"
    if x < 0.001:
        return "<0.001"
    if x > 0.999:
        return ">0.999"
    return f"{x:.2g}" if x < 0.1 else f"{x:.2f}" if x <= 0.99 else f"{x:.3f}"


fmt_time = format_time


def fmt_duration(v: Any) -> str:
    """``12.4`` → ``"12 s"``; ``270`` → ``"4.5 min"``; ``7200`` → ``"2.0 h"``;
    ``None`` → ``"-"``."""
    x = _finite(v)
    if x is None:
        return "-"
    if x < 60:
        return f"{x:.0f} s"
    if x < 3600:
        return f"{x / 60:.1f} min"
    return f"{x / 3600:.1f} h"


def fmt_p_fail(v: Any) -> Text:
    """``0.83`` → ``"0.83"`` in red (≥ 0.8), yellow (≥ 0.5) or plain; ``1e-9`` →
    ``"<0.001"``; ``None`` → ``-`` (:func:`fmt_probability`)."""
    x = _finite(v)
    if x is None:
        return Text("-")
    style = "bold red" if x >= 0.8 else "yellow" if x >= 0.5 else ""
    return Text(fmt_probability(x), style=style)


def fmt_last_action(la: Any, now_s: float) -> str:
    """``{"tier": "memory", "result": "applied", "old_limit": 128 MiB, "new_limit":
    160 MiB, "ts_s": 988}`` at ``now_s = 1000`` →
    ``"memory applied 128.0 MiB → 160.0 MiB, 12 s ago"``; a CPU one in cores
    (``"cpu dry_run 0.25 cores → 0.38 cores"``); no action → ``"-"``."""
    if not la:
        return "-"
    tier = la.get("tier", "?")
    text = f"{tier} {la.get('result', '?')} " \
           f"{fmt_limit(tier, la.get('old_limit'))} → {fmt_limit(tier, la.get('new_limit'))}"
    ts = _finite(la.get("ts_s"))
    return text if ts is None else f"{text}, {fmt_duration(max(0.0, now_s - ts))} ago"


def _need(d: Any, key: str, where: str) -> Any:
    if not isinstance(d, Mapping):
        raise ValueError(f"status snapshot: {where} must be an object, got {type(d).__name__}")
    if key not in d:
        raise ValueError(f"status snapshot: {where} has no {key!r}")
    return d[key]


def build_table(snapshot: Mapping[str, Any], now_s: float,
                stale_after_s: float = STALE_AFTER_S) -> Table:
    """The live view's table of one ``status.json`` snapshot, as seen at ``now_s``.

    Columns: container, memory (usage), limit, p_fail per tier, time to limit (memory),
    cpu (usage / quota, cores), last action, model. The title names the run, mode, tick
    and model; the caption gives the snapshot's age, the tick's duration, the source
    errors and dropped samples, and a STALE warning past ``stale_after_s``.
    A snapshot without the fields the coordinator writes raises ``ValueError`` naming
    the missing one.
    """
    ts_s = _finite(_need(snapshot, "ts_s", "the snapshot"))
    containers = _need(snapshot, "containers", "the snapshot")
    if ts_s is None or not isinstance(containers, list):
        raise ValueError("status snapshot: ts_s must be a number and containers a list")
    rows = []
    for i, c in enumerate(containers):
        _need(c, "name", f"containers[{i}]")
        rows.append(c)
    tiers = [t for t in TIERS if any(f"p_fail_{t}" in c for c in rows)]

    age_s = max(0.0, now_s - ts_s)
    table = Table(
        title=f"prescale status — run {snapshot.get('run_id', '?')}, mode "
              f"{snapshot.get('mode', '?')}, tick {snapshot.get('tick', '?')}, "
              f"model {snapshot.get('model', '?')}",
        caption=_caption(snapshot, age_s, stale_after_s),
        caption_justify="left",
    )
    for col in ("container", "memory", "limit", *(f"p_fail {t}" for t in tiers),
                "time to limit", "cpu", "last action", "model"):
        table.add_column(col, justify="right" if col in ("memory", "limit") else "left")
    for c in rows:
        cpu = fmt_usage_of(c.get("cpu_usage_cores"), c.get("cpu_quota_cores"))
        unknown = c.get("state") == "unknown"  # its monitor (node) did not answer
        table.add_row(
            f"{c['name']} (unknown: {c.get('reason') or '?'})" if unknown else str(c["name"]),
            fmt_bytes(c.get("memory_usage_bytes")),
            fmt_bytes(c.get("memory_limit_bytes")),
            *(fmt_p_fail(c.get(f"p_fail_{t}")) for t in tiers),
            fmt_duration(c.get("memory_time_to_limit_s")),
            cpu,
            fmt_last_action(c.get("last_action"), now_s),
            str(c.get("model") or snapshot.get("model") or "-"),
        )
    return table


def fmt_usage_of(usage: Any, limit: Any) -> str:
    """CPU usage over its quota, the unit said once: ``(0.05, 0.25)`` →
    ``"0.05 / 0.25 cores"``; ``(0.0, None)`` → ``"0.00 cores / -"``."""
    u, q = _finite(usage), _finite(limit)
    if u is not None and q is not None:
        return f"{fmt_cores(u).removesuffix(' cores')} / {fmt_cores(q)}"
    return f"{fmt_cores(usage)} / {fmt_cores(limit)}"


def _caption(snapshot: Mapping[str, Any], age_s: float, stale_after_s: float) -> Text:
    parts = [f"tick at {fmt_time(_finite(snapshot.get('ts_s')))}, updated "
             f"{fmt_duration(age_s)} ago"]
    tick_s = _finite(snapshot.get("tick_s"))
    if tick_s is not None:
        parts.append(f"tick took {tick_s * 1000:.0f} ms")
    errors = snapshot.get("errors") or {}
    if errors:
        parts.append(f"{len(errors)} source errors: " + ", ".join(sorted(errors)[:3])
                     + (" …" if len(errors) > 3 else ""))
    dropped = snapshot.get("dropped") or {}
    n_dropped = sum(v for v in dropped.values() if _finite(v) is not None)
    if n_dropped:
        parts.append(f"{n_dropped:.0f} samples dropped")
    text = Text("; ".join(parts))
    degraded = snapshot.get("degraded")
    if isinstance(degraded, Mapping):  # writes fail: protecting without records
        for_s = max(0.0, (_finite(snapshot.get("ts_s")) or 0.0)
                    - (_finite(degraded.get("since_s")) or 0.0))
        text.append(f"\nDEGRADED for {fmt_duration(for_s)}: "
                    f"{degraded.get('reason', '?')} — scale-ups go on, scale-downs stop, "
                    f"{degraded.get('buffered_records', 0)} records waiting, "
                    f"{degraded.get('dropped_records', 0)} dropped", style="bold red")
    if age_s > stale_after_s:
        text.append(f"\nSTALE: no tick for {fmt_duration(age_s)} (expected every ≤ "
                    f"{fmt_duration(stale_after_s)}) — is `prescale up` running?",
                    style="bold red")
    return text


#: exit codes of ``prescale status --check``
EXIT_OK, EXIT_STALE, EXIT_DEGRADED = 0, 3, 4


@dataclass(frozen=True)
class Health:
    """What a probe needs of a snapshot: ``state`` ok | stale | degraded, its age, the
    age past which it is stale, why (empty when ok) and the exit code of ``prescale
    status --check``. Stale wins over degraded: a stopped loop's last word does not
    count."""

    state: str
    age_s: float
    stale_after_s: float
    reason: str
    exit_code: int

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "age_s": round(self.age_s, 3),
                "stale_after_s": self.stale_after_s, "reason": self.reason,
                "exit_code": self.exit_code}


def health(snapshot: Mapping[str, Any], now_s: float,
           stale_after_s: float = STALE_AFTER_S) -> Health:
    """The loop's health from its last snapshot, as seen at ``now_s``. Worked examples
    (``stale_after_s = 10``): ``ts_s = 1000`` at ``now_s = 1004`` → ok (exit 0); at
    ``now_s = 1042`` → stale, "no tick for 42 s (expected every ≤ 10 s)" (exit 3); a
    fresh snapshot whose ``degraded`` is set → degraded, its reason (exit 4).
    A snapshot without ``ts_s`` raises ``ValueError`` naming it."""
    ts_s = _finite(_need(snapshot, "ts_s", "the snapshot"))
    if ts_s is None:
        raise ValueError("status snapshot: ts_s must be a number")
    age_s = max(0.0, now_s - ts_s)
    if age_s > stale_after_s:
        return Health("stale", age_s, stale_after_s,
                      f"no tick for {fmt_duration(age_s)} (expected every ≤ "
                      f"{fmt_duration(stale_after_s)}): is `prescale up` running?",
                      EXIT_STALE)
    degraded = snapshot.get("degraded")
    if isinstance(degraded, Mapping):
        return Health("degraded", age_s, stale_after_s,
                      f"degraded: {degraded.get('reason', '?')}", EXIT_DEGRADED)
    return Health("ok", age_s, stale_after_s, "", EXIT_OK)


def render(status_path: Path, now_s: float, stale_after_s: float = STALE_AFTER_S
           ) -> tuple[RenderableType, bool]:
    """What the view shows now, and whether it is a real table (False: a message about
    a missing or unreadable status file)."""
    try:
        snapshot = jsonfile.read_newest(status_path)  # or its RAM copy (degraded)
    except (ValueError, OSError) as exc:
        return Text(f"error: {exc}", style="red"), False
    if snapshot is None:
        return Text(f"no status yet at {status_path}: start `prescale up` "
                    "(or `prescale demo`)"), False
    try:
        return build_table(snapshot, now_s, stale_after_s), True
    except ValueError as exc:
        return Text(f"error: {status_path}: {exc}", style="red"), False


def watch(status_path: Path | str, interval_s: float, *, console: Console, once: bool = False,
          stale_after_s: float = STALE_AFTER_S,
          clock: Callable[[], float] = time.time) -> int:
    """Show ``status_path`` as a live table, refreshed every ``interval_s`` seconds, until
    Ctrl-C (then exit code 0). ``once``: print one table and return (0, or 1 when there
    is no readable snapshot). A missing or unreadable file is shown as a message and the
    view keeps polling (the loop may not have written its first tick yet). On a terminal
    the table is redrawn in place (rich ``Live``); when the output is not a terminal
    (piped, logged) each refresh is printed below the previous one."""
    if not (isinstance(interval_s, int | float) and math.isfinite(interval_s)
            and interval_s > 0):
        raise ValueError(f"interval_s must be a finite number > 0, got {interval_s!r}")
    path = Path(status_path)
    if once:
        shown, ok = render(path, clock(), stale_after_s)
        console.print(shown)
        return 0 if ok else 1

    def frame() -> RenderableType:
        shown, _ = render(path, clock(), stale_after_s)
        return Group(shown, Text(f"refreshing every {interval_s:g} s — Ctrl-C to exit",
                                 style="dim"))

    try:
        if not console.is_terminal:  # piped or logged: one frame after the other
            while True:
                console.print(frame())
                time.sleep(interval_s)
        with Live(frame(), console=console, auto_refresh=False, transient=False) as live:
            while True:
                time.sleep(interval_s)
                live.update(frame(), refresh=True)
    except KeyboardInterrupt:
        return 0
