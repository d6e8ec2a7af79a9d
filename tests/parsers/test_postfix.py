"""Postfix specifics beyond the golden samples: service mapping and counters."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailward.events import Disconnect, Service
from mailward.parsers.base import IPCache
from mailward.parsers.postfix import PostfixParser, _counter, sasl_failure_cut, service_for


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


# The regex sasl_failure_cut replaced, kept here as its specification.
_SASL_SPEC = re.compile(
    r"warning: ([^\[\]\s]*)\[([^\[\]\s]*)\](?::\d+)?: SASL ([A-Za-z0-9_-]+) authentication failed:? ?"
)
_SASL_PIECES = st.sampled_from(
    [
        "warning: ",
        "unknown",
        "host.example",
        "[",
        "]",
        "198.51.100.7",
        "2001:db8::1",
        ":",
        "25",
        "\u0663",
        ": SASL ",
        "LOGIN",
        "PLAIN",
        "x y",
        "\t",
        "\u00a0",
        " authentication failed",
        ": ",
        " ",
        "UGFzc3dvcmQ6",
        ", sasl_username=bob",
    ]
)


@settings(max_examples=600, deadline=None)
@given(st.lists(_SASL_PIECES, max_size=14).map("".join))
def test_sasl_cut_agrees_with_its_regex(msg: str) -> None:
    m = _SASL_SPEC.match(msg)
    expected = None if m is None else (m[2], m[3], m.end())
    assert sasl_failure_cut(msg) == expected


def test_sasl_cut_on_real_shapes() -> None:
    for msg in (
        "warning: unknown[198.51.100.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
        "warning: host.example[2001:db8::1]:587: SASL PLAIN authentication failed: ",
        "warning: unknown[198.51.100.7]: SASL LOGIN authentication failed",
        "warning: a b[198.51.100.7]: SASL LOGIN authentication failed: x",
        "warning: unknown[198.51.100.7]: SASL LO GIN authentication failed: x",
    ):
        m = _SASL_SPEC.match(msg)
        assert sasl_failure_cut(msg) == (None if m is None else (m[2], m[3], m.end()))
    assert sasl_failure_cut(
        "warning: unknown[198.51.100.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
    ) == ("198.51.100.7", "LOGIN", 66)


def _counter_spec(text: str, key: str) -> tuple[int, int]:
    i = text.find(key)
    if i < 0:
        return 0, 0
    value = text[i + len(key) :].split(" ", 1)[0]
    ok_s, slash, total_s = value.partition("/")
    try:
        ok = int(ok_s)
        return ok, int(total_s) if slash else ok
    except ValueError:
        return 0, 0


@given(st.text(alphabet="0123456789/ x\u0663+-", max_size=8))
def test_counter_agrees_with_plain_int_parsing(value: str) -> None:
    text = f"disconnect from unknown[192.0.2.1] ehlo=1 auth={value} quit=1"
    assert _counter(text, " auth=") == _counter_spec(text, " auth=")


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(["unknown", "", "h.example", "a b", "a]b", "\u00a0", "x\x01", "\u0663"]),
    st.sampled_from(["198.51.100.7", "", "2001:db8::1", "a[b", "1 2", "\t"]),
    st.sampled_from(["", ":25", ":", ":\u0663", ":x"]),
    st.sampled_from(["LOGIN", "PLAIN", "CRAM-MD5", "", "x y", "L\u00d6GIN", "a_b"]),
    st.sampled_from(["", ":", ": ", " ", ":  x", ": UGFzc3dvcmQ6, sasl_username=a[1.2.3.4]"]),
)
def test_sasl_cut_agrees_with_its_regex_on_structured_lines(
    name: str, addr: str, port: str, mech: str, rest: str
) -> None:
    msg = f"warning: {name}[{addr}]{port}: SASL {mech} authentication failed{rest}"
    m = _SASL_SPEC.match(msg)
    assert sasl_failure_cut(msg) == (None if m is None else (m[2], m[3], m.end()))
