"""prescale's alerting rules (configs/prometheus/alerts.yml): promtool accepts them,
promtool's unit tests of each rule's expression pass (tests/prometheus/alerts_test.yml),
they use only metrics and labels prescale exports, each tells the SRE what to do, and
the example Prometheus config loads them. That an alert really fires on prescale's
metrics as Ray exports them is tests/integration/test_metrics_prometheus.py.

promtool comes with the Debian package ``prometheus`` (scripts/install_system_deps.sh);
without it these tests are skipped, or fail when CI=true.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from prescale.app import metric_specs as m
from tests.prom_support import promql_names, promtool_binary

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "configs" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "tests" / "prometheus" / "alerts_test.yml"
PROM_CONFIG = ROOT / "configs" / "prometheus" / "prometheus.yml"
EXPECTED = {"PrescaleLoopStale": "critical", "PrescaleActionsFailing": "critical",
            "PrescaleMissedFailure": "warning", "PrescalePrecisionLow": "warning",
            "PrescaleDegraded": "warning"}
_METRIC = re.compile(r"\bray_prescale_[a-z_]+")


def rules(path: Path = ALERTS) -> list[dict]:
    return [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]


def write_promtool_test_dir(out: Path) -> Path:
    """``out/alerts.yml`` (the rules without their ``description`` annotations, which
    promtool would have to be given verbatim) and ``out/alerts_test.yml``; returns the
    latter, for ``promtool test rules``."""
    doc = yaml.safe_load(ALERTS.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.get("annotations", {}).pop("description", None)
    out.mkdir(parents=True, exist_ok=True)
    (out / "alerts.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    shutil.copy(ALERTS_TEST, out / "alerts_test.yml")
    return out / "alerts_test.yml"


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool_binary(), *args], capture_output=True, text=True,
                          timeout=60)


def test_promtool_check_rules_accepts_the_alerts():
    ok = _promtool("check", "rules", str(ALERTS))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"SUCCESS: {len(EXPECTED)} rules found" in ok.stdout


def test_promtool_unit_tests_of_every_alert_pass(tmp_path):
    test_file = write_promtool_test_dir(tmp_path)
    tested = set(re.findall(r"alertname: (\w+)", test_file.read_text()))
    assert tested == set(EXPECTED)
    ok = _promtool("test", "rules", str(test_file))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "SUCCESS" in ok.stdout


def test_promtool_unit_tests_can_fail(tmp_path):
    """A rule that ignores what a counter held when its series was born (plain
    increase(): what Ray's export makes of a first miss) fails its promtool test."""
    test_file = write_promtool_test_dir(tmp_path)
    doc = yaml.safe_load((tmp_path / "alerts.yml").read_text())
    for rule in doc["groups"][0]["rules"]:
        if rule["alert"] == "PrescaleMissedFailure":
            rule["expr"] = ('sum by (tier) (increase(ray_prescale_prediction_outcomes_total'
                            '{outcome="miss"}[15m])) > 0')
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    bad = _promtool("test", "rules", str(test_file))
    assert bad.returncode != 0
    assert "alertname: PrescaleMissedFailure, time: 5m" in bad.stdout + bad.stderr


def test_every_alert_uses_exported_metrics_and_labels():
    allowed_labels = set(m.RAY_LABELS) | {"job", "instance"}
    for rule in rules():
        names, labels = promql_names(rule["expr"])
        assert names, rule["alert"]
        unknown = names - set(m.EXPORTED_NAMES)
        assert not unknown, f"{rule['alert']}: {sorted(unknown)} not in app/metric_specs.py"
        known = allowed_labels.union(*(m.EXPORTED_LABELS[n] for n in names))
        assert labels <= known, f"{rule['alert']}: unknown labels {sorted(labels - known)}"
        # label values in matchers are the bounded enums prescale exports
        for label, values in re.findall(r'(\w+)=~?"([^"]*)"', rule["expr"]):
            allowed = {"result": m.RESULTS, "outcome": set(m.OUTCOME_KINDS),
                       "tier": m.TIERS}.get(label)
            if allowed is not None:
                assert set(values.split("|")) <= allowed, (rule["alert"], label, values)


def test_every_alert_has_for_severity_and_says_what_to_do():
    found = rules()
    assert {r["alert"]: r["labels"]["severity"] for r in found} == EXPECTED
    for r in found:
        assert "for" in r, r["alert"]
        summary, description = r["annotations"]["summary"], r["annotations"]["description"]
        assert summary and len(description) > 200, r["alert"]
        # names prescale's own metric(s), each one that exists
        named = set(_METRIC.findall(description))
        assert named and named <= set(m.EXPORTED_NAMES), (r["alert"], named)
        # and something to run or change
        assert "`prescale " in description or "`ray " in description, r["alert"]


def test_the_example_prometheus_config_loads_the_alerts():
    config = yaml.safe_load(PROM_CONFIG.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    ok = _promtool("check", "config", str(PROM_CONFIG))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "alerts.yml" in ok.stdout and f"SUCCESS: {len(EXPECTED)} rules found" in ok.stdout


def test_the_reliability_doc_lists_every_alert():
    doc = (ROOT / "docs" / "RELIABILITY.md").read_text()
    section = doc[doc.index("## Alerts"):]
    for name in EXPECTED:
        assert f"| `{name}` |" in section, name


if __name__ == "__main__":  # python -m tests.unit.test_alerts DIR
    print(write_promtool_test_dir(Path(sys.argv[1])))
