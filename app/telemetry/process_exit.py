"""How a process tree's root process ended, as an event: :func:`classify_exit` (its
return code and the memory cgroup's ``oom_kill`` counter) and the exit status of a zombie
(:func:`parse_zombie_exit_status`). Pure.

Events
------
When the root process of a target ends, one event is reported (once):

* our child (``ProcessTarget.popen``): its return code, via :func:`classify_exit`:
  0 → ``success``, > 0 → ``exit_nonzero`` ("exit code 3"), −9 → ``killed``
  ("SIGKILL (the OOM killer or an operator)"), or ``oom_kill`` when the memory cgroup's
  ``oom_kill`` counter (v1 ``memory.oom_control``, v2 ``memory.events``) rose since
  the previous poll, other signals → ``killed`` with the signal's name.
* not our child, caught as a zombie (its parent has not reaped it yet): the exit
  status the kernel keeps in ``/proc/<pid>/stat`` (field 52), classified the same way.
* not our child and already reaped: the exit code is unknowable (only the parent gets
  it). If the cgroup's ``oom_kill`` counter rose since the previous poll, that is an
  ``oom_kill`` event; otherwise **no failure event is invented** — a graceful
  shutdown must not be learned as a failure. The container gets an ``errors`` entry
  saying so, and when a ``match`` target finds a new process, a ``restart`` event
  ("pid 10 → pid 12") records that the service was replaced.

A descendant (not the root) that vanishes while the cgroup's ``oom_kill`` counter
rises gives one ``oom_kill`` event per kill (at most one per vanished process).
Caveat: a cgroup shared with processes outside the tree can make its counter rise
for someone else's kill; give a workload a cgroup of its own (and the cgroup source)
when attribution must be exact.
"""

from __future__ import annotations

import os
import signal

from prescale.app.core.sample import EventKind

KILLED_DETAIL = "SIGKILL (the OOM killer or an operator)"


def classify_exit(
    returncode: int | None, oom_kills_delta: int = 0, how: str = ""
) -> tuple[EventKind, str] | None:
    """The event for a root process that ended, or None when nothing honest can be said.

    ``returncode`` is as :attr:`subprocess.Popen.returncode` (−N = killed by signal N;
    None = unknown); ``oom_kills_delta`` is the rise of its memory cgroup's
    ``oom_kill`` counter since the previous poll; ``how`` is appended to the detail.

    Worked examples:

    * ``(0, 0)`` → ``(success, "exit code 0")``
    * ``(3, 0)`` → ``(exit_nonzero, "exit code 3")``; ``(3, 1)`` the same (it exited
      by itself, so the kill was someone else's)
    * ``(-9, 0)`` → ``(killed, "SIGKILL (the OOM killer or an operator)")``
    * ``(-9, 1)`` → ``(oom_kill, "SIGKILL; memory cgroup oom_kill counter +1")``
    * ``(-15, 2)`` → ``(killed, "SIGTERM")``
    * ``(None, 1)`` → ``(oom_kill, "exit code unknown; memory cgroup oom_kill counter
      +1")``
    * ``(None, 0)`` → ``None``
    """
    suffix = f" ({how})" if how else ""
    if returncode is None:
        if oom_kills_delta > 0:
            return (
                EventKind.OOM_KILL,
                f"exit code unknown; memory cgroup oom_kill counter +{oom_kills_delta}{suffix}",
            )
        return None
    if returncode == 0:
        return EventKind.SUCCESS, f"exit code 0{suffix}"
    if returncode > 0:
        return EventKind.EXIT_NONZERO, f"exit code {returncode}{suffix}"
    signum = -returncode
    if signum == signal.SIGKILL:
        if oom_kills_delta > 0:
            return (
                EventKind.OOM_KILL,
                f"SIGKILL; memory cgroup oom_kill counter +{oom_kills_delta}{suffix}",
            )
        return EventKind.KILLED, f"{KILLED_DETAIL}{suffix}"
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    return EventKind.KILLED, f"{name}{suffix}"


def parse_zombie_exit_status(stat_text: str) -> int | None:
    """The exit code of a zombie from ``/proc/<pid>/stat`` (field 52, ``exit_code``,
    a ``waitpid`` status; Linux ≥ 3.5), as a Popen-style return code; None when the
    process is not a zombie or the field is missing.

    Example: a zombie (state ``Z``) whose field 52 is ``768`` (= 3 << 8) → ``3``;
    ``9`` (killed by SIGKILL) → ``-9``.
    """
    _, sep, rest = stat_text.rpartition(")")  # the command name may contain spaces and ')'
    if not sep:
        return None
    fields = rest.split()  # fields[0] is field 3 (state), so field N is fields[N - 3]
    if not fields or fields[0] != "Z" or len(fields) < 50:
        return None
    try:
        status = int(fields[49])
    except ValueError:
        return None
    return os.waitstatus_to_exitcode(status)
