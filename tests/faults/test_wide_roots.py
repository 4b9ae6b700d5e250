"""Roots that are too wide are refused (issue 15, item 7): a controller's mount point
(every cgroup on the host: docker's, systemd's, prescale's own), a root holding
prescale's own cgroup, a root that is not normalised (``/../..`` walks to a sibling),
unless ``cgroup.allow_wide_roots`` says so. Against this host's real mounts and a real
process placed in a cgroup of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from prescale.app.edges.cgroup_layout import wide_root_reason
from prescale.app.edges.cgroupfs import own_cgroup_paths
from tests.cgroup_support import v1_unavailable_reason

PRESCALE = str(Path(sys.executable).with_name("prescale"))
REPO = Path(__file__).resolve().parents[2]
MEM = Path("/sys/fs/cgroup/memory")


def test_the_worked_example():
    mounts = [MEM, Path("/sys/fs/cgroup/cpu")]
    own = [MEM / "prescale"]
    assert "mount point" in wide_root_reason(MEM, mounts, own)
    assert "holds the cgroup hierarchy" in wide_root_reason(Path("/sys/fs/cgroup"), mounts, own)
    assert "holds the cgroup hierarchy" in wide_root_reason(Path("/"), mounts, own)
    assert wide_root_reason(MEM / "apps/../..", mounts, own) == (
        "is not normalised (it means /sys/fs/cgroup)")
    assert wide_root_reason(MEM / "prescale", mounts, own).startswith("contains prescale's")
    assert wide_root_reason(MEM / "apps", mounts, own) is None


def up(*roots: str, allow: bool = False, preexec=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRESCALE_CGROUP__ROOTS": "[" + ",".join(f'"{r}"' for r in roots) + "]",
           "PRESCALE_CGROUP__ALLOW_WIDE_ROOTS": "true" if allow else "false",
           "PRESCALE_DATA_DIR": "/nonexistent/never-created"}
    return subprocess.run([PRESCALE, "up"], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=60, preexec_fn=preexec)


@pytest.mark.skipif(v1_unavailable_reason() is not None, reason=str(v1_unavailable_reason()))
def test_up_refuses_wide_roots_naming_why():
    p = up(str(MEM))
    assert p.returncode == 2 and "is the mount point of a cgroup hierarchy" in p.stderr
    p = up("/sys/fs/cgroup")
    assert p.returncode == 2 and "holds the cgroup hierarchy" in p.stderr
    p = up(f"{MEM}/x/../..")
    assert p.returncode == 2 and "is not normalised" in p.stderr
    assert "allow_wide_roots" in p.stderr
    assert not Path("/nonexistent/never-created").exists()  # nothing started


@pytest.mark.skipif(v1_unavailable_reason() is not None, reason=str(v1_unavailable_reason()))
def test_a_root_holding_prescales_own_cgroup_is_refused(tmp_path):
    own = MEM / own_cgroup_paths()["memory"].lstrip("/")
    mine = own / f"prescale-wide-{uuid.uuid4().hex[:8]}"
    mine.mkdir()
    try:
        def into_mine():  # the new `prescale up` (only it) runs in a cgroup of its own
            (mine / "cgroup.procs").write_text(str(os.getpid()))

        p = up(str(mine), preexec=into_mine)
        assert p.returncode == 2, p.stderr
        assert f"contains prescale's own cgroup {mine}" in " ".join(p.stderr.split())
    finally:
        mine.rmdir()
