"""The block-I/O write limit, for real (cgroup v1 blkio, root): a loop device on a sparse
image under ``tmp_path``, a blkio cgroup with a write limit on it, a direct-I/O writer
(``dd oflag=direct``; v1 throttles only direct I/O, buffered writeback is not
attributed) moved into that cgroup by its own shell.

1. The source reports the limit and the limited-write bytes growing at about the limit;
   the actuator raises the limit 1 → 4 MiB/s, reads it back, and the writer speeds up.
2. A cgroup without a write limit: the actuator refuses and writes nothing.

Test cgroups are made beneath this process's own blkio cgroup, named
``prescale-test-<pid>-<random>``; only the writer's shell moves itself into one. The
fixtures kill the writers, remove the cgroups (children first), detach the loop device
and delete the image, whatever happened.
"""

from __future__ import annotations

import math
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prescale.app.actuators.cgroup import CgroupActuator
from prescale.app.core.sample import Sample, Tier
from prescale.app.edges import cgroup_layout as lay
from prescale.app.settings import CgroupSettings
from prescale.app.telemetry.cgroup import CgroupSource
from tests.blkio_support import blkio_test_marks, make_test_root, stop_writers
from tests.blkio_support import loop_device as attach_loop_device
from tests.cgroup_support import remove_cgroups

MiB = 2**20
IMAGE_BYTES = 256 * MiB  # sparse; more than the writer can write in this test


pytestmark = blkio_test_marks(("losetup", "dd"))


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """``(/dev/loopN, "MAJ:MIN")`` on a sparse ``blkio.img``; detached and deleted after."""
    with attach_loop_device(tmp_path / "blkio.img", IMAGE_BYTES) as attached:
        yield attached


class Blkio:
    """A test root beneath our own blkio cgroup, its containers and their writers;
    :meth:`cleanup` removes everything it made."""

    def __init__(self) -> None:
        self.root = make_test_root("prescale-test")
        self.created = [self.root]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.settings = CgroupSettings(roots=[self.root])

    def container(self, name: str) -> Path:
        d = self.root / name
        d.mkdir()
        self.created.append(d)
        return d

    def writer(self, name: str, dev: Path, blocks: int) -> subprocess.Popen[bytes]:
        """``dd`` writing ``blocks`` × 64 KiB to ``dev`` with O_DIRECT, inside ``name``."""
        procs = shlex.quote(str(self.root / name / lay.CGROUP_PROCS))
        cmd = (f"echo $$ > {procs} && exec dd if=/dev/zero of={shlex.quote(str(dev))} "
               f"bs=64k count={blocks} oflag=direct status=none")
        proc = subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        stop_writers(self.procs)
        remove_cgroups(reversed(self.created))  # children before parents


@pytest.fixture
def blkio() -> Iterator[Blkio]:
    b = Blkio()
    try:
        yield b
    finally:
        b.cleanup()


def _rate(source: CgroupSource, seconds: float) -> tuple[float, Sample]:
    """Limited-write bytes/s over ``seconds`` (monotonic clock), and the last sample."""
    [box] = source.containers()
    s0, t0 = source.sample(box), time.monotonic()
    time.sleep(seconds)
    s1, t1 = source.sample(box), time.monotonic()
    return (s1.io_limited_write_bytes_total - s0.io_limited_write_bytes_total) / (t1 - t0), s1


def test_write_limit_read_raised_and_the_writer_speeds_up(blkio: Blkio, loop_device) -> None:
    dev, devno = loop_device
    d = blkio.container("box")
    limit_file = d / lay.V1_BLKIO_WRITE_BPS
    limit_file.write_text(lay.format_blkio_write_bps(devno, MiB))
    source = CgroupSource(blkio.settings)
    [box] = source.containers()
    assert set(box.dirs) == {"blkio"}
    s = source.sample(box)
    assert s.io_write_limit_bytes_per_s == MiB
    assert s.io_limited_write_bytes_total == 0

    writer = blkio.writer("box", dev, blocks=IMAGE_BYTES // (64 * 1024))
    time.sleep(0.5)  # started, moved in, queueing at the limit
    assert writer.poll() is None, writer.stderr.read() if writer.stderr else ""
    before, s = _rate(source, 3.0)
    assert s.io_write_limit_bytes_per_s == MiB
    assert 0.6 * MiB < before < 1.4 * MiB, before / MiB

    act = CgroupActuator(blkio.settings)
    r = act.set_io_write_limit(box, 4 * MiB)
    assert (r.tier, r.ok, r.old, r.new, r.error) == (Tier.IO, True, MiB, 4 * MiB, "")
    assert lay.parse_blkio_write_bps(limit_file.read_text()) == {devno: 4 * MiB}
    time.sleep(0.3)
    after, s = _rate(source, 3.0)
    assert writer.poll() is None  # still writing: the image is far from full
    assert s.io_write_limit_bytes_per_s == 4 * MiB
    assert after / before > 2.5, (before / MiB, after / MiB)
    assert after < 1.4 * 4 * MiB, after / MiB
    print(f"limited writes: {before / MiB:.2f} MiB/s at 1 MiB/s, "
          f"{after / MiB:.2f} MiB/s at 4 MiB/s")


def test_no_write_limit_is_refused_and_nothing_written(blkio: Blkio, loop_device) -> None:
    _, devno = loop_device
    d = blkio.container("box")
    # A read limit is not a write limit.
    (d / "blkio.throttle.read_bps_device").write_text(f"{devno} {MiB}")
    source = CgroupSource(blkio.settings)
    [box] = source.containers()
    s = source.sample(box)
    assert s.io_write_limit_bytes_per_s == math.inf
    assert math.isnan(s.io_limited_write_bytes_total)

    r = CgroupActuator(blkio.settings).set_io_write_limit(box, 4 * MiB)
    assert (r.tier, r.ok, r.old, r.new) == (Tier.IO, False, math.inf, math.inf)
    assert "no write limit to raise" in r.error and lay.V1_BLKIO_WRITE_BPS in r.error
    assert (d / lay.V1_BLKIO_WRITE_BPS).read_text() == ""
    assert (d / "blkio.throttle.read_bps_device").read_text() == f"{devno} {MiB}\n"
