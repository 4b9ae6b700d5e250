"""The block-I/O write limit: its file formats on plain strings, the source's two fields
on directories laid out like the kernel's, and the actuator spreading a new total over
the limited devices (tmp_path; the kernel itself: tests/integration/test_blkio_real.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from prescale.app.actuators import cgroup as actuator_module
from prescale.app.actuators.cgroup import CgroupActuator
from prescale.app.core.sample import Tier
from prescale.app.edges import cgroup_layout as lay
from prescale.app.edges.cgroupfs import CgroupError, read_v1_quantities, read_v2_quantities
from prescale.app.telemetry.cgroup import CgroupSource, discover
from tests.cgroup_fixtures import V1_BLKIO, MiB, make_v1_blkio, make_v2, settings_for, snapshot

# What this kernel (6.18, v1) shows: a rule on the loop device 7:0, I/O accounted on 254:0.
V1_SERVICE = """\
254:0 Read 20480
254:0 Write 65536
254:0 Sync 20480
254:0 Async 0
254:0 Discard 0
254:0 Total 86016
7:0 Read 0
7:0 Write 1048576
7:0 Sync 1048576
7:0 Async 0
7:0 Discard 0
7:0 Total 1048576
Total 1134592
"""
V2_IO_MAX = (
    "7:0 rbps=max wbps=1048576 riops=max wiops=max\n"
    "8:0 rbps=2097152 wbps=max riops=max wiops=120\n"
    "8:16 rbps=max wbps=3145728 riops=max wiops=max\n"
)


# ---------------------------------------------------------------- formats


def test_parse_blkio_write_bps() -> None:
    assert lay.parse_blkio_write_bps("7:0 1048576\n8:0 3145728\n") == {
        "7:0": 1048576, "8:0": 3145728,
    }
    assert lay.parse_blkio_write_bps("") == {}
    assert lay.parse_blkio_write_bps("\n") == {}
    for bad in ("7:0\n", "7:0 1 2\n", "sda 100\n", "7:0 -1\n", "7:0 lots\n"):
        with pytest.raises(ValueError, match="MAJ:MIN bytes_per_s") as err:
            lay.parse_blkio_write_bps("8:0 5\n" + bad)
        assert bad.strip() in str(err.value)  # names the bad line


def test_format_write_limit_lines() -> None:
    assert lay.format_blkio_write_bps("7:0", 1048576) == "7:0 1048576"
    assert lay.format_io_max_wbps("7:0", 1048576) == "7:0 wbps=1048576"
    assert lay.format_write_limit("v1", "8:16", 2 * MiB) == "8:16 2097152"
    assert lay.format_write_limit("v2", "8:16", 2 * MiB) == "8:16 wbps=2097152"
    with pytest.raises(ValueError, match="MAJ:MIN"):
        lay.format_blkio_write_bps("sda", 1)
    with pytest.raises(ValueError, match="MAJ:MIN"):
        lay.format_io_max_wbps("7:0 rbps=1", 1)
    # What is written reads back as itself.
    assert lay.parse_blkio_write_bps(lay.format_blkio_write_bps("7:0", 5)) == {"7:0": 5}
    assert lay.parse_io_max_wbps(lay.format_io_max_wbps("7:0", 5)) == {"7:0": 5.0}


def test_parse_io_max_wbps() -> None:
    assert lay.parse_io_max_wbps(V2_IO_MAX) == {
        "7:0": 1048576.0, "8:0": math.inf, "8:16": 3145728.0,
    }
    assert lay.parse_io_max_wbps("") == {}
    assert lay.parse_io_max_wbps("8:0 rbps=100\n") == {"8:0": math.inf}  # no wbps: none
    for bad in ("sda wbps=1\n", "8:0 wbps\n", "8:0 wbps=lots\n", "8:0 wbps=-5\n"):
        with pytest.raises(ValueError) as err:
            lay.parse_io_max_wbps(bad)
        assert repr(bad.strip()) in str(err.value)


def test_parse_write_limits_keeps_only_limited_devices() -> None:
    assert lay.parse_write_limits("v2", V2_IO_MAX) == {"7:0": 1048576, "8:16": 3145728}
    assert lay.parse_write_limits("v1", "7:0 1048576\n") == {"7:0": 1048576}
    assert lay.parse_write_limits("v1", "") == {}
    assert lay.write_limit_file("v1") == "blkio.throttle.write_bps_device"
    assert lay.write_limit_file("v2") == "io.max"


def test_parse_blkio_service_bytes_per_device() -> None:
    per = lay.parse_blkio_service_bytes_per_device(V1_SERVICE)
    assert per["7:0"]["Write"] == 1048576
    assert per["254:0"] == {"Read": 20480, "Write": 65536, "Sync": 20480, "Async": 0,
                            "Discard": 0, "Total": 86016}
    # The same lines as the summing parser, kept apart.
    sums = lay.parse_blkio_service_bytes(V1_BLKIO)
    per = lay.parse_blkio_service_bytes_per_device(V1_BLKIO)
    assert sum(ops["Write"] for ops in per.values()) == sums["Write"]
    assert lay.parse_blkio_service_bytes_per_device("Total 0\n") == {}
    for bad in ("8:0 Read\n", "sda Write 1\n", "8:0 Write x\n"):
        with pytest.raises(ValueError) as err:
            lay.parse_blkio_service_bytes_per_device(bad)
        assert repr(bad.strip()) in str(err.value)


def test_parse_io_stat_per_device() -> None:
    per = lay.parse_io_stat_per_device(
        "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353\n"
        "8:0 rbytes=0 wbytes=4096 rios=0 wios=1\n"
    )
    assert per == {"8:16": {"rbytes": 1459200, "wbytes": 314773504, "rios": 192, "wios": 353},
                   "8:0": {"rbytes": 0, "wbytes": 4096, "rios": 0, "wios": 1}}
    assert lay.parse_io_stat_per_device("") == {}
    for bad in ("8:0 wbytes\n", "total wbytes=1\n", "8:0 wbytes=x\n"):
        with pytest.raises(ValueError) as err:
            lay.parse_io_stat_per_device(bad)
        assert repr(bad.strip()) in str(err.value)


def test_spread_write_limit_in_proportion() -> None:
    # The worked example: 1 and 3 MiB/s, new total 8 MiB/s → 2 and 6 MiB/s.
    assert lay.spread_write_limit({"7:0": MiB, "8:0": 3 * MiB}, 8 * MiB) == {
        "7:0": 2 * MiB, "8:0": 6 * MiB,
    }
    assert lay.spread_write_limit({"7:0": MiB}, 4 * MiB + 0.4) == {"7:0": 4 * MiB}
    assert lay.spread_write_limit({"7:0": 1, "8:0": 10**9}, 100) == {"7:0": 1, "8:0": 100}
    assert lay.spread_write_limit({}, MiB) == {}
    for bad in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError):
            lay.spread_write_limit({"7:0": MiB}, bad)


# ---------------------------------------------------------------- the source


def test_v1_write_limit_and_limited_write_bytes(tmp_path: Path) -> None:
    d = make_v1_blkio(tmp_path / "blkio" / "p" / "a")
    (d / "blkio.throttle.io_service_bytes_recursive").write_text(V1_SERVICE)
    (d / "blkio.throttle.write_bps_device").write_text("7:0 1048576\n")
    values = read_v1_quantities({"blkio": d})
    assert values["io_write_limit_bytes_per_s"] == 1048576.0
    assert values["io_limited_write_bytes_total"] == 1048576.0  # 254:0 has no limit
    assert values["io_write_bytes_total"] == 1048576.0 + 65536.0  # every device
    # Two limited devices: the limits and their writes are summed; a limited device
    # without a counter line has written nothing yet.
    (d / "blkio.throttle.write_bps_device").write_text("7:0 1048576\n254:0 3145728\n8:0 5\n")
    values = read_v1_quantities({"blkio": d})
    assert values["io_write_limit_bytes_per_s"] == 1048576 + 3145728 + 5
    assert values["io_limited_write_bytes_total"] == 1048576 + 65536


def test_v1_write_limit_flat_counters_when_no_recursive_file(tmp_path: Path) -> None:
    d = make_v1_blkio(tmp_path / "a")  # only the flat blkio.throttle.io_service_bytes
    (d / "blkio.throttle.write_bps_device").write_text("8:16 2097152\n")
    values = read_v1_quantities({"blkio": d})
    assert values["io_write_limit_bytes_per_s"] == 2097152.0
    assert values["io_limited_write_bytes_total"] == 1048576.0  # 8:16 Write in V1_BLKIO


def test_no_write_limit_keeps_the_sample_defaults(tmp_path: Path) -> None:
    root = tmp_path / "blkio" / "p"
    d = make_v1_blkio(root / "a")
    for text in (None, "", "\n"):
        if text is not None:
            (d / "blkio.throttle.write_bps_device").write_text(text)
        values = read_v1_quantities({"blkio": d})
        assert "io_write_limit_bytes_per_s" not in values
        assert "io_limited_write_bytes_total" not in values
        s = CgroupSource(settings_for(root)).sample(discover(settings_for(root))[0])
        assert s.io_write_limit_bytes_per_s == math.inf
        assert math.isnan(s.io_limited_write_bytes_total)
    v2 = make_v2(tmp_path / "v2" / "a")  # no io.max
    assert "io_write_limit_bytes_per_s" not in read_v2_quantities(v2)
    (v2 / "io.max").write_text("8:0 rbps=2097152 wbps=max riops=max wiops=120\n")
    assert "io_write_limit_bytes_per_s" not in read_v2_quantities(v2)


def test_limit_without_counters_is_nan_bytes(tmp_path: Path) -> None:
    d = make_v1_blkio(tmp_path / "a")
    (d / "blkio.throttle.io_service_bytes").unlink()
    (d / "blkio.throttle.write_bps_device").write_text("7:0 1048576\n")
    values = read_v1_quantities({"blkio": d})
    assert values["io_write_limit_bytes_per_s"] == 1048576.0
    assert math.isnan(values["io_limited_write_bytes_total"])


def test_v2_write_limit_through_the_source(tmp_path: Path) -> None:
    root = tmp_path / "r"
    make_v2(root / "a", io_max=V2_IO_MAX, io_stat=(
        "7:0 rbytes=0 wbytes=4096 rios=0 wios=1\n"
        "8:0 rbytes=100 wbytes=999 rios=1 wios=1\n"
        "8:16 rbytes=0 wbytes=8192 rios=0 wios=2\n"
    ))
    source = CgroupSource(settings_for(root))
    s = source.sample(source.containers()[0])
    assert s.io_write_limit_bytes_per_s == 1048576 + 3145728
    assert s.io_limited_write_bytes_total == 4096 + 8192  # 8:0 has no write limit
    assert s.io_write_bytes_total == 4096 + 999 + 8192


def test_malformed_write_limit_file_names_the_file(tmp_path: Path) -> None:
    d = make_v1_blkio(tmp_path / "a")
    (d / "blkio.throttle.write_bps_device").write_text("7:0 fast\n")
    with pytest.raises(CgroupError, match=r"blkio\.throttle\.write_bps_device.*'7:0 fast'"):
        read_v1_quantities({"blkio": d})


# ---------------------------------------------------------------- the actuator


@pytest.fixture
def kernel_merge(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Writes to the limit files merge per device as the kernel's do (a plain file
    would be replaced by the last line); every write is recorded."""
    writes: list[tuple[str, str]] = []
    real_write = actuator_module._write

    def write(path: Path, text: str) -> None:
        writes.append((path.name, text))
        if path.name not in (lay.V1_BLKIO_WRITE_BPS, lay.V2_IO_MAX):
            real_write(path, text)
            return
        device, _, rest = text.partition(" ")
        lines = {ln.split()[0]: ln for ln in path.read_text().splitlines() if ln.strip()}
        if path.name == lay.V2_IO_MAX:
            old = lines.get(device, f"{device} rbps=max wbps=max riops=max wiops=max")
            key, _, value = rest.partition("=")
            lines[device] = " ".join(
                f"{key}={value}" if f.startswith(key + "=") else f for f in old.split()
            )
        elif rest == "0":
            lines.pop(device, None)
        else:
            lines[device] = text
        real_write(path, "".join(line + "\n" for line in lines.values()))

    monkeypatch.setattr(actuator_module, "_write", write)
    return writes


def _v1_box(tmp_path: Path, limits: str):
    root = tmp_path / "blkio" / "p"
    d = make_v1_blkio(root / "a")
    (d / "blkio.throttle.write_bps_device").write_text(limits)
    settings = settings_for(root)
    return CgroupActuator(settings), discover(settings)[0], d


def test_actuator_v1_spreads_the_total_in_proportion(tmp_path: Path, kernel_merge) -> None:
    act, box, d = _v1_box(tmp_path, f"7:0 {MiB}\n8:0 {3 * MiB}\n")
    r = act.set_io_write_limit(box, 8 * MiB)
    assert (r.tier, r.requested, r.old, r.new, r.ok, r.error) == (
        Tier.IO, 8 * MiB, 4 * MiB, 8 * MiB, True, "")
    assert kernel_merge == [("blkio.throttle.write_bps_device", f"7:0 {2 * MiB}"),
                            ("blkio.throttle.write_bps_device", f"8:0 {6 * MiB}")]
    assert lay.parse_blkio_write_bps((d / "blkio.throttle.write_bps_device").read_text()) == {
        "7:0": 2 * MiB, "8:0": 6 * MiB,
    }
    # The same total again writes nothing.
    kernel_merge.clear()
    r = act.set_io_write_limit(box, 8 * MiB)
    assert (r.ok, r.old, r.new, kernel_merge) == (True, 8 * MiB, 8 * MiB, [])


def test_actuator_v1_rounds_to_whole_bytes(tmp_path: Path) -> None:
    act, box, d = _v1_box(tmp_path, "7:0 1048576\n")
    r = act.set_io_write_limit(box, 1.5 * MiB + 0.4)
    assert (r.ok, r.new) == (True, 1572864.0)
    assert (d / "blkio.throttle.write_bps_device").read_text() == "7:0 1572864"


def test_actuator_v2_writes_only_wbps(tmp_path: Path, kernel_merge) -> None:
    root = tmp_path / "r"
    d = make_v2(root / "a", io_max=V2_IO_MAX)
    settings = settings_for(root)
    r = CgroupActuator(settings).set_io_write_limit(discover(settings)[0], 8 * MiB)
    assert (r.old, r.new, r.ok) == (4 * MiB, 8 * MiB, True)
    assert kernel_merge == [("io.max", f"7:0 wbps={2 * MiB}"), ("io.max", f"8:16 wbps={6 * MiB}")]
    assert (d / "io.max").read_text() == (
        f"7:0 rbps=max wbps={2 * MiB} riops=max wiops=max\n"
        "8:0 rbps=2097152 wbps=max riops=max wiops=120\n"
        f"8:16 rbps=max wbps={6 * MiB} riops=max wiops=max\n"
    )


def test_actuator_refuses_to_invent_a_write_limit(tmp_path: Path) -> None:
    act, box, d = _v1_box(tmp_path, "")
    before = snapshot(tmp_path)
    r = act.set_io_write_limit(box, 4 * MiB)
    assert (r.tier, r.ok, r.old, r.new) == (Tier.IO, False, math.inf, math.inf)
    assert "no write limit to raise" in r.error
    assert "blkio.throttle.write_bps_device" in r.error
    assert snapshot(tmp_path) == before


def test_actuator_bad_values_and_missing_file(tmp_path: Path) -> None:
    act, box, d = _v1_box(tmp_path, "7:0 1048576\n")
    before = snapshot(tmp_path)
    for bad in (0, -1, 0.2, math.inf, math.nan, True, "4"):
        with pytest.raises(ValueError):
            act.set_io_write_limit(box, bad)  # type: ignore[arg-type]
    assert snapshot(tmp_path) == before
    (d / "blkio.throttle.write_bps_device").unlink()
    r = act.set_io_write_limit(box, MiB)
    assert not r.ok and "ENOENT" in r.error and "write_bps_device" in r.error
    assert not (d / "blkio.throttle.write_bps_device").exists()  # never created


def test_actuator_failed_device_write_puts_back_the_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_merge) -> None:
    act, box, d = _v1_box(tmp_path, f"7:0 {MiB}\n8:0 {3 * MiB}\n")
    merging = actuator_module._write

    def refuse_8_0(path: Path, text: str) -> None:
        if text.startswith("8:0 "):
            raise actuator_module._WriteError(f"ENODEV (No such device) writing {text!r} "
                                              f"to {path}")
        merging(path, text)

    monkeypatch.setattr(actuator_module, "_write", refuse_8_0)
    r = act.set_io_write_limit(box, 8 * MiB)
    assert (r.ok, r.old, r.new) == (False, 4 * MiB, 4 * MiB)
    assert "ENODEV" in r.error and "write_bps_device" in r.error
    assert lay.parse_blkio_write_bps((d / "blkio.throttle.write_bps_device").read_text()) == {
        "7:0": MiB, "8:0": 3 * MiB,
    }
