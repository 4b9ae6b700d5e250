"""Slow and oversized request bodies, stopped in Ray Serve's HTTP proxy (stdlib and
Starlette only: this module is imported by the proxy actor).

Why in the proxy: Serve routes a request to a replica as soon as its headers arrive, and
the replica then pulls the body from the proxy. A client that sends the headers and
dribbles the body holds one of the replica's ``max_ongoing_requests`` slots for as long
as it likes; 140 such connections (more than the 64 slots) blocked ``/healthz`` and
``/v1/predict`` for as long as they were held. :class:`BodyDeadline` reads the whole
body in the proxy first — an idle coroutine per slow client, no replica slot — and
only then routes the request:

- the body must be complete within ``body_timeout_s`` of the request's headers, else
  408 and the connection is closed;
- a body above ``max_body_bytes`` (``Content-Length``, or the bytes read so far when
  chunked) → 413 at once; the replica's own, per-app ``max_body_bytes`` still applies
  after (:class:`app.serve_http.RequestGuard`).

How it is installed: Serve 2.60 refuses ``http_options.middlewares``; the proxy takes
its middlewares only from the callback named by ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``
in its environment, which it inherits from the process that starts Ray. :func:`proxy_env`
gives those variables (the callback, :func:`proxy_middlewares`, and its limits);
``prescale serve`` sets them before it starts an embedded Ray. For a Ray cluster
(``ray start``) or ``serve deploy`` export them where ``ray start`` runs::

    RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=prescale.app.serve_proxy:proxy_middlewares
    PRESCALE_BODY_TIMEOUT_S=30

:func:`http_options` gives the rest of ``serve.start(http_options=...)``: an end-to-end
``request_timeout_s`` and a shorter keep-alive.

Worked example (``body_timeout_s`` 2): ``POST /v1/predict`` with ``Content-Length:
100000`` that sends one byte every 0.5 s → after 2 s: ``408 {"detail": "request body
not received within body_timeout_s = 2 s (1 of 100000 bytes after 2.0 s)"}``, the
connection closed; ``/healthz`` meanwhile answers as fast as without it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any

#: Seconds a client has to send a whole request body (after its headers).
BODY_TIMEOUT_S = 30.0
#: Largest body the proxy reads (per-app limits are checked again in the replica).
PROXY_MAX_BODY_BYTES = 64 * 2**20
#: End-to-end timeout of a request in the proxy (Serve's ``request_timeout_s``).
REQUEST_TIMEOUT_S = 120.0
#: Idle keep-alive connections are closed after this many seconds (Serve's default: 90).
KEEP_ALIVE_TIMEOUT_S = 15
ENV_BODY_TIMEOUT = "PRESCALE_BODY_TIMEOUT_S"
ENV_MAX_BODY = "PRESCALE_PROXY_MAX_BODY_BYTES"
CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"


async def _respond(send: Callable, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class BodyDeadline:
    """ASGI middleware for the proxy: the whole body within ``body_timeout_s`` (else
    408) and at most ``max_body_bytes`` (else 413), before the request is routed."""

    def __init__(
        self,
        app: Any,
        body_timeout_s: float = BODY_TIMEOUT_S,
        max_body_bytes: int = PROXY_MAX_BODY_BYTES,
    ) -> None:
        if not body_timeout_s > 0:
            raise ValueError(f"body_timeout_s must be > 0, got {body_timeout_s}")
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be ≥ 1, got {max_body_bytes}")
        self.app = app
        self.body_timeout_s = float(body_timeout_s)
        self.max_body_bytes = int(max_body_bytes)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        chunked = False
        for k, v in scope.get("headers", []):
            k = k.lower()
            if k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    await _respond(
                        send, 400, f"Content-Length {v.decode('latin-1')!r} is not an integer"
                    )
                    return
            elif k == b"transfer-encoding" and b"chunked" in v.lower():
                chunked = True
        if not chunked and not length:  # no body: nothing to wait for
            await self.app(scope, receive, send)
            return
        if length is not None and length > self.max_body_bytes:
            await _respond(
                send,
                413,
                f"request body of {length} bytes is above the "
                f"proxy's max_body_bytes = {self.max_body_bytes}",
            )
            return
        messages: list[dict] = []
        got = 0
        start = time.monotonic()
        deadline = start + self.body_timeout_s
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                msg = await asyncio.wait_for(receive(), left)
            except TimeoutError:
                of = f" of {length}" if length is not None else ""
                await _respond(
                    send,
                    408,
                    f"request body not received within body_timeout_s "
                    f"= {self.body_timeout_s:g} s ({got}{of} bytes after "
                    f"{time.monotonic() - start:.1f} s)",
                )
                return
            if msg["type"] == "http.disconnect":
                return
            got += len(msg.get("body", b""))
            if got > self.max_body_bytes:
                await _respond(
                    send,
                    413,
                    f"request body is above the proxy's max_body_bytes "
                    f"= {self.max_body_bytes} (chunked)",
                )
                return
            messages.append(msg)
            if not msg.get("more_body", False):
                break
        replay = iter(messages)

        async def buffered() -> dict:
            for msg in replay:
                return msg
            return await receive()

        await self.app(scope, buffered, send)


def proxy_middlewares(
    body_timeout_s: float | None = None, max_body_bytes: int | None = None
) -> list[Any]:
    """The proxy's middlewares (a list of Starlette ``Middleware``): :class:`BodyDeadline`
    with ``body_timeout_s`` / ``max_body_bytes``, else ``$PRESCALE_BODY_TIMEOUT_S`` /
    ``$PRESCALE_PROXY_MAX_BODY_BYTES``, else the module defaults. Also the callback of
    ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` (called without arguments)."""
    from starlette.middleware import Middleware

    if body_timeout_s is None:
        body_timeout_s = float(os.environ.get(ENV_BODY_TIMEOUT, BODY_TIMEOUT_S))
    if max_body_bytes is None:
        max_body_bytes = int(os.environ.get(ENV_MAX_BODY, PROXY_MAX_BODY_BYTES))
    return [Middleware(BodyDeadline, body_timeout_s=body_timeout_s, max_body_bytes=max_body_bytes)]


def proxy_env(
    body_timeout_s: float = BODY_TIMEOUT_S, max_body_bytes: int = PROXY_MAX_BODY_BYTES
) -> dict[str, str]:
    """The environment that installs :class:`BodyDeadline` in Serve's proxy (module doc)."""
    return {
        CALLBACK_ENV: f"{__name__}:proxy_middlewares",
        ENV_BODY_TIMEOUT: f"{float(body_timeout_s):g}",
        ENV_MAX_BODY: str(int(max_body_bytes)),
    }


#: Replica ports of direct ingress: from the first port to this many above it.
DIRECT_INGRESS_PORTS = 100
#: Seconds a stopping direct-ingress replica keeps serving (Ray's default, 30 s, is for an
#: outside load balancer to notice; prescale serve has none, and it delays every stop).
DIRECT_INGRESS_DRAIN_S = 2.0


def direct_ingress_env(first_port: int) -> dict[str, str]:
    """The environment of Ray Serve's direct ingress: each ingress replica serves HTTP
    itself on a port of ``[first_port, first_port + DIRECT_INGRESS_PORTS]`` (the
    controller hands them out in order), through the same middlewares as the proxy
    (:func:`proxy_middlewares` is applied there too), while the proxy keeps its own port.
    Worked example: ``direct_ingress_env(30000)`` → the first replica on 30000, a second
    on 30001; ``RAY_SERVE_ENABLE_DIRECT_INGRESS=1``. A replica that replaces a dead one
    takes the next free port, not the dead one's (measured: a killed replica on 31200,
    its replacement on 31201 after 14 s): clients must follow the URLs Serve lists
    (:func:`app.serve_app.replica_urls`), or a load balancer that does. Like
    :func:`proxy_env`, it must be in the environment of the processes that start Ray
    (``ray start`` on a cluster)."""
    if not 1024 <= first_port <= 65535 - DIRECT_INGRESS_PORTS:
        raise ValueError(f"direct ingress port {first_port}: must be in 1024..."
                         f"{65535 - DIRECT_INGRESS_PORTS}")
    return {
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(first_port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(first_port + DIRECT_INGRESS_PORTS),
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": f"{DIRECT_INGRESS_DRAIN_S:g}",
    }


def http_options(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
    keep_alive_timeout_s: int = KEEP_ALIVE_TIMEOUT_S,
) -> dict[str, Any]:
    """``serve.start(http_options=...)`` for the prediction API (see the module doc).

    ``request_timeout_s`` bounds a request end to end (Serve answers 408 after it;
    Serve lets a client lift it with an ``x-request-timeout-seconds`` header, which is
    why the body deadline lives in :class:`BodyDeadline`, which no header changes).
    """
    return {
        "host": host,
        "port": port,
        "request_timeout_s": request_timeout_s,
        "keep_alive_timeout_s": keep_alive_timeout_s,
    }


__all__ = ["BODY_TIMEOUT_S", "BodyDeadline", "direct_ingress_env", "http_options", "proxy_env",
           "proxy_middlewares"]
