"""Kubernetes quantities (app/core/quantity.py) as users write them, the way back for
people, and the settings that take them (and durations) in every field named for them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prescale.app.core.quantity import (
    format_bytes,
    format_cores,
    parse_bytes,
    parse_cores,
    to_quantity,
)
from prescale.app.settings import ConfigError, load_settings

KiB, MiB, GiB, TiB = 2**10, 2**20, 2**30, 2**40


@pytest.mark.parametrize("text, value", [
    ("2Gi", 2 * GiB), ("2G", 2_000_000_000), ("512Mi", 512 * MiB), ("1.5Gi", 1.5 * GiB),
    ("2k", 2000), ("3Ki", 3 * KiB), ("1Ti", TiB), ("1T", 10**12), ("64MiB", 64 * MiB),
    ("1e3", 1000), ("1E9", 10**9), ("2E", 2 * 10**18), ("2 Gi", 2 * GiB), (4096, 4096),
])
def test_bytes_kubernetes_forms(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["2Gb", "2K", "1e3Mi", "-1Gi", "2 Gigs", "inf", "", "Mi"])
def test_bad_sizes_name_the_field_the_text_and_the_forms(text):
    with pytest.raises(ValueError) as exc:
        parse_bytes(text, field="--pool-memory")
    msg = str(exc.value)
    assert msg.startswith(f"--pool-memory: {text!r} is not a size: expected")
    assert "Ki/Mi/Gi/Ti" in msg and "512Mi" in msg


@pytest.mark.parametrize("text, cores", [("500m", 0.5), ("250m", 0.25), ("2", 2.0),
                                         ("1.5", 1.5), ("1500m", 1.5), (0.1, 0.1)])
def test_cpu_millicores(text, cores):
    assert parse_cores(text) == pytest.approx(cores)


@pytest.mark.parametrize("text", ["500Mi", "-1", "1.5k", "m", "half"])
def test_bad_cpu_names_the_field(text):
    with pytest.raises(ValueError, match=r"^--pool-cpu: .* is not a CPU amount: expected a "
                                         r"number of cores \(1.5\) or millicores \(500m\)"):
        parse_cores(text, field="--pool-cpu")


def test_format_bytes_and_cores_worked_examples():
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(100 * MiB) == "100.0 MiB"
    assert format_bytes(1.5 * GiB) == "1.50 GiB"
    assert format_bytes(3 * TiB) == "3.00 TiB"
    assert format_bytes(2 * MiB, per_s=True) == "2.0 MiB/s"
    assert format_bytes(math.inf) == "unlimited" and format_bytes(math.nan) == "-"
    assert format_cores(0.5) == "0.50 cores" and format_cores(1) == "1.00 cores"
    assert format_cores(0.0123) == "0.012 cores"  # 12m is not shown as 0.01
    assert format_cores(math.inf) == "unlimited" and format_cores(math.nan) == "-"


def test_to_quantity_worked_examples():
    assert to_quantity(2 * GiB) == "2Gi" and to_quantity(3 * 2**19) == "1536Ki"
    assert to_quantity(2 * 10**9) == "2G" and to_quantity(1_000_001) == 1_000_001
    assert to_quantity(0) == 0 and to_quantity(0.5) == 0


@given(st.integers(min_value=0, max_value=2**53))  # bytes are floats: exact to 2**53
def test_to_quantity_reads_back_exactly(n):
    assert parse_bytes(to_quantity(n)) == n


def test_settings_take_quantities_and_durations_in_every_field_named_for_them():
    s = load_settings(None, pool={"capacity_memory_bytes": "2Gi", "capacity_cpu_cores": "500m",
                                  "reserve_cpu_cores": "250m", "warm_memory_bytes": "2G"},
                      loop={"interval_s": "500ms"},
                      policy={"cooldown_s": "1h30m", "tier_cooldown_s": {"cpu": "2m"}},
                      models={"retrain_interval_s": "1w"},
                      demo={"leak_rate_bytes_per_s": "4Mi"})
    assert s.pool.capacity_memory_bytes == 2 * GiB and s.pool.warm_memory_bytes == 2 * 10**9
    assert s.pool.capacity_cpu_cores == 0.5 and s.pool.reserve_cpu_cores == 0.25
    assert s.loop.interval_s == 0.5 and s.policy.cooldown_s == 5400.0
    assert s.policy.tier_cooldown_s == {"cpu": 120.0}
    assert s.models.retrain_interval_s == 604_800.0
    assert s.demo.leak_rate_bytes_per_s == 4 * MiB  # a rate: bytes, not a duration


def test_numbers_as_text_still_go_through_as_numbers(monkeypatch):
    monkeypatch.setenv("PRESCALE_LOOP__INTERVAL_S", "2")
    monkeypatch.setenv("PRESCALE_POLICY__COOLDOWN_S", "90s")
    s = load_settings(None)
    assert s.loop.interval_s == 2.0 and s.policy.cooldown_s == 90.0


@pytest.mark.parametrize("group, field, value, says", [
    ("policy", "cooldown_s", "5 min", "policy.cooldown_s: Value error, '5 min' is not a "
                                      "duration"),
    ("pool", "reserve_cpu_cores", "2x", "pool.reserve_cpu_cores: Value error, '2x' is not a "
                                        "CPU amount"),
    ("pool", "capacity_memory_bytes", "2Gx", "pool.capacity_memory_bytes: Value error, "
                                             "'2Gx' is not a size"),
    ("policy", "cooldown_s", "2d", "policy.cooldown_s: Input should be less than or equal "
                                   "to 86400"),
])
def test_bad_setting_names_the_field(group, field, value, says):
    with pytest.raises(ConfigError) as exc:
        load_settings(None, **{group: {field: value}})
    assert says in str(exc.value)
