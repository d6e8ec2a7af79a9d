from __future__ import annotations

from pathlib import Path

import pytest

from mailward.config import load
from mailward.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailward.toml"
    path.write_text(text)
    return path


def test_defaults_without_file(tmp_path: Path) -> None:
    settings = load(None, env={"MAILWARD_CONFIG": str(write(tmp_path, ""))})
    assert settings.storage.retention_days == 400
    assert settings.analyze.rate_limit_per_minute == 3


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path / "nope.toml", env={})


def test_error_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, "[storage]\nretention_days = 0\n"), env={})
    assert info.value.key == "storage.retention_days"
    assert "greater than or equal to 1" in str(info.value)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"storage\.retention: unknown setting"):
        load(write(tmp_path, "[storage]\nretention = 3\n"), env={})


def test_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(write(tmp_path, "[storage\n"), env={})


def test_bad_timezone(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="parsing.timezone.*unknown time zone"):
        load(write(tmp_path, '[parsing]\ntimezone = "Mars/Olympus"\n'), env={})


def test_layers_file_env_set(tmp_path: Path) -> None:
    path = write(tmp_path, "[analyze]\ntop = 5\nrate_limit_per_minute = 4\n")
    settings = load(
        path,
        env={"MAILWARD_ANALYZE_TOP": "7", "MAILWARD_STORAGE_RETENTION_DAYS": "500"},
        overrides=["analyze.top=9"],
    )
    assert settings.analyze.top == 9
    assert settings.analyze.rate_limit_per_minute == 4
    assert settings.storage.retention_days == 500


def test_secret_references(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    path = write(tmp_path, f'[general]\nstate_dir = {{ "$file" = "{secret}" }}\n')
    assert str(load(path, env={}).general.state_dir) == "s3cret"
    path = write(tmp_path, '[general]\nstate_dir = { "$env" = "MW_DIR" }\n')
    assert str(load(path, env={"MW_DIR": "/x"}).general.state_dir) == "/x"
    with pytest.raises(ConfigError, match=r"general\.state_dir: environment variable 'MW_DIR'"):
        load(path, env={})


def test_set_needs_equals(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--set wants"):
        load(write(tmp_path, ""), env={}, overrides=["analyze.top"])


def test_env_override_of_nested_section(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    settings = load(path, env={"MAILWARD_POLICY_POSTFIX_ENABLED": "true"})
    assert settings.policy.postfix.enabled is True


def test_unknown_env_setting_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MAILWARD_ANALYZE_NOPE"):
        load(write(tmp_path, ""), env={"MAILWARD_ANALYZE_NOPE": "1"})


def test_build_and_test_switches_are_not_settings(tmp_path: Path) -> None:
    env = {"MAILWARD_COMPILE": "1", "MAILWARD_EXPECT_COMPILED": "1"}
    assert load(write(tmp_path, ""), env=env) == load(write(tmp_path, ""), env={})
    with pytest.raises(ConfigError, match="MAILWARD_COMPILED"):
        load(write(tmp_path, ""), env={"MAILWARD_COMPILED": "1"})
