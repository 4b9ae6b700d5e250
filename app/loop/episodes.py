"""Held decisions, logged once per episode instead of once per tick.

A decision *without* an action is logged when p_fail ≥ threshold (the policy wanted
something, or a guard, the pool or a workload held it back). While the same thing holds
it back tick after tick (a cooldown counting down, a bound, a workload in recommend
mode), the decision log would repeat the same row every tick. :class:`Episodes` logs:

- the **first** tick of an episode — the same container, tier and *why-not* (the part of
  the reason that says why nothing was proposed, numbers aside: :func:`why_not`);
- a **closing** row when the episode ends, if it lasted two ticks or more: the decision of
  its *last* tick (its own p_fail, limit and reason), with ``repeats`` = the ticks in
  between that were not logged, ``episode_s`` = when the episode began, and the reason
  ending in ``"… (held 9 ticks, 8 s since …; 7 not logged); ended: …"``.

An episode ends when the container/tier gets a decision with an action, a decision held
for another reason (which starts its own episode), no decision at all (p_fail fell below
the threshold, or the container was not reported), or the loop stops (:meth:`close`).
So every tick's held decision is counted once: summed over an episode's rows,
``1 + repeats`` is the number of ticks it lasted.

Decisions with an action are never held back here: each is logged, and ends the episode
of its container/tier.

Worked example (cooldown 10 s, one tick a second): an action at t = 0; at t = 1 … 9
"blocked: in cooldown (9.0 s left)" … "(1.0 s left)"; at t = 10 the next action. Logged:
the action's decision at 0; the held one at 1 (``repeats`` 0, ``episode_s`` 1); at 10,
before the new action's decision, the decision of t = 9 (``repeats`` 7, ``episode_s`` 1,
"…; blocked: in cooldown (1.0 s left) (held 9 ticks, 8 s since …; 7 not logged); ended:
an action was proposed") — 3 rows instead of 10, and 1 + 0 + 1 + 7 + 1 = 10 decisions.

The state (open episodes, each with the record of its last tick) is JSON-able and goes
into the loop's checkpoint, so a restart neither loses a count nor logs a first row twice
(a crash inside a tick after its rows were written goes back to the last checkpoint, as
the rest of the engine state does: that tick's first rows may then come twice).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prescale.app.timeparse import format_time

#: a number in a reason: 9.0, 128, -0.5, 1e9
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
BLOCKED = "; blocked: "

ENDED_ACTION = "an action was proposed"
ENDED_OTHER = "held back for another reason since"
ENDED_BELOW = "p_fail fell below the threshold"
ENDED_GONE = "the container was not reported"
ENDED_STOPPED = "the loop stopped"


def why_not(reason: str) -> str:
    """What held a decision back, numbers aside: the text after the last ``"; blocked: "``,
    else the reason's last ``"; "`` part. Example: ``"p_fail 0.97 >= 0.50: …; blocked: in
    cooldown (9.0 s left)"`` → ``"blocked: in cooldown (# s left)"``; ``"…; workload w is
    in recommend mode: memory 256.0 MiB → 320.0 MiB not applied"`` → ``"workload w is in
    recommend mode: memory # MiB → # MiB not applied"``."""
    i = reason.rfind(BLOCKED)
    text = reason[i + 2:] if i >= 0 else reason.rsplit("; ", 1)[-1]
    return _NUMBER.sub("#", text)


@dataclass
class Episode:
    why: str  #: :func:`why_not` of its decisions
    since_s: float  #: its first tick
    ticks: int  #: ticks so far
    last: dict[str, Any]  #: the record of its last tick (the closing row, if it closes)

    def to_dict(self) -> dict[str, Any]:
        return {"why": self.why, "since_s": self.since_s, "ticks": self.ticks,
                "last": self.last}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Episode:
        return cls(str(d["why"]), float(d["since_s"]), int(d["ticks"]), dict(d["last"]))

    def closing(self, ended: str) -> dict[str, Any] | None:
        """The closing row (``None`` for a one-tick episode: its first row said it all)."""
        if self.ticks < 2:
            return None
        span = self.last["ts_s"] - self.since_s
        left_out = self.ticks - 2
        return {**self.last, "episode_s": self.since_s, "repeats": left_out,
                "reason": f"{self.last['reason']} (held {self.ticks} ticks, {span:.0f} s "
                          f"since {format_time(self.since_s)}; {left_out} not logged); "
                          f"ended: {ended}"}


class Episodes:
    """The open episodes, by ``(container, tier)``; :meth:`filter` is called once per tick
    with that tick's decision records (as stored dicts) in the order they are logged."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, str], Episode] = {}

    def filter(self, records: Iterable[dict[str, Any]], live: Iterable[str]
               ) -> list[dict[str, Any]]:
        """The rows to log for this tick's decision ``records`` (``live``: the containers
        of this tick): the closing rows of the episodes that end, then each decision with
        an action and each first row of a new episode; repeats are counted, not logged."""
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for r in records:
            key = (r["container"], r["tier"])
            seen.add(key)
            ep = self.open.get(key)
            if r.get("action_id") is not None:
                if ep is not None:
                    self._close(key, ENDED_ACTION, out)
                out.append(r)
                continue
            why = why_not(r["reason"])
            if ep is not None and ep.why == why:
                ep.ticks += 1
                ep.last = r
                continue
            if ep is not None:
                self._close(key, f"{ENDED_OTHER} {format_time(r['ts_s'])}", out)
            self.open[key] = Episode(why, r["ts_s"], 1, r)
            out.append({**r, "episode_s": r["ts_s"], "repeats": 0})
        if len(seen) < len(self.open):
            live_set = set(live)
            for key in [k for k in self.open if k not in seen]:
                self._close(key, ENDED_BELOW if key[0] in live_set else ENDED_GONE, out)
        return out

    def close(self) -> list[dict[str, Any]]:
        """Every open episode ends (the loop stops): their closing rows."""
        out: list[dict[str, Any]] = []
        for key in list(self.open):
            self._close(key, ENDED_STOPPED, out)
        return out

    def _close(self, key: tuple[str, str], ended: str, out: list[dict[str, Any]]) -> None:
        row = self.open.pop(key).closing(ended)
        if row is not None:
            out.append(row)

    # -- checkpoint ------------------------------------------------------------------
    def to_list(self) -> list[dict[str, Any]]:
        return [{"container": c, "tier": t, **ep.to_dict()}
                for (c, t), ep in self.open.items()]

    def load(self, items: Iterable[Mapping[str, Any]]) -> None:
        """Read back :meth:`to_list` (raises KeyError/ValueError/TypeError when unusable)."""
        self.open = {(str(d["container"]), str(d["tier"])): Episode.from_dict(d)
                     for d in items}


__all__ = ["Episode", "Episodes", "why_not"]
