"""The CLI's shared pieces, without running a command: the output convention
(app/cli/output.py), the mode names, and the lines `prescale up` prints (app/cli/run.py)."""

from __future__ import annotations

import json
import math

import pytest
import typer

from prescale.app.cli.common import MODES
from prescale.app.cli.output import Output, dumps, emit, emit_records, jsonable, output_of
from prescale.app.cli.run import TickReporter, metrics_line, tick_line
from prescale.app.settings import Mode


def test_mode_names_are_the_settings_modes():
    assert MODES == tuple(m.value for m in Mode)


def test_output_of_json_alias_and_default():
    assert output_of(None) is Output.TABLE
    assert output_of(None, as_json=True) is Output.JSON
    assert output_of(Output.JSON, as_json=True) is Output.JSON
    assert output_of(Output.JSONL) is Output.JSONL
    with pytest.raises(typer.BadParameter, match="--json means -o json, not -o jsonl"):
        output_of(Output.JSONL, as_json=True)


def test_jsonable_has_no_inf_or_nan():
    import numpy as np

    got = jsonable({"limit": math.inf, "p": math.nan, "x": (1, 2.5), "n": np.int64(3),
                    "f": np.float64(-math.inf), 4: None})
    assert got == {"limit": None, "p": None, "x": [1, 2.5], "n": 3, "f": None, "4": None}
    assert json.loads(dumps({"a": math.inf})) == {"a": None}


def test_emit_json_is_one_document_and_jsonl_one_line(capsys):
    doc = {"a": 1, "b": [1, 2], "c": {"d": math.nan}}
    assert emit(Output.TABLE, doc) is False and capsys.readouterr().out == ""
    emit(Output.JSON, doc)
    as_json = capsys.readouterr().out
    emit(Output.JSONL, doc)
    as_jsonl = capsys.readouterr().out
    assert json.loads(as_json) == json.loads(as_jsonl) == {"a": 1, "b": [1, 2], "c": {"d": None}}
    assert as_jsonl.count("\n") == 1 and as_json.count("\n") > 1


def test_emit_records_json_array_equals_the_jsonl_lines(capsys):
    recs = [{"i": i, "v": i / 3} for i in range(3)]
    emit_records(Output.JSON, iter(recs))
    array = json.loads(capsys.readouterr().out)
    emit_records(Output.JSONL, iter(recs))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert array == lines == recs
    emit_records(Output.JSON, [])
    assert json.loads(capsys.readouterr().out) == []
    emit_records(Output.JSONL, [])
    assert capsys.readouterr().out == ""


def test_metrics_line_worked_example():
    nodes = [{"NodeID": "n0", "NodeManagerAddress": "10.0.0.4", "MetricsExportPort": 1},
             {"NodeID": "n1", "NodeManagerAddress": "10.0.0.5", "MetricsExportPort": 8080}]
    assert metrics_line(nodes, "n1", True) == (
        "metrics: http://10.0.0.5:8080/metrics (Prometheus; port from "
        "ray.metrics_export_port)")
    assert metrics_line(nodes, "n1", False).endswith(
        "(Prometheus; a random port: set ray.metrics_export_port to fix it)")
    assert metrics_line(nodes, "gone", False).startswith("metrics: this node's metrics port "
                                                         "is not known")


def test_tick_line_worked_example():
    assert tick_line({"decisions": 1, "actions": ["applied"], "errors": {}, "tick_s": 0.12}
                     ) == ", 1 decision: 1 applied; 0.12 s"
    line = tick_line({"decisions": 3, "actions": ["applied", "recommended", "applied"],
                      "errors": {"ghost": "cgroup gone"}, "dropped": {"no_data": 2},
                      "tick_s": 0.5})
    assert line == (", 3 decisions: 2 applied, 1 recommended; 1 source error (ghost: cgroup "
                    "gone); 2 samples dropped; 0.50 s")
    assert "[" not in line and "{" not in line  # no Python reprs


def test_up_says_a_line_per_deciding_tick_and_a_progress_line_otherwise(utc):
    said: list[str] = []
    clock = [0.0]
    report = TickReporter(60.0, clock=lambda: clock[0], say=said.append)
    t0 = 1_796_206_503.0  # 2026-12-02T10:15:03Z

    def tick(n: int, **kw) -> None:
        clock[0] = float(n)
        report({"tick": n, "now_s": t0 + n, "containers": 2, "decisions": 0, "actions": [],
                "errors": {}, "tick_s": 0.01 * (n % 4), "dropped": {}, **kw})

    for n in range(1, 60):
        tick(n)
    # the first tick says the loop runs; then quiet for less than --report-every
    assert said == ["2026-12-02T10:15:04+00:00 tick 1: 2 containers; 1 tick since the last "
                    "line, none decided; slowest 0.01 s"]
    tick(60)
    assert len(said) == 1  # 59 s since tick 1's line
    tick(61)
    assert said[-1] == ("2026-12-02T10:16:04+00:00 tick 61: 2 containers; 60 ticks since the "
                        "last line, none decided; slowest 0.03 s")
    tick(62, decisions=1, actions=["applied"], tick_s=0.12)
    assert said[-1] == ("2026-12-02T10:16:05+00:00 tick 62: 2 containers, 1 decision: 1 "
                        "applied; 0.12 s")
    tick(63, degraded={"reason": "disk full"})
    assert said[-1].startswith("DEGRADED: disk full")
    tick(64)
    assert said[-1] == "degraded mode over: all writes succeed again"
    every = TickReporter(0.0, clock=lambda: 0.0, say=said.append)
    every({"tick": 1, "now_s": t0, "containers": 1, "decisions": 0, "errors": {}})
    assert said[-1].endswith("tick 1: 1 container; 1 tick since the last line, none decided; "
                             "slowest 0.00 s")


def test_train_result_in_words_is_on_stdout_and_nothing_learned_on_stderr(capsys):
    """`prescale train`/`tune` print their result on stdout like every command; only the
    failure (nothing learned, exit 1) goes to stderr. A reason with brackets is printed
    as it is, not read as rich markup."""
    from prescale.app.cli.training import _print_training

    result = {"app": "web", "tier": "memory", "status": "promoted", "promoted": True,
              "version_id": "v3", "kind": "hist_gradient_boosting",
              "reason": "beats the heuristic [AP +0.12]",
              "test": {"n": 1200, "n_positive": 30, "base_rate": 0.025, "pr_auc": 0.61,
                       "roc_auc": 0.9, "precision": 0.5, "recall": 0.7, "threshold": 0.4},
              "test_best_single_feature": {"feature": "memory_headroom_bytes",
                                           "direction": "low", "pr_auc": 0.3}}
    _print_training(result, Output.TABLE)
    got = capsys.readouterr()
    assert got.err == ""
    assert "web/memory: v3 (hist_gradient_boosting) is current — beats the heuristic " \
           "[AP +0.12]" in got.out
    assert "held-out test split (1,200 windows, 30 positive" in got.out
    with pytest.raises(typer.Exit) as ex:
        _print_training({"app": "web", "tier": "memory", "status": "nothing learned",
                         "reason": "no positive window"}, Output.TABLE)
    assert ex.value.exit_code == 1
    got = capsys.readouterr()
    assert got.out == "" and "nothing learned for web/memory: no positive window" in got.err
