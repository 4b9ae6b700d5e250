"""The conventions every `prescale` command keeps, checked over every command the Typer
app registers (a command added later is walked too):

- ``-h`` and ``--help`` work and say the same; no help shows ``<bool>``; every flag but
  ``--json`` has its ``--no-`` form;
- every command that prints a result takes ``-o/--output table|json|jsonl`` (the allowed
  exceptions are named, with why), with the same help; ``--json`` is ``-o json``;
- ``-o json`` is one JSON document and ``-o jsonl`` one object per line: for a listing
  (its help says "array of the records") the array holds exactly the lines' objects, for
  one result the line is the document; the table is not JSON;
- exit codes as ``prescale -h`` states them: 2 for an unknown option, a bad ``-o``,
  ``--json`` against ``-o table``, a bad duration; ``status --check`` 0 / 3 / 4 / 1;
- ``--version``, shell completion, and ``prescale up`` saying its metrics URL and human
  tick lines, through the installed ``prescale`` as a user runs it.

Most run in-process (typer's CliRunner): one import of the settings, not one per
command."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from prescale.app.cli import EXIT_CODES, app
from prescale.app.core.sample import Event, EventKind, Sample
from prescale.app.loop import records as rec
from prescale.app.store import jsonfile
from prescale.app.store.decision_log import DecisionLog
from prescale.app.store.history import HistoryStore
from tests.up_support import run_up_output

PRESCALE = str(Path(sys.executable).with_name("prescale"))
REPO = Path(__file__).resolve().parents[2]
MiB = 2**20
T0 = 1_780_000_000.0

#: commands that print no result of their own, and why
NO_OUTPUT = {
    ("up",): "runs until stopped; its lines go to stderr",
    ("serve",): "runs the API until stopped",
    ("config", "reference"): "prints the README's Markdown reference",
}
#: commands run for real here, with the arguments they need on the fixture data
RUN_ARGS = {
    ("status",): [], ("events",): [], ("history",): ["--app", "web"], ("models",): [],
    ("models", "list"): [], ("threshold", "list"): [], ("threshold", "get"): ["--app", "web"],
    ("config", "show"): [], ("policies",): [], ("describe",): ["a"],
}
ROOT = typer.main.get_command(app)


def walk(group=ROOT, path: tuple[str, ...] = ()):
    """Every command and group under ``group``: (path, click command)."""
    for name, cmd in group.commands.items():
        yield (*path, name), cmd
        if hasattr(cmd, "commands"):
            yield from walk(cmd, (*path, name))


COMMANDS = dict(walk())
LEAVES = {p: c for p, c in COMMANDS.items() if not hasattr(c, "commands")}
WITH_OUTPUT = {p: c for p, c in COMMANDS.items()
               if any(o.name == "output" for o in c.params)}


def ids(paths) -> list[str]:
    return [" ".join(p) for p in paths]


def param(cmd, name: str):
    return next((p for p in cmd.params if p.name == name), None)


def required_args(cmd) -> list[str]:
    """A placeholder for each required argument, so parsing reaches the options."""
    return ["x" for p in cmd.params if p.param_type_name == "argument" and p.required]


def cli(args: list[str], env: dict | None = None):
    """``prescale ARGS`` in-process (stdout and stderr apart)."""
    return CliRunner().invoke(app, args, env=env, prog_name="prescale")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    """A data dir as a running loop leaves it: a fresh status with container "a" of app
    "web", three decision-log records, three samples and an OOM kill of "web", and a
    stored threshold."""
    root = tmp_path_factory.mktemp("data")
    store = HistoryStore(str(root / "history"), flush_interval_s=0.0)
    log = DecisionLog(store, "r1", "auto")
    for i in range(3):
        log.append([rec.to_dict(rec.EventRecord(T0 + i, "a", "web", "oom_kill", f"n{i}"))])
        store.append_samples([Sample(container="a", app="web", ts_s=T0 + i,
                                     memory_usage_bytes=float(i * MiB))])
        store.flush()
    store.append_events([Event("a", T0 + 2.5, EventKind.OOM_KILL, "kernel", "web")])
    store.close()
    write_status(root, time.time())
    env = {"PRESCALE_DATA_DIR": str(root)}
    res = cli(["threshold", "set", "--tier", "memory", "--app", "web", "--value", "0.6"],
              env=env)
    assert res.exit_code == 0, res.output
    return env


def write_status(root: Path, ts_s: float, **extra) -> None:
    jsonfile.write_atomic(root / "status.json", {
        "ts_s": ts_s, "run_id": "r1", "mode": "auto", "tick": 7, "model": "m",
        "containers": [{"name": "a", "app": "web", "state": "ok",
                        "memory_usage_bytes": 100 * MiB, "memory_limit_bytes": 2**31,
                        "cpu_usage_cores": 0.2, "cpu_quota_cores": 1.0,
                        "p_fail_memory": 2.36e-213, "threshold_memory": 0.5,
                        "p_fail_cpu": 0.0, "threshold_cpu": 0.5, "last_action": None}],
        **extra})


# -- help ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [(), *COMMANDS], ids=["prescale", *ids(COMMANDS)])
def test_dash_h_and_help_work_alike_and_show_no_bool(path):
    long = cli([*path, "--help"])
    short = cli([*path, "-h"])
    assert long.exit_code == short.exit_code == 0, long.output
    assert long.stdout == short.stdout
    assert long.stdout.startswith(f"Usage: prescale {' '.join(path)}".rstrip())
    assert "<bool>" not in long.stdout


@pytest.mark.parametrize("path", list(COMMANDS), ids=ids(COMMANDS))
def test_flags_have_their_no_form(path):
    for p in COMMANDS[path].params:
        if getattr(p, "is_bool_flag", False) and p.name not in ("as_json", "help"):
            assert p.secondary_opts == [f"--no-{p.opts[0].removeprefix('--')}"], (path, p.opts)


def test_arguments_are_named_in_capitals():
    for path, cmd in COMMANDS.items():
        for p in cmd.params:
            if p.param_type_name == "argument":
                assert p.metavar and p.metavar.isupper(), (path, p.name)


def test_the_root_help_states_the_conventions_and_every_exit_code():
    text = " ".join(cli(["-h"]).stdout.split())
    assert "-o/--output table|json|jsonl" in text
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {' '.join(meaning.split())}" in text
    for opt in ("--version", "--install-completion", "--show-completion", "-h, --help"):
        assert opt in text


# -- the output flag ---------------------------------------------------------------------


@pytest.mark.parametrize("path", list(LEAVES), ids=ids(LEAVES))
def test_every_command_that_prints_a_result_takes_the_output_flag(path):
    cmd = LEAVES[path]
    out = param(cmd, "output")
    if path in NO_OUTPUT:
        assert out is None, f"{path} takes -o now: drop it from NO_OUTPUT"
        return
    assert out is not None, f"prescale {' '.join(path)} has no -o/--output"
    assert sorted(out.opts) == ["--output", "-o"]
    assert [c.value for c in out.type_descriptor.choices] == ["table", "json", "jsonl"]
    assert out.help.startswith("Output: table (for people), json (one JSON ")
    assert "jsonl (" in out.help and out.help.endswith("Default: table.")
    as_json = param(cmd, "as_json")
    if as_json is not None:
        assert as_json.opts == ["--json"] and as_json.is_flag
        assert as_json.help == "Same as -o json."


def _lines(text: str) -> list:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("path", list(RUN_ARGS), ids=ids(RUN_ARGS))
def test_json_is_one_document_jsonl_one_object_per_line_the_same(data, path):
    args = [*path, *RUN_ARGS[path]]
    listing = "array of the records" in param(COMMANDS[path], "output").help
    res = {f: cli([*args, "-o", f], env=data) for f in ("json", "jsonl")}
    for f, r in res.items():
        assert r.exit_code == 0, (f, r.output)
    doc = json.loads(res["json"].stdout)  # one document, or this raises
    lines = _lines(res["jsonl"].stdout)
    if path == ("status",):  # the only value that moves between two runs: its age
        for d in (doc, *lines):
            d["health"].pop("age_s")
    assert all(isinstance(x, dict) for x in lines)
    if listing:
        assert isinstance(doc, list) and doc == lines
    else:
        assert len(lines) == 1 and doc == lines[0]
    if param(COMMANDS[path], "as_json") is not None:
        alias = json.loads(cli([*args, "--json"], env=data).stdout)
        if path == ("status",):
            alias["health"].pop("age_s")
        assert alias == doc
    table = cli(args, env=data)
    assert table.exit_code == 0, table.output
    with pytest.raises(ValueError):
        json.loads(table.stdout)


def test_listings_hold_their_records(data):
    events = json.loads(cli(["events", "-o", "json"], env=data).stdout)
    assert [e["reason"] for e in events] == ["n0", "n1", "n2"]
    rows = json.loads(cli(["history", "--app", "web", "-o", "json"],
                                    env=data).stdout)
    assert [r["type"] for r in rows] == ["sample"] * 3 + ["event"]
    assert rows[-1]["kind"] == "oom_kill" and rows[2]["memory_usage_bytes"] == 2 * MiB


def test_tables_are_for_people(data, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        status = " ".join(cli(["status"], env=data).stdout.split())
        events = cli(["events"], env=data).stdout
        raw = json.loads(cli(["status", "-o", "json"], env=data).stdout)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert "100.0 MiB" in status and "2.00 GiB" in status and "0.20 / 1.00 cores" in status
    assert "<0.001" in status and "e-213" not in status
    assert "2026-05-28T20:26:40+00:00" in events  # T0, ISO 8601 with its zone
    # JSON keeps the raw numbers
    (row,) = raw["containers"]
    assert row["memory_limit_bytes"] == 2**31 and row["p_fail_memory"] == 2.36e-213


# -- exit codes ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(LEAVES), ids=ids(LEAVES))
def test_usage_errors_exit_2_naming_the_option(path):
    cmd = LEAVES[path]
    args = [*path, *required_args(cmd)]
    res = cli([*args, "--no-such-flag"])
    assert res.exit_code == 2 and "No such option: --no-such-flag" in res.output
    if param(cmd, "output") is not None:
        res = cli([*args, "-o", "yaml"])
        assert res.exit_code == 2 and "'--output' / '-o'" in res.output
        assert "'yaml' is not one of 'table', 'json', 'jsonl'" in res.output
    if param(cmd, "as_json") is not None:
        res = cli([*args, "--json", "-o", "table"])
        assert res.exit_code == 2 and "--json means -o json, not -o table" in res.output


def test_status_check_exits_by_the_loops_health(tmp_path):
    env = {"PRESCALE_DATA_DIR": str(tmp_path)}
    res = cli(["status", "--check"], env=env)
    assert res.exit_code == 1 and "no status yet" in res.stderr
    write_status(tmp_path, time.time())
    assert cli(["status", "--check"], env=env).exit_code == 0
    write_status(tmp_path, time.time() - 120)
    res = cli(["status", "--check", "-o", "json"], env=env)
    assert res.exit_code == 3 and "stale: no tick for 2.0 min" in res.stderr
    assert json.loads(res.stdout)["health"]["state"] == "stale"
    assert cli(["status"], env=env).exit_code == 0  # without --check: shown
    assert cli(["status", "--check", "--stale-after", "1h"],
                         env=env).exit_code == 0
    write_status(tmp_path, time.time(), degraded={"reason": "disk full", "since_s": 0})
    res = cli(["status", "--check"], env=env)
    assert res.exit_code == 4 and "degraded: disk full" in res.stderr
    res = cli(["status", "--check", "--stale-after", "1h30"], env=env)
    assert res.exit_code == 2 and "--stale-after: '1h30' is not a duration" in res.stderr
    res = cli(["status", "--watch", "-o", "json"], env=env)
    assert res.exit_code == 2


def test_bad_quantities_and_times_exit_2_naming_the_flag(data):
    res = cli(["evaluate", "--scenario", "leak", "--pool-memory", "2Gb"])
    assert res.exit_code == 2
    assert "--pool-memory: '2Gb' is not a size: expected" in res.stderr
    res = cli(["evaluate", "--scenario", "leak", "--pool-cpu", "half"])
    assert res.exit_code == 2 and "--pool-cpu: 'half' is not a CPU amount" in res.stderr
    res = cli(["history", "--since", "yesterday"], env=data)
    assert res.exit_code == 2 and "--since: cannot read time 'yesterday'" in res.stderr
    res = cli(["history", "--app", "web", "--since", "1h30m", "-o", "json"],
                        env=data)
    assert res.exit_code == 0 and json.loads(res.stdout) == []  # T0 is long before that


def test_config_show_reads_back_as_the_same_settings(tmp_path):
    from prescale.app.settings import load_settings

    env = {"PRESCALE_POOL__RESERVE_MEMORY_BYTES": "3Gi", "PRESCALE_POLICY__COOLDOWN_S": "2m"}
    shown = cli(["config", "show"], env=env)
    assert shown.exit_code == 0
    assert 'reserve_memory_bytes = "3Gi"' in shown.stdout and "cooldown_s = 120.0" in shown.stdout
    (tmp_path / "shown.toml").write_text(shown.stdout)
    raw = json.loads(cli(["config", "show", "-o", "json"], env=env).stdout)
    assert raw["pool"]["reserve_memory_bytes"] == 3 * 2**30
    assert load_settings(tmp_path / "shown.toml").model_dump(mode="json") == raw


# -- as a user runs it -------------------------------------------------------------------------


def prescale(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PRESCALE, *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_version_completion_and_a_pipe_to_json_tool(tmp_path):
    p = prescale("--version")
    assert p.returncode == 0 and re.fullmatch(r"prescale \d+\.\d+\.\d+\S*\n", p.stdout)
    p = prescale(env={"_PRESCALE_COMPLETE": "complete_bash", "COMP_WORDS": "prescale status -o ",
                      "COMP_CWORD": "3"})
    assert p.stdout.split() == ["table", "json", "jsonl"]
    p = prescale(env={"_PRESCALE_COMPLETE": "complete_bash", "COMP_WORDS": "prescale models ",
                      "COMP_CWORD": "2"})
    assert "list" in p.stdout.split()
    # the report: `models --json | python -m json.tool` failed (JSON lines)
    listed = subprocess.run(f"{PRESCALE} models --json | {sys.executable} -m json.tool",
                            shell=True, capture_output=True, text=True, cwd=REPO, timeout=120,
                            env={**os.environ, "PRESCALE_DATA_DIR": str(tmp_path)})
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_up_says_its_metrics_url_and_a_human_line_per_tick(tmp_path):
    """The real `prescale up` (embedded Ray, no container): the metrics URL with the port
    it was given, then one human line a tick (--report-every 0), never a Python repr."""
    port = _free_port()
    env = {**os.environ, "PRESCALE_DATA_DIR": str(tmp_path), "PRESCALE_CGROUP__ROOTS": "[]",
           "PRESCALE_RAY__METRICS_EXPORT_PORT": str(port), "PRESCALE_RAY__NUM_CPUS": "1",
           "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "TZ": "UTC"}
    code, out, err = run_up_output(tmp_path, env, "--report-every", "0", ticks=3)
    assert code == 0, err
    assert out == ""  # stdout stays clean: what `up` says goes to stderr
    assert re.search(rf"^metrics: http://[\d.]+:{port}/metrics \(Prometheus; port from "
                     r"ray\.metrics_export_port\)$", err, re.M), err
    ticks = re.findall(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 tick (\d+): 0 containers; 1 "
                       r"tick since the last line, none decided; slowest \d+\.\d\d s$", err,
                       re.M)
    assert len(ticks) >= 3 and ticks[:3] == ["1", "2", "3"], err
    assert "actions [" not in err and "errors {" not in err
