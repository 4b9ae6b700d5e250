"""The decision log: decisions, actions, outcomes and failure events of the loop.

Records go to the history store's ``records`` table (:mod:`app.store.history`),
which makes each :meth:`DecisionLog.append` durable (written and fsynced) before it
returns: the coordinator appends the tick's decisions *before* it acts on them.

Records (field ``kind``; one typed schema, :mod:`app.loop.records`, read back with
:func:`read_records`):

- ``decision``: one container and tier in one tick — p_fail, threshold, predicted
  time to limit, forecast, current limit, the proposed new limit (or none) and why; one
  held back tick after tick for the same reason (a cooldown, a bound, a workload in
  recommend mode) is logged once per episode: its first tick, and its last with
  ``repeats`` (the ticks in between) and ``episode_s`` (:mod:`app.loop.episodes`);
- ``action``: what became of a proposed action — pool verdict, result
  (applied / dry_run / denied / failed), old and new limit as really set (a dry run:
  the new limit it would have set), reason;
- ``outcome``: how a past action turned out (lead time until the old limit would
  have been crossed, or failed / not_crossed);
- ``judgement``: a past scale-up judged *needed* or *false positive*, or a failure
  with no scale-up before it judged a *miss* (app/core/outcomes.py);
- ``threshold``: a threshold that a judgement moved (old, new, why);
- ``event``: a failure seen on a container (e.g. a kernel OOM kill), or a model that
  was refused.

Every record carries ``ts_s``, ``container``, ``app``, ``run_id`` and ``mode``.
``inf``/``nan`` survive the round trip.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prescale.app.loop.records import Record, parse
from prescale.app.store.history import HistoryStore

KINDS = ("decision", "action", "outcome", "judgement", "threshold", "event")


class DecisionLog:
    def __init__(self, store: HistoryStore, run_id: str = "", mode: str = "") -> None:
        self.store = store
        self.run_id = run_id
        self.mode = mode

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append records durably (one fsynced file per app and day of the batch)."""
        if records:
            self.store.append_records(
                [{"run_id": self.run_id, "mode": self.mode, **r} for r in records]
            )


def read_records(store: HistoryStore, **filters: Any) -> Iterator[Record]:
    """:func:`read_log` as typed records (:func:`app.loop.records.parse`); a stored
    record that does not parse raises ValueError naming its kind or missing field."""
    for d in read_log(store, **filters):
        yield parse(d)


def read_log(
    store: HistoryStore,
    *,
    run_id: str | None = None,
    kinds: set[str] | None = None,
    container: str | None = None,
    since_s: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Records of the log, filtered, oldest first."""
    recs = store.read_record_dicts(kinds=kinds, container=container, since_s=since_s)
    recs.sort(key=lambda r: (r["ts_s"], r.get("kind", "")))
    for rec in recs:
        if run_id is None or rec.get("run_id") == run_id:
            yield rec
