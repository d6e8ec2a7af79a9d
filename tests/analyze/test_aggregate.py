from __future__ import annotations

from ipaddress import IPv4Network, ip_address

from mailward.analyze.aggregate import Aggregator, prefix_of
from mailward.events import (
    AuthFailure,
    AuthSuccess,
    Connection,
    FailReason,
    Service,
    UnknownRecipient,
)

T0 = 1_790_000_000.0  # a fixed UTC instant, minute-aligned
T0 -= T0 % 3600


def fail(ts: float, ip: str, user: str | None = "admin", n: int = 1) -> AuthFailure:
    return AuthFailure(
        ts=ts,
        service=Service.SUBMISSION,
        ip=ip_address(ip),
        username=user,
        reason=FailReason.BAD_PASSWORD,
        attempts=n,
    )


def test_totals_kinds_and_span() -> None:
    agg = Aggregator()
    agg.add(fail(T0 + 10, "198.51.100.1"))
    agg.add(fail(T0 + 20, "198.51.100.1", n=3))
    agg.add(Connection(ts=T0 + 5, service=Service.SMTP, ip=ip_address("203.0.113.9")))
    agg.add(
        UnknownRecipient(
            ts=T0 + 30, service=Service.SMTP, ip=ip_address("203.0.113.9"), recipient="X@ex.org"
        )
    )
    agg.finish()
    assert agg.attempts == 4
    assert agg.kinds == {"auth_failure": 2, "connection": 1, "unknown_recipient": 1}
    assert (agg.first_ts, agg.last_ts) == (T0 + 5, T0 + 30)
    assert agg.ip_attempts() == {ip_address("198.51.100.1"): 4}
    assert agg.ip_probes() == {ip_address("203.0.113.9"): 1}
    assert agg.recipients.top(1) == [("x@ex.org", 1)]
    assert agg.reasons == {"bad_password": 4}


def test_hour_and_day_buckets_keep_attempts_distinct_addresses_and_top_talkers() -> None:
    agg = Aggregator()
    for i in range(100):
        agg.add(fail(T0 + i * 20, "203.0.113.7"))
    for i in range(30):
        agg.add(fail(T0 + i * 60, f"198.18.0.{i + 1}", user="info"))
    agg.add(fail(T0 + 7200, "203.0.113.7"))
    agg.add_all([])
    hour = agg.hours[int(T0) // 3600]
    assert hour.attempts == 130
    assert hour.distinct_ips == 31
    assert hour.top_ips[0] == (ip_address("203.0.113.7"), 100)
    assert hour.top_prefixes[0] == ("198.18.0.0/24", 30, 30)
    assert agg.hours[int(T0) // 3600 + 2].attempts == 1
    assert agg.days[int(T0) // 86400].attempts == 131
    assert agg.user_ips["info"].estimate() == 30


def test_rate_exceed_reports_peak_window_and_total_over_the_limit() -> None:
    agg = Aggregator(rate_limit_per_minute=3)
    # 7 in minute 0, 2 in minute 1, 5 in minute 3: two minutes over the limit.
    for s in (0, 5, 10, 15, 20, 25, 30, 65, 70, 180, 181, 182, 183, 184):
        agg.add(fail(T0 + s, "198.18.1.1"))
    for s in range(0, 600, 30):  # 2 a minute: under the limit
        agg.add(fail(T0 + s, "198.18.1.2"))
    agg.finish()
    (ex,) = agg.rate_exceeded()
    assert str(ex.ip) == "198.18.1.1"
    assert ex.peak_per_minute == 7
    assert ex.peak_minute == T0
    assert ex.first == T0 and ex.last == T0 + 180
    assert ex.minutes_over == 2
    assert ex.attempts_over == 12


def test_server_addresses_are_not_counted() -> None:
    agg = Aggregator(excluded=[IPv4Network("127.0.0.0/8")])
    agg.add(fail(T0, "127.0.0.1"))
    agg.add(fail(T0, "198.18.1.1"))
    agg.finish()
    assert agg.excluded_events == 1
    assert agg.ip_attempts() == {ip_address("198.18.1.1"): 1}
    assert agg.attempts == 1


def test_success_after_failures_is_remembered_with_the_username() -> None:
    agg = Aggregator()
    for i in range(20):
        agg.add(fail(T0 + i * 100, "198.18.9.9", user="office@example.org"))
    agg.add(
        AuthSuccess(
            ts=T0 + 5000,
            service=Service.IMAP,
            ip=ip_address("198.18.9.9"),
            username="office@example.org",
        )
    )
    agg.finish()
    assert agg.ip_successes() == {ip_address("198.18.9.9"): 1}
    assert agg.success_usernames(ip_address("198.18.9.9")) == {"office@example.org"}


def test_events_without_address_still_count() -> None:
    agg = Aggregator()
    agg.add(AuthFailure(ts=T0, service=Service.IMAP, ip=None, username="bob"))
    agg.finish()
    assert agg.attempts == 1 and agg.no_ip_attempts == 1
    assert agg.usernames.top(1) == [("bob", 1)]


def test_late_events_for_a_summarised_hour_count_and_mark_it_approximate() -> None:
    agg = Aggregator()
    agg.add(fail(T0, "198.18.1.1"))
    for h in range(1, 40):
        agg.add(fail(T0 + h * 3600, "198.18.1.2"))
    agg.add(fail(T0 + 10, "198.18.1.3"))  # 39 hours late
    agg.finish()
    first = agg.hours[int(T0) // 3600]
    assert first.attempts == 2
    assert first.approximate
    assert agg.approximate


def test_ip_table_is_bounded_and_pruning_keeps_the_heavy_hitters() -> None:
    agg = Aggregator(max_ips=1000)
    for _ in range(50):
        agg.add(fail(T0, "203.0.113.50"))
    for i in range(5000):
        agg.add(fail(T0 + i, f"198.18.{i // 250}.{i % 250}"))
    agg.finish()
    table = agg.ip_attempts()
    assert len(table) <= 1000
    assert table[ip_address("203.0.113.50")] == 50
    assert agg.approximate


def test_prefix_of() -> None:
    assert prefix_of(ip_address("198.18.3.77")) == "198.18.3.0/24"
    assert prefix_of(ip_address("2001:db8:bad:7:1:2:3:4")) == "2001:db8:bad:7::/64"
