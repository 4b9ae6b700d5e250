"""One loop per data directory: :class:`RunLock`.

Two ``prescale up`` (or a demo and an ``up``, or a cluster controller) on one
``data_dir`` would act on the same containers and overwrite each other's checkpoints,
in-flight intent and thresholds. The loop takes an exclusive, non-blocking ``flock`` on
``<data_dir>/.prescale.lock`` for as long as it runs and writes its pid and command into
it; a second one is refused with a message naming the holder. The kernel drops the lock
when the holder dies, however it dies (``kill -9`` included), so a stale lock file
never blocks a restart.

Worked example: ``prescale up`` (pid 4242) holds ``/var/lib/prescale/.prescale.lock``;
a second ``prescale up`` on the same directory gets :class:`LockHeld`: "/var/lib/prescale
is in use by pid 4242 (prescale up, since 2026-12-02T08:00:00Z): stop it, or give this
run another data_dir".
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOCK_NAME = ".prescale.lock"


class LockHeld(RuntimeError):
    """Another live process holds the data directory."""


class RunLock:
    """``with RunLock(data_dir, "prescale up"):`` — the data directory is this run's."""

    def __init__(self, data_dir: Path | str, what: str) -> None:
        self.dir = Path(data_dir)
        self.path = self.dir / LOCK_NAME
        self.what = what
        self.fd: int | None = None

    def holder(self) -> dict[str, Any]:
        """What the holder wrote (``pid``, ``what``, ``since``), or ``{}``."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = self.holder()
            raise LockHeld(
                f"{self.dir} is in use by pid {h.get('pid', '?')} ({h.get('what', '?')}, "
                f"since {h.get('since', '?')}): stop it, or give this run another "
                f"data_dir") from None
        me = {"pid": os.getpid(), "what": self.what, "argv": sys.argv,
              "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)  # no holder any more
            except OSError:  # a full or read-only disk: the lock goes anyway
                pass
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
