"""The README's "Watch your own containers" cgroup block, run as written.

The block is taken from README.md between its markers and run with bash, unchanged
except for its first line: the two roots (``/sys/fs/cgroup/{memory,cpu}/prescale``)
move beneath this test's own cgroups, where tests may create cgroups. The block starts
a real `prescale up` (embedded Ray), reads `prescale status`, stops the loop with
SIGINT as Ctrl-C would, reads `prescale events` and cleans up after itself.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from prescale.app.edges.cgroup_layout import V1_MOUNT
from prescale.app.edges.cgroupfs import own_cgroup_paths
from tests.cgroup_support import remove_cgroups, v1_unavailable_reason

REPO = Path(__file__).resolve().parents[2]
START, END = "<!-- watch-cgroups:start -->", "<!-- watch-cgroups:end -->"

pytestmark = [pytest.mark.slow, pytest.mark.cgroup,
              pytest.mark.skipif(v1_unavailable_reason() is not None,
                                 reason=v1_unavailable_reason() or "")]


def readme_block() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index(START) + len(START):text.index(END)]
    found = re.search(r"```bash\n(.*?)```", section, re.S)
    assert found, "the README's watch-cgroups block has no ```bash fence"
    return found.group(1)


def test_readme_block_first_line_sets_the_two_roots():
    first = readme_block().splitlines()[0]
    assert first == "MEM=/sys/fs/cgroup/memory/prescale CPU=/sys/fs/cgroup/cpu/prescale"


def test_watch_your_own_cgroups_as_written(tmp_path):
    own = own_cgroup_paths()
    mem = V1_MOUNT / "memory" / own["memory"].lstrip("/") / f"prescale-readme-{os.getpid()}"
    cpu = V1_MOUNT / "cpu" / own["cpu"].lstrip("/") / f"prescale-readme-{os.getpid()}"
    lines = readme_block().splitlines()
    script = "\n".join([f"MEM={mem} CPU={cpu}", *lines[1:]]) + "\n"
    env = {**os.environ, "PRESCALE_DATA_DIR": str(tmp_path / "data"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    try:
        # as typed in a terminal: no `set -e` (the block's last line waits for the
        # `sleep` it killed, whose status is 143); what matters is checked below
        proc = subprocess.Popen(["bash", "-uo", "pipefail", "-c", script], cwd=tmp_path,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the block, its loop and its `sleep`
            out, err = proc.communicate()
            pytest.fail(f"the block did not finish in 300 s:\n{out[-3000:]}\n{err[-3000:]}")
    finally:
        remove_cgroups([mem / "web", cpu / "web", mem, cpu])
    assert "unbound variable" not in err and "command not found" not in err, err[-3000:]
    # `prescale status` listed the container, with its 256 MiB limit
    assert re.search(r"\bweb\b.*256.0 MiB", out), out[-3000:]
    # the loop stopped on SIGINT after some ticks, and said so
    assert re.search(r"stopped after \d+ ticks", out + err), (out + err)[-3000:]
    # the loop ran ticks and stopped cleanly on SIGINT; the block removed its own cgroups
    assert (tmp_path / "data" / "status.json").exists()
    assert not (mem / "web").exists() and not (cpu / "web").exists()
