"""The `prescale status --watch` view: exact cells of a hand-made snapshot, the stale
warning, bad snapshots, and a real watcher process stopped with Ctrl-C (SIGINT)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from prescale.app import status_view as sv
from prescale.app.store import jsonfile

MiB = 2**20
ROOT = Path(__file__).resolve().parents[2]


def snapshot() -> dict:
    """As the coordinator writes it (inf/nan already mapped to null by jsonfile)."""
    return {
        "ts_s": 1000.0, "run_id": "r1", "mode": "auto", "tick": 42, "tick_s": 0.0371,
        "model": "trend-exhaustion/v1", "horizon_s": 30.0,
        "errors": {"ghost": "cgroup gone"}, "dropped": {"no_data": 2, "bad_timestamp": 1},
        "containers": [
            {"name": "leaker", "memory_usage_bytes": 120 * MiB,
             "memory_limit_bytes": 128 * MiB, "cpu_usage_cores": 0.05,
             "cpu_quota_cores": 0.25, "p_fail_memory": 0.934, "p_fail_cpu": 0.0,
             "memory_time_to_limit_s": 2.4, "model": "web/v3 (hgb)", "samples": 60,
             "last_action": {"ts_s": 988.0, "tier": "memory", "old_limit": 128 * MiB,
                             "new_limit": 160 * MiB, "requested_limit": 160 * MiB,
                             "result": "applied"}},
            {"name": "cpuhog", "memory_usage_bytes": 3 * MiB, "memory_limit_bytes": None,
             "cpu_usage_cores": 0.249, "cpu_quota_cores": 0.25, "p_fail_memory": None,
             "p_fail_cpu": 0.61, "memory_time_to_limit_s": None,
             "model": "trend-exhaustion/v1", "samples": 3,
             "last_action": {"ts_s": 700.0, "tier": "cpu", "old_limit": 0.25,
                             "new_limit": 0.375, "requested_limit": 0.375,
                             "result": "dry_run"}},
            {"name": "steady", "memory_usage_bytes": 48 * MiB,
             "memory_limit_bytes": 128 * MiB, "cpu_usage_cores": 0.0,
             "cpu_quota_cores": None, "p_fail_memory": 0.0012, "p_fail_cpu": 0.0,
             "memory_time_to_limit_s": 5400.0, "model": None, "samples": 60,
             "last_action": None},
        ],
    }


def cells(table) -> dict[str, list[str]]:
    return {c.header: [str(x) for x in c.cells] for c in table.columns}


def test_build_table_cells_exactly(utc):
    table = sv.build_table(snapshot(), now_s=1003.5)
    assert cells(table) == {
        "container": ["leaker", "cpuhog", "steady"],
        "memory": ["120.0 MiB", "3.0 MiB", "48.0 MiB"],
        "limit": ["128.0 MiB", "-", "128.0 MiB"],
        "p_fail memory": ["0.93", "-", "0.0012"],
        "p_fail cpu": ["0", "0.61", "0"],
        "time to limit": ["2 s", "-", "1.5 h"],
        "cpu": ["0.050 / 0.25 cores", "0.25 / 0.25 cores", "0.00 cores / -"],
        "last action": ["memory applied 128.0 MiB → 160.0 MiB, 16 s ago",
                        "cpu dry_run 0.25 cores → 0.38 cores, 5.1 min ago", "-"],
        "model": ["web/v3 (hgb)", "trend-exhaustion/v1", "trend-exhaustion/v1"],
    }
    assert table.title == ("prescale status — run r1, mode auto, tick 42, "
                           "model trend-exhaustion/v1")
    assert str(table.caption) == ("tick at 1970-01-01T00:16:40+00:00, updated 4 s ago; tick "
                                  "took 37 ms; 1 source errors: ghost; 3 samples dropped")
    styles = [x.style for x in table.columns[3].cells]
    assert styles == ["bold red", "", ""]  # p_fail ≥ 0.8 in red
    assert [x.style for x in table.columns[4].cells] == ["", "yellow", ""]


def test_stale_snapshot_is_flagged():
    table = sv.build_table(snapshot(), now_s=1042.0, stale_after_s=10.0)
    assert str(table.caption).endswith(
        "\nSTALE: no tick for 42 s (expected every ≤ 10 s) — is `prescale up` running?")
    fresh = sv.build_table(snapshot(), now_s=1010.0, stale_after_s=10.0)
    assert "STALE" not in str(fresh.caption)
    assert sv.stale_after(1.0) == 10.0 and sv.stale_after(5.0) == 25.0


def test_rows_without_a_tier_have_no_column_and_empty_snapshot_is_a_table():
    snap = snapshot()
    for c in snap["containers"]:
        del c["p_fail_cpu"]
    assert "p_fail cpu" not in cells(sv.build_table(snap, 1000.0))
    empty = sv.build_table({"ts_s": 1000.0, "containers": []}, 1000.0)
    assert cells(empty)["container"] == []


@pytest.mark.parametrize("bad, message", [
    ({"containers": []}, "the snapshot has no 'ts_s'"),
    ({"ts_s": 1.0}, "the snapshot has no 'containers'"),
    ({"ts_s": 1.0, "containers": [{"memory_usage_bytes": 1}]}, "containers[0] has no 'name'"),
    ({"ts_s": "soon", "containers": []}, "ts_s must be a number"),
])
def test_bad_snapshot_names_the_field(bad, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sv.build_table(bad, 1000.0)


def test_formatters_worked_examples():
    assert sv.fmt_duration(12.4) == "12 s" and sv.fmt_duration(270) == "4.5 min"
    assert sv.fmt_duration(7200) == "2.0 h" and sv.fmt_duration(None) == "-"
    assert sv.fmt_bytes(100 * MiB) == "100.0 MiB" and sv.fmt_bytes(3 * 2**30) == "3.00 GiB"
    assert sv.fmt_bytes(float("inf")) == "unlimited" and sv.fmt_bytes(None) == "-"
    assert sv.fmt_cores(0.25) == "0.25 cores" and sv.fmt_cores(None) == "-"
    assert sv.fmt_rate(2 * MiB) == "2.0 MiB/s"
    assert sv.fmt_limit("memory", 128 * MiB) == "128.0 MiB"
    assert sv.fmt_limit("disk", 2 * 2**30) == "2.00 GiB"
    assert sv.fmt_limit("cpu", 0.5) == "0.50 cores"
    assert sv.fmt_limit("network", MiB) == sv.fmt_limit("io", MiB) == "1.0 MiB/s"
    assert sv.fmt_usage_of(0.05, 0.25) == "0.050 / 0.25 cores"


@pytest.mark.parametrize("p, shown", [
    (2.36e-213, "<0.001"), (0.0, "0"), (0.0009, "<0.001"), (0.001, "0.001"),
    (0.0042, "0.0042"), (0.05, "0.05"), (0.1, "0.10"), (0.83, "0.83"), (0.99, "0.99"),
    (0.996, "0.996"), (0.999, "0.999"),
    (0.99987, ">0.999"), (1.0, "1"), (None, "-"), (float("nan"), "-"),
])
def test_probabilities_for_people(p, shown):
    assert sv.fmt_probability(p) == shown


def test_health_worked_examples():
    snap = {"ts_s": 1000.0, "containers": []}
    ok = sv.health(snap, 1004.0, stale_after_s=10.0)
    assert (ok.state, ok.exit_code, ok.reason) == ("ok", 0, "")
    stale = sv.health(snap, 1042.0, stale_after_s=10.0)
    assert (stale.state, stale.exit_code) == ("stale", 3)
    assert stale.reason.startswith("no tick for 42 s (expected every ≤ 10 s)")
    degraded = sv.health({**snap, "degraded": {"reason": "disk full", "since_s": 990.0}},
                         1004.0, stale_after_s=10.0)
    assert (degraded.state, degraded.exit_code) == ("degraded", 4)
    assert "disk full" in degraded.reason
    # stale wins: a stopped loop's last word (degraded) does not count
    assert sv.health({**snap, "degraded": {"reason": "x"}}, 1042.0, 10.0).state == "stale"
    assert stale.to_dict() == {"state": "stale", "age_s": 42.0, "stale_after_s": 10.0,
                               "reason": stale.reason, "exit_code": 3}
    with pytest.raises(ValueError, match="the snapshot has no 'ts_s'"):
        sv.health({"containers": []}, 1000.0)


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200, color_system=None, force_terminal=False), buf


def test_watch_once_prints_the_table_or_says_why_not(tmp_path):
    path = tmp_path / "status.json"
    console, buf = _console()
    assert sv.watch(path, 1.0, console=console, once=True, clock=lambda: 1001.0) == 1
    assert f"no status yet at {path}" in buf.getvalue()

    jsonfile.write_atomic(path, snapshot())
    console, buf = _console()
    assert sv.watch(path, 1.0, console=console, once=True, clock=lambda: 1001.0) == 0
    out = buf.getvalue()
    assert "leaker" in out and "memory applied 128.0 MiB → 160.0 MiB, 13 s ago" in out
    assert "updated 1 s ago" in out

    path.write_text("{not json")
    console, buf = _console()
    assert sv.watch(path, 1.0, console=console, once=True) == 1
    assert "error:" in buf.getvalue() and "status.json" in buf.getvalue()

    with pytest.raises(ValueError, match="interval_s"):
        sv.watch(path, 0, console=console, once=True)


def _run_watcher(path: Path, snap: dict, *, tty: bool) -> tuple[int, str, str]:
    """Run a real watcher on ``path``: wait for its first table, write a renamed
    container, wait for the refresh, then Ctrl-C (SIGINT). Returns (exit code, stdout,
    stderr)."""
    code = ("import sys; from rich.console import Console; from app.status_view import watch; "
            f"sys.exit(watch({str(path)!r}, 0.2, console=Console()))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "TERM": "xterm"}
    if tty:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=slave,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
        os.close(slave)
        read = lambda: os.read(master, 65536).decode(errors="replace")  # noqa: E731
    else:
        master = None
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        read = lambda: os.read(proc.stdout.fileno(), 65536).decode(errors="replace")  # noqa: E731
    out: list[str] = []
    reader = threading.Thread(target=lambda: _drain(read, out), daemon=True)
    reader.start()

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 20
        while text not in "".join(out):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, f"{text!r} never shown: {''.join(out)[-2000:]}"
            time.sleep(0.05)

    try:
        wait_for(" leaker ")
        snap["containers"][0]["name"] = "renamed-leaker"
        snap["ts_s"] = time.time()
        jsonfile.write_atomic(path, snap)
        wait_for("renamed-leaker")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        reader.join(timeout=5)
        errs = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if master is not None:
            os.close(master)
    return proc.returncode, "".join(out), errs


def _drain(read, out: list[str]) -> None:
    while True:
        try:
            chunk = read()
        except OSError:  # the pty closed
            return
        if not chunk:
            return
        out.append(chunk)


@pytest.mark.parametrize("tty", [True, False], ids=["terminal", "pipe"])
def test_watch_refreshes_and_exits_cleanly_on_ctrl_c(tmp_path, tty):
    """A real watcher process, on a terminal (rich Live redraws in place) and on a pipe
    (frames one after the other): it shows the first snapshot, picks up a new one
    written while it runs, and exits 0 without a traceback on Ctrl-C."""
    path = tmp_path / "status.json"
    snap = snapshot()
    snap["ts_s"] = time.time()
    jsonfile.write_atomic(path, snap)
    code, out, errs = _run_watcher(path, snap, tty=tty)
    assert code == 0, errs
    assert "Traceback" not in errs and "Traceback" not in out
    assert "STALE" not in out
    assert "Ctrl-C to exit" in out


def test_unknown_container_of_a_lost_node_says_so():
    snap = snapshot()
    snap["containers"].append({"name": "web-7", "node": "n2", "state": "unknown",
                               "reason": "node left the cluster (its monitor is gone)",
                               "last_seen_s": 990.0, "last_action": None})
    got = cells(sv.build_table(snap, now_s=1003.5))
    assert got["container"][-1] == (
        "web-7 (unknown: node left the cluster (its monitor is gone))")
    assert got["memory"][-1] == "-" and got["p_fail cpu"][-1] == "-"
