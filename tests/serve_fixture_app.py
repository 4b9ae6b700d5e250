"""A small Serve application for the tests, deployed with `serve deploy` from a config
file (import paths ``tests.serve_fixture_app:busy`` and ``...:other``): each request
burns 30 ms of CPU, so a few clients overload a replica capped at 0.1 cores."""

from __future__ import annotations

import time

from ray import serve


def _burn_s(seconds: float) -> None:
    t = time.thread_time()
    while time.thread_time() - t < seconds:
        pass


@serve.deployment
class Busy:
    def __call__(self, request) -> str:
        _burn_s(0.03)  # 30 ms of CPU per request
        return "ok"


@serve.deployment
class Other:
    def __call__(self, request) -> str:
        _burn_s(0.03)
        return "other ok"


busy = Busy.bind()
other = Other.bind()
