"""Envelope splitting and time handling (year inference, zones, caches)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailward.parsers.envelope import DOVECOT_LOGPATH, HeaderParser, resolve_zone


def _ts(*args: int, tz: object = UTC) -> float:
    return datetime(*args, tzinfo=tz).timestamp()  # type: ignore[arg-type, misc]


def test_reference_year_and_rollover() -> None:
    h = HeaderParser(UTC, now=_ts(2026, 1, 5))
    assert h.bsd_time("Dec 31 23:59:59") == _ts(2025, 12, 31, 23, 59, 59)
    assert h.bsd_time("Jan  1 00:00:01") == _ts(2026, 1, 1, 0, 0, 1)
    assert h.bsd_time("Jan 5 08:00:00") == _ts(2026, 1, 5, 8)


def test_default_year_rolls_over_from_december_to_january() -> None:
    h = HeaderParser(UTC, default_year=2024)
    assert h.bsd_time("Dec 30 10:00:00") == _ts(2024, 12, 30, 10)
    assert h.bsd_time("Dec 31 23:59:59") == _ts(2024, 12, 31, 23, 59, 59)
    assert h.bsd_time("Jan  1 00:00:00") == _ts(2025, 1, 1)
    assert h.bsd_time("Jan  1 00:00:05") == _ts(2025, 1, 1, 0, 0, 5)
    h.start_input()
    assert h.bsd_time("Dec 31 23:59:59") == _ts(2024, 12, 31, 23, 59, 59)


def test_configured_zone_and_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    h = HeaderParser(berlin, now=_ts(2025, 12, 1))
    assert h.bsd_time("Nov 21 10:15:02") == _ts(2025, 11, 21, 10, 15, 2, tz=berlin)
    assert h.bsd_time("Jul 21 10:15:02") == _ts(2025, 7, 21, 8, 15, 2)  # CEST, UTC+2
    # The minute cache must not leak across a DST change.
    assert h.bsd_time("Oct 26 01:59:59") == _ts(2025, 10, 25, 23, 59, 59)
    assert h.bsd_time("Oct 26 03:00:00") == _ts(2025, 10, 26, 2, 0, 0)


def test_feb_29_in_a_non_leap_reference_year() -> None:
    h = HeaderParser(UTC, now=_ts(2025, 3, 1))
    assert h.bsd_time("Feb 29 12:00:00") == _ts(2024, 2, 29, 12)


@pytest.mark.parametrize(
    "stamp, expected",
    [
        ("2025-11-21T10:15:02.318842+01:00", _ts(2025, 11, 21, 9, 15, 2) + 0.318842),
        ("2025-11-21T10:15:02+0100", _ts(2025, 11, 21, 9, 15, 2)),
        ("2025-11-21T10:15:02Z", _ts(2025, 11, 21, 10, 15, 2)),
        ("2025-11-21T10:15:02-05", _ts(2025, 11, 21, 15, 15, 2)),
        ("2025-11-21T10:15:02", _ts(2025, 11, 21, 10, 15, 2)),
        ("not-a-timestamp-at-all", None),
        ("2025-13-21T10:15:02Z", None),
    ],
)
def test_iso_time(stamp: str, expected: float | None) -> None:
    got = HeaderParser(UTC).iso_time(stamp)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-6)


def test_split_formats() -> None:
    h = HeaderParser(UTC, now=_ts(2025, 12, 1))
    env = h.split("Nov 21 10:15:02 mx1 postfix/submission/smtpd[48211]: warning: x")
    assert env is not None
    assert env[1:5] == ("mx1", "postfix/submission/smtpd", "48211", "warning: x")
    env = h.split("Nov 21 10:15:02 auth: Info: passwd-file(a,192.0.2.1): unknown user")
    assert env is not None
    assert env.program == DOVECOT_LOGPATH and env.message.startswith("auth: Info:")
    env = h.split("<20>1 2025-11-21T10:15:02Z mx1 postfix/smtpd 48211 - - hello")
    assert env is not None and env[1:5] == ("mx1", "postfix/smtpd", "48211", "hello")
    env = h.split("<22>Nov 21 10:15:02 mx1 postfix/smtpd[1]: hi")
    assert env is not None and env.message == "hi"
    env = h.split(
        '{"__REALTIME_TIMESTAMP":"1000000","SYSLOG_IDENTIFIER":"x","MESSAGE":"m","__CURSOR":"s=1"}'
    )
    assert env is not None and env.ts == 1.0 and env.cursor == "s=1"
    for bad in ("", "x", "<>", "<999999>1", "{", "[]", "2025-11-21T10", "Nov 21 10:15"):
        assert h.split(bad) is None


def test_resolve_zone() -> None:
    assert resolve_zone("UTC") is UTC
    assert resolve_zone("Europe/Berlin") == ZoneInfo("Europe/Berlin")
    assert resolve_zone("local") is not None


_ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "America/Sao_Paulo",  # historical changes at midnight
    "Pacific/Apia",  # skipped 2011-12-30 entirely
    "Asia/Kathmandu",  # +05:45
)


@settings(max_examples=400, deadline=None)
@given(
    zone=st.sampled_from(_ZONES),
    when=st.datetimes(min_value=datetime(1995, 1, 1), max_value=datetime(2035, 12, 31)),
    near_change=st.booleans(),
)
def test_minute_base_matches_zoneinfo_minute_by_minute(
    zone: str, when: datetime, near_change: bool
) -> None:
    # The per-day shortcut must give exactly what a per-minute zone conversion gives.
    tz = resolve_zone(zone)
    parser = HeaderParser(tz, now=0)
    if near_change:  # walk a whole day around a transition of this zone, if there is one
        when = when.replace(month=3 if when.month < 7 else 10, day=min(when.day, 28))
    for minute in range(0, 24 * 60, 7 if near_change else 997):
        h, m = divmod(minute, 60)
        try:
            expected = datetime(when.year, when.month, when.day, h, m, tzinfo=tz).timestamp()
        except ValueError:
            with pytest.raises(ValueError):
                parser._minute_base(when.year, when.month, when.day, h, m)
            continue
        assert parser._minute_base(when.year, when.month, when.day, h, m) == expected


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("Europe/Berlin", (2025, 3, 30)),
        ("Europe/Berlin", (2025, 10, 26)),
        ("America/New_York", (2025, 3, 9)),
        ("America/New_York", (2025, 11, 2)),
        ("Australia/Lord_Howe", (2025, 4, 6)),
        ("Australia/Lord_Howe", (2025, 10, 5)),
        ("America/Sao_Paulo", (2018, 11, 4)),
        ("Pacific/Apia", (2011, 12, 29)),
        ("Pacific/Apia", (2011, 12, 30)),
        ("Pacific/Apia", (2011, 12, 31)),
    ],
)
def test_minute_base_on_transition_days(zone: str, day: tuple[int, int, int]) -> None:
    tz = resolve_zone(zone)
    parser = HeaderParser(tz, now=0)
    for minute in range(24 * 60):
        h, m = divmod(minute, 60)
        expected = datetime(*day, h, m, tzinfo=tz).timestamp()
        assert parser._minute_base(*day, h, m) == expected, (h, m)
