"""The network tier end to end, for real: two containers (network namespaces behind veth
pairs, each receiving through a 1 MiB/s TBF on the host side) are sent 3 MiB/s each.
The loop (the real monitor with the link source, the real tick, auto mode) raises the
managed one's limit until the transfer meets its throughput target; the control, whose
workload is ``off``, stays at 1 MiB/s."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from prescale.app.core.actions import ResultStatus
from prescale.app.edges.netlimit import read_rate_limit
from prescale.app.settings import Settings
from tests.loop_ports import monitor_tick
from tests.netns_support import Sender, served_links

MiB = 2**20
DEMAND_BYTES_PER_S = 3 * MiB
TARGET_BYTES_PER_S = 2.5 * MiB
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None,
    reason="needs root, ip(8) and tc(8) for network namespaces and a TBF")

@pytest.fixture
def links():
    """``{container: (host-side interface, address)}``: net-managed and net-control,
    each a namespace behind a veth pair with a 1 MiB/s TBF, a server inside."""
    with served_links(("net-managed", "net-control"), "10.214", ("psn", "psh", "psc"),
                      1 * MiB, lo_up=True) as made:
        yield {c: (host, addr) for c, (host, addr, _, _) in made.items()}


def test_a_saturated_link_is_raised_until_the_transfer_meets_its_target(links):
    settings = Settings(mode="auto", cgroup={"roots": []}, history={"enabled": False},
                        sources={"links": {c: host for c, (host, _) in links.items()}},
                        workloads=[{"name": "control", "container": "net-control",
                                    "mode": "off"}])
    tick, actuation, journal = monitor_tick(settings, run_id="net")
    senders = {c: Sender(addr, DEMAND_BYTES_PER_S) for c, (_, addr) in links.items()}
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
