from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from tests.conftest import shared_file
from tests.notify.helpers import MemoryGeo, ban, fail, ok

from mailward.config.model import AlertSettings
from mailward.decisions.model import Action, Decision
from mailward.detectors.safety import CircuitBreaker
from mailward.events import AuthFailure, Connection, Event, Service, normalise_ip
from mailward.notify.alerts import AttackRules, SqliteLocations, prefix_of
from mailward.notify.model import Alert, Severity

MONDAY = datetime(2026, 1, 5, tzinfo=UTC).timestamp()


def rhythm(ts: float) -> float:
    """Attempts per hour on an ordinary server: busy office hours, quiet nights and weekends."""
    d = datetime.fromtimestamp(ts, UTC)
    if d.hour < 7 or d.hour >= 22:
        return 2.0
    return 12.0 if d.weekday() < 5 else 4.0


def quiet_month(seed: int, days: int = 30) -> list[Event]:
    rnd = random.Random(seed)
    out: list[Event] = []
    t = MONDAY
    while t < MONDAY + days * 86400:
        t += rnd.expovariate(rhythm(t) / 3600)
        out.append(
            fail(
                t,
                f"198.51.{rnd.randrange(0, 255)}.{rnd.randrange(1, 255)}",
                f"u{rnd.randrange(500)}",
            )
        )
    return out


def replay(rules: AttackRules, events: list[Event], step: float = 60.0) -> list[Alert]:
    alerts: list[Alert] = []
    events = sorted(events, key=lambda e: e.ts)
    nxt = events[0].ts
    for ev in events:
        while nxt <= ev.ts:
            alerts += rules.tick(nxt)
            nxt += step
        alerts += rules.observe(ev, ev.ts)
    for _ in range(120):
        alerts += rules.tick(nxt)
        nxt += step
    return alerts


def the_real_spike(start: float) -> list[Event]:
    """Two hosts, ~100 attempts each in 40 minutes: the incident from the issue."""
    return [
        fail(start + i * 24 + j * 7, ip)
        for i in range(100)
        for j, ip in enumerate(("203.0.113.5", "203.0.113.9"))
    ]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quiet_month_with_daily_and_weekly_rhythm_fires_nothing(seed: int) -> None:
    rules = AttackRules(AlertSettings(), tz=UTC)
    assert replay(rules, quiet_month(seed)) == []


@pytest.mark.slow
def test_replayed_spike_fires_exactly_one_alert_with_sources_and_baseline() -> None:
    rules = AttackRules(AlertSettings(), tz=UTC)
    spike_at = MONDAY + 22 * 86400 + 3 * 3600 + 600  # a Tuesday night, 03:10
    events = quiet_month(7, days=24) + the_real_spike(spike_at)
    alerts = replay(rules, events)
    assert [a.kind for a in alerts] == ["login_spike"]
    alert = alerts[0]
    assert spike_at <= alert.ts <= spike_at + 40 * 60  # fires during the attack, not after
    assert set(alert.facts["sources"]) >= {"203.0.113.5", "203.0.113.9"}
    assert alert.facts["basis"] == "hour of week"
    assert alert.facts["expected"] < 5
    text = "\n".join(alert.details)
    assert "NOT banned" in text  # the real incident: the banning daemon had stopped


def test_spike_alert_says_what_mailward_did() -> None:
    rules = AttackRules(AlertSettings(), tz=UTC)
    rules.spike.seed((MONDAY + h * 3600, 1) for h in range(48))
    start = MONDAY + 48 * 3600
    rules.decide(ban(start, "203.0.113.5", "rate_limit"), start)
    alerts = replay(rules, the_real_spike(start))
    assert len(alerts) == 1
    text = "\n".join(alerts[0].details)
    assert re.search(r"203\.0\.113\.5 \(\d+\): banned at .* by rule rate_limit", text)
    assert re.search(r"203\.0\.113\.9 \(\d+\): NOT banned", text)


def test_no_spike_alert_while_warming_up() -> None:
    rules = AttackRules(AlertSettings(), tz=UTC)
    assert replay(rules, the_real_spike(MONDAY)) == []


def test_distributed_attack_fires_once_per_episode_and_mentions_protection() -> None:
    s = AlertSettings(distributed_min_ips=10)
    rules = AttackRules(s, tz=UTC)
    out = []
    for i in range(40):
        out += rules.observe(fail(MONDAY + i, f"192.0.2.{i + 1}", "info@example.org"), MONDAY + i)
    assert [a.kind for a in out] == ["distributed_attack"]
    assert out[0].facts == {"username": "info@example.org", "ips": 10, "prefixes": 1}
    # The engine's PROTECT_USER decision for the same episode does not alert twice...
    protect = Decision(
        ts=MONDAY + 50,
        target="user:info@example.org",
        action=Action.PROTECT_USER,
        rule="distributed",
        until=MONDAY + 7200,
    )
    assert rules.decide(protect, MONDAY + 50) == []
    # ...but after the episode ends, a new campaign alerts again and names the protection.
    later = MONDAY + 3 * 3600
    rules.tick(later)
    again = []
    for i in range(12):
        again += rules.observe(
            fail(later + i, f"198.51.100.{i + 1}", "info@example.org"), later + i
        )
    assert len(again) == 1


def test_protect_user_decision_alone_alerts() -> None:
    rules = AttackRules(AlertSettings(), tz=UTC)
    protect = Decision(
        ts=MONDAY,
        target="user:bob",
        action=Action.PROTECT_USER,
        rule="distributed",
        until=MONDAY + 3600,
    )
    [alert] = rules.decide(protect, MONDAY)
    assert alert.kind == "distributed_attack"
    assert "protects 'bob'" in "\n".join(alert.details)


def test_ban_storm_and_circuit_breaker() -> None:
    rules = AttackRules(AlertSettings(ban_storm_per_minute=30), tz=UTC)
    out = []
    for i in range(100):
        out += rules.decide(ban(MONDAY + i * 0.5, f"192.0.2.{i % 250 + 1}"), MONDAY + i * 0.5)
    assert [a.kind for a in out] == ["ban_storm"]
    assert out[0].facts["bans_per_minute"] == 30
    quiet = AttackRules(AlertSettings(), tz=UTC)
    tripped = quiet.decide(ban(MONDAY, "192.0.2.1", rule="circuit_breaker"), MONDAY)
    assert tripped and tripped[0].facts["circuit_breaker"] is True


def test_success_after_failures_is_a_critical_possible_breach() -> None:
    rules = AttackRules(AlertSettings(breach_min_failures=5), tz=UTC)
    for i in range(6):
        assert rules.observe(fail(MONDAY + i, "203.0.113.7", "alice"), MONDAY + i) == []
    [alert] = rules.observe(ok(MONDAY + 60, "203.0.113.7", "alice"), MONDAY + 60)
    assert alert.severity is Severity.CRITICAL
    assert alert.kind == "possible_breach"
    assert alert.facts["failures"] == 6
    assert "change the password of 'alice'" in "\n".join(alert.details)


def test_success_after_failures_from_the_same_prefix() -> None:
    rules = AttackRules(AlertSettings(breach_prefix_min_failures=20), tz=UTC)
    for i in range(25):
        rules.observe(fail(MONDAY + i, f"203.0.113.{i + 1}", "alice"), MONDAY + i)
    [alert] = rules.observe(ok(MONDAY + 60, "203.0.113.200", "alice"), MONDAY + 60)
    assert alert.facts["scope"] == "203.0.113.0/24"
    # Unrelated address, old failures: nothing.
    assert rules.observe(ok(MONDAY + 60, "198.51.100.1", "alice"), MONDAY + 60) == []
    assert rules.observe(ok(MONDAY + 2 * 86400, "203.0.113.201", "alice"), MONDAY + 2 * 86400) == []


def test_ordinary_logins_do_not_alert() -> None:
    rules = AttackRules(AlertSettings(), tz=UTC)
    rules.observe(fail(MONDAY, "203.0.113.7", "alice"), MONDAY)
    assert rules.observe(ok(MONDAY + 5, "203.0.113.7", "alice"), MONDAY + 5) == []


def test_new_country_or_asn_for_an_account_persists_across_restarts(tmp_path: Path) -> None:
    geo = MemoryGeo(
        {"81.2.69.160": ("GB", 100), "81.2.69.161": ("GB", 200), "89.160.20.112": ("SE", 300)}
    )
    db = tmp_path / "notify.db"
    rules = AttackRules(AlertSettings(), tz=UTC, geo=geo, locations=SqliteLocations(db))
    assert rules.observe(ok(MONDAY, "81.2.69.160"), MONDAY) == []  # first login: learnt
    assert rules.observe(ok(MONDAY + 1, "81.2.69.160"), MONDAY + 1) == []
    # After a restart the account's history is still there.
    rules = AttackRules(AlertSettings(), tz=UTC, geo=geo, locations=SqliteLocations(db))
    [asn_alert] = rules.observe(ok(MONDAY + 2, "81.2.69.161"), MONDAY + 2)
    assert asn_alert.kind == "new_location" and "AS200" in asn_alert.details[0]
    [country_alert] = rules.observe(ok(MONDAY + 3, "89.160.20.112"), MONDAY + 3)
    assert "country SE (seen before: GB)" in country_alert.details[0]
    assert rules.observe(ok(MONDAY + 4, "89.160.20.112"), MONDAY + 4) == []
    # Private addresses (webmail on the LAN) are never looked up.
    assert rules.observe(ok(MONDAY + 5, "10.0.0.8"), MONDAY + 5) == []


def test_prefix_of() -> None:
    assert prefix_of(normalise_ip("192.0.2.77")) == "192.0.2.0/24"
    assert prefix_of(normalise_ip("2001:db8:1:2:3::4")) == "2001:db8:1:2::/64"


# -- the real 3-day Postfix log ---------------------------------------------------------------

_LINE = re.compile(
    r"^(\S+) \S+ postfix/(submission/)?smtpd\[\d+\]: (connect|disconnect) from "
    r"[^\[\s]*\[([0-9a-fA-F.:]+)\](.*)$"
)


def _real_events(path: Path) -> list[Event]:
    """A minimal line filter (the real parsers live in mailward.parsers): submission connects,
    and ``auth=ok/total`` disconnect counters as failed login attempts."""
    out: list[Event] = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = _LINE.match(line)
            if not m:
                continue
            ts = datetime.fromisoformat(m[1]).timestamp()
            svc = Service.SUBMISSION if m[2] else Service.SMTP
            ip = normalise_ip(m[4])
            if m[3] == "connect" and m[2]:
                out.append(Connection(ts=ts, service=svc, ip=ip))
            elif m[3] == "disconnect" and (a := re.search(r" auth=(\d+)/(\d+)", m[5])):
                if int(a[2]) > int(a[1]):
                    out.append(
                        AuthFailure(
                            ts=ts,
                            service=svc,
                            ip=ip,
                            username=None,
                            attempts=int(a[2]) - int(a[1]),
                            summary=True,
                        )
                    )
    return out


@pytest.mark.shared
def test_real_postfix_log_spikes_point_at_confirmed_bursts() -> None:
    """postfix-logsums/test/mail.log (3 days, host helga, +01:00). Confirmed bursts, by grep:

    * 2023-03-15 18:00-22:00 local: 491 submission connections from 200123004113.gtdperu.pe
      [200.123.4.113] (43 in the 18h, 10 in the 19h, 223 in the 20h, 225 in the 21h), each trying
      MAIL without AUTH (``mail=0/1``): two bursts separated by a lull.
    * failed AUTH (``auth=0/1``): only 23 attempts in 3 days, in clumps of at most 5 from
      176.111.173.47: below ``spike_min_count``, so no login spike may fire.
    """
    log = shared_file("postfix-logsums/test/mail.log")
    events = _real_events(log)
    tz = timezone(timedelta(hours=1))

    logins = replay(
        AttackRules(AlertSettings(), tz=tz), [e for e in events if e.kind == "auth_failure"]
    )
    assert logins == []

    conns = [e for e in events if e.kind == "connection"]
    alerts = replay(AttackRules(AlertSettings(spike_kinds=["connection"]), tz=tz), conns)
    assert len(alerts) == 2  # the 18h burst, and the 20-21h burst after the lull
    raw = log.read_text(encoding="utf-8", errors="replace").splitlines()
    for alert in alerts:
        top = max(alert.facts["sources"], key=alert.facts["sources"].get)
        assert top == "200.123.4.113"
        start, end = alert.facts["window_start"], alert.facts["window_end"]
        local_end = datetime.fromtimestamp(end, tz)
        assert (
            datetime(2023, 3, 15, 18, tzinfo=tz)
            <= local_end
            <= datetime(2023, 3, 15, 22, tzinfo=tz)
        )
        # Confirm in the raw log: the burst is there, from that host, within the alert's window.
        in_window = [
            line
            for line in raw
            if "postfix/submission/smtpd" in line
            and " connect from 200123004113.gtdperu.pe[200.123.4.113]" in line
            and start <= datetime.fromisoformat(line.split(" ", 1)[0]).timestamp() <= end
        ]
        assert len(in_window) >= alert.facts["sources"]["200.123.4.113"] >= 25


def test_engine_circuit_breaker_signals_alert() -> None:
    breaker = CircuitBreaker(limit=5)
    for i in range(8):
        breaker.allow(MONDAY + i)
    rules = AttackRules(AlertSettings(), tz=UTC)
    [opened] = [a for s in breaker.take_signals() for a in rules.circuit(s, MONDAY + 8)]
    assert opened.severity is Severity.CRITICAL and "STOPPED new bans" in opened.title
    assert opened.facts == {"bans_per_minute": 5, "limit": 5, "circuit_breaker": True}
    breaker.poll(MONDAY + 200)
    [closed] = [a for s in breaker.take_signals() for a in rules.circuit(s, MONDAY + 200)]
    assert closed.kind == "ban_storm_over" and "3 bans were" in closed.title
