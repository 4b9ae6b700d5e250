"""cgroup parsing, samples and discovery on directories laid out like the kernel's
(tmp_path; the files: tests/cgroup_fixtures.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

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
from prescale.app.telemetry.cgroup import CgroupSource, discover
from tests.cgroup_fixtures import (
    V1_BLKIO,
    V1_NO_LIMIT,
    V2_IO_STAT,
    MiB,
    make_v1_blkio,
    make_v1_cpu,
    make_v1_cpuacct,
    make_v1_memory,
    make_v1_roots,
    make_v2,
    settings_for,
)


@pytest.fixture
def v1_roots(tmp_path: Path) -> dict[str, Path]:
    return make_v1_roots(tmp_path)


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

