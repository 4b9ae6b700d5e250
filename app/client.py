"""Report the execution time of key code blocks to prescale (no dependencies).

(To ask the prediction API for predictions — windows sent as Apache Arrow or JSON —
use :class:`app.serve_client.PredictClient`; it needs requests, pyarrow and orjson,
which this module does not.)

An application imports this one module::

    from prescale.app.client import timed

    with timed("checkout", container="web-1"):
        handle(order)

    @timed("search")
    def search(query): ...

    @timed("fetch", timeout_s=2.0)
    async def fetch(url): ...

Each call appends one JSON line to a spool file that prescale's
:class:`app.telemetry.timings.TimingsSource` reads::

    {"v":1,"ts_s":1767225600.5,"container":"web-1","block":"checkout",
     "duration_s":0.0123,"ok":true,"timeout":false,"app":"shop","pid":4242}

(one line; ``"error":"ValueError"`` is added for a failed call).

* ``ok`` is false when the block raised; the exception is always re-raised unchanged.
  Every exception counts (``KeyboardInterrupt`` and cancellation included); its
  type is in ``error`` so a reader may filter.
* ``timeout`` is true when the block raised :class:`TimeoutError` (which includes
  ``socket.timeout`` and ``asyncio.TimeoutError``) or ran longer than ``timeout_s``.
* ``duration_s`` is measured with :func:`time.perf_counter` (monotonic); ``ts_s`` is
  the wall-clock time at the end of the block.

Where it goes: the spool file is ``Reporter(spool_path=...)``, else the environment
variable ``PRESCALE_SPOOL`` (read at each call, so it may be set after import). The
container is the ``container`` argument, else ``PRESCALE_CONTAINER``, else the host
name (a pod's or Docker container's name); the app is ``app``, else ``PRESCALE_APP``.

Concurrency: each record is one ``os.write`` of fewer than 4096 bytes to a file
opened with ``O_APPEND``; on a local Linux file system such writes from any number
of threads and processes never interleave (the kernel appends each write whole
under the inode lock). The file is opened per call, so rotation (rename) and
``fork`` need no care. NFS does not honour ``O_APPEND`` atomically: keep the spool
on a local disk.

Never in the application's way: if the record cannot be written (no spool
configured, directory missing, disk full, ...) nothing is raised; the failure is
counted in :attr:`Reporter.failures` by reason. Only a programming error — a block
or container name that is empty, not a string or longer than 256 characters, a
negative duration — raises :class:`ValueError` at the call site, before the block runs.
"""

from __future__ import annotations

import errno
import functools
import inspect
import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

SPOOL_ENV = "PRESCALE_SPOOL"
CONTAINER_ENV = "PRESCALE_CONTAINER"
APP_ENV = "PRESCALE_APP"
#: A record is one write of at most this many bytes (fewer than 4 KiB).
MAX_RECORD_BYTES = 4095
#: Longest block, container or app name.
MAX_NAME_CHARS = 256
RECORD_VERSION = 1

_F = TypeVar("_F", bound=Callable[..., Any])


def _check_name(what: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"timed(): {what} must be a non-empty string, got {value!r}")
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(
            f"timed(): {what} is {len(value)} characters long; at most {MAX_NAME_CHARS}"
        )


def encode_record(
    *,
    ts_s: float,
    container: str,
    block: str,
    duration_s: float,
    ok: bool,
    timeout: bool,
    app: str = "",
    pid: int = 0,
    error: str = "",
) -> bytes:
    """One record as a JSON line (UTF-8, ending in ``\\n``).

    Example: ``encode_record(ts_s=100.0, container="web", block="checkout",
    duration_s=0.5, ok=True, timeout=False, pid=7)`` →
    ``b'{"v":1,"ts_s":100.0,"container":"web","block":"checkout","duration_s":0.5,'
    b'"ok":true,"timeout":false,"app":"","pid":7}\\n'``.
    """
    record: dict[str, Any] = {
        "v": RECORD_VERSION,
        "ts_s": ts_s,
        "container": container,
        "block": block,
        "duration_s": duration_s,
        "ok": ok,
        "timeout": timeout,
        "app": app,
        "pid": pid,
    }
    if error:
        record["error"] = error[:MAX_NAME_CHARS]
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return line.encode("utf-8") + b"\n"


class Reporter:
    """Writes timing records to a spool file; counts what it could not write.

    ``sent`` is the number of records written; ``failures`` maps a reason
    (``"no_spool"``, ``"open:ENOENT"``, ``"write:ENOSPC"``, ``"short_write"``,
    ``"too_long"``, ``"bad_container"``, ``"internal"``) to a count.
    """

    def __init__(
        self,
        spool_path: str | os.PathLike[str] | None = None,
        *,
        container: str | None = None,
        app: str | None = None,
    ) -> None:
        _check_name("container", container, optional=True)
        if app is not None and not isinstance(app, str):
            raise ValueError(f"Reporter: app must be a string, got {app!r}")
        self.spool_path = None if spool_path is None else os.fspath(spool_path)
        self.container = container
        self.app = app
        self.sent = 0
        self.failures: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- counting

    def _fail(self, reason: str) -> bool:
        with self._lock:
            self.failures[reason] = self.failures.get(reason, 0) + 1
        return False

    # -- writing

    def _path(self) -> str | None:
        return self.spool_path if self.spool_path is not None else os.environ.get(SPOOL_ENV)

    def _container(self, container: str | None) -> str:
        if container is not None:
            return container
        if self.container is not None:
            return self.container
        return os.environ.get(CONTAINER_ENV) or socket.gethostname()

    def record(
        self,
        block: str,
        duration_s: float,
        *,
        ok: bool = True,
        timeout: bool = False,
        container: str | None = None,
        app: str | None = None,
        error: str = "",
    ) -> bool:
        """Write one record; True when it was written. Never raises for I/O problems."""
        _check_name("block", block)
        _check_name("container", container, optional=True)
        if (
            isinstance(duration_s, bool)
            or not isinstance(duration_s, int | float)
            or not math.isfinite(duration_s)
            or duration_s < 0
        ):
            raise ValueError(
                f"record(): duration_s must be a finite number ≥ 0, got {duration_s!r}"
            )
        try:
            name = self._container(container)
            if not name or len(name) > MAX_NAME_CHARS:
                return self._fail("bad_container")
            app_name = app if app is not None else (
                self.app if self.app is not None else os.environ.get(APP_ENV, "")
            )
            data = encode_record(
                ts_s=time.time(), container=name, block=block, duration_s=float(duration_s),
                ok=bool(ok), timeout=bool(timeout), app=app_name[:MAX_NAME_CHARS],
                pid=os.getpid(), error=error,
            )
        except Exception:  # noqa: BLE001 - never raise into the application
            return self._fail("internal")
        if len(data) > MAX_RECORD_BYTES:
            return self._fail("too_long")
        path = self._path()
        if not path:
            return self._fail("no_spool")
        return self._append(path, data)

    def _append(self, path: str, data: bytes) -> bool:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            return self._fail(f"open:{errno.errorcode.get(exc.errno or 0, 'OSError')}")
        try:
            written = os.write(fd, data)
        except OSError as exc:
            return self._fail(f"write:{errno.errorcode.get(exc.errno or 0, 'OSError')}")
        finally:
            os.close(fd)
        if written != len(data):
            return self._fail("short_write")
        with self._lock:
            self.sent += 1
        return True

    def timed(
        self,
        block: str,
        container: str | None = None,
        *,
        timeout_s: float | None = None,
        app: str | None = None,
    ) -> Timed:
        """A context manager / decorator that times ``block`` (see :func:`timed`)."""
        return Timed(self, block, container, timeout_s=timeout_s, app=app)


class Timed:
    """Times one block: a context manager, or a decorator (a fresh timer per call).

    One ``Timed`` object times one ``with`` at a time; :func:`timed` makes a new one
    per use, and the decorator form makes one per call, so threads never share one.
    ``reporter=None`` means :func:`default_reporter` at the time of each call (so a
    function decorated at import time follows a later :func:`set_default_reporter`).
    """

    def __init__(
        self,
        reporter: Reporter | None,
        block: str,
        container: str | None = None,
        *,
        timeout_s: float | None = None,
        app: str | None = None,
    ) -> None:
        _check_name("block", block)
        _check_name("container", container, optional=True)
        if timeout_s is not None and (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, int | float)
            or not timeout_s > 0
        ):
            raise ValueError(f"timed(): timeout_s must be a number > 0, got {timeout_s!r}")
        if app is not None and not isinstance(app, str):
            raise ValueError(f"timed(): app must be a string, got {app!r}")
        self.reporter = reporter
        self.block = block
        self.container = container
        self.timeout_s = timeout_s
        self.app = app
        self._start: float | None = None

    def _fresh(self) -> Timed:
        return Timed(self.reporter, self.block, self.container, timeout_s=self.timeout_s,
                     app=self.app)

    def __enter__(self) -> Timed:
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        duration = time.perf_counter() - (self._start if self._start is not None else 0.0)
        self._start = None
        reporter = self.reporter or default_reporter()
        try:
            too_slow = self.timeout_s is not None and duration > self.timeout_s
            reporter.record(
                self.block, max(0.0, duration), ok=exc is None,
                timeout=isinstance(exc, TimeoutError) or too_slow,
                container=self.container, app=self.app,
                error="" if exc_type is None else exc_type.__name__,
            )
        except Exception:  # noqa: BLE001 - never raise into the application
            reporter._fail("internal")
        return False  # an exception of the block propagates unchanged

    async def __aenter__(self) -> Timed:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        return self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: _F) -> _F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._fresh():
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


_default: Reporter | None = None
_default_lock = threading.Lock()


def default_reporter() -> Reporter:
    """The process-wide reporter :func:`timed` uses (spool from ``PRESCALE_SPOOL``)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Reporter()
        return _default


def set_default_reporter(reporter: Reporter | None) -> None:
    """Replace the reporter :func:`timed` uses (None: back to the environment's)."""
    global _default
    with _default_lock:
        _default = reporter


def timed(
    block: str,
    container: str | None = None,
    *,
    timeout_s: float | None = None,
    app: str | None = None,
    reporter: Reporter | None = None,
) -> Timed:
    """Time ``block``: ``with timed("checkout"): ...`` or ``@timed("checkout")``.

    Records the duration and whether the block succeeded (an exception is a failure
    and is re-raised); ``timeout_s`` marks slower calls as timeouts. Uses
    ``reporter``, else the process-wide :func:`default_reporter` of the moment the
    block ends.
    """
    return Timed(reporter, block, container, timeout_s=timeout_s, app=app)
