"""Running a host tool (``tc``, ``mount``) for an edge: list arguments, ``LC_ALL=C`` (so
its messages are the ones the code and the operator expect), a timeout, and every way it
can go wrong turned into one error that names the command.

Example: ``run_tool(["mount", "-o", "remount,size=16777216", "/srv/web"], timeout_s=10,
error=VolumeError, missing="cannot resize the tmpfs at /srv/web: the mount command is not
installed (util-linux)")`` → its stdout; on exit 32 with "mount: /srv/web: not mount
point" → ``VolumeError("mount -o remount,size=16777216 /srv/web failed (exit 32): mount:
/srv/web: not mount point")``.
"""

from __future__ import annotations

import os
import subprocess


def run_tool(argv: list[str], *, timeout_s: float, error: type[Exception], missing: str
             ) -> str:
    """Run ``argv``; its stdout. Raises ``error``: ``missing`` when the program is not
    installed, "<command> did not finish within <t> s", or "<command> failed (exit N):
    <what it printed, on one line>"."""
    command = " ".join(argv)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                              check=False, env={**os.environ, "LC_ALL": "C"})
    except FileNotFoundError:
        raise error(missing) from None
    except subprocess.TimeoutExpired:
        raise error(f"{command} did not finish within {timeout_s:g} s") from None
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout or "").split()) or "no message"
        raise error(f"{command} failed (exit {done.returncode}): {said}")
    return done.stdout


__all__ = ["run_tool"]
