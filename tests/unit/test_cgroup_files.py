"""cgroup source and actuator on directories laid out like the kernel's (tmp_path)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from prescale.app.actuators.cgroup import ActuationResult, CgroupActuator
from prescale.app.core.sample import Sample
from prescale.app.edges.cgroup_layout import (
    cfs_quota_cores,
    parse_blkio_service_bytes,
    parse_cpu_max,
    parse_cpu_max_fields,
    parse_io_stat,
    parse_kv_lines,
    parse_v1_limit,
    parse_v2_max,
    working_set_bytes,
)
from prescale.app.edges.cgroupfs import (
    CgroupContainer,
    CgroupError,
    CgroupNotFoundError,
    OutsideRootsError,
    check_under_roots,
    detect_cgroup,
)
from prescale.app.settings import CgroupSettings
from prescale.app.telemetry.cgroup import CgroupSource, discover

MiB = 2**20
V1_NO_LIMIT = "9223372036854771712"  # what v1 shows for "-1" on x86-64 (2^63 - 4096)

# ---------------------------------------------------------------- file contents

# Formats as in Documentation/admin-guide/cgroup-v2.rst.
V2_MEMORY_STAT = """\
anon 41943040
file 20971520
kernel 1048576
kernel_stack 65536
pagetables 131072
sock 0
shmem 0
file_mapped 4194304
file_dirty 0
file_writeback 0
anon_thp 0
inactive_anon 41943040
active_anon 0
inactive_file 8388608
active_file 12582912
unevictable 0
slab_reclaimable 524288
slab_unreclaimable 262144
pgfault 12000
pgmajfault 3
"""
V2_MEMORY_EVENTS = "low 0\nhigh 0\nmax 17\noom 2\noom_kill 2\noom_group_kill 0\n"
V2_CPU_STAT = """\
usage_usec 2500000
user_usec 2000000
system_usec 500000
nr_periods 120
nr_throttled 30
throttled_usec 1500000
nr_bursts 0
burst_usec 0
"""
V2_IO_STAT = (
    "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n"
    "8:0 rbytes=90430464 wbytes=299008000 rios=8950 wios=1252 dbytes=50331648 dios=3021\n"
)

# Formats as in Documentation/admin-guide/cgroup-v1/*.rst (and this kernel's files).
V1_MEMORY_STAT = """\
cache 20971520
rss 41943040
rss_huge 0
shmem 0
mapped_file 4194304
swap 0
pgpgin 12360
pgpgout 11082
pgfault 27669
pgmajfault 5
inactive_anon 41943040
active_anon 0
inactive_file 4194304
active_file 12582912
unevictable 0
hierarchical_memory_limit 134217728
hierarchical_memsw_limit 9223372036854771712
total_cache 20971520
total_rss 41943040
total_inactive_anon 41943040
total_active_anon 0
total_inactive_file 8388608
total_active_file 12582912
total_unevictable 0
"""
V1_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"
V1_CPU_STAT = "nr_periods 200\nnr_throttled 50\nthrottled_time 2500000000\n"
V1_BLKIO = """\
8:16 Read 4096
8:16 Write 1048576
8:16 Sync 1052672
8:16 Async 0
8:16 Discard 0
8:16 Total 1052672
8:0 Read 8192
8:0 Write 0
8:0 Sync 8192
8:0 Async 0
8:0 Discard 0
8:0 Total 8192
Total 1060864
"""


def write_files(d: Path, files: dict[str, str]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def make_v2(d: Path, **overrides: str | None) -> Path:
    files = {
        "cgroup.controllers": "cpu io memory pids\n",
        "cgroup.procs": "",
        "memory.current": "62914560\n",
        "memory.max": "134217728\n",
        "memory.stat": V2_MEMORY_STAT,
        "memory.events": V2_MEMORY_EVENTS,
        "cpu.stat": V2_CPU_STAT,
        "cpu.max": "50000 100000\n",
        "io.stat": V2_IO_STAT,
    }
    for name, text in overrides.items():
        name = name.replace("_", ".", 1)
        if text is None:
            files.pop(name, None)
        else:
            files[name] = text
    return write_files(d, files)


def make_v1_memory(d: Path, limit: str = "134217728\n", memsw: str = V1_NO_LIMIT) -> Path:
    return write_files(
        d,
        {
            "cgroup.procs": "",
            "memory.usage_in_bytes": "62914560\n",
            "memory.limit_in_bytes": limit,
            "memory.memsw.limit_in_bytes": memsw + "\n",
            "memory.failcnt": "7\n",
            "memory.stat": V1_MEMORY_STAT,
            "memory.oom_control": V1_OOM_CONTROL,
        },
    )


def make_v1_cpu(d: Path, quota: str = "20000\n", period: str = "100000\n") -> Path:
    return write_files(
        d,
        {
            "cgroup.procs": "",
            "cpu.cfs_quota_us": quota,
            "cpu.cfs_period_us": period,
            "cpu.stat": V1_CPU_STAT,
            "cpu.shares": "1024\n",
        },
    )


def make_v1_cpuacct(d: Path) -> Path:
    return write_files(d, {"cgroup.procs": "", "cpuacct.usage": "3250000000\n"})


def make_v1_blkio(d: Path) -> Path:
    return write_files(d, {"cgroup.procs": "", "blkio.throttle.io_service_bytes": V1_BLKIO})


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root with its content (to assert that nothing was written)."""
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def v1_roots(tmp_path: Path) -> dict[str, Path]:
    """Separate v1 hierarchies, each with a `prescale` root holding container `leaker`."""
    roots = {c: tmp_path / c / "prescale" for c in ("memory", "cpu", "cpuacct", "blkio")}
    make_v1_memory(roots["memory"] / "leaker")
    make_v1_cpu(roots["cpu"] / "leaker")
    make_v1_cpuacct(roots["cpuacct"] / "leaker")
    make_v1_blkio(roots["blkio"] / "leaker")
    return roots


def settings_for(*roots: Path, **kw: object) -> CgroupSettings:
    return CgroupSettings(roots=list(roots), **kw)


# ---------------------------------------------------------------- parsers


def test_parse_kv_lines() -> None:
    assert parse_kv_lines("nr_periods 10\nnr_throttled 3\n\n") == {
        "nr_periods": 10,
        "nr_throttled": 3,
    }
    assert parse_kv_lines("") == {}
    with pytest.raises(ValueError, match="key value"):
        parse_kv_lines("a 1 2\n")
    with pytest.raises(ValueError, match="integer"):
        parse_kv_lines("a b\n")


def test_parse_limits_and_unlimited() -> None:
    assert parse_v1_limit("67108864\n") == 67108864
    assert parse_v1_limit(V1_NO_LIMIT) == math.inf
    assert parse_v1_limit(str(2**62)) == math.inf
    assert parse_v1_limit(str(2**61)) == 2**61
    assert parse_v2_max("max\n") == math.inf
    assert parse_v2_max("134217728\n") == 134217728
    with pytest.raises(ValueError):
        parse_v2_max("lots\n")


def test_parse_cpu_max_and_cfs() -> None:
    assert parse_cpu_max("max 100000\n") == math.inf
    assert parse_cpu_max("50000 100000\n") == 0.5
    assert parse_cpu_max("150000 100000") == 1.5
    assert parse_cpu_max_fields("max 100000") == (None, 100000)
    assert parse_cpu_max_fields("20000 50000") == (20000, 50000)
    for bad in ("", "max", "1 2 3", "x 100000", "1000 0"):
        with pytest.raises(ValueError):
            parse_cpu_max_fields(bad)
    assert cfs_quota_cores(-1, 100000) == math.inf
    assert cfs_quota_cores(20000, 100000) == 0.2


def test_parse_io_stat_sums_devices() -> None:
    sums = parse_io_stat(V2_IO_STAT)
    assert sums["rbytes"] == 1459200 + 90430464
    assert sums["wbytes"] == 314773504 + 299008000
    assert sums["rios"] == 192 + 8950
    assert parse_io_stat("") == {}
    with pytest.raises(ValueError):
        parse_io_stat("8:0 rbytes\n")


def test_parse_blkio_sums_devices_and_ignores_total_line() -> None:
    ops = parse_blkio_service_bytes(V1_BLKIO)
    assert ops["Read"] == 4096 + 8192
    assert ops["Write"] == 1048576
    assert ops["Total"] == 1052672 + 8192  # per-device Total lines only
    assert parse_blkio_service_bytes("Total 0\n") == {}
    with pytest.raises(ValueError):
        parse_blkio_service_bytes("8:0 Read\n")


def test_working_set_is_floored_at_zero() -> None:
    assert working_set_bytes(100 * MiB, 30 * MiB) == 70 * MiB
    assert working_set_bytes(10, 20) == 0


def test_detect_cgroup(tmp_path: Path) -> None:
    assert detect_cgroup(make_v2(tmp_path / "a")) == ("v2", frozenset({"unified"}))
    assert detect_cgroup(make_v1_memory(tmp_path / "b")) == ("v1", frozenset({"memory"}))
    both = make_v1_cpuacct(make_v1_cpu(tmp_path / "c"))  # co-mounted cpu,cpuacct
    assert detect_cgroup(both) == ("v1", frozenset({"cpu", "cpuacct"}))
    (tmp_path / "d").mkdir()
    assert detect_cgroup(tmp_path / "d") == (None, frozenset())


def assert_same_sample(got: Sample, want: Sample) -> None:
    """Field by field, with nan equal to nan."""
    import dataclasses

    for f in dataclasses.fields(Sample):
        a, b = getattr(got, f.name), getattr(want, f.name)
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            continue
        assert a == b, f"{f.name}: {a!r} != {b!r}"


# ---------------------------------------------------------------- v2 sample


def test_v2_sample_exact_values(tmp_path: Path) -> None:
    root = tmp_path / "prescale"
    make_v2(root / "web")
    source = CgroupSource(settings_for(root), clock=lambda: 1234.5)
    [container] = source.containers()
    assert container == CgroupContainer("web", "v2", {"unified": (root / "web").resolve()})
    assert_same_sample(source.sample(container), Sample(
        app="web",
        container="web",
        ts_s=1234.5,
        memory_usage_bytes=62914560.0,
        memory_working_set_bytes=62914560.0 - 8388608.0,
        memory_limit_bytes=134217728.0,
        memory_failcnt_total=17.0,
        oom_kills_total=2.0,
        cpu_usage_s_total=2.5,
        cpu_quota_cores=0.5,
        cpu_periods_total=120.0,
        cpu_throttled_periods_total=30.0,
        cpu_throttled_s_total=1.5,
        io_read_bytes_total=1459200.0 + 90430464.0,
        io_write_bytes_total=314773504.0 + 299008000.0,
    ))


def test_v2_unlimited_and_missing_optional_files(tmp_path: Path) -> None:
    root = tmp_path / "prescale"
    # Only the core files: no memory/io controller enabled, cpu unlimited.
    make_v2(
        root / "idle",
        cgroup_controllers="cpu\n",
        memory_current=None,
        memory_max=None,
        memory_stat=None,
        memory_events=None,
        io_stat=None,
        cpu_max="max 100000\n",
        cpu_stat="usage_usec 1000\nuser_usec 600\nsystem_usec 400\n",
    )
    make_v2(root / "free", memory_max="max\n", io_stat="")
    source = CgroupSource(settings_for(root), clock=lambda: 1.0)
    samples, errors = source.sample_all()
    assert errors == {}
    free, idle = samples
    assert free.memory_limit_bytes == math.inf
    assert (free.io_read_bytes_total, free.io_write_bytes_total) == (0.0, 0.0)  # no I/O yet
    assert idle.cpu_quota_cores == math.inf
    assert idle.cpu_usage_s_total == pytest.approx(0.001)
    for name in (
        "memory_usage_bytes",
        "memory_working_set_bytes",
        "memory_limit_bytes",
        "memory_failcnt_total",
        "oom_kills_total",
        "cpu_periods_total",
        "cpu_throttled_periods_total",
        "cpu_throttled_s_total",
        "io_read_bytes_total",
        "io_write_bytes_total",
    ):
        assert math.isnan(getattr(idle, name)), name


def test_v2_working_set_floored(tmp_path: Path) -> None:
    root = tmp_path / "r"
    make_v2(root / "c", memory_current="1000\n", memory_stat="inactive_file 5000\n")
    s = CgroupSource(settings_for(root)).sample(discover(settings_for(root))[0])
    assert s.memory_working_set_bytes == 0.0


# ---------------------------------------------------------------- v1 sample


def test_v1_sample_exact_values(v1_roots: dict[str, Path]) -> None:
    source = CgroupSource(settings_for(*v1_roots.values()), clock=lambda: 99.0)
    [container] = source.containers()
    assert container.name == "leaker"
    assert container.version == "v1"
    assert container.dirs == {c: (r / "leaker").resolve() for c, r in v1_roots.items()}
    assert_same_sample(source.sample(container), Sample(
        app="leaker",
        container="leaker",
        ts_s=99.0,
        memory_usage_bytes=62914560.0,
        memory_working_set_bytes=62914560.0 - 8388608.0,  # total_inactive_file, not inactive_file
        memory_limit_bytes=134217728.0,
        memory_failcnt_total=7.0,
        oom_kills_total=3.0,
        cpu_usage_s_total=3.25,
        cpu_quota_cores=0.2,
        cpu_periods_total=200.0,
        cpu_throttled_periods_total=50.0,
        cpu_throttled_s_total=2.5,
        io_read_bytes_total=12288.0,
        io_write_bytes_total=1048576.0,
    ))


def test_v1_unlimited_old_kernel_and_missing_controllers(tmp_path: Path) -> None:
    mem_root, cpu_root = tmp_path / "memory" / "p", tmp_path / "cpu" / "p"
    d = make_v1_memory(mem_root / "a", limit=V1_NO_LIMIT + "\n")
    (d / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")  # < 4.13
    (d / "memory.stat").unlink()
    make_v1_cpu(cpu_root / "a", quota="-1\n")
    source = CgroupSource(settings_for(mem_root, cpu_root))
    [container] = source.containers()
    assert set(container.dirs) == {"memory", "cpu"}
    s = source.sample(container)
    assert s.memory_limit_bytes == math.inf
    assert s.cpu_quota_cores == math.inf
    assert math.isnan(s.oom_kills_total)
    assert math.isnan(s.memory_working_set_bytes)
    assert math.isnan(s.cpu_usage_s_total)  # no cpuacct hierarchy among the roots
    assert math.isnan(s.io_read_bytes_total)
    assert s.memory_usage_bytes == 62914560.0


def test_v1_blkio_recursive_file_preferred(tmp_path: Path) -> None:
    root = tmp_path / "blkio" / "p"
    d = make_v1_blkio(root / "a")
    (d / "blkio.throttle.io_service_bytes_recursive").write_text(
        "8:0 Read 100\n8:0 Write 200\n8:0 Total 300\nTotal 300\n"
    )
    s = CgroupSource(settings_for(root)).sample(discover(settings_for(root))[0])
    assert (s.io_read_bytes_total, s.io_write_bytes_total) == (100.0, 200.0)


def test_v1_blkio_without_device_lines_is_nan(tmp_path: Path) -> None:
    root = tmp_path / "blkio" / "p"
    d = make_v1_blkio(root / "a")
    (d / "blkio.throttle.io_service_bytes").write_text("Total 0\n")
    s = CgroupSource(settings_for(root)).sample(discover(settings_for(root))[0])
    assert math.isnan(s.io_read_bytes_total) and math.isnan(s.io_write_bytes_total)
    (d / "blkio.throttle.io_service_bytes").write_text("8:0 Read 0\n8:0 Write 0\nTotal 0\n")
    s = CgroupSource(settings_for(root)).sample(discover(settings_for(root))[0])
    assert (s.io_read_bytes_total, s.io_write_bytes_total) == (0.0, 0.0)


def test_malformed_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    root = tmp_path / "r"
    make_v2(root / "bad", memory_current="lots\n")
    make_v2(root / "good")
    source = CgroupSource(settings_for(root))
    samples, errors = source.sample_all()
    assert [s.container for s in samples] == ["good"]
    assert "memory.current" in errors["bad"]
    with pytest.raises(CgroupError, match="malformed"):
        source.sample(CgroupContainer("bad", "v2", {"unified": root / "bad"}))


def test_vanished_cgroup_is_reported_not_raised(tmp_path: Path) -> None:
    root = tmp_path / "r"
    make_v2(root / "a")
    make_v2(root / "b")
    settings = settings_for(root, watch=["a", "b"])
    source = CgroupSource(settings)
    containers = source.containers()
    for f in (root / "a").iterdir():
        f.unlink()
    (root / "a").rmdir()
    with pytest.raises(CgroupNotFoundError, match="no longer exists"):
        source.sample(containers[0])
    samples, errors = source.sample_all()  # "a" is watched: re-discovery misses it
    assert [s.container for s in samples] == ["b"]
    assert set(errors) == {"a"}
    assert "not found" in errors["a"]


# ---------------------------------------------------------------- discovery


def test_discover_groups_by_name_across_roots(v1_roots: dict[str, Path]) -> None:
    make_v1_memory(v1_roots["memory"] / "steady")
    make_v1_cpu(v1_roots["cpu"] / "hog")
    (v1_roots["memory"] / "not-a-cgroup").mkdir()  # no controller files: skipped
    (v1_roots["memory"] / "a-file").write_text("x")
    found = {c.name: c for c in discover(settings_for(*v1_roots.values()))}
    assert sorted(found) == ["hog", "leaker", "steady"]
    assert set(found["leaker"].dirs) == {"memory", "cpu", "cpuacct", "blkio"}
    assert found["steady"].dirs == {"memory": (v1_roots["memory"] / "steady").resolve()}
    assert found["hog"].dirs == {"cpu": (v1_roots["cpu"] / "hog").resolve()}


def test_discover_off_uses_only_the_watch_list(v1_roots: dict[str, Path]) -> None:
    make_v1_memory(v1_roots["memory"] / "steady")
    settings = settings_for(*v1_roots.values(), discover=False, watch=["steady"])
    assert [c.name for c in discover(settings)] == ["steady"]
    assert discover(settings_for(*v1_roots.values(), discover=False)) == []


def test_watched_name_that_does_not_exist(v1_roots: dict[str, Path]) -> None:
    settings = settings_for(*v1_roots.values(), watch=["leaker", "ghost"])
    with pytest.raises(CgroupNotFoundError, match="'ghost' not found"):
        discover(settings)
    with pytest.raises(CgroupError, match="plain directory name"):
        discover(settings_for(*v1_roots.values(), watch=["../leaker"]))


def test_missing_root(tmp_path: Path) -> None:
    good = tmp_path / "good"
    make_v2(good / "a")
    with pytest.raises(CgroupNotFoundError, match="nope"):
        discover(settings_for(good, tmp_path / "nope"))
    (tmp_path / "file").write_text("")
    with pytest.raises(CgroupNotFoundError, match="not a directory"):
        discover(settings_for(good, tmp_path / "file"))


def test_version_setting_filters_and_mixed_versions_fail(tmp_path: Path) -> None:
    v1_root, v2_root = tmp_path / "memory" / "p", tmp_path / "unified" / "p"
    make_v1_memory(v1_root / "a")
    make_v2(v2_root / "b")
    make_v2(v2_root / "a")
    with pytest.raises(CgroupError, match="both cgroup v1 and v2"):
        discover(settings_for(v1_root, v2_root))
    samples, errors = CgroupSource(settings_for(v1_root, v2_root)).sample_all()
    assert [x.container for x in samples] == ["b"]  # one bad name does not stop the rest
    assert "both cgroup v1 and v2" in errors["a"]
    assert [
        (c.name, c.version) for c in discover(settings_for(v1_root, v2_root, version="v1"))
    ] == [("a", "v1")]
    assert [c.name for c in discover(settings_for(v1_root, v2_root, version="v2"))] == ["a", "b"]
    with pytest.raises(CgroupNotFoundError, match="is cgroup v2, but cgroup.version = v1"):
        discover(settings_for(v2_root, version="v1", watch=["b"]))


def test_discover_skips_symlinks_out_of_the_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_v2(root / "a")
    outside = make_v2(tmp_path / "outside" / "evil")
    (root / "evil").symlink_to(outside)
    assert [c.name for c in discover(settings_for(root))] == ["a"]
    with pytest.raises(OutsideRootsError):
        discover(settings_for(root, watch=["evil"]))


# ---------------------------------------------------------------- roots checks


def test_check_under_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (root / "link").symlink_to(tmp_path / "other")
    (tmp_path / "rootlink").symlink_to(root)
    assert check_under_roots(root / "a", [root]) == (root / "a").resolve()
    assert check_under_roots(root / "not-yet", [root]) == (root / "not-yet").resolve()
    assert check_under_roots(root / "a" / ".." / "a", [root]) == (root / "a").resolve()
    assert check_under_roots(tmp_path / "rootlink" / "a", [root]) == (root / "a").resolve()
    for bad in (
        tmp_path / "other",  # outside
        root,  # the root itself
        root / "a" / "..",  # the root, via ..
        root / ".." / "other",  # .. escape
        root / "link",  # symlink escape
        root / "link" / "x",
        Path(str(root) + "-sibling"),  # a prefix is not a parent
    ):
        with pytest.raises(OutsideRootsError):
            check_under_roots(bad, [root])
    with pytest.raises(OutsideRootsError, match="no cgroup.roots"):
        check_under_roots(root / "a", [])


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
