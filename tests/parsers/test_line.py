"""Golden samples (tests/data/logs): every line's event matches its ``# expect:``, and every
parser rule in the registry has at least one sample."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.parsers.golden import REFERENCE_NOW, all_files, load

from mailward.config.model import ParsingSettings
from mailward.events import ALL_EVENTS, Origin
from mailward.parsers import RULES, LineParser


def _check(path: Path) -> set[str]:
    conf, samples = load(path)
    parser = LineParser(ParsingSettings(**conf), now=REFERENCE_NOW)
    assert samples, f"{path.name} has no samples"
    hit: set[str] = set()
    for s in samples:
        event = parser.parse(s.line, Origin(s.file, s.lineno))
        where = f"{s.file}:{s.lineno}"
        if s.expect is None:
            assert event is None and parser.last_rule is None, (
                f"{where}: expected nothing, got {parser.last_rule} {event}"
            )
            continue
        expect = dict(s.expect)
        rule = expect.pop("rule", None)
        if rule is not None:
            assert parser.last_rule == rule, f"{where}: rule {parser.last_rule} != {rule}"
        if parser.last_rule:
            hit.add(parser.last_rule)
        if "kind" not in expect:
            assert not expect, f"{where}: fields without a kind: {expect}"
            assert event is None and parser.last_rule is not None, f"{where}: {event}"
            continue
        assert event is not None, f"{where}: no event (rule {parser.last_rule})"
        got = event.to_json()
        assert got["file"] == s.file and got["line"] == s.lineno
        diff = {k: (got.get(k, "<missing>"), v) for k, v in expect.items() if got.get(k) != v}
        assert not diff, f"{where}: (got, expected) {diff}"
    return hit


@pytest.mark.parametrize("path", all_files(), ids=lambda p: p.name)
def test_golden_file(path: Path) -> None:
    _check(path)


def test_every_rule_has_a_golden_sample() -> None:
    hit: set[str] = set()
    for path in all_files():
        hit |= _check(path)
    missing = sorted(set(RULES) - hit)
    assert not missing, f"parser rules without a golden sample in tests/data/logs: {missing}"


def test_every_event_kind_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    for cls in ALL_EVENTS:
        assert f"`{cls.kind}`" in doc, f"{cls.__name__} ({cls.kind}) missing from docs/events.md"
    for name in RULES:
        assert f"`{name}`" in doc, f"parser rule {name} missing from docs/events.md"


def test_every_event_kind_is_emitted_by_a_rule() -> None:
    # Each class must come out of some golden sample, or be documented as emitted elsewhere.
    kinds: set[str] = set()
    for path in all_files():
        conf, samples = load(path)
        parser = LineParser(ParsingSettings(**conf), now=REFERENCE_NOW)
        for s in samples:
            event = parser.parse(s.line)
            if event is not None:
                kinds.add(event.kind)
    missing = {cls.kind for cls in ALL_EVENTS} - kinds
    doc = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    undocumented = {k for k in missing if f"`{k}` is emitted by the policy servers" not in doc}
    assert not undocumented, f"event kinds no parser rule emits: {sorted(undocumented)}"


def test_stats_count_every_line_once() -> None:
    parser = LineParser(ParsingSettings(timezone="UTC"), now=REFERENCE_NOW)
    lines = [
        "Nov 21 10:15:08 mx1 postfix/smtpd[1]: connect from unknown[203.0.113.49]",
        "Nov 21 10:25:00 mx1 postfix/anvil[2]: statistics: max connection rate 61/60s for (x)",
        "Nov 21 10:25:00 mx1 postfix/qmgr[3]: 4F1A: removed",
        "garbage",
    ]
    for line in lines:
        parser.parse(line)
    st_ = parser.stats
    assert (st_.lines, st_.recognised, st_.ignored, st_.unrecognised) == (4, 1, 1, 2)
    assert st_.by_kind == {"connection": 1}
    assert st_.by_rule == {"postfix.connect": 1, "postfix.anvil_statistics": 1}


def test_bare_message_with_known_program() -> None:
    parser = LineParser(ParsingSettings(timezone="UTC"))
    ev = parser.parse_message(
        "postfix/smtpd", "lost connection after AUTH from unknown[192.0.2.7]", ts=5.0
    )
    assert ev is not None and ev.kind == "lost_connection" and str(ev.ip) == "192.0.2.7"
    assert ev.ts == 5.0
    ev = parser.parse_message(
        "dovecot",
        "imap-login: Aborted login (auth failed, 6 attempts): XYZ rip=192.0.2.8, lip=127.0.0.1",
    )
    assert ev is not None and ev.kind == "auth_failure" and str(ev.ip) == "192.0.2.8"


def test_parse_at_and_parse_agree() -> None:
    for path in all_files():
        conf, samples = load(path)
        a = LineParser(ParsingSettings(**conf), now=REFERENCE_NOW)
        b = LineParser(ParsingSettings(**conf), now=REFERENCE_NOW)
        for s in samples:
            ea = a.parse(s.line, Origin(s.file, s.lineno))
            eb = b.parse_at(s.line, s.file, s.lineno)
            assert ea == eb, f"{s.file}:{s.lineno}"
            assert a.last_rule == b.last_rule


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_text_never_raises(text: str) -> None:
    parser = LineParser(ParsingSettings(timezone="UTC"))
    for candidate in (text, "Nov 21 10:15:08 mx1 " + text, "Nov 21 10:15:08 mx1 dovecot: " + text):
        parser.parse(candidate)
        parser.parse_at(candidate, "f", 1)
    assert parser.stats.lines == 6


PREFIXES = [
    "Nov 21 10:15:02 mx1 postfix/submission/smtpd[48211]: warning: unknown[203.0.113.45]: SASL LOGIN authentication failed: x, sasl_username=",
    "Nov 21 10:30:12 mx1 dovecot: imap-login: Disconnected (auth failed, 3 attempts in 14 secs): user=<",
    "Nov 21 10:33:11 mx1 dovecot: auth: passwd-file(",
    "Nov 21 10:33:20 mx1 dovecot[812]: auth(",
    "Nov 21 11:34:26 auth: Info: passwd-file(",
    "Nov 21 10:16:40 mx1 postfix/smtpd[48390]: NOQUEUE: reject: RCPT from unknown[198.51.100.23]: 550 5.1.1 <",
    "Nov 21 10:20:33 mx1 postfix/postscreen[1021]: PREGREET 11 after 0.21 from [198.51.100.77]:50112: ",
    '{"__REALTIME_TIMESTAMP":"1763720102318842","SYSLOG_IDENTIFIER":"dovecot","MESSAGE":"imap-login: Login: user=<',
    "<20>1 2025-11-21T10:15:02.318842+00:00 mx1 postfix/submission/smtpd 48211 - [",
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PREFIXES), st.text(max_size=200), st.integers(min_value=0, max_value=400))
def test_fuzz_truncated_and_extended_lines(prefix: str, tail: str, cut: int) -> None:
    """Real prefixes followed by arbitrary text, and truncated anywhere: no crash, and any
    address found is never one that only the arbitrary tail could have supplied."""
    parser = LineParser(ParsingSettings(timezone="UTC"))
    parser.parse((prefix + tail)[:cut])
    parser.parse(prefix + tail)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes_never_raise(data: bytes) -> None:
    parser = LineParser(ParsingSettings(timezone="UTC"))
    parser.parse(data.decode("utf-8", "replace"))
    parser.parse("Nov 21 10:15:08 mx1 postfix/smtpd[1]: " + data.decode("latin-1"))


def test_parse_block_matches_parse_at() -> None:
    for path in all_files():
        conf, samples = load(path)
        a = LineParser(ParsingSettings(**conf), now=REFERENCE_NOW)
        b = LineParser(ParsingSettings(**conf), now=REFERENCE_NOW)
        lines = [s.line for s in samples]
        expected = [e for i, line in enumerate(lines, 1) if (e := a.parse_at(line, "f", i))]
        got = b.parse_block(lines, "f", 1)
        assert got == expected, path.name
        assert [e.origin for e in got] == [e.origin for e in expected]
        assert a.stats == b.stats, path.name
        c = LineParser(ParsingSettings(**conf), now=REFERENCE_NOW)
        bare = c.parse_block(lines, "f", 1, origins=False)
        assert [e.kind for e in bare] == [e.kind for e in expected]


_STAMPS = (
    "Nov 21 10:15:08",
    "Nov  1 09:04:17",
    "2026-11-21T10:15:08.123456+00:00",
    "Nov 21 10:15:",
)
_HOSTS = ("mx1", "", "auth:", "mx1:", "authhost", "a b", "[mx1]")
_TAGS = (
    "postfix/smtpd[12]:",
    "postfix/submission/smtpd[7]:",
    "postfix/postscreen[3]:",
    "postfix/anvil[9]:",
    "dovecot:",
    "dovecot[5]:",
    "[postfix/smtpd]:",
    "postfix/smtpd[:",
    "postfix/smtpd",
    "imap-login:",
    "x:",
    ":",
)
_MESSAGES = (
    "connect from unknown[198.51.100.7]",
    "disconnect from unknown[198.51.100.7] ehlo=1 auth=0/1 commands=1/2",
    "warning: unknown[198.51.100.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
    "PREGREET 11 after 0.1 from [198.51.100.7]:4242: EHLO x\\r\\n",
    "auth: passwd-file(bob,198.51.100.7,<abc>): Password mismatch",
    "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<bob>, "
    "method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, session=<abc>",
    "statistics: max connection rate 1/60s for (smtp:198.51.100.7) at Nov 21 10:15:08",
    "",
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(_STAMPS),
    st.sampled_from(_HOSTS),
    st.sampled_from(_TAGS),
    st.sampled_from(_MESSAGES),
    st.sampled_from((" ", "  ")),
)
def test_parse_block_envelope_cut_matches_parse_at(
    stamp: str, host: str, tag: str, message: str, gap: str
) -> None:
    """The bulk path cuts the envelope with find(); the general path with split(): any mix of
    odd hosts, tags and spacing must give the same event, rule and counters."""
    line = f"{stamp}{gap}{host} {tag} {message}"
    a = LineParser(ParsingSettings(timezone="UTC"), now=REFERENCE_NOW)
    b = LineParser(ParsingSettings(timezone="UTC"), now=REFERENCE_NOW)
    expected = a.parse_at(line, "f", 1)
    got = b.parse_block([line], "f", 1)
    assert got == ([] if expected is None else [expected])
    assert a.last_rule == b.last_rule
    assert a.stats == b.stats
    c = LineParser(ParsingSettings(timezone="UTC"), now=REFERENCE_NOW)
    general = c.parse(line, Origin("f", 1))
    assert general == expected
    assert c.last_rule == a.last_rule


_SECONDS = ("08", "09", "59", "60", "61", "0x", " 5", "5 ", "+1", "\u0663\u0663", "-1")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(("Nov 21 10:15", "Nov 21 10:16", "Dec 31 23:59", "Jan  1 00:00")),
            st.sampled_from(_SECONDS),
            st.sampled_from(_MESSAGES[:5]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_parse_block_minute_reuse_matches_parse_at(
    parts: list[tuple[str, str, str]],
) -> None:
    """The bulk path reuses the previous line's minute and reads the seconds digit by digit:
    runs of one minute, odd second fields and a year rollover must read as ``parse_at`` does."""
    lines = [f"{minute}:{sec} mx1 postfix/smtpd[12]: {msg}" for minute, sec, msg in parts]
    a = LineParser(ParsingSettings(timezone="Europe/Berlin"), now=REFERENCE_NOW)
    b = LineParser(ParsingSettings(timezone="Europe/Berlin"), now=REFERENCE_NOW)
    expected = [e for n, line in enumerate(lines, 1) if (e := a.parse_at(line, "f", n))]
    assert b.parse_block(lines, "f", 1) == expected
    assert a.stats == b.stats
