"""The network tier end to end, for real: two containers (network namespaces behind veth
pairs, each receiving through a 1 MiB/s TBF on the host side) are sent 3 MiB/s each.
The loop (the real monitor with the link source, the real tick, auto mode) raises the
managed one's limit until the transfer meets its throughput target; the control, whose
workload is ``off``, stays at 1 MiB/s."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from prescale.app.core.actions import ResultStatus
from prescale.app.edges.netlimit import read_rate_limit, set_rate_limit
from prescale.app.settings import Settings
from tests.loop_ports import monitor_tick

MiB = 2**20
DEMAND_BYTES_PER_S = 3 * MiB
TARGET_BYTES_PER_S = 2.5 * MiB
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None,
    reason="needs root, ip(8) and tc(8) for network namespaces and a TBF")

SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5201)); s.listen(1); print("ready", flush=True)
c, _ = s.accept()
while c.recv(1 << 16):
    pass
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def links():
    tag = secrets.token_hex(3)
    made, servers, out = [], [], {}
    try:
        for k, name in enumerate(("managed", "control")):
            ns, host, inner = f"psn{k}-{tag}", f"psh{k}-{tag}", f"psc{k}-{tag}"
            _ip("netns", "add", ns)
            made.append((ns, host))
            _ip("link", "add", host, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", ns)
            _ip("addr", "add", f"10.214.{k}.1/30", "dev", host)
            _ip("link", "set", host, "up")
            _ip("-n", ns, "addr", "add", f"10.214.{k}.2/30", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            set_rate_limit(host, 1 * MiB)
            srv = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER,
                                    f"10.214.{k}.2"], stdout=subprocess.PIPE, text=True)
            servers.append(srv)
            assert srv.stdout.readline().strip() == "ready"
            out[f"net-{name}"] = (host, f"10.214.{k}.2")
        yield out
    finally:
        for srv in servers:
            srv.kill()
            srv.wait()
        for ns, host in made:
            subprocess.run(["ip", "link", "del", host], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


class _Sender(threading.Thread):
    """Sends at most DEMAND_BYTES_PER_S (paced every 50 ms); records bytes sent per s."""

    def __init__(self, addr: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection((addr, 5201), timeout=10)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        self.stop = threading.Event()
        self.sent: list[tuple[float, int]] = []

    def run(self) -> None:
        chunk = b"x" * int(DEMAND_BYTES_PER_S * 0.05)
        nxt = time.monotonic()
        try:
            while not self.stop.is_set():
                self.sock.sendall(chunk)
                self.sent.append((time.monotonic(), len(chunk)))
                nxt += 0.05
                time.sleep(max(0.0, nxt - time.monotonic()))
        finally:
            self.sock.close()

    def rate(self, last_s: float) -> float:
        now = time.monotonic()
        return sum(n for t, n in self.sent if t >= now - last_s) / last_s


def test_a_saturated_link_is_raised_until_the_transfer_meets_its_target(links):
    settings = Settings(mode="auto", cgroup={"roots": []}, history={"enabled": False},
                        sources={"links": {c: host for c, (host, _) in links.items()}},
                        workloads=[{"name": "control", "container": "net-control",
                                    "mode": "off"}])
    tick, actuation, journal = monitor_tick(settings, run_id="net")
    senders = {c: _Sender(addr) for c, (_, addr) in links.items()}
    for s in senders.values():
        s.start()
    start = time.monotonic()
    met_at = None
    try:
        while time.monotonic() - start < 60:
            t0 = time.monotonic()
            tick.run_once()
            if met_at is None and time.monotonic() - start > 8 and senders[
                    "net-managed"].rate(4.0) >= TARGET_BYTES_PER_S:
                met_at = time.monotonic() - start
            if met_at is not None and time.monotonic() - start > met_at + 5:
                break
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
        managed, control = (senders[c].rate(4.0) for c in ("net-managed", "net-control"))
    finally:
        for s in senders.values():
            s.stop.set()
        for s in senders.values():
            s.join(timeout=15)
    raised = [(r.old_limit / MiB, r.new_limit / MiB) for r in actuation.results
              if r.container == "net-managed" and r.status is ResultStatus.APPLIED]
    print(f"\nmanaged: {managed / MiB:.2f} MiB/s (target {TARGET_BYTES_PER_S / MiB} MiB/s met "
          f"at {met_at} s), limits raised (MiB/s) {raised}; control: {control / MiB:.2f} "
          f"MiB/s at {read_rate_limit(links['net-control'][0]) / MiB:.2f} MiB/s")
    assert met_at is not None and managed >= TARGET_BYTES_PER_S
    assert control < 1.3 * MiB < TARGET_BYTES_PER_S  # the off control stays saturated
    assert raised and raised[0][0] == pytest.approx(1.0, rel=0.02)
    assert read_rate_limit(links["net-managed"][0]) == pytest.approx(raised[-1][1] * MiB,
                                                                     rel=0.02)
    assert read_rate_limit(links["net-control"][0]) == pytest.approx(1 * MiB, rel=0.02)
    decisions = [r for r in journal.records if r["kind"] == "decision"
                 and r["container"] == "net-managed" and r["tier"] == "network"]
    assert decisions and "MiB/s" in decisions[0]["reason"]
    held = [r for r in journal.records if r["kind"] == "decision"
            and r["container"] == "net-control" and r["tier"] == "network"]
    assert held and "workload control is in off mode: network 1.00 MiB/s" in held[0]["reason"]
