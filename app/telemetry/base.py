"""The interface every telemetry source implements.

A source is polled once per tick (live) or per simulated step (replay) and returns a
:class:`~app.core.sample.SourceBatch`: the samples it read, the failure events it
saw since the last poll, and per-container errors. One unreadable container never
makes ``poll()`` raise; only a misconfiguration of the source itself does (e.g. a
cgroup root that does not exist), with a message that names it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from prescale.app.core.sample import SourceBatch


@runtime_checkable
class Source(Protocol):
    #: short name of the source kind, e.g. "cgroup", "process", "ray", "prometheus".
    kind: str

    def poll(self) -> SourceBatch:
        """Read every container once; events since the previous poll."""
        ...

    def close(self) -> None:
        """Release what the source holds (connections, file handles)."""
        ...
