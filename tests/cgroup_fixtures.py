"""Directories laid out like the kernel's cgroup files (v1 and v2), for the cgroup
source and actuator tests."""

from __future__ import annotations

from pathlib import Path

from prescale.app.settings import CgroupSettings

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


def make_v1_roots(tmp_path: Path) -> dict[str, Path]:
    """Separate v1 hierarchies, each with a `prescale` root holding container `leaker`."""
    roots = {c: tmp_path / c / "prescale" for c in ("memory", "cpu", "cpuacct", "blkio")}
    make_v1_memory(roots["memory"] / "leaker")
    make_v1_cpu(roots["cpu"] / "leaker")
    make_v1_cpuacct(roots["cpuacct"] / "leaker")
    make_v1_blkio(roots["blkio"] / "leaker")
    return roots


def settings_for(*roots: Path, **kw: object) -> CgroupSettings:
    return CgroupSettings(roots=list(roots), **kw)

