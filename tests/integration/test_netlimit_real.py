"""Network links, for real: a network namespace per container with one end of a veth
pair inside, a TBF on the host side's egress limiting what the container receives, a
real TCP transfer into the namespace, the link source over the host side's
``tx_bytes`` and the link actuator over ``tc qdisc replace``. Every namespace and host
veth is deleted at teardown.

1. ``set_rate_limit`` / ``read_rate_limit``: inf before any TBF, 1 MB/s read back as
   set; bad input refused with nothing changed; tc's own refusal is a NetLimitError.
2. A transfer from the host into the namespace runs at the TBF's 1 MB/s (±25 %); after
   the actuator raises it to 4 MB/s it runs faster than 2.5 MB/s; the source's
   ``net_rx_bytes_total`` grows by the bytes sent (and their headers), its
   ``net_rx_limit_bytes_per_s`` follows the limit.
3. The actuator: idempotent by id (no tc run), refuses a memory tier, a scale_out and a
   nan with nothing changed, DENIED for an unknown container, FAILED for an interface
   deleted after configuration and for another tool's root qdisc (left in place).
4. The source: a missing interface is an error naming it; the other link still gives
   its sample.
"""

from __future__ import annotations

import json
import math
import os
import queue
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from prescale.app.actuators.base import InvalidActionError
from prescale.app.actuators.netlimit import LinkActuator
from prescale.app.core.actions import ActionKind, ResultStatus, ScalingAction
from prescale.app.core.sample import Tier
from prescale.app.edges.netlimit import (
    NetLimitError,
    NoSuchInterfaceError,
    interface_exists,
    read_rate_limit,
    read_tbf,
    rx_bytes_of,
    set_rate_limit,
)
from prescale.app.telemetry.links import LinkSource

MB = 1_000_000
KiB = 1024


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces, veth pairs and tc qdiscs"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (iproute2)"
    probe = f"psns-{secrets.token_hex(4)}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                          timeout=10, check=False)
    if done.returncode != 0:
        return f"cannot create a network namespace here: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10, check=False)
    return None


_why = _skip_reason()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or "")]


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10,
                          check=False)
    if done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


def _tc(*args: str) -> None:
    done = subprocess.run(["tc", *args], capture_output=True, text=True, timeout=10,
                          check=False)
    if done.returncode != 0:
        raise AssertionError(f"tc {' '.join(args)} failed: {done.stderr.strip()}")


@dataclass(frozen=True)
class Link:
    """A container's network: namespace ``ns``, veth ``host_if`` (here, 10.213.x.1/30)
    ↔ ``inner_if`` (in ``ns``, 10.213.x.2/30)."""

    ns: str
    host_if: str
    inner_if: str
    host_ip: str
    inner_ip: str


def _free_octet(taken: set[int]) -> int:
    """A third octet x with no 10.213.x.* address or route here yet."""
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                           timeout=10, check=False).stdout
    shown += subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True,
                            timeout=10, check=False).stdout
    for _ in range(1000):
        x = secrets.randbelow(256)
        if x not in taken and f"10.213.{x}." not in shown:
            return x
    raise AssertionError("no free 10.213.x.0/30 subnet")


@pytest.fixture
def make_link() -> Iterator[Callable[[], Link]]:
    """``make_link()``: a fresh namespace ``psns-<hex>`` with ``psc-<hex>`` inside,
    paired with ``psh-<hex>`` here, addressed and up. Every host veth and namespace is
    deleted at teardown, whatever happened (deleting a namespace also deletes the veth
    end inside it, and so the pair)."""
    made: list[Link] = []
    octets: set[int] = set()

    def make() -> Link:
        tag = secrets.token_hex(4)
        x = _free_octet(octets)
        octets.add(x)
        link = Link(f"psns-{tag}", f"psh-{tag}", f"psc-{tag}", f"10.213.{x}.1",
                    f"10.213.{x}.2")
        made.append(link)  # before anything exists: teardown covers a half-made link
        done = subprocess.run(["ip", "netns", "add", link.ns], capture_output=True,
                              text=True, timeout=10, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot create a network namespace here: {done.stderr.strip()}")
        _ip("link", "add", link.host_if, "type", "veth", "peer", "name", link.inner_if,
            "netns", link.ns)
        _ip("addr", "add", f"{link.host_ip}/30", "dev", link.host_if)
        _ip("link", "set", link.host_if, "up")
        _ip("-n", link.ns, "addr", "add", f"{link.inner_ip}/30", "dev", link.inner_if)
        _ip("-n", link.ns, "link", "set", link.inner_if, "up")
        _ip("-n", link.ns, "link", "set", "lo", "up")
        return link

    try:
        yield make
    finally:
        for link in reversed(made):
            for args in (["link", "del", link.host_if], ["netns", "del", link.ns]):
                subprocess.run(["ip", *args], capture_output=True, timeout=10, check=False)


def _action(aid: str, container: str, new_rate: float, tier: Tier = Tier.NETWORK,
            old_rate: float = math.inf, kind: ActionKind = ActionKind.RESIZE
            ) -> ScalingAction:
    return ScalingAction(aid, time.time(), container, tier, old_rate, new_rate, 0.9, 0.5,
                         30.0, new_rate, "test", kind=kind)


# --------------------------------------------------------------------------- 1. edge


def test_set_then_read_back_the_rate(make_link):
    link = make_link()
    dev = link.host_if
    assert interface_exists(dev) and not interface_exists("psh-nothere")
    assert read_rate_limit(dev) == math.inf  # a veth starts with noqueue: no limit
    assert read_tbf(dev) is None

    assert set_rate_limit(dev, 1 * MB) == 1 * MB
    assert read_rate_limit(dev) == 1 * MB
    tbf = read_tbf(dev)
    assert abs(tbf.burst_bytes - 16 * KiB) <= 4  # tc rounds the burst (16382 here)
    assert tbf.latency_s == pytest.approx(0.05, abs=1e-4)

    # rounded to whole bytes/s, set as 8 × bits: reads back exactly
    assert set_rate_limit(dev, 4_000_000.4) == 4 * MB
    assert abs(read_tbf(dev).burst_bytes - 40_000) <= 4

    # bad input: refused before anything runs, the TBF stays as it was
    for bad in (math.nan, math.inf, 0, -1.0):
        with pytest.raises(ValueError, match=f"rate limit of {dev} must be a finite number "
                           "of bytes/s > 0"):
            set_rate_limit(dev, bad)
    with pytest.raises(ValueError, match=f"rate limit of {dev} must be at least 1000"):
        set_rate_limit(dev, 500)
    with pytest.raises(ValueError, match=f"burst of the TBF on {dev} must be at least 4000 "
                       "bytes"):
        set_rate_limit(dev, 4 * MB, burst_bytes=1000)
    with pytest.raises(ValueError, match=f"latency of the TBF on {dev} must be a finite"):
        set_rate_limit(dev, 2 * MB, latency_s=0)
    with pytest.raises(ValueError, match="not a network interface name: contains '/'"):
        set_rate_limit("../eth0", 2 * MB)
    with pytest.raises(NoSuchInterfaceError, match="no network interface psh-nothere here"):
        set_rate_limit("psh-nothere", 2 * MB)
    with pytest.raises(NoSuchInterfaceError, match="no network interface psh-nothere here"):
        read_rate_limit("psh-nothere")
    assert read_rate_limit(dev) == 4 * MB

    # tc's own refusal (a latency below the 1 µs it can express): its words, named
    with pytest.raises(NetLimitError, match=f"tc qdisc replace dev {dev} root tbf rate "
                       r"16000000bit .* failed \(exit 1\): tbf: either \"limit\" or "
                       "\"latency\" is required"):
        set_rate_limit(dev, 2 * MB, latency_s=1e-8)
    assert read_rate_limit(dev) == 4 * MB


# --------------------------------------------------------------------------- 2. transfer

SERVER = r"""
import json, socket, sys, time
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], 0))
srv.listen(4)
print(srv.getsockname()[1], flush=True)
while True:
    conn, _ = srv.accept()
    total = first_len = 0
    first = last = None
    with conn:
        while True:
            data = conn.recv(1 << 16)
            if not data:
                break
            now = time.monotonic()
            if first is None:
                first, first_len = now, len(data)
            total += len(data)
            last = now
    print(json.dumps({"bytes": total, "first_bytes": first_len,
                      "seconds": (last - first) if first is not None else 0.0}), flush=True)
"""


class Receiver:
    """The TCP server inside the namespace: reads and discards, and says per connection
    how many bytes it got and over how long (first to last byte)."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", link.ns, sys.executable, "-c", SERVER, link.inner_ip],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(x) for x in self.proc.stdout],
                         daemon=True).start()
        self.port = int(self.next_line(10.0))

    def next_line(self, timeout_s: float) -> str:
        try:
            return self.lines.get(timeout=timeout_s)
        except queue.Empty:
            code = self.proc.poll()
            said = self.proc.stderr.read().strip() if code is not None else ""
            raise AssertionError(f"the receiver said nothing in time (exit code {code}"
                                 f"{': ' + said if said else ''})") from None

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()


def _send_for(receiver: Receiver, seconds: float) -> tuple[int, float]:
    """Send to the receiver as fast as the link takes for ``seconds``; the bytes sent
    and the rate the receiver measured (bytes/s after its first read). A small send
    buffer keeps what is still queued when the sender stops (and so the drain) short."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)
    sock.settimeout(10.0)
    sock.connect((receiver.link.inner_ip, receiver.port))
    chunk = b"\0" * (64 * KiB)
    sent = 0
    end = time.monotonic() + seconds
    with sock:
        while time.monotonic() < end:
            sent += sock.send(chunk)
        sock.shutdown(socket.SHUT_WR)
        got = json.loads(receiver.next_line(15.0))
    assert got["bytes"] == sent, got
    assert got["seconds"] > 0.5 * seconds, got
    return sent, (got["bytes"] - got["first_bytes"]) / got["seconds"]


def test_a_real_transfer_follows_the_limit(make_link, record_property):
    link = make_link()
    dev = link.host_if
    source = LinkSource({"web": dev})
    act = LinkActuator({"web": dev})
    assert set_rate_limit(dev, 1 * MB) == 1 * MB
    receiver = Receiver(link)
    try:
        before = source.poll()
        assert not before.errors and [s.container for s in before.samples] == ["web"]
        assert before.samples[0].net_rx_limit_bytes_per_s == 1 * MB

        sent, slow = _send_for(receiver, 2.0)
        record_property("throughput_at_1MBps", slow)
        print(f"\nat a TBF of 1 MB/s: {sent} bytes sent, {slow / MB:.3f} MB/s received")
        assert 0.75 * MB <= slow <= 1.25 * MB

        after = source.poll().samples[0]
        grew = after.net_rx_bytes_total - before.samples[0].net_rx_bytes_total
        # every payload byte, plus its frame headers (≤ 66 bytes per ≥ 1448): ≤ 10 % more
        print(f"net_rx_bytes_total grew by {grew:.0f} ({grew / sent:.4f} × the bytes sent)")
        assert sent <= grew <= 1.10 * sent + 64 * KiB, (sent, grew)
        assert after.net_rx_limit_bytes_per_s == 1 * MB

        result = act.apply(_action("web/network@1", "web", 4 * MB, old_rate=1 * MB))
        assert result.status is ResultStatus.APPLIED, result.reason
        assert (result.old_limit, result.new_limit) == (1 * MB, 4 * MB)
        assert source.poll().samples[0].net_rx_limit_bytes_per_s == 4 * MB

        sent, fast = _send_for(receiver, 2.0)
        record_property("throughput_at_4MBps", fast)
        print(f"at a TBF of 4 MB/s: {sent} bytes sent, {fast / MB:.3f} MB/s received")
        assert 2.5 * MB < fast <= 1.25 * 4 * MB
        last = source.poll().samples[0]
        assert sent <= last.net_rx_bytes_total - after.net_rx_bytes_total
    finally:
        receiver.close()


# --------------------------------------------------------------------------- 3. actuator


def test_actuator_idempotent_refuses_denies_and_fails(make_link):
    link = make_link()
    doomed = make_link()
    dev = link.host_if
    act = LinkActuator({"web": dev, "gone": doomed.host_if})

    action = _action("web/network@1", "web", 1 * MB)
    first = act.apply(action)
    assert first.status is ResultStatus.APPLIED, first.reason
    assert (first.old_limit, first.new_limit) == (math.inf, 1 * MB)
    assert first.reason == f"TBF on {dev} set to 1000000 bytes/s (rate 8000000bit) and read back"
    assert read_rate_limit(dev) == 1 * MB
    runs, changes = act.tc_runs, act.changes
    assert changes == 1

    again = act.apply(action)  # the same action again: remembered by its id
    assert again is first and act.tc_runs == runs

    same = act.apply(_action("web/network@2", "web", 1 * MB, old_rate=1 * MB))
    assert same.status is ResultStatus.APPLIED
    assert (same.old_limit, same.new_limit) == (1 * MB, 1 * MB)
    assert same.reason == f"already the receive limit of {dev}: nothing run"
    assert act.changes == changes and act.tc_runs == runs + 1  # one read, no change
    runs = act.tc_runs

    with pytest.raises(InvalidActionError, match="resizes only the network tier, not memory"):
        act.apply(_action("web/memory@3", "web", 4 * MB, tier=Tier.MEMORY))
    with pytest.raises(InvalidActionError, match="a link cannot scale_out"):
        act.apply(_action("web/network@4", "web", 2, kind=ActionKind.SCALE_OUT))
    with pytest.raises(InvalidActionError, match="new_limit must be a finite number"):
        act.apply(_action("web/network@5", "web", math.nan))
    with pytest.raises(InvalidActionError, match="rate in bytes/s of at least 1000"):
        act.apply(_action("web/network@6", "web", 500))
    assert act.tc_runs == runs and read_rate_limit(dev) == 1 * MB

    denied = act.apply(_action("api/network@7", "api", 4 * MB))
    assert denied.status is ResultStatus.DENIED
    assert denied.reason == ("no link is configured for container 'api': prescale does "
                             "not act on it")
    assert act.tc_runs == runs

    _ip("link", "del", doomed.host_if)  # the container's network is gone
    failed = act.apply(_action("gone/network@8", "gone", 4 * MB))
    assert failed.status is ResultStatus.FAILED and math.isnan(failed.new_limit)
    assert failed.reason == f"link of 'gone' ({doomed.host_if}): no such network interface"
    assert act.tc_runs == runs

    # another tool's shaping at the root is never replaced: FAILED, left in place
    _tc("qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb")
    other = act.apply(_action("web/network@9", "web", 4 * MB))
    assert other.status is ResultStatus.FAILED
    assert other.reason == (f"link of 'web' ({dev}): {dev} has a root qdisc htb (1:) that is "
                            "not a TBF: prescale does not replace another tool's traffic "
                            "control")
    assert other.old_limit == math.inf and other.new_limit == math.inf
    assert read_tbf(dev) is None
    shown = subprocess.run(["tc", "qdisc", "show", "dev", dev], capture_output=True,
                           text=True, timeout=10).stdout
    assert "qdisc htb 1: root" in shown

    with pytest.raises(ValueError, match="the interface of 'x' must be a network interface "
                       "name, got 'veth-web-frontend-1': it is longer than 15 characters"):
        LinkActuator({"x": "veth-web-frontend-1"})


# --------------------------------------------------------------------------- 4. source


def test_source_reports_a_missing_interface_the_others_go_on(make_link):
    link = make_link()
    missing = f"psh-{secrets.token_hex(4)}"
    ticks = iter(range(100, 200))
    source = LinkSource({"web": link.host_if, "gone": missing}, clock=lambda: next(ticks))
    assert source.watches("web") and source.watches("gone") and not source.watches("api")
    assert source.links == {"web": link.host_if, "gone": missing}
    for _ in range(2):  # at every poll while it lasts
        batch = source.poll()
        assert [s.container for s in batch.samples] == ["web"]
        assert batch.errors == {"gone": f"link of 'gone' ({missing}): no such network "
                                        "interface"}
        web = batch.samples[0]
        assert web.net_rx_limit_bytes_per_s == math.inf  # no TBF yet
        assert web.net_rx_bytes_total == pytest.approx(rx_bytes_of(link.host_if), abs=4096)
        assert math.isnan(web.memory_usage_bytes)  # other sources fill the rest
    assert batch.samples[0].ts_s == 101
    with pytest.raises(NoSuchInterfaceError, match=f"no network interface {missing} here"):
        rx_bytes_of(missing)
    with pytest.raises(ValueError, match="the interface of 'x' must be a network interface "
                       "name, got 'a b': it contains whitespace"):
        LinkSource({"x": "a b"})
    source.close()
