from dataclasses import replace

from mailward.daemon.dedupe import ReportDedupe
from mailward.events import AuthFailure, AuthSuccess, Connection, Origin, Service, normalise_ip

REPORT = Origin("dovecot-policy")
LOG = Origin("/var/log/mail.log", 1)


def fail(ts: float, origin: Origin, ip: str = "203.0.113.5", user: str = "Bob") -> AuthFailure:
    return AuthFailure(
        ts=ts, service=Service.IMAP, ip=normalise_ip(ip), origin=origin, username=user
    )


def test_report_first_then_log_line_is_counted_once() -> None:
    d = ReportDedupe()
    assert d.admit([fail(100.0, REPORT)], 100.0) == [fail(100.0, REPORT)]
    assert d.admit([fail(101.0, LOG, user="bob")], 102.0) == []  # username case ignored
    assert d.dropped == 1 and d.pending == 0
    # the next attempt is a new one
    assert len(d.admit([fail(103.0, LOG)], 104.0)) == 1


def test_log_line_first_then_report_is_counted_once() -> None:
    d = ReportDedupe()
    assert len(d.admit([fail(100.0, LOG)], 100.0)) == 1
    assert d.admit([fail(100.5, REPORT)], 100.5) == []


def test_same_side_never_matches_and_unmatched_events_pass() -> None:
    d = ReportDedupe()
    two_reports = [fail(100.0, REPORT), fail(100.1, REPORT)]
    assert d.admit(two_reports, 100.1) == two_reports  # two attempts
    other_ip = fail(100.2, LOG, ip="203.0.113.6")
    other_user = fail(100.2, LOG, user="alice")
    success = AuthSuccess(
        ts=100.2, service=Service.IMAP, ip=normalise_ip("203.0.113.5"), origin=LOG, username="bob"
    )
    conn = Connection(ts=100.2, service=Service.SMTP, ip=normalise_ip("203.0.113.5"), origin=LOG)
    assert d.admit([other_ip, other_user, success, conn], 100.2) == [
        other_ip,
        other_user,
        success,
        conn,
    ]
    # the two report credits are still there for their two log lines
    assert d.admit([fail(101.0, LOG), fail(101.0, LOG), fail(101.0, LOG)], 101.0) == [
        fail(101.0, LOG)
    ]


def test_outside_the_window_both_count() -> None:
    d = ReportDedupe(window=60.0, lag=0.0)
    d.admit([fail(100.0, REPORT)], 100.0)
    assert len(d.admit([fail(200.0, LOG)], 200.0)) == 1  # expired by wall time
    d2 = ReportDedupe(window=60.0, lag=1000.0)
    d2.admit([fail(100.0, REPORT)], 100.0)
    assert len(d2.admit([fail(200.0, LOG)], 200.0)) == 1  # too far apart in event time
    assert d2.expired == 1


def test_summary_line_consumes_what_it_can() -> None:
    d = ReportDedupe()
    d.admit([fail(100.0, REPORT), fail(101.0, REPORT)], 101.0)
    summary = replace(fail(110.0, LOG), attempts=3, summary=True)
    [left] = d.admit([summary], 110.0)
    assert isinstance(left, AuthFailure) and left.attempts == 1 and left.summary
    assert d.dropped == 2


def test_memory_is_bounded() -> None:
    d = ReportDedupe(max_credits=1000)
    for i in range(20_000):
        d.admit([fail(100.0, REPORT, ip=f"10.0.{i >> 8 & 255}.{i & 255}")], 100.0)
    assert d.pending <= 1000
    assert d.status()["pending"] == d.pending
