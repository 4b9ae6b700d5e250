"""What the process-tree source watches: :class:`ProcessTarget`, a root process (by pid,
by a regex on its command line, or a process we started) and its descendants."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProcessTarget:
    """One container to watch: a root process (by ``pid`` or command-line regex) and
    its descendants.

    * ``pid``: that process; when it ends the target is gone for good.
    * ``match``: a regex searched (``re.search``) in the command line joined by
      spaces; the oldest matching process is the root (a service's master rather than
      its workers), and when it is gone the regex is matched again, so a restarted
      service is followed.
    * ``popen``: the :class:`subprocess.Popen` of a process *we* started; its return
      code then classifies the exit. ``pid`` may be left out (it is ``popen.pid``).
    * ``app``: the application it belongs to (default: ``name``).

    Exactly one of ``pid`` / ``match`` (``popen`` counts as ``pid``); a bad regex or
    pid raises :class:`ValueError` naming the target and the value.
    """

    name: str
    pid: int | None = None
    match: str | None = None
    app: str = ""
    popen: subprocess.Popen[Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"ProcessTarget.name must be a non-empty string, got {self.name!r}")
        who = f"ProcessTarget {self.name!r}"
        if self.popen is not None:
            if self.match is not None:
                raise ValueError(f"{who}: give popen or match, not both")
            if self.pid is None:
                object.__setattr__(self, "pid", self.popen.pid)
            elif self.pid != self.popen.pid:
                raise ValueError(f"{who}: pid {self.pid} is not popen's pid {self.popen.pid}")
        if (self.pid is None) == (self.match is None):
            raise ValueError(
                f"{who}: give exactly one of pid or match (got pid={self.pid!r}, "
                f"match={self.match!r})"
            )
        if self.pid is not None and (
            isinstance(self.pid, bool) or not isinstance(self.pid, int) or self.pid <= 0
        ):
            raise ValueError(f"{who}: pid must be a positive integer, got {self.pid!r}")
        if self.match is not None:
            if not isinstance(self.match, str) or not self.match:
                raise ValueError(f"{who}: match must be a non-empty regex, got {self.match!r}")
            try:
                re.compile(self.match)
            except re.error as exc:
                raise ValueError(f"{who}: bad regex in match {self.match!r}: {exc}") from None
        if not isinstance(self.app, str):
            raise ValueError(f"{who}: app must be a string, got {self.app!r}")
