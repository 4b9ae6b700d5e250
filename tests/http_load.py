"""Clients that GET a URL in a loop while a test runs; every answer that is not a 200 is
counted (``ok``, ``errors``)."""

from __future__ import annotations

import threading

import requests


class Load:
    def __init__(self, url: str, threads: int = 3) -> None:
        self.url = url
        self.ok = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with requests.Session() as s:
            while not self._stop.is_set():
                try:
                    r = s.get(self.url, timeout=30)
                    if r.status_code == 200:
                        self.ok += 1
                    else:
                        self.errors.append(f"HTTP {r.status_code}")
                except Exception as exc:  # noqa: BLE001 - counted, asserted by the test
                    self.errors.append(f"{type(exc).__name__}: {exc}")

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)
