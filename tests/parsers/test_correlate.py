"""Each login attempt is counted exactly once (docs/events.md, "Correlation")."""

from __future__ import annotations

from mailward.config.model import ParsingSettings
from mailward.events import AuthFailure, AuthSuccess, Event
from mailward.parsers.correlate import Correlator
from mailward.parsers.line import LineParser

NOW = 1764460800.0  # 2025-11-30


def run(lines: list[str], **kw: float) -> list[Event]:
    parser = LineParser(ParsingSettings(timezone="UTC"), now=NOW)
    corr = Correlator(**kw)
    out: list[Event] = []
    for line in lines:
        ev = parser.parse(line)
        if ev is not None:
            out.extend(corr.push(ev))
    out.extend(corr.flush())
    return out


def attempts(events: list[Event]) -> int:
    return sum(e.attempts for e in events if isinstance(e, AuthFailure))


SMTPD = "Nov 21 10:15:0{s} mx1 postfix/submission/smtpd[100]: "


def test_sasl_lines_win_over_disconnect_counter() -> None:
    lines = [
        SMTPD.format(s=0) + "connect from unknown[192.0.2.1]",
        SMTPD.format(s=1)
        + "warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x, sasl_username=a",
        SMTPD.format(s=2)
        + "warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x, sasl_username=b",
        SMTPD.format(s=3) + "disconnect from unknown[192.0.2.1] ehlo=1 auth=0/2 commands=1/3",
    ]
    out = run(lines)
    assert attempts(out) == 2
    assert [e.username for e in out if isinstance(e, AuthFailure)] == ["a", "b"]


def test_disconnect_counter_alone_counts() -> None:
    lines = [
        SMTPD.format(s=0) + "connect from unknown[192.0.2.1]",
        SMTPD.format(s=3) + "disconnect from unknown[192.0.2.1] ehlo=1 auth=0/3 commands=1/4",
    ]
    out = run(lines)
    fails = [e for e in out if isinstance(e, AuthFailure)]
    assert len(fails) == 1 and fails[0].attempts == 3 and fails[0].summary
    assert fails[0].username is None and str(fails[0].ip) == "192.0.2.1"
    assert [e.kind for e in out] == ["connection", "auth_failure", "disconnect"]


def test_auth_server_lost_is_not_an_attack() -> None:
    lines = [
        SMTPD.format(s=0) + "connect from unknown[192.0.2.1]",
        SMTPD.format(s=1)
        + "warning: unknown[192.0.2.1]: SASL PLAIN authentication failed: Connection lost to authentication server, sasl_username=(unavailable)",
        SMTPD.format(s=2) + "lost connection after AUTH from unknown[192.0.2.1]",
        SMTPD.format(s=3) + "disconnect from unknown[192.0.2.1] ehlo=1 auth=0/1 commands=1/2",
    ]
    out = run(lines)
    assert attempts(out) == 0
    assert "auth_error" not in {e.kind for e in out}
    assert [e.kind for e in out] == ["connection", "lost_connection", "disconnect"]


def test_sessions_do_not_leak_between_connections() -> None:
    lines = [
        SMTPD.format(s=0) + "connect from unknown[192.0.2.1]",
        SMTPD.format(s=1) + "warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x",
        SMTPD.format(s=2) + "disconnect from unknown[192.0.2.1] auth=0/1 commands=1/2",
        SMTPD.format(s=3) + "connect from unknown[192.0.2.2]",
        SMTPD.format(s=4) + "disconnect from unknown[192.0.2.2] auth=0/1 commands=1/2",
    ]
    out = run(lines)
    fails = [e for e in out if isinstance(e, AuthFailure)]
    assert [(str(e.ip), e.summary) for e in fails] == [("192.0.2.1", False), ("192.0.2.2", True)]


def test_smtp_success_once_per_session() -> None:
    lines = [
        SMTPD.format(s=0) + "connect from unknown[192.0.2.1]",
        SMTPD.format(s=1) + "AAA: client=unknown[192.0.2.1], sasl_method=PLAIN, sasl_username=bob",
        SMTPD.format(s=2) + "BBB: client=unknown[192.0.2.1], sasl_method=PLAIN, sasl_username=bob",
        SMTPD.format(s=3) + "disconnect from unknown[192.0.2.1] ehlo=1 auth=1 mail=2 commands=4",
        SMTPD.format(s=4) + "connect from unknown[192.0.2.2]",
        SMTPD.format(s=5) + "disconnect from unknown[192.0.2.2] ehlo=1 auth=1 quit=1 commands=3",
    ]
    out = run(lines)
    ok = [e for e in out if isinstance(e, AuthSuccess)]
    assert [(str(e.ip), e.username) for e in ok] == [("192.0.2.1", "bob"), ("192.0.2.2", None)]


DOVE = "Nov 21 10:20:{s:02d} mx1 dovecot: "


def test_dovecot_per_attempt_lines_win_over_summary() -> None:
    lines = [
        DOVE.format(s=1) + "auth: passwd-file(alice,192.0.2.9,<S1>): Password mismatch",
        DOVE.format(s=5) + "auth: passwd-file(alice,192.0.2.9,<S1>): Password mismatch",
        DOVE.format(s=9) + "auth: passwd-file(alice,192.0.2.9,<S1>): unknown user",
        DOVE.format(s=10)
        + "imap-login: Disconnected: Connection closed (auth failed, 3 attempts in 14 secs): user=<alice>, method=PLAIN, rip=192.0.2.9, lip=192.0.2.10, session=<S1>",
    ]
    out = run(lines)
    assert attempts(out) == 3
    assert all(not e.summary for e in out if isinstance(e, AuthFailure))


def test_dovecot_summary_alone_counts_n() -> None:
    lines = [
        DOVE.format(s=10)
        + "imap-login: Disconnected (auth failed, 4 attempts in 14 secs): user=<alice>, method=PLAIN, rip=192.0.2.9, lip=192.0.2.10, session=<S2>",
    ]
    assert attempts(run(lines)) == 4


def test_dovecot_24_duplicate_is_counted_once() -> None:
    lines = [
        "Nov 21 10:33:20 mx1 dovecot[812]: auth(bob@example.org,203.0.113.45,sasl:plain)<S3>: Info: sql: Password mismatch",
        "Nov 21 10:33:20 mx1 dovecot[812]: auth-worker(bob@example.org,203.0.113.45)<5123><S3>: request [7]: Info: sql: Password mismatch",
        "Nov 21 10:33:25 mx1 dovecot[812]: imap-login: Login aborted: Connection closed (auth failed, 1 attempts in 5 secs) (auth_failed): user=<bob@example.org>, method=PLAIN, rip=203.0.113.45, lip=192.0.2.10, TLS, session=<S3>",
    ]
    assert attempts(run(lines)) == 1


def test_smtp_auth_through_dovecot_sasl_counted_once_with_reason() -> None:
    lines = [
        "Nov 21 11:34:18 mx1 dovecot: auth: passwd-file(bob,192.0.2.21): Password mismatch",
        "Nov 21 11:34:19 mx1 dovecot: auth: passwd-file(nosuchuser,192.0.2.22): unknown user",
        "Nov 21 11:34:19 mx1 postfix/smtpd[1]: warning: unknown[192.0.2.21]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=bob",
        "Nov 21 11:34:20 mx1 postfix/smtpd[1]: warning: unknown[192.0.2.22]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=nosuchuser",
    ]
    out = run(lines)
    fails = [e for e in out if isinstance(e, AuthFailure)]
    assert [(str(e.ip), e.service.value, e.reason.value) for e in fails] == [
        ("192.0.2.21", "smtp", "bad_password"),
        ("192.0.2.22", "smtp", "unknown_user"),
    ]


def test_unmatched_sessionless_passdb_line_is_counted_after_the_window() -> None:
    lines = [
        "Nov 21 11:34:18 mx1 dovecot: auth: passwd-file(bob,192.0.2.21): Password mismatch",
        "Nov 21 11:34:40 mx1 postfix/smtpd[1]: connect from unknown[192.0.2.99]",
    ]
    out = run(lines)
    assert [e.kind for e in out] == ["auth_failure", "connection"]
    # ... and at the end of input by flush()
    out = run(lines[:1])
    assert [e.kind for e in out] == ["auth_failure"]


def test_postfix_first_then_passdb_is_one_attempt() -> None:
    lines = [
        "Nov 21 11:34:19 mx1 postfix/smtpd[1]: warning: unknown[192.0.2.21]: SASL PLAIN authentication failed: x, sasl_username=bob",
        "Nov 21 11:34:20 mx1 dovecot: auth: passwd-file(bob,192.0.2.21): Password mismatch",
    ]
    assert attempts(run(lines)) == 1


def test_memory_is_bounded() -> None:
    parser = LineParser(ParsingSettings(timezone="UTC"), now=NOW)
    corr = Correlator(session_ttl=60, max_sessions=1000)
    for i in range(20000):
        line = f"Nov 21 10:{i // 600 % 60:02d}:{i // 10 % 60:02d} mx1 postfix/smtpd[{i}]: connect from unknown[192.0.2.{i % 250}]"
        ev = parser.parse(line)
        assert ev is not None
        corr.push(ev)
    assert corr.open_sessions <= 1000 + 4096


def test_tick_releases_held_lines_on_a_quiet_log() -> None:
    parser = LineParser(ParsingSettings(timezone="UTC"), now=NOW)
    corr = Correlator(hold=10)
    ev = parser.parse(
        "Nov 21 11:34:18 mx1 dovecot: auth: passwd-file(bob,192.0.2.21): Password mismatch"
    )
    assert ev is not None
    assert corr.push(ev) == []
    assert corr.tick(ev.ts + 5) == []
    assert corr.tick(ev.ts + 11) == [ev]
    assert corr.flush() == []


def test_push_many_equals_push() -> None:
    from tests.parsers.golden import all_files, load

    events: list[Event] = []
    for path in all_files():
        conf, samples = load(path)
        parser = LineParser(ParsingSettings(**conf), now=NOW)
        events += [e for s in samples if (e := parser.parse(s.line))]
    a, b = Correlator(), Correlator()
    one = [out for e in events for out in a.push(e)] + a.flush()
    many = b.push_many(events) + b.flush()
    assert one == many and len(one) > 20
