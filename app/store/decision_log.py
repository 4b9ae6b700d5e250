"""Append-only decision log: one JSON object per line, fsynced before returning.

Records (field ``kind``):

- ``decision``: one container and tier in one tick — p_fail, threshold, predicted
  time to limit, forecast, current limit, the proposed new limit (or none) and why;
- ``action``: what became of a proposed action — pool verdict, result
  (applied / dry_run / denied / failed), old and new limit as really set, reason;
- ``outcome``: how a past action turned out (lead time until the old limit would
  have been crossed, or failed / not_crossed);
- ``event``: a failure seen on a container (e.g. a kernel OOM kill).

Every record carries ``ts_s``, ``run_id`` and ``mode``. ``inf``/``nan`` are written
as ``null``. A torn last line (crash mid-write) is skipped by the reader, which
counts it; earlier lines are never rewritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.store.jsonfile import dumps

FILE_NAME = "decisions.jsonl"


class DecisionLog:
    def __init__(self, data_dir: Path, run_id: str = "", mode: str = "") -> None:
        self.path = Path(data_dir) / FILE_NAME
        self.run_id = run_id
        self.mode = mode

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append records durably (one write + fsync for the whole batch)."""
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(
            dumps({"run_id": self.run_id, "mode": self.mode, **r}) + "\n" for r in records
        )
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, lines.encode())
            os.fsync(fd)
        finally:
            os.close(fd)


def read_log(
    path: Path,
    *,
    run_id: str | None = None,
    kinds: set[str] | None = None,
    container: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Records of the log at ``path`` (a file or a data dir), filtered; torn lines skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    if not path.exists():
        return
    with path.open() as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if run_id is not None and rec.get("run_id") != run_id:
                continue
            if kinds is not None and rec.get("kind") not in kinds:
                continue
            if container is not None and rec.get("container") != container:
                continue
            yield rec
