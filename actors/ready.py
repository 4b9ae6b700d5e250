"""Waiting for a restarting actor: calls to an actor that Ray is restarting fail at once
(``ActorUnavailableError``) instead of queueing, so callers that can wait do it here."""

from __future__ import annotations

import time
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError


def wait_ready(handle: Any, timeout_s: float = 30.0, poll_s: float = 0.1) -> bool:
    """True once ``handle`` answers (``__ray_ready__``); False if it is dead for good or
    did not come back within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            ray.get(handle.__ray_ready__.remote(), timeout=min(left, 5.0))
            return True
        except (ActorUnavailableError, GetTimeoutError):
            time.sleep(poll_s)
        except RayActorError:  # restarting shows up as unavailable; this is death
            return False
