"""read_events: expansion, rotation order, merging of separate logs, progress, stats."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from mailward.config.model import ParsingSettings
from mailward.errors import InputError
from mailward.events import AuthFailure
from mailward.parsers import Progress, read_events

NOW = 1764460800.0
UTC = ParsingSettings(timezone="UTC")


def test_rotated_set_read_oldest_first(tmp_path: Path) -> None:
    (tmp_path / "mail.log.2.gz").write_bytes(
        gzip.compress(b"Nov 21 10:00:00 mx1 postfix/smtpd[1]: connect from unknown[192.0.2.1]\n")
    )
    (tmp_path / "mail.log.1").write_text(
        "Nov 21 11:00:00 mx1 postfix/smtpd[1]: connect from unknown[192.0.2.2]\n"
    )
    (tmp_path / "mail.log").write_text(
        "Nov 21 12:00:00 mx1 postfix/smtpd[1]: connect from unknown[192.0.2.3]\nnoise\n"
    )
    seen: list[Progress] = []
    stream = read_events([str(tmp_path)], UTC, now=NOW, progress=seen.append)
    events = list(stream)
    assert [str(e.ip) for e in events] == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    assert [e.origin.source.rsplit("/", 1)[1] for e in events if e.origin] == [
        "mail.log.2.gz",
        "mail.log.1",
        "mail.log",
    ]
    assert stream.stats.lines == 4 and stream.stats.unrecognised == 1
    done = [p for p in seen if p.done]
    assert len(done) == 3 and done[-1].lines_total == 4 and done[-1].index == 2


def test_separate_postfix_and_dovecot_logs_are_merged_by_time(tmp_path: Path) -> None:
    (tmp_path / "mail.log").write_text(
        "Nov 21 11:34:19 mail postfix/smtpd[1]: warning: unknown[192.0.2.21]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=bob\n"
        "Nov 21 11:40:00 mail postfix/smtpd[1]: connect from unknown[192.0.2.30]\n"
    )
    (tmp_path / "dovecot.log").write_text(
        "Nov 21 11:34:18 auth: Info: passwd-file(bob,192.0.2.21): Password mismatch\n"
        "Nov 21 11:41:00 auth: Info: passwd-file(eve,192.0.2.31): unknown user\n"
    )
    stream = read_events([str(tmp_path / "mail.log"), str(tmp_path / "dovecot.log")], UTC, now=NOW)
    events = list(stream)
    fails = [e for e in events if isinstance(e, AuthFailure)]
    assert [(str(e.ip), e.service.value, e.reason.value) for e in fails] == [
        ("192.0.2.21", "smtp", "bad_password"),
        ("192.0.2.31", "unknown", "unknown_user"),
    ]
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert stream.stats.lines == 4 and stream.stats.recognised == 4


def test_missing_input_is_reported_before_reading(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing.log"):
        read_events([str(tmp_path / "missing.log")])
