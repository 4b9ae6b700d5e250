"""The CLI's answers to bad input: exit 2, a message naming the field or path, no change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PRESCALE = str(Path(sys.executable).with_name("prescale"))
REPO = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PRESCALE, *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_config_show_prints_effective_settings_with_env_override():
    p = run("config", "show", "--json", env={"PRESCALE_PREDICTOR__HORIZON_S": "45"})
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["predictor"]["horizon_s"] == 45.0
    assert data["mode"] == "recommend"


def test_bad_config_file_exits_2_naming_the_field(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[policy]\ncooldown_s = -1\n")
    for cmd in (["config", "show"], ["up"], ["demo"], ["status"], ["events"]):
        p = run(*cmd, "--config", str(cfg))
        assert p.returncode == 2, (cmd, p.stdout, p.stderr)
        assert "policy.cooldown_s" in p.stderr


def test_bad_env_value_exits_2():
    p = run("config", "show", env={"PRESCALE_MODE": "sometimes"})
    assert p.returncode == 2
    assert "mode" in p.stderr


def test_up_with_a_missing_root_exits_2_before_starting_anything(tmp_path):
    missing = tmp_path / "no-such-cgroup"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n[cgroup]\nroots = ["{missing}"]\n')
    p = run("up", "--config", str(cfg))
    assert p.returncode == 2
    assert str(missing) in p.stderr
    assert not (tmp_path / "data").exists()  # nothing was written


def test_up_with_a_watched_container_that_does_not_exist_exits_2(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[cgroup]\nroots = ["{root}"]\nwatch = ["ghost"]\n')
    p = run("up", "--config", str(cfg))
    assert p.returncode == 2
    assert "ghost" in p.stderr


def test_status_and_events_on_an_empty_data_dir(tmp_path):
    env = {"PRESCALE_DATA_DIR": str(tmp_path)}
    p = run("status", env=env)
    assert p.returncode == 1 and "no status yet" in p.stderr
    p = run("events", "--json", env=env)  # --json is -o json: one document
    assert p.returncode == 0 and json.loads(p.stdout) == []
    p = run("events", "-o", "jsonl", env=env)
    assert p.returncode == 0 and p.stdout == ""
    p = run("events", "--kind", "bogus", env=env)
    assert p.returncode == 2 and "bogus" in p.stderr


def test_threshold_set_get_list_and_bad_value_changes_nothing(tmp_path):
    env = {"PRESCALE_DATA_DIR": str(tmp_path)}
    p = run("threshold", "set", "--tier", "memory", "--app", "web", "--value", "0.6",
            "--min", "0.3", env=env)
    assert p.returncode == 0, p.stderr
    before = (tmp_path / "thresholds.json").read_bytes()
    p = run("threshold", "set", "--tier", "memory", "--app", "web", "--value", "1.7", env=env)
    assert p.returncode == 2 and "1.7" in p.stderr
    assert (tmp_path / "thresholds.json").read_bytes() == before
    got = json.loads(run("threshold", "get", "--app", "web", "-o", "json", env=env).stdout)
    assert got["thresholds"]["memory"]["value"] == 0.6
    assert got["thresholds"]["memory"]["min"] == 0.3
    listed = json.loads(run("threshold", "list", "-o", "json", env=env).stdout)
    assert "web" in listed["apps"]
    # the table, for people: one row per scope and tier, not the JSON document
    p = run("threshold", "list", env=env)
    assert p.returncode == 0 and not p.stdout.lstrip().startswith("{")
    row = next(line for line in p.stdout.splitlines() if "app:web" in line and "memory" in line)
    assert "0.60" in row and "0.30–0.95" in row
