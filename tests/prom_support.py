"""Start and stop a real Prometheus server for tests.

Usage::

    with running_prometheus(["127.0.0.1:8123"]) as prom:
        prom.wait_for(lambda: prom.query("up") == [...])
        source = PrometheusSource(prom.url)

The server listens on 127.0.0.1 on a free port, keeps its TSDB in a temporary
directory, scrapes the given targets every second, evaluates the given rule files at the
same interval (``rule_files=[...]``; :meth:`PromServer.alerts` reads
``/api/v1/alerts``), and is stopped (SIGTERM, then SIGKILL after 5 s) and its directory
removed when the block ends. Without a ``prometheus`` binary on PATH the test is
skipped, unless ``CI=true``, where a missing binary fails the test (install it with
``scripts/install_system_deps.sh``); the same for ``promtool`` (:func:`promtool_binary`,
from the same Debian package).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import requests

_T = TypeVar("_T")
INSTALL_HINT = "install it with: sudo scripts/install_system_deps.sh (Debian package 'prometheus')"


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        reason = f"the {name!r} binary is not on PATH; {INSTALL_HINT}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    return path


def prometheus_binary() -> str:
    """The path of ``prometheus``; skips the test if missing (fails it when CI=true)."""
    return _binary("prometheus")


def promtool_binary() -> str:
    """The path of ``promtool`` (Debian's ``prometheus`` package ships it); skips the
    test if missing (fails it when CI=true)."""
    return _binary("promtool")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape_config(targets: Sequence[str], interval_s: float = 1.0, job: str = "fake",
                  rule_files: Sequence[Path | str] = ()) -> str:
    """The YAML config: one job scraping ``targets`` every ``interval_s``, and the
    ``rule_files`` evaluated at the same interval.

    ``honor_labels`` keeps the exporter's own labels, as for kube-state-metrics."""
    interval = f"{int(interval_s * 1000)}ms"
    target_list = ", ".join(f'"{t}"' for t in targets)
    rules = "".join(f'  - "{f}"\n' for f in rule_files)
    return (
        "global:\n"
        f"  scrape_interval: {interval}\n"
        f"  evaluation_interval: {interval}\n"
        + (f"rule_files:\n{rules}" if rules else "")
        + "scrape_configs:\n"
        f"  - job_name: {job}\n"
        f"    scrape_interval: {interval}\n"
        f"    scrape_timeout: {interval}\n"
        "    honor_labels: true\n"
        "    static_configs:\n"
        f"      - targets: [{target_list}]\n"
    )


@dataclass
class PromServer:
    url: str
    proc: subprocess.Popen
    workdir: Path

    def log_tail(self, n_chars: int = 2000) -> str:
        try:
            return (self.workdir / "prometheus.log").read_text(errors="replace")[-n_chars:]
        except OSError:
            return ""

    def query(self, promql: str) -> list[dict]:
        """The raw ``result`` list of an instant query at the server's current time."""
        resp = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        resp.raise_for_status()
        return resp.json()["data"]["result"]

    def alerts(self) -> list[dict]:
        """The alerts of ``/api/v1/alerts`` (pending and firing), each with its
        ``labels``, ``annotations``, ``state`` and ``value``."""
        resp = requests.get(f"{self.url}/api/v1/alerts", timeout=5)
        resp.raise_for_status()
        return resp.json()["data"]["alerts"]

    def active(self, alertname: str, state: str = "firing") -> list[dict]:
        """The alerts named ``alertname`` in ``state`` (``firing`` or ``pending``)."""
        return [a for a in self.alerts()
                if a["labels"].get("alertname") == alertname and a["state"] == state]

    def wait_for(
        self, check: Callable[[], _T], timeout_s: float = 15.0, what: str = "condition"
    ) -> _T:
        """Calls ``check`` until it returns something truthy (and returns that)."""
        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last: {last!r}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextlib.contextmanager
def running_prometheus(
    targets: Sequence[str], interval_s: float = 1.0, ready_timeout_s: float = 30.0,
    rule_files: Sequence[Path | str] = (),
) -> Iterator[PromServer]:
    """A real Prometheus scraping ``targets`` and evaluating ``rule_files``, ready
    (``/-/ready`` = 200) on entry. A rule file it cannot load stops it (the error
    is raised with its log)."""
    binary = prometheus_binary()
    workdir = Path(tempfile.mkdtemp(prefix="prescale-prom-"))
    config = workdir / "prometheus.yml"
    config.write_text(scrape_config(targets, interval_s, rule_files=rule_files))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    server = PromServer(url, proc, workdir)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"prometheus not ready after {ready_timeout_s} s:\n{server.log_tail()}")
            time.sleep(0.1)
        yield server
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- PromQL names

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
             "or", "unless", "offset", "inf", "nan", "atan2"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_DURATION = re.compile(r"\boffset\s+-?(?:[0-9]+(?:ms|[smhdwy]))+")


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """``(metric names, label names)`` used in a PromQL expression.

    Example: ``sum by (tier) (rate(ray_x_total{tier="cpu"}[5m]))`` →
    ``({"ray_x_total"}, {"tier"})``."""
    labels: set[str] = set()
    text = _STRING.sub('""', expr)
    for matcher in re.findall(r"\{([^}]*)\}", text):
        labels |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matcher))
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _DURATION.sub(" ", text)
    for _, group in _GROUPING.findall(text):
        labels |= {g.strip() for g in group.split(",") if g.strip()}
    text = _GROUPING.sub(" ", text)
    metrics = set()
    for match in _IDENT.finditer(text):
        word = match.group()
        following = text[match.end():].lstrip()
        if word.lower() in _KEYWORDS or following.startswith("("):
            continue
        if text[max(0, match.start() - 1)] == "$":  # a Grafana variable outside a string
            continue
        metrics.add(word)
    return metrics, labels


# --------------------------------------------------------------------------- a fake exporter

Series = tuple[str, tuple[tuple[str, str], ...]]  # (metric name, sorted label pairs)


def series(metric: str, **labels: str) -> Series:
    """A series key: ``series("m", pod="a")`` → ``("m", (("pod", "a"),))``."""
    return metric, tuple(sorted(labels.items()))


def exposition(values: dict[Series, float]) -> str:
    """Prometheus text format (0.0.4) of ``values``.

    Example: ``{series("m_total", pod="a"): 3.5}`` → ``'m_total{pod="a"} 3.5\\n'``.
    """
    def quoted(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    lines = []
    for (metric, labels), value in sorted(values.items()):
        label_text = ",".join(f"{k}={quoted(v)}" for k, v in labels)
        number = float(value)
        text = {math.inf: "+Inf", -math.inf: "-Inf"}.get(number, repr(number))
        lines.append(f"{metric}{{{label_text}}} {'NaN' if math.isnan(number) else text}")
    return "\n".join(lines) + "\n"


class MetricsExporter:
    """A ``/metrics`` endpoint on 127.0.0.1 (an ``http.server`` in a thread).

    ``values`` are served as they are; each scrape first adds ``steps[series]`` to the
    series it names (counters that grow over time) unless :meth:`freeze` was called,
    and every body served is remembered in :attr:`served` (as a dict).
    """

    def __init__(self, values: dict[Series, float], steps: dict[Series, float] | None = None):
        import http.server
        import threading

        self.values = dict(values)
        self.steps = dict(steps or {})
        self.served: list[dict[Series, float]] = []
        self.lock = threading.Lock()
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exporter._scrape().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.target = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _scrape(self) -> str:
        with self.lock:
            for key, step in self.steps.items():
                self.values[key] += step
            snapshot = dict(self.values)
            self.served.append(snapshot)
        return exposition(snapshot)

    def freeze(self) -> dict[Series, float]:
        """Stop the counters; returns the values served from now on."""
        with self.lock:
            self.steps = {}
            return dict(self.values)

    def update(self, changes: dict[Series, float | None]) -> None:
        """Set (or, with ``None``, remove) series, all at once."""
        with self.lock:
            for key, value in changes.items():
                if value is None:
                    self.values.pop(key, None)
                else:
                    self.values[key] = value

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> MetricsExporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
