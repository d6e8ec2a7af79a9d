from __future__ import annotations

from dataclasses import dataclass

from mailward.config.model import AlertSettings
from mailward.notify.health import HealthRules
from mailward.notify.model import Severity


@dataclass(frozen=True)
class Status:
    name: str
    newest_line_ts: float | None
    processed_ts: float | None
    lag_seconds: float
    unread_bytes: int = 0
    last_error: str | None = None


def test_lag_alerts_once_and_reports_recovery() -> None:
    rules = HealthRules(AlertSettings(source_lag_seconds=120))
    assert rules.check([Status("mail.log", 1000, 990, 10)], 1000) == []
    [alert] = rules.check([Status("mail.log", 1300, 1000, 300, 52_000, "boom")], 1300)
    assert alert.kind == "source_lag" and alert.severity is Severity.CRITICAL
    assert "300 s behind" in alert.title and "52000 bytes unread" in alert.details[0]
    assert "Last error: boom." in alert.details
    assert rules.check([Status("mail.log", 1400, 1000, 400)], 1400) == []  # still lagging: quiet
    [done] = rules.check([Status("mail.log", 1500, 1499, 1)], 1500)
    assert done.kind == "source_recovered"


def test_busy_source_going_quiet_alerts() -> None:
    rules = HealthRules(AlertSettings(source_silence_seconds=600))
    t = 0.0
    for i in range(100):  # a line every 30 s
        t = i * 30.0
        assert rules.check([Status("mail.log", t, t, 0)], t) == []
    assert rules.check([Status("mail.log", t, t, 0)], t + 500) == []
    [alert] = rules.check([Status("mail.log", t, t, 0)], t + 700)
    assert alert.kind == "source_silent"
    assert rules.check([Status("mail.log", t, t, 0)], t + 900) == []


def test_idle_source_never_counts_as_silent() -> None:
    rules = HealthRules(AlertSettings(source_silence_seconds=600))
    rules.check([Status("dovecot.log", 0, 0, 0)], 0)
    rules.check([Status("dovecot.log", 5000, 5000, 0)], 5000)
    assert rules.check([Status("dovecot.log", 5000, 5000, 0)], 50_000) == []


def test_crashes_are_reported_with_a_count() -> None:
    rules = HealthRules(AlertSettings())
    first = rules.crashed("detector", RuntimeError("bad state"), 100)
    assert first[0].severity is Severity.HIGH and "RuntimeError: bad state" in first[0].details
    rules.crashed("detector", RuntimeError("bad state"), 110)
    third = rules.crashed("detector", RuntimeError("bad state"), 120)
    assert third[0].severity is Severity.CRITICAL and "3 times" in third[0].title
    assert HealthRules(AlertSettings(task_crash_alert=False)).crashed("x", ValueError(), 1) == []
