"""Live progress of `prescale evaluate`, `replay` and `train`, run for real on small data.

- ``--progress`` without a terminal: plain progress lines on stderr that reach the total,
  and stdout stays the one JSON document of ``-o json``;
- no terminal and no flag (or ``--no-progress``): no progress on stderr at all;
- stderr a terminal (a pty) and no flag: the rich bar, drawn in place, on stderr only.

In-process (typer's CliRunner: stdout and stderr apart, neither a terminal) except the
pty test, which runs the installed ``prescale`` as a user does. `tune` needs Ray and
minutes; its hook is tested in tests/unit/test_cli_progress.py."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prescale.app.cli import app
from tests.e2e.test_train_cli import bitbrains_like

PRESCALE = str(Path(sys.executable).with_name("prescale"))
REPO = Path(__file__).resolve().parents[2]
MiB = 2**20
#: a progress line of the plain form (app/cli/progress.py:plain_line)
LINE = re.compile(r"^(evaluate|replay|train|tune): .* \[\d+:\d\d:\d\d\]$", re.M)


def cli(args: list[str], env: dict | None = None):
    return CliRunner().invoke(app, args, env=env, prog_name="prescale")


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory) -> Path:
    """Two containers × 40 one-minute steps growing into a 256 MiB limit."""
    p = tmp_path_factory.mktemp("trace") / "t.csv"
    rows = ["container,ts_s,memory_usage_bytes,memory_limit_bytes"]
    for c in ("a", "b"):
        for i in range(40):
            rows.append(f"{c},{1.7e9 + 60 * i},{(100 + 5 * i) * MiB},{256 * MiB}")
    p.write_text("\n".join(rows))
    return p


def evaluate_args(trace: Path, *extra: str, policies: str = "static,preemptive_buffer"
                  ) -> list[str]:
    return ["evaluate", "--trace", str(trace), "--policies", policies, "-o", "json", *extra]


def test_evaluate_progress_forced_reaches_every_run_and_stdout_stays_json(small_trace):
    res = cli(evaluate_args(small_trace, "--jobs", "1", "--progress"))
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # one document, no progress in it
    assert set(doc["scenarios"][0]["policies"]) == {"static", "preemptive_buffer"}
    progress = LINE.findall(res.stderr)
    assert progress and set(progress) == {"evaluate"}
    assert "evaluate: reading the trace t.csv" in res.stderr
    assert "evaluate: 0/2 runs (0%) starting" in res.stderr
    assert "evaluate: 1/2 runs (50%) next trace/preemptive_buffer" in res.stderr
    assert LINE.findall(res.stderr.splitlines()[-1] + "\n") == ["evaluate"]
    assert res.stderr.splitlines()[-1].startswith("evaluate: 2/2 runs (100%) done")


def test_evaluate_progress_in_parallel_worker_processes(small_trace):
    res = cli(evaluate_args(small_trace, "--jobs", "2", "--progress",
                            policies="static,vpa,preemptive_buffer"))
    assert res.exit_code == 0, res.output
    assert set(json.loads(res.stdout)["scenarios"][0]["policies"]) == {
        "static", "vpa", "preemptive_buffer"}
    assert "evaluate: 0/3 runs (0%) starting 2 worker processes" in res.stderr
    counts = [int(m) for m in re.findall(r"^evaluate: (\d)/3 runs", res.stderr, re.M)]
    assert counts == [0, 1, 2, 3]  # every run counted once, in order
    assert res.stderr.splitlines()[-1].startswith("evaluate: 3/3 runs (100%) done")


def test_evaluate_without_a_terminal_or_with_no_progress_shows_none(small_trace):
    for extra in ((), ("--no-progress",)):
        res = cli(evaluate_args(small_trace, "--jobs", "1", *extra))
        assert res.exit_code == 0, res.output
        json.loads(res.stdout)
        assert res.stderr == ""


@pytest.fixture(scope="module")
def vms(tmp_path_factory) -> Path:
    return bitbrains_like(tmp_path_factory.mktemp("vms") / "vms.csv", n_vms=4, n_rows=600)


def test_replay_progress_counts_rows_to_the_total_and_stdout_stays_json(vms, tmp_path):
    env = {"PRESCALE_DATA_DIR": str(tmp_path / "data")}
    res = cli(["replay", "--trace", str(vms), "--derive-failures", "-o", "json",
               "--progress"], env=env)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    rows = doc["samples"] + doc["events"]
    assert doc["samples"] == 2400 and doc["events"] > 0
    assert f"replay: reading the trace {vms}" in res.stderr
    shown = [(int(d.replace(",", "")), int(t.replace(",", ""))) for d, t in re.findall(
        r"^replay: ([\d,]+)/([\d,]+) rows", res.stderr, re.M)]
    assert shown[0] == (0, rows) and shown[-1] == (rows, rows)
    assert [d for d, _ in shown] == sorted(d for d, _ in shown)
    assert "stored 2,400 samples" in res.stderr  # the messages are still said
    quiet = cli(["replay", "--trace", str(vms), "-o", "json"],
                env={"PRESCALE_DATA_DIR": str(tmp_path / "quiet")})
    assert quiet.exit_code == 0, quiet.output
    assert not LINE.findall(quiet.stderr) and "stored 2,400 samples" in quiet.stderr


def test_train_progress_goes_through_every_stage(vms, tmp_path):
    env = {"PRESCALE_DATA_DIR": str(tmp_path / "data")}
    args = ["train", "--trace", str(vms), "--derive-failures", "--kind", "heuristic",
            "--window-steps", "12", "--horizon", "1800", "-o", "json"]
    res = cli([*args, "--progress"], env=env)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    stages = re.findall(r"^train: (\d)/8 stages \(\d+%\) (.*) \[", res.stderr, re.M)
    assert [int(d) for d, _ in stages] == list(range(9))
    labels = [label for _, label in stages]
    assert labels[0] == "taking the trace's samples"
    assert labels[3].startswith("fitting heuristic on ")
    assert labels[5].startswith("gate: heuristic")
    assert labels[-1] == f"{out['version_id']} {out['status']}"
    quiet = cli(args, env={"PRESCALE_DATA_DIR": str(tmp_path / "quiet")})
    assert quiet.exit_code == 0 and not LINE.findall(quiet.stderr)


def test_a_terminal_gets_the_bar_by_default_and_stdout_none_of_it(small_trace):
    """The real command with stderr on a pty (stdout a pipe), no flag."""
    main, side = pty.openpty()
    proc = subprocess.Popen([PRESCALE, *evaluate_args(small_trace, "--jobs", "1")],
                            stdout=subprocess.PIPE, stderr=side, cwd=REPO,
                            env={**os.environ, "COLUMNS": "120"})
    os.close(side)
    seen = b""
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the side closed: the command ended
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=60)
    os.close(main)
    assert proc.returncode == 0
    json.loads(out)
    text = seen.decode(errors="replace")
    assert "━" in text and "\x1b[" in text  # the rich bar, redrawn in place
    assert re.search(r"evaluate.*2/2.*runs.*done", text)
    assert not LINE.findall(text.replace("\r", "\n"))  # not the plain lines
