"""Request metrics of the prescale Serve app, through ``ray.serve.metrics``.

:class:`ServeMetrics` counts requests and their latency by route and status code (the
specs, the route and code label rules: :mod:`app.metric_specs`);
:class:`MetricsMiddleware` feeds it from any ASGI app (FastAPI). An I/O edge of the
Serve app: it registers Ray Serve metrics (imported when a :class:`ServeMetrics` is
made, inside the replica).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

from prescale.app.metric_specs import (
    SERVE_LATENCY,
    SERVE_METRICS,
    SERVE_REQUESTS,
    code_label,
    register_metrics,
    route_label,
)


class ServeMetrics:
    """Request count and latency of the Serve app, by route and status code.

    Create one per replica with the routes the app serves and call :meth:`observe` once
    per request — or wrap the ASGI app in :class:`MetricsMiddleware`, which does it::

        api.add_middleware(MetricsMiddleware, metrics=ServeMetrics(ROUTES))

    Inside a replica, ``ray.serve.metrics`` adds the ``deployment``, ``replica`` and
    ``application`` labels.
    """

    def __init__(self, routes: Iterable[str]) -> None:
        from ray.serve import metrics as serve_metrics

        self.routes = frozenset(routes)
        if not self.routes or not all(isinstance(r, str) and r.startswith("/")
                                      for r in self.routes):
            raise ValueError(f"routes must be paths starting with '/', got {sorted(self.routes)}")
        self._metrics = register_metrics(SERVE_METRICS, serve_metrics)

    def observe(self, route: str, status_code: int, duration_s: float) -> None:
        if not (isinstance(duration_s, int | float) and math.isfinite(duration_s)
                and duration_s >= 0):
            raise ValueError(f"duration_s must be a finite number >= 0, got {duration_s!r}")
        tags = {"route": route_label(route, self.routes), "code": code_label(status_code)}
        self._metrics[SERVE_REQUESTS].inc(1.0, tags=tags)
        self._metrics[SERVE_LATENCY].observe(float(duration_s), tags=tags)


class MetricsMiddleware:
    """ASGI middleware: one :meth:`ServeMetrics.observe` per HTTP request, with the
    path (``root_path`` removed) as the route, the status code the app sent (500 when it
    raised before sending one) and the seconds from the request to the end of the
    response. Add it last (outermost), so that requests refused by other middleware
    (401, 413) are counted too."""

    def __init__(self, app: Any, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_and_watch(message: dict) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 500))
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            path, root = scope.get("path", ""), scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root):]
            self.metrics.observe(path or "/", status, time.perf_counter() - t0)
