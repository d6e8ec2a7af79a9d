"""Dovecot specifics beyond the golden samples."""

from __future__ import annotations

from mailward.events import AuthFailure, FailReason, Service
from mailward.parsers.base import IPCache
from mailward.parsers.dovecot import DovecotParser


def test_sshguard_style_summary_without_user_field() -> None:
    p = DovecotParser(IPCache())
    r = p.parse(
        0.0,
        "imap-login: Aborted login (auth failed, 6 attempts): XYZ rip=2001:db8::a11:beef:7ac0, lip=127.0.0.1",
    )
    assert r is not None
    ev = r[1]
    assert isinstance(ev, AuthFailure)
    assert str(ev.ip) == "2001:db8::a11:beef:7ac0" and ev.attempts == 6 and ev.username is None


def test_password_is_never_kept() -> None:
    p = DovecotParser(IPCache())
    r = p.parse(
        0.0, "auth: sql(a@example.org,192.0.2.1,<s>): Password mismatch (given password: hunter2)"
    )
    assert r is not None and isinstance(r[1], AuthFailure)
    assert "hunter2" not in repr(r[1])
    assert r[1].reason is FailReason.BAD_PASSWORD and r[1].service is Service.UNKNOWN


def test_unrelated_lines() -> None:
    p = DovecotParser(IPCache())
    for text in (
        "imap-login: Info: something without address",
        "auth: Info: passwd-file(a,192.0.2.1): lookup done",
        "auth: Info: no driver here: unknown user",
        "auth(bad prefix: unknown user",
        "lmtp(123): Connect from local",
        "no process separator",
    ):
        assert p.parse(0.0, text) is None, text
