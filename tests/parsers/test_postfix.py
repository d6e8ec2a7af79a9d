"""Postfix specifics beyond the golden samples: service mapping and counters."""

from __future__ import annotations

import pytest

from mailward.events import Disconnect, Service
from mailward.parsers.base import IPCache
from mailward.parsers.postfix import PostfixParser, service_for


@pytest.mark.parametrize(
    "program, service",
    [
        ("postfix/smtpd", Service.SMTP),
        ("postfix/submission/smtpd", Service.SUBMISSION),
        ("postfix/smtps/smtpd", Service.SMTPS),
        ("postfix/10025/smtpd", Service.SMTP),
        ("postfix/587/smtpd", Service.SUBMISSION),
        ("postfix/465/smtpd", Service.SMTPS),
        ("postfix-submission/smtpd", Service.SUBMISSION),
        ("postfix-out/smtpd", Service.SMTP),
        ("postfix/postscreen", Service.POSTSCREEN),
    ],
)
def test_service_for(program: str, service: Service) -> None:
    assert service_for(program) is service


def test_disconnect_counters() -> None:
    p = PostfixParser(IPCache())
    r = p.smtpd(
        0.0,
        "h",
        "postfix/smtpd",
        "1",
        "disconnect from x[192.0.2.1] ehlo=2 starttls=1 auth=0/3 commands=3/6",
    )
    assert r is not None
    ev = r[1]
    assert isinstance(ev, Disconnect)
    assert (ev.auth_ok, ev.auth_total, ev.commands_ok, ev.commands_total) == (0, 3, 3, 6)
    r = p.smtpd(0.0, "h", "postfix/smtpd", "1", "disconnect from x[192.0.2.1] auth=x/y commands=")
    assert r is not None and isinstance(r[1], Disconnect) and r[1].auth_total == 0


def test_malformed_lines_are_not_recognised() -> None:
    p = PostfixParser(IPCache())
    for msg in (
        "connect from nowhere",
        "disconnect from nowhere",
        "warning: SASL authentication failed",
        "warning: limit exceeded",
        "NOQUEUE: reject: RCPT from x: User unknown in y",
        "x: client=, sasl_username=",
        "lost connection after from",
    ):
        assert p.smtpd(0.0, "h", "postfix/smtpd", "1", msg) is None, msg
    assert p.postscreen(0.0, "h", "postfix/postscreen", "1", "PREGREET without address") is None
    assert p.anvil(0.0, "h", "postfix/anvil", "1", "something else") is None
