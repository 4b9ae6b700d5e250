"""Containers' networks for the real network tests (root, ip(8), tc(8)): a network
namespace per container behind a veth pair, receiving through a TBF on the host side,
a TCP server inside; and a paced sender into one.

:func:`served_links` makes them (and removes every server, host veth and namespace on
exit, what is already gone skipped); :class:`Sender` sends at most a given rate and
records what it sent.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence

from prescale.app.edges.netlimit import interface_exists, set_rate_limit

#: the server inside a namespace: listens on <address>:5201, says "ready", reads to EOF
SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5201)); s.listen(1); print("ready", flush=True)
c, _ = s.accept()
while c.recv(1 << 16):
    pass
"""


def ip(*args: str) -> None:
    """``ip <args>``; CalledProcessError when it fails."""
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def served_links(names: Sequence[str], subnet: str, prefixes: tuple[str, str, str],
                 rate_bytes_per_s: float, lo_up: bool = False, check_removed: bool = False
                 ) -> Iterator[dict[str, tuple[str, str, str, subprocess.Popen]]]:
    """One container per name (the k-th): namespace ``<prefixes[0]>k-<tag>`` holding
    veth ``<prefixes[2]>k-<tag>`` (``<subnet>.k.2/30``; its ``lo`` up too when
    ``lo_up``), paired with ``<prefixes[1]>k-<tag>`` here (``<subnet>.k.1/30``) with a
    TBF of ``rate_bytes_per_s``, a :data:`SERVER` inside. Yields ``{name: (host-side
    interface, address, namespace, server)}``. Example: ``served_links(("a",),
    "10.214", ("psn", "psh", "psc"), 2**20)`` → ``{"a": ("psh0-1a2b3c", "10.214.0.2",
    "psn0-1a2b3c", <Popen>)}``. ``check_removed``: on exit, assert that no host veth
    or namespace made here is left ("left behind: …")."""
    tag = secrets.token_hex(3)
    made, servers, out = [], [], {}
    try:
        for k, name in enumerate(names):
            ns, host, inner = (f"{p}{k}-{tag}" for p in prefixes)
            addr = f"{subnet}.{k}.2"
            ip("netns", "add", ns)
            made.append((ns, host))
            ip("link", "add", host, "type", "veth", "peer", "name", inner)
            ip("link", "set", inner, "netns", ns)
            ip("addr", "add", f"{subnet}.{k}.1/30", "dev", host)
            ip("link", "set", host, "up")
            ip("-n", ns, "addr", "add", f"{addr}/30", "dev", inner)
            ip("-n", ns, "link", "set", inner, "up")
            if lo_up:
                ip("-n", ns, "link", "set", "lo", "up")
            set_rate_limit(host, rate_bytes_per_s)
            srv = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER,
                                    addr], stdout=subprocess.PIPE, text=True)
            servers.append(srv)
            assert srv.stdout.readline().strip() == "ready"
            out[name] = (host, addr, ns, srv)
        yield out
    finally:
        for srv in servers:
            srv.kill()
            srv.wait()
        for ns, host in made:
            subprocess.run(["ip", "link", "del", host], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        if check_removed:
            left = [h for _, h in made if interface_exists(h)]
            names = subprocess.run(["ip", "netns", "list"], capture_output=True,
                                   text=True).stdout
            assert not left and tag not in names, f"left behind: {left} {names}"


class Sender(threading.Thread):
    """Sends to ``addr``:5201 at most ``bytes_per_s`` (paced every 50 ms), records the
    bytes sent per send; a send that fails (in ``timeout_s``, or its container gone)
    ends it, the error kept in :attr:`error`."""

    def __init__(self, addr: str, bytes_per_s: float, timeout_s: float = 10) -> None:
        super().__init__(daemon=True)
        self.bytes_per_s = bytes_per_s
        self.sock = socket.create_connection((addr, 5201), timeout=10)
        self.sock.settimeout(timeout_s)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        self.stop = threading.Event()
        self.sent: list[tuple[float, int]] = []
        self.error: OSError | None = None

    def run(self) -> None:
        chunk = b"x" * int(self.bytes_per_s * 0.05)
        nxt = time.monotonic()
        try:
            while not self.stop.is_set():
                self.sock.sendall(chunk)
                self.sent.append((time.monotonic(), len(chunk)))
                nxt += 0.05
                time.sleep(max(0.0, nxt - time.monotonic()))
        except OSError as exc:
            self.error = exc
        finally:
            self.sock.close()

    def rate(self, last_s: float) -> float:
        """Bytes/s sent over the last ``last_s`` seconds."""
        now = time.monotonic()
        return sum(n for t, n in self.sent if t >= now - last_s) / last_s
