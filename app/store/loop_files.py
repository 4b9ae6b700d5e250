"""The live loop's file ports (:mod:`app.loop.ports`): the journal — the decision log
in the history store, ``<data_dir>/inflight.json`` (the tick's intent) and
``<data_dir>/status.json`` — and the checkpoint, ``<data_dir>/coordinator.json``. Every
write is atomic and durable (:mod:`app.store.jsonfile`); a file that cannot be read is
set aside by ``discard``/``discard_intent`` when the tick asks (:func:`jsonfile.quarantine`);
a status the disk refuses also goes to a copy in RAM (:func:`jsonfile.ram_copy_path`)."""

from __future__ import annotations

from pathlib import Path

from prescale.app.store import jsonfile
from prescale.app.store.decision_log import DecisionLog

CHECKPOINT = "coordinator.json"
INFLIGHT = "inflight.json"
STATUS = "status.json"


class FileJournal:
    durable = True

    def __init__(self, data_dir: Path, log: DecisionLog) -> None:
        self.data_dir, self.log = data_dir, log

    def append(self, records) -> None:
        self.log.append(list(records))

    def write_intent(self, intent) -> None:
        jsonfile.write_atomic(self.data_dir / INFLIGHT, dict(intent))

    def read_intent(self):
        return jsonfile.read(self.data_dir / INFLIGHT)

    def clear_intent(self) -> None:
        jsonfile.remove(self.data_dir / INFLIGHT)

    def discard_intent(self, why: str) -> str:
        return jsonfile.quarantine(self.data_dir / INFLIGHT, why, "the loop goes on")

    def write_status(self, status) -> None:
        """status.json; when its disk refuses the write, a copy in RAM that `prescale
        status` reads (jsonfile.read_newest), and the error is raised for the tick."""
        path = self.data_dir / STATUS
        try:
            jsonfile.write_atomic(path, dict(status))
        except OSError:
            jsonfile.write_atomic(jsonfile.ram_copy_path(path), dict(status))
            raise
        jsonfile.remove(jsonfile.ram_copy_path(path))  # the disk is back: one truth


class FileCheckpoint:
    enabled = True

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self):
        return jsonfile.read(self.path)

    def save(self, state) -> None:
        jsonfile.write_atomic(self.path, dict(state))

    def discard(self, why: str) -> str:
        return jsonfile.quarantine(self.path, why, "the loop starts afresh (cooldowns, "
                                   "pending outcomes and savings reset)")
