"""Dovecot specifics beyond the golden samples."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailward.events import AuthFailure, FailReason, Service
from mailward.parsers.base import IPCache
from mailward.parsers.dovecot import _PASSDB_END, DovecotParser, passdb_cut


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


def _search_twice(text: str) -> tuple[str, ...] | str | None:
    # What _passdb did before it used one split: search, span, search again, groups.
    e = _PASSDB_END.search(text)
    if e is None:
        return None
    first, end = e.span()
    if _PASSDB_END.search(text, end) is not None:
        return "ambiguous"
    return (text[:first], e[1], e[2], text[end:])


_PASSDB_PIECES = st.sampled_from(
    ["bob", "@x", ",", "198.51.100.7", "2001:db8::1", "%eth0", ",<", "abc", ">", ")", ": ", "("]
    + ["unknown user", "Password mismatch", " ", "<", "x y"]
)


def _cut_as_search(text: str) -> tuple[str, ...] | str | None:
    got = passdb_cut(text)
    return "ambiguous" if got == () else got


@settings(max_examples=800, deadline=None)
@given(st.lists(_PASSDB_PIECES, max_size=16).map("".join))
def test_passdb_cut_agrees_with_searching_twice(text: str) -> None:
    assert _cut_as_search(text) == _search_twice(text)


@settings(max_examples=800, deadline=None)
@given(
    st.sampled_from(["bob", "", "a,b", "x): y", "u,1.2.3.4", "u,1.2.3.4,<s>", "<>"]),
    st.sampled_from(["198.51.100.7", "2001:db8::1", "fe80::1%eth0", "", "1 2", "x"]),
    st.sampled_from(["", ",<abc>", ",<>", ",<a b>", ",<a,b>", ",<a<b>", ",<\u00a0>", ",<x"]),
    st.sampled_from(["unknown user", "Password mismatch", "x): y", ""]),
)
def test_passdb_cut_agrees_on_structured_lines(user: str, ip: str, session: str, tail: str) -> None:
    text = f"{user},{ip}{session}): {tail}"
    assert _cut_as_search(text) == _search_twice(text)
