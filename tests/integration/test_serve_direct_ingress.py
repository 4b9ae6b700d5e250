"""``prescale serve`` with ``api.direct_ingress_port``: the replica serves HTTP itself
(Ray Serve's direct ingress), over real HTTP, in a process of its own (the setting acts
on the environment of the Ray it starts, so it cannot share this process's Ray).

What must hold on the replica's own port, as through the proxy: the same answers, the
token, and the body deadline of :mod:`app.serve_proxy` (Serve applies the proxy's
middlewares to a replica's own server too). And the proxy's port keeps answering.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

MiB = 2**20
TOKEN = "direct-token"
T0 = time.time() - 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _body() -> dict:
    return {"containers": [{"name": "leaker", "app": "web", "samples": [
        {"ts_s": T0 + i, "memory_usage_bytes": 40 * MiB + 4 * MiB * i,
         "memory_limit_bytes": 128 * MiB} for i in range(20)]}]}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    port = _free_port()
    first = 30_000 + os.getpid() % 20_000  # a range unlikely to be in use
    env = {**os.environ, "PRESCALE_API__DIRECT_INGRESS_PORT": str(first),
           "PRESCALE_API_TOKEN": TOKEN, "PRESCALE_BODY_TIMEOUT_S": "2",
           "PRESCALE_DATA_DIR": str(tmp_path_factory.mktemp("direct")),
           "PRESCALE_RAY__NUM_CPUS": "2", "RAY_USAGE_STATS_ENABLED": "0"}
    log = Path(tmp_path_factory.mktemp("log")) / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from prescale.app.cli import main; main()", "serve",
             "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        urls: list[str] = []
        while time.monotonic() < deadline and proc.poll() is None and not urls:
            m = re.search(r"direct ingress\): (.+)", log.read_text())
            urls = m.group(1).split(", ") if m else []
            time.sleep(0.5)
        assert urls, f"no replica URL printed; log:\n{log.read_text()[-3000:]}"
        yield {"proxy": f"http://127.0.0.1:{port}", "replica": urls[0], "first": first,
               "proc": proc, "log": log}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_the_replica_serves_on_the_configured_port_and_answers_as_the_proxy(served):
    port = int(served["replica"].rsplit(":", 1)[1])  # the first free port of the range
    assert served["replica"].startswith("http://127.0.0.1:")
    assert served["first"] <= port <= served["first"] + 100
    auth = {"Authorization": f"Bearer {TOKEN}"}
    got = {}
    for where in ("proxy", "replica"):
        r = requests.post(served[where] + "/v1/predict", json=_body(), headers=auth, timeout=30)
        assert r.status_code == 200, (where, r.text)
        got[where] = r.json()
        assert requests.get(served[where] + "/healthz", timeout=30).status_code == 200
    assert got["replica"]["predictions"] == got["proxy"]["predictions"]
    assert got["replica"]["predictions"][0]["tiers"]["memory"]["time_to_limit_s"] == (
        pytest.approx(3.0, rel=1e-9))  # (128 - 116) MiB / 4 MiB/s


def test_the_replica_port_requires_the_token(served):
    r = requests.post(served["replica"] + "/v1/predict", json=_body(), timeout=30)
    assert r.status_code == 401, r.text


def test_a_slow_body_on_the_replica_port_gets_408(served):
    """The proxy's body deadline (2 s here) guards the replica's own server too."""
    host, port = served["replica"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: 100000\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n{")
        t = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer and time.monotonic() - t < 20:
            try:
                sock.sendall(b" ")
            except OSError:
                pass
            sock.settimeout(0.3)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert 1.5 < time.monotonic() - t < 10


def test_sigterm_stops_it_promptly(served):
    proc = served["proc"]
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=90)
    assert time.monotonic() - t < 60, served["log"].read_text()[-2000:]
