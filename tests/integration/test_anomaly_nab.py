"""Anomaly detection on the real NAB files (realAWSCloudwatch + 3 realKnownCause series).

Reads ``../shared/data/nab-aws`` (or ``$PRESCALE_TRACE_DIR/nab-aws``); the tests that
need it skip with the reason when it is absent. The reader's own tests use small real
files written to ``tmp_path`` and always run.

Measured at the defaults (W = 12, contamination 0.01, seed 0), see
``scripts/eval_anomaly_nab.py``: the isolation forest detects 34 of 38 windows
(recall 0.895, the same as the |z| > 3 baseline) with 901 alarms, 94 true (precision
0.104), against the baseline's 1465 alarms, 92 true (0.063). So it beats the baseline
on precision only, and 0.104 is also the chance level (the fraction of scored rows
inside a window); without ``cpu_utilization_asg_misconfiguration`` (946 baseline
alarms) the baseline's precision is higher (0.156 vs 0.134).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prescale.app.models.anomaly_series import WindowScore
from prescale.app.telemetry.nab import TRACE_DIR_ENV, find_nab_dir, load_nab, nab_dir, read_windows
from prescale.scripts.eval_anomaly_nab import chance_precision, evaluate_all, render_table

REPO = Path(__file__).resolve().parents[2]
ROOT, WHY = find_nab_dir()
needs_nab = pytest.mark.skipif(ROOT is None, reason=WHY)

#: Per file (name without category and .csv): windows, detected, alarms, true alarms of
#: the |z| > 3 baseline (deterministic: no randomness).
BASELINE = {
    "ec2_cpu_utilization_24ae8d": (2, 2, 14, 3),
    "ec2_cpu_utilization_53ea38": (2, 2, 31, 6),
    "ec2_cpu_utilization_5f5533": (2, 2, 5, 3),
    "ec2_cpu_utilization_77c1ca": (1, 1, 30, 4),
    "ec2_cpu_utilization_825cc2": (1, 1, 47, 3),
    "ec2_cpu_utilization_ac20cd": (1, 1, 1, 1),
    "ec2_cpu_utilization_c6585a": (0, 0, 12, 0),
    "ec2_cpu_utilization_fe7f93": (3, 2, 42, 3),
    "ec2_disk_write_bytes_1ef3de": (1, 1, 42, 6),
    "ec2_disk_write_bytes_c0d644": (3, 2, 46, 7),
    "ec2_network_in_257a54": (1, 1, 3, 2),
    "ec2_network_in_5abac7": (2, 2, 44, 10),
    "elb_request_count_8c0756": (2, 2, 27, 5),
    "grok_asg_anomaly": (3, 3, 61, 6),
    "iio_us-east-1_i-a2eb1cd9_NetworkIn": (2, 0, 1, 0),
    "rds_cpu_utilization_cc0c53": (2, 2, 19, 2),
    "rds_cpu_utilization_e47b3b": (2, 2, 3, 1),
    "cpu_utilization_asg_misconfiguration": (1, 1, 946, 11),
    "ec2_request_latency_system_failure": (3, 3, 53, 7),
    "machine_temperature_system_failure": (4, 4, 38, 12),
}


@pytest.fixture(scope="module")
def nab():
    assert ROOT is not None
    series = load_nab(ROOT)
    results = evaluate_all(series, window_points=12, contamination=0.01, seed=0)
    return series, results


@needs_nab
def test_loads_every_file_and_window(nab):
    series, _ = nab
    assert len(series) == 20
    assert sum(s.name.startswith("realAWSCloudwatch/") for s in series) == 17
    assert sum(s.name.startswith("realKnownCause/") for s in series) == 3
    assert sum(len(s.windows_s) for s in series) == 38
    assert sum(s.rows for s in series) == 112517
    assert len(read_windows(ROOT)) == 58  # the labels cover all of NAB; 38 of them apply
    by_name = {s.name.split("/")[1].removesuffix(".csv"): s for s in series}
    assert sorted(by_name) == sorted(BASELINE)
    assert [len(by_name[k].windows_s) for k in BASELINE] == [v[0] for v in BASELINE.values()]
    first = by_name["ec2_cpu_utilization_24ae8d"]
    assert first.rows == 4032
    assert (first.ts_s[0], first.value[0]) == (1392388200.0, 0.132)  # 2014-02-14 14:30:00
    # window "2014-02-26 13:45:00.000000" → "2014-02-27 06:25:00.000000", UTC
    assert first.windows_s[0] == (1393422300.0, 1393482300.0)
    machine = by_name["machine_temperature_system_failure"]
    assert machine.rows == 22695 and int((np.diff(machine.ts_s) < 0).sum()) == 1  # file order
    for s in series:
        assert np.isfinite(s.value).all() and np.isfinite(s.ts_s).all()


@needs_nab
def test_baseline_per_file_exact(nab):
    series, results = nab
    got = {
        s.name.split("/")[1].removesuffix(".csv"): (
            r.baseline.windows,
            r.baseline.detected,
            r.baseline.alarms,
            r.baseline.true_alarms,
        )
        for s, r in zip(series, results, strict=True)
    }
    assert got == BASELINE


@needs_nab
def test_detector_end_to_end_measured(nab):
    series, results = nab
    det = WindowScore.total([r.detector for r in results])
    base = WindowScore.total([r.baseline for r in results])
    assert [r.probation_rows for r in results].count(604) == 14
    assert sum(r.probation_rows for r in results) == 12253

    # baseline: exact
    assert (base.windows, base.detected, base.alarms, base.true_alarms) == (38, 34, 1465, 92)
    assert base.median_delay_s == 17850.0  # 4.96 h

    # detector: what it measured (34/38, 901 alarms, 94 true, median delay 4.6 h), with a
    # tolerance for other scikit-learn builds; over seeds 0-4 recall was 0.842-0.895
    # and precision 0.104-0.118
    assert det.windows == 38
    assert abs(det.detected - 34) <= 2
    assert det.recall == pytest.approx(34 / 38, abs=2 / 38)
    assert det.alarms == pytest.approx(901, rel=0.1)
    assert det.precision == pytest.approx(94 / 901, abs=0.015)
    assert det.median_delay_s == pytest.approx(4.625 * 3600, abs=1.5 * 3600)

    # the comparison the brief asks for: better precision than the baseline, not recall
    assert det.precision > base.precision
    assert det.recall <= base.recall
    # ...and precision at the chance level: 10425 of the 100264 scored rows are in windows
    assert chance_precision(series, results) == pytest.approx(10425 / 100264)
    assert det.precision == pytest.approx(chance_precision(series, results), abs=0.02)


@needs_nab
def test_table_lists_every_file_and_the_totals(nab):
    series, results = nab
    table = render_table([s.name for s in series], results).splitlines()
    assert len(table) == 2 + 20 + 1
    assert table[0].startswith("| file | rows | probation | windows | IF detected |")
    assert table[2].startswith("| realAWSCloudwatch/ec2_cpu_utilization_24ae8d | 4032 | 604 | 2 |")
    assert table[-1].startswith("| **all 20 files** | 112517 | 12253 | 38 |")
    assert table[-1].endswith("| 34 | 0.895 | 1465 | 92 | 0.063 | 5.0 |")  # the baseline
    row = next(line for line in table if "ec2_cpu_utilization_c6585a" in line)
    assert "| 0 | 0 | — |" in row  # no window: recall undefined


@needs_nab
def test_script_runs():
    proc = subprocess.run(
        [sys.executable, "scripts/eval_anomaly_nab.py", "--data-dir", str(ROOT)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"NAB ({ROOT}): 20 files, 38 labelled windows.")
    assert any(line.startswith("| **all 20 files** | 112517 |") for line in lines)
    assert "Chance level: 0.104 of the scored rows" in proc.stdout


def test_script_without_data_exits_2(tmp_path):
    env = dict(os.environ, **{TRACE_DIR_ENV: str(tmp_path)})
    proc = subprocess.run(
        [sys.executable, "scripts/eval_anomaly_nab.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert f"NAB data not found: {tmp_path / 'nab-aws' / 'labels'}" in proc.stderr
    assert proc.stdout == ""


# --------------------------------------------------------------------------- the reader


def _write_nab(root: Path, labels: dict, files: dict[str, str]) -> Path:
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "combined_windows.json").write_text(json.dumps(labels))
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


CSV = "timestamp,value\n2014-01-01 00:00:00,1.5\n2014-01-01 00:05:00,2\n2014-01-01 00:10:00,3\n"


def test_dir_from_env_and_default():
    assert nab_dir({TRACE_DIR_ENV: "/data"}) == Path("/data/nab-aws")
    assert nab_dir({}) == REPO.parent / "shared" / "data" / "nab-aws"


def test_reader_on_small_real_files(tmp_path):
    root = _write_nab(
        tmp_path / "nab-aws",
        {
            "realX/a.csv": [["2014-01-01 00:05:00.000000", "2014-01-01 00:10:00.000000"]],
            "realX/b.csv": [],
            "realY/absent.csv": [["2014-01-01 00:00:00.000000", "2014-01-02 00:00:00.000000"]],
        },
        {"realX/a.csv": CSV, "realX/b.csv": CSV},
    )
    root_found, why = find_nab_dir({TRACE_DIR_ENV: str(tmp_path)})
    assert (root_found, why) == (root, "")
    series = load_nab(root)
    assert [s.name for s in series] == ["realX/a.csv", "realX/b.csv"]  # absent file ignored
    a = series[0]
    assert a.ts_s.tolist() == [1388534400.0, 1388534700.0, 1388535000.0]
    assert a.value.tolist() == [1.5, 2.0, 3.0]
    assert a.windows_s == ((1388534700.0, 1388535000.0),)
    assert series[1].windows_s == ()


@pytest.mark.parametrize(
    ("labels", "files", "msg"),
    [
        ({}, {"realX/a.csv": CSV}, "no entry 'realX/a.csv'"),
        (
            {"realX/a.csv": []},
            {"realX/a.csv": CSV.replace(",2\n", ",two\n")},
            "value 'two' at row 1 is not a number",
        ),
        ({"realX/a.csv": []}, {"realX/a.csv": "time,v\n1,2\n"}, "expected columns timestamp,value"),
        ({"realX/a.csv": []}, {"realX/a.csv": CSV.replace("00:05:00", "soon")}, "bad timestamp"),
        ({"realX/a.csv": [["2014-01-02", "2014-01-01"]]}, {"realX/a.csv": CSV}, "start is after"),
        ({"realX/a.csv": [["2014-01-02"]]}, {"realX/a.csv": CSV}, r"list of \[start, end\]"),
        ({"realX/a.csv": []}, {}, "no <category>/"),
    ],
)
def test_reader_names_what_is_wrong(tmp_path, labels, files, msg):
    root = _write_nab(tmp_path / "nab-aws", labels, files)
    with pytest.raises(ValueError, match=msg):
        load_nab(root)


def test_missing_data_dir(tmp_path):
    root, why = find_nab_dir({TRACE_DIR_ENV: str(tmp_path / "nowhere")})
    assert root is None and TRACE_DIR_ENV in why
    with pytest.raises(ValueError, match="does not exist"):
        load_nab(tmp_path / "nowhere")
