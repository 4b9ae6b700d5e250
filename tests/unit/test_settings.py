from pathlib import Path

import pytest

from prescale.app.settings import DEFAULT_CONFIG_PATH, ConfigError, Mode, Settings, load_settings


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_default_file_loads_with_documented_values():
    s = load_settings()
    assert DEFAULT_CONFIG_PATH.name == "local.toml"
    assert s.mode is Mode.RECOMMEND
    assert s.policy.memory_min_bytes == 32 * 2**20
    assert s.policy.memory_max_bytes == 2 * 2**30
    assert s.predictor.horizon_s == 30.0


def test_units_in_sizes_are_parsed(tmp_path):
    s = load_settings(write(tmp_path, '[policy]\nmemory_max_bytes = "3GiB"\n'))
    assert s.policy.memory_max_bytes == 3 * 2**30


def test_env_overrides_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PRESCALE_POLICY__MARGIN_FRACTION", "0.4")
    monkeypatch.setenv("PRESCALE_MODE", "auto")
    s = load_settings(write(tmp_path, "[policy]\nmargin_fraction = 0.1\n"))
    assert s.policy.margin_fraction == 0.4
    assert s.mode is Mode.AUTO


def test_explicit_overrides_win(tmp_path):
    s = load_settings(write(tmp_path, 'mode = "off"\n'), mode=Mode.AUTO)
    assert s.mode is Mode.AUTO


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[predictor]\nhorizon_s = -3\n", "predictor.horizon_s"),
        ('mode = "sometimes"\n', "mode"),
        ('[policy]\nmemory_min_bytes = "4GiB"\nmemory_max_bytes = "1GiB"\n', "memory_min_bytes"),
        ("[thresholds]\np_fail = 1.5\n", "thresholds.p_fail"),
        ("[loop]\nbogus = 1\n", "loop.bogus"),
        ('[cgroup]\nroots = ["relative/dir"]\n', "cgroup.roots"),
    ],
)
def test_bad_values_name_the_field(tmp_path, text, field):
    with pytest.raises(ConfigError) as exc:
        load_settings(write(tmp_path, text))
    assert field in str(exc.value)


def test_bad_env_names_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv("PRESCALE_LOOP__INTERVAL_S", "soon")
    with pytest.raises(ConfigError, match="loop.interval_s"):
        load_settings(write(tmp_path, ""))


def test_not_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "mode = = 1\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_settings_pickle_round_trip(tmp_path):
    import pickle

    s = load_settings(write(tmp_path, "[policy]\ncooldown_s = 3\n"))
    assert type(s) is Settings
    assert pickle.loads(pickle.dumps(s)) == s
