from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

import pytest

from mailward.config import load
from mailward.config.model import DetectorSettings
from mailward.detectors.base import Finding, Source
from mailward.detectors.failures import AddressFailures
from mailward.detectors.keys import ip_key
from mailward.detectors.state import MemoryState
from mailward.errors import ConfigError

IP = ip_address("203.0.113.5")


def src(factor: float = 1.0, country: str | None = None) -> Source:
    return Source(ip=IP, key=ip_key(IP), prefix=0, prefixlen=24, factor=factor, country=country)


def run(settings: DetectorSettings, times: list[float], **kw: object) -> list[list[Finding]]:
    rules = AddressFailures(settings, settings.safety.known_good_factor)
    state = MemoryState()
    return [rules.on_failure(state, src(**kw), t, 1) for t in times]  # type: ignore[arg-type]


def test_rate_limit_bans_the_fourth_attempt_in_a_minute() -> None:
    out = run(DetectorSettings(), [0, 10, 20, 30])
    assert out[:3] == [[], [], []]
    [finding] = out[3]
    assert finding.rule == "rate_limit" and finding.duration == 900
    assert finding.evidence == {"attempts": 4, "window": 60.0, "limit": 3}


def test_rate_limit_spread_out_is_fine() -> None:
    s = DetectorSettings(short_ban={"enabled": False}, long_window={"enabled": False})
    assert all(f == [] for f in run(s, [i * 25.0 for i in range(20)]))


def test_short_ban_five_in_ten_minutes() -> None:
    s = DetectorSettings(rate_limit={"enabled": False})
    out = run(s, [0, 100, 200, 300, 400])
    assert out[:4] == [[], [], [], []]
    [finding] = out[4]
    assert finding.rule == "short_ban" and finding.duration == 3600
    assert finding.reason == "5 failed logins in 10m"
    # four in ten minutes, then one much later: no ban
    assert all(f == [] for f in run(s, [0, 100, 200, 300, 1000]))


def test_known_good_address_gets_a_higher_threshold() -> None:
    s = DetectorSettings(rate_limit={"enabled": False})
    out = run(s, [i * 30.0 for i in range(15)], factor=3.0)
    assert all(f == [] for f in out[:14])
    assert out[14][0].evidence["threshold"] == 15


def test_long_window_catches_slow_guessing() -> None:
    s = DetectorSettings()
    out = run(s, [i * 600.0 for i in range(12)])
    assert all(f == [] for f in out[:11])
    [finding] = out[11]
    assert finding.rule == "long_window" and finding.duration == 86400


def test_per_country_threshold() -> None:
    s = DetectorSettings(rate_limit={"enabled": False}, geo={"country_failures": {"cn": 2}})
    out = run(s, [0, 60], country="CN")
    assert out[1][0].rule == "short_ban" and out[1][0].evidence["country"] == "CN"
    assert run(s, [0, 60], country="DE") == [[], []]


def test_successes_count_only_when_configured() -> None:
    s = DetectorSettings(rate_limit={"count_successes": True})
    rules = AddressFailures(s, 3.0)
    state = MemoryState()
    assert [rules.on_success(state, src(), t) for t in (0, 1, 2)] == [[], [], []]
    [finding] = rules.on_success(state, src(), 3)
    assert finding.rule == "rate_limit"
    plain = AddressFailures(DetectorSettings(), 3.0)
    assert all(plain.on_success(state, src(), t) == [] for t in range(10))


def test_owner_failures_never_fill_the_long_window() -> None:
    s = DetectorSettings()
    rules = AddressFailures(s, 3.0)
    state = MemoryState()
    out = [rules.on_failure(state, src(), i * 900.0, 1, owner=True) for i in range(96)]
    assert all(f == [] for f in out)
    # but a fast burst from the owner's device still trips the short rules
    burst = [rules.on_failure(state, src(), 100_000 + i, 1, owner=True) for i in range(4)]
    assert burst[3][0].rule == "rate_limit"


SECOND_FAILURE_POLICY = """
[detectors.short_ban]
failures = 5
window = "10m"
ban = "1h"

[[detectors.short_ban.steps]]
failures = 2
window = "10m"
ban = "6h"
"""


def test_ban_longer_after_the_second_failed_login(tmp_path: Path) -> None:
    path = tmp_path / "mailward.toml"
    path.write_text(SECOND_FAILURE_POLICY)
    settings = load(path, env={}).detectors
    step = settings.short_ban.steps[0]
    assert (step.failures, step.window, step.ban) == (2, 600.0, 21600.0)
    out = run(settings, [0, 120])
    assert out[0] == []
    [finding] = out[1]
    assert finding.rule == "short_ban" and finding.duration == 6 * 3600
    assert finding.reason == "2 failed logins in 10m"


def test_bad_duration_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "mailward.toml"
    path.write_text('[detectors.short_ban]\nban = "soon"\n')
    with pytest.raises(ConfigError) as info:
        load(path, env={})
    assert info.value.key == "detectors.short_ban.ban"


def test_history_must_cover_a_year(tmp_path: Path) -> None:
    path = tmp_path / "mailward.toml"
    path.write_text('[detectors.escalation]\nhistory = "30d"\n')
    with pytest.raises(ConfigError, match="at least a year"):
        load(path, env={})


def test_overrides_of_nested_detector_keys(tmp_path: Path) -> None:
    path = tmp_path / "mailward.toml"
    path.write_text("")
    overrides = ["detectors.rate_limit.attempts=5", 'detectors.short_ban.window="1h30m"']
    settings = load(path, env={}, overrides=overrides)
    assert settings.detectors.rate_limit.attempts == 5
    assert settings.detectors.short_ban.window == 5400.0
