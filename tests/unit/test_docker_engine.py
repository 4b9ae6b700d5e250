"""The Docker Engine's numbers and names (app/edges/docker_engine.py), on plain dicts:
the worked examples of the docstrings, and bad input refused with the field named."""

from __future__ import annotations

import math

import pytest

from prescale.app.actuators.base import InvalidActionError
from prescale.app.actuators.docker import check_docker_action
from prescale.app.core.actions import ActionKind, ScalingAction
from prescale.app.core.sample import Tier
from prescale.app.edges.docker_engine import (
    LabelSelector,
    app_of,
    container_name,
    docker_host,
    image_app,
    limits_of,
    memswap_for,
    stats_quantities,
)
from prescale.app.settings import Settings

MiB = 2**20


def test_label_selector():
    sel = LabelSelector.parse("prescale.enable=true")
    assert sel.matches({"prescale.enable": "true"})
    assert not sel.matches({"prescale.enable": "false"}) and not sel.matches({})
    assert sel.engine_filter() == "prescale.enable=true"
    any_value = LabelSelector.parse("prescale.enable")
    assert any_value.matches({"prescale.enable": ""})
    assert any_value.engine_filter() == "prescale.enable"
    for bad in ("", "=x", "a b=c", "key="):
        with pytest.raises(ValueError, match="key=value"):
            LabelSelector.parse(bad)


def test_settings_refuse_a_bad_label():
    with pytest.raises(ValueError, match="docker_label"):
        Settings(sources={"docker_label": "=true"})
    assert Settings(sources={"docker": True}).sources.docker_label == "prescale.enable=true"


def test_names_and_apps():
    assert container_name(["/web-1"]) == "web-1" and container_name("/db") == "db"
    assert image_app("registry:5000/team/web:1.2@sha256:ab") == "registry:5000/team/web"
    assert image_app("redis:7") == "redis" and image_app("sha256:abcd") == "sha256:abcd"
    assert app_of({"prescale.app": "shop"}, "x:1") == "shop"
    assert app_of({"com.docker.compose.project": "demo",
                   "com.docker.compose.service": "web"}, "x:1") == "demo/web"
    assert app_of({}, "redis:7") == "redis"


def test_docker_host(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert docker_host(None) == "unix:///var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "tcp://h:2375")
    assert docker_host(None) == "tcp://h:2375" and docker_host("unix:///s") == "unix:///s"


def test_limits_of():
    assert limits_of({"Memory": 64 * MiB, "CpuQuota": 50000, "CpuPeriod": 0}) == {
        "memory_limit_bytes": 64.0 * MiB, "cpu_quota_cores": 0.5}
    assert limits_of({"NanoCpus": 1_500_000_000})["cpu_quota_cores"] == 1.5
    assert limits_of({}) == {"memory_limit_bytes": math.inf, "cpu_quota_cores": math.inf}


def test_memswap_keeps_the_swap_allowance():
    assert memswap_for(96 * MiB, 64 * MiB, 128 * MiB) == 160 * MiB
    assert memswap_for(96 * MiB, 64 * MiB, -1) == -1
    assert memswap_for(96 * MiB, 0, 0) == -1


def test_stats_quantities():
    q = stats_quantities({"memory_stats": {"usage": 100 * MiB,
                                           "stats": {"total_inactive_file": 30 * MiB}},
                          "cpu_stats": {"cpu_usage": {"total_usage": 1_500_000_000}}})
    assert q["memory_usage_bytes"] == 100 * MiB and q["memory_working_set_bytes"] == 70 * MiB
    assert q["cpu_usage_s_total"] == 1.5
    assert math.isnan(q["net_rx_bytes_total"]) and math.isnan(q["io_read_bytes_total"])
    assert all(math.isnan(v) for v in stats_quantities({}).values())


def _action(tier, value, kind=ActionKind.RESIZE):
    return ScalingAction("a", 0.0, "c", tier, 1.0, value, 0.9, 0.5, 10.0, 0.0, "t", kind=kind)


def test_docker_actions_refused_before_anything_is_sent():
    with pytest.raises(InvalidActionError, match="minimum"):
        check_docker_action(_action(Tier.MEMORY, 4 * MiB))
    with pytest.raises(InvalidActionError, match="cannot scale_out"):
        check_docker_action(_action(Tier.CPU, 2, ActionKind.SCALE_OUT))
    check_docker_action(_action(Tier.MEMORY, 6 * MiB))
