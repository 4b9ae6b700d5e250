"""The line protocol of the test worker processes (tests/integration): one command per
line on stdin, one answer line on stdout that starts with ``ok``."""

from __future__ import annotations

import os
import select
import subprocess
import time


def command(proc: subprocess.Popen[bytes], line: str, timeout: float = 15.0) -> str | None:
    """Sends a command; the answer after "ok" ("" for a bare "ok"), or None when the
    worker died first (EOF or a broken pipe). Raises TimeoutError if it stays silent."""
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(line.encode() + b"\n")
    except BrokenPipeError:
        return None
    answer = b""
    deadline = time.monotonic() + timeout
    while not answer.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"worker did not answer {line!r} within {timeout} s")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 64)
            if not chunk:
                return None  # EOF: the worker died
            answer += chunk
    text = answer.decode().strip()
    assert text.startswith("ok"), text
    return text[2:].strip()


def ok(proc: subprocess.Popen[bytes], line: str, timeout: float = 10.0) -> bool:
    """Sends a command; True when the worker answered "ok", False when it died first."""
    return command(proc, line, timeout) is not None
