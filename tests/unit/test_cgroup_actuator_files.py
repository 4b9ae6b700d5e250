"""The cgroup actuator, OOM-kill events and PSI on directories laid out like the
kernel's (tmp_path; the files: tests/cgroup_fixtures.py)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from prescale.app.actuators.cgroup import ActuationResult, CgroupActuator
from prescale.app.edges.cgroupfs import (
    CgroupContainer,
    CgroupNotFoundError,
    OutsideRootsError,
)
from prescale.app.settings import CgroupSettings
from prescale.app.telemetry.cgroup import CgroupSource, discover
from tests.cgroup_fixtures import (
    V1_NO_LIMIT,
    MiB,
    make_v1_cpu,
    make_v1_memory,
    make_v2,
    settings_for,
    snapshot,
)

# ---------------------------------------------------------------- actuator (fake v2 / v1)


@pytest.fixture
def v2_box(tmp_path: Path) -> tuple[CgroupSettings, CgroupContainer, Path]:
    root = tmp_path / "prescale"
    d = make_v2(root / "web")
    settings = settings_for(root)
    return settings, discover(settings)[0], d


def test_actuator_v2_memory_writes_bytes(v2_box) -> None:
    settings, box, d = v2_box
    r = CgroupActuator(settings).set_memory_limit(box, 256 * MiB)
    assert r == ActuationResult("web", "memory", 256 * MiB, 128 * MiB, 256 * MiB, True)
    assert (d / "memory.max").read_text() == str(256 * MiB)
    # Idempotent: the same value again changes nothing and says so.
    before = snapshot(d)
    r2 = CgroupActuator(settings).set_memory_limit(box, 256 * MiB)
    assert (r2.ok, r2.old, r2.new) == (True, 256 * MiB, 256 * MiB)
    assert snapshot(d) == before


def test_actuator_v2_memory_from_unlimited(v2_box) -> None:
    settings, box, d = v2_box
    (d / "memory.max").write_text("max\n")
    r = CgroupActuator(settings).set_memory_limit(box, 64 * MiB)
    assert (r.old, r.new, r.ok) == (math.inf, 64 * MiB, True)


def test_actuator_v2_cpu_writes_quota_and_keeps_period(v2_box) -> None:
    settings, box, d = v2_box
    (d / "cpu.max").write_text("max 50000\n")
    act = CgroupActuator(settings)
    r = act.set_cpu_quota(box, 0.25)
    assert (d / "cpu.max").read_text() == "12500 50000"
    assert (r.tier, r.requested, r.old, r.new, r.ok) == ("cpu", 0.25, math.inf, 0.25, True)
    assert act.set_cpu_quota(box, 0.001).new == 1000 / 50000  # kernel minimum 1000 µs
    r = act.set_cpu_quota(box, 2)
    assert (d / "cpu.max").read_text() == "100000 50000"
    r = act.set_cpu_quota(box, 2.0)
    assert (r.old, r.new, r.ok) == (2.0, 2.0, True)


def test_actuator_v1_memory_and_memsw_order(tmp_path: Path) -> None:
    root = tmp_path / "memory" / "p"
    d = make_v1_memory(root / "a", limit=f"{64 * MiB}\n", memsw=str(80 * MiB))
    settings = settings_for(root)
    act = CgroupActuator(settings)
    [box] = discover(settings)
    r = act.set_memory_limit(box, 96 * MiB)  # raise: memsw first, swap allowance kept
    assert (r.old, r.new, r.ok) == (64 * MiB, 96 * MiB, True)
    assert (d / "memory.memsw.limit_in_bytes").read_text() == str(112 * MiB)
    r = act.set_memory_limit(box, 32 * MiB)  # lower: memory first, then memsw
    assert (r.old, r.new, r.ok) == (96 * MiB, 32 * MiB, True)
    assert (d / "memory.limit_in_bytes").read_text() == str(32 * MiB)
    assert (d / "memory.memsw.limit_in_bytes").read_text() == str(48 * MiB)


def test_actuator_v1_memory_unlimited_memsw_untouched(tmp_path: Path) -> None:
    root = tmp_path / "memory" / "p"
    d = make_v1_memory(root / "a", limit=V1_NO_LIMIT + "\n")
    settings = settings_for(root)
    r = CgroupActuator(settings).set_memory_limit(discover(settings)[0], 100 * MiB)
    assert (r.old, r.new, r.ok) == (math.inf, 100 * MiB, True)
    assert (d / "memory.memsw.limit_in_bytes").read_text() == V1_NO_LIMIT + "\n"


def test_actuator_v1_cpu_keeps_period(tmp_path: Path) -> None:
    root = tmp_path / "cpu" / "p"
    d = make_v1_cpu(root / "a", quota="-1\n", period="50000\n")
    settings = settings_for(root)
    r = CgroupActuator(settings).set_cpu_quota(discover(settings)[0], 0.2)
    assert (d / "cpu.cfs_quota_us").read_text() == "10000"
    assert (d / "cpu.cfs_period_us").read_text() == "50000\n"
    assert (r.old, r.new, r.ok) == (math.inf, 0.2, True)


def test_actuator_missing_controller_file_is_not_raised(v2_box) -> None:
    settings, box, d = v2_box
    (d / "cpu.max").unlink()
    r = CgroupActuator(settings).set_cpu_quota(box, 0.5)
    assert not r.ok
    assert "ENOENT" in r.error
    assert not (d / "cpu.max").exists()  # never created


def test_actuator_refusals_write_nothing(tmp_path: Path) -> None:
    root = tmp_path / "prescale"
    make_v2(root / "web")
    outside = make_v2(tmp_path / "outside" / "web")
    (root / "link").symlink_to(outside)
    settings = settings_for(root)
    act = CgroupActuator(settings)
    before = snapshot(tmp_path)

    def box(path: Path, name: str = "web") -> CgroupContainer:
        return CgroupContainer(name, "v2", {"unified": path})

    refused = [
        (box(outside), OutsideRootsError),
        (box(root), OutsideRootsError),  # the root itself
        (box(root / "web" / ".." / ".." / "outside" / "web"), OutsideRootsError),
        (box(root / "link"), OutsideRootsError),
        (box(root / "ghost", "ghost"), CgroupNotFoundError),
        (CgroupContainer("web", "v1", {"cpu": root / "web"}), CgroupNotFoundError),  # no memory
    ]
    for container, error in refused:
        with pytest.raises(error):
            act.set_memory_limit(container, 64 * MiB)
    for container, error in refused[:5]:
        with pytest.raises(error):
            act.set_cpu_quota(container, 0.5)
    # One escaping directory taints the whole container, even if the one written is fine.
    mixed = CgroupContainer("web", "v1", {"memory": root / "web", "cpu": outside})
    with pytest.raises(OutsideRootsError):
        act.set_memory_limit(mixed, 64 * MiB)
    good = box(root / "web")
    for bad in (0, -1, math.inf, math.nan, True, "64"):
        with pytest.raises(ValueError):
            act.set_memory_limit(good, bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            act.set_cpu_quota(good, bad)  # type: ignore[arg-type]
    assert snapshot(tmp_path) == before
    assert not (root / "ghost").exists()


def test_actuator_does_not_write_through_a_symlinked_file(v2_box, tmp_path: Path) -> None:
    settings, box, d = v2_box
    target = tmp_path / "precious"
    target.write_text("134217728\n")
    (d / "memory.max").unlink()
    os.symlink(target, d / "memory.max")
    r = CgroupActuator(settings).set_memory_limit(box, 64 * MiB)
    assert not r.ok
    assert "ELOOP" in r.error
    assert target.read_text() == "134217728\n"


def test_poll_reports_oom_kill_events_from_the_counter(tmp_path: Path) -> None:
    root = tmp_path / "prescale"
    web = make_v2(root / "web")
    clock = iter([1.0, 2.0, 3.0])
    source = CgroupSource(settings_for(root), clock=lambda: next(clock))
    first = source.poll()
    assert [s.container for s in first.samples] == ["web"] and first.events == []
    events_text = (web / "memory.events").read_text().replace("oom_kill 2", "oom_kill 4")
    (web / "memory.events").write_text(events_text)
    second = source.poll()
    assert [(e.container, e.kind.value, e.ts_s, e.app) for e in second.events] == [
        ("web", "oom_kill", 2.0, "web")
    ] * 2
    assert source.poll().events == []


def test_v2_psi_pressure_totals(tmp_path: Path) -> None:
    from prescale.app.edges.cgroup_layout import parse_pressure

    root = tmp_path / "prescale"
    web = make_v2(root / "web")
    (web / "cpu.pressure").write_text(
        "some avg10=1.00 avg60=0.50 avg300=0.10 total=2500000\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=100\n")
    (web / "memory.pressure").write_text(
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=253981\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=65862\n")
    # io.pressure absent: the kernel does not expose it here -> nan
    s = CgroupSource(settings_for(root), clock=lambda: 1.0).sample(
        CgroupSource(settings_for(root)).containers()[0])
    assert s.cpu_pressure_some_s_total == 2.5
    assert s.memory_pressure_some_s_total == 0.253981
    assert s.memory_pressure_full_s_total == 0.065862
    assert math.isnan(s.io_pressure_some_s_total)
    with pytest.raises(ValueError, match="not a PSI line"):
        parse_pressure("weird 1 2 3\n")


def test_psi_parser_reads_this_kernels_own_files() -> None:
    from prescale.app.edges.cgroup_layout import parse_pressure

    real = Path("/sys/fs/cgroup/unified/memory.pressure")
    if not real.exists():
        pytest.skip("this kernel exposes no PSI files in /sys/fs/cgroup/unified")
    got = parse_pressure(real.read_text())
    assert set(got) == {"some", "full"} and got["some"] >= got["full"] >= 0
