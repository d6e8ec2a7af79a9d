"""Attack scenarios from issue 3, replayed through the engine on a synthetic clock.

Each scenario runs through ``Replay``: before an attempt reaches the detectors it is asked the
in-line question, so what a ban would have stopped never feeds the counters (as in real life).
"""

from __future__ import annotations

import random
from collections import Counter
from ipaddress import IPv4Address, IPv6Address, ip_address

from mailward.config.model import DetectorSettings
from mailward.decisions.model import Action
from mailward.detectors.engine import Engine
from mailward.detectors.replay import Replay
from mailward.events import AuthFailure, AuthSuccess, Event, FailReason, Service

T0 = 1_763_700_000.0  # 2025-11-21


def failure(
    ip: str, user: str | None, ts: float, reason: FailReason = FailReason.BAD_PASSWORD
) -> AuthFailure:
    return AuthFailure(ts=ts, service=Service.IMAP, ip=ip_address(ip), username=user, reason=reason)


def success(ip: str, user: str, ts: float) -> AuthSuccess:
    return AuthSuccess(ts=ts, service=Service.IMAP, ip=ip_address(ip), username=user)


def engine() -> Engine:
    return Engine(DetectorSettings(), server_addresses=[])


def botnet_ips(n: int, seed: int = 7) -> list[str]:
    """n addresses in n distinct /24s, so per-prefix rules cannot do the work."""
    rng = random.Random(seed)
    prefixes = rng.sample(range(1 << 24), n)
    return [str(IPv4Address((p << 8) | rng.randrange(1, 255))) for p in prefixes]


def test_rotating_botnet_against_one_username_is_caught() -> None:
    eng = engine()
    run = Replay(eng)
    # The real owner logs in from home and the office before the attack.
    run.feed(success("192.0.2.10", "alice@example.org", T0 - 3600))
    ips = botnet_ips(1000)
    t = T0
    for ip in ips:  # each address makes its 3 tries, under the per-IP rate, then rotates
        for _ in range(3):
            t += 7
            run.feed(failure(ip, "alice@example.org", t))
    protect = [d for d in run.decisions if d.action is Action.PROTECT_USER]
    assert protect and protect[0].target == "user:alice@example.org"
    assert protect[0].evidence["sources"] == 8
    bans = {d.target: d for d in run.decisions if d.action is Action.BAN}
    result = run.result()
    per_ip = {row["ip"]: row for row in result.attackers}
    # Every address that first appears after the attack is caught is refused in-line at its first
    # attempt and banned for that (the refusal is logged as a failed login): nothing gets through.
    late = [ip for ip in ips if per_ip[ip]["before"] == 0]
    assert len(late) >= 990
    for ip in late:
        assert bans[ip].rule == "user_under_attack"
        assert per_ip[ip]["after"] == 0 and per_ip[ip]["blocked"] == 3
    campaign = next(c for c in result.campaigns if c["campaign"] == "user:alice@example.org")
    assert campaign["attackers"] == 1000
    assert campaign["before"] <= 3 * 8
    assert campaign["after_first_ban"] == 0
    assert result.after_first_ban_total == 0
    assert run.legit_logins_blocked == 0
    # Meanwhile the owner still gets in from her known-good address, a new address does not.
    assert eng.check(ip_address("192.0.2.10"), "alice@example.org", t).allow
    assert not eng.check(ip_address("198.18.0.99"), "Alice@Example.org", t).allow
    # Every rejected attempt extended the protection: it lasts `protect` past the last attempt
    # (the ledger hears of extensions at most hourly, and never lags behind by more).
    protect = eng.settings.distributed.protect
    protection = eng.ledger.user("alice@example.org", t)
    assert protection is not None and protection.until is not None
    assert protection.until >= t + protect - 3600
    assert not eng.check(ip_address("198.18.0.99"), "alice@example.org", t + protect - 1).allow
    eng.expire(t + protect + 1)
    assert eng.check(ip_address("198.18.0.98"), "alice@example.org", t + 2 * protect).allow


def test_rotating_botnet_without_inline_policy_bans_at_first_failure() -> None:
    eng = engine()
    run = Replay(eng, inline=False)
    ips = botnet_ips(1000, seed=11)
    t = T0
    for ip in ips:
        for _ in range(3):
            t += 7
            run.feed(failure(ip, "bob", t))
    result = run.result()
    rules = Counter(d.rule for d in run.decisions if d.action is Action.BAN)
    assert rules["user_under_attack"] >= 990
    per_ip = {row["ip"]: row for row in result.attackers}
    banned_first = sum(1 for ip in ips[20:] if per_ip[ip]["before"] == 1)
    assert banned_first == len(ips) - 20


def test_slash24_sweep_bans_the_prefix() -> None:
    eng = engine()
    run = Replay(eng)
    t = T0
    users = [f"user{i}" for i in range(50)]
    for host in range(1, 255):
        t += 11
        run.feed(failure(f"203.0.113.{host}", users[host % 50], t))
    prefix = [d for d in run.decisions if d.target == "203.0.113.0/24"]
    assert len(prefix) == 1 and prefix[0].rule == "prefix"
    assert prefix[0].evidence["addresses"] == 5
    result = run.result()
    assert result.blocked == 254 - 5
    campaign = next(c for c in result.campaigns if c["campaign"] == "203.0.113.0/24")
    assert campaign["before"] == 5 and campaign["after_first_ban"] == 0
    assert not eng.check(ip_address("203.0.113.200"), None, t).allow


def test_ipv6_slash64_rotation_bans_the_prefix() -> None:
    eng = engine()
    run = Replay(eng)
    t = T0
    for i in range(40):
        t += 5
        run.feed(failure(f"2001:db8:7:1::{i + 1:x}", "carol", t))
    assert any(d.target == "2001:db8:7:1::/64" for d in run.decisions)
    assert not eng.check(IPv6Address("2001:db8:7:1:ffff::1"), None, t).allow
    assert eng.check(IPv6Address("2001:db8:7:2::1"), None, t).allow


def test_slow_attack_is_caught_and_escalated() -> None:
    eng = engine()
    run = Replay(eng)
    t = T0
    for i in range(2 * 24 * 6):  # one try every 10 minutes for 2 days
        run.feed(failure("198.51.100.77", f"guess{i % 40}", t))
        t += 600
    bans = [d for d in run.decisions if d.target == "198.51.100.77"]
    assert [d.rule for d in bans] == ["long_window", "long_window"]
    assert bans[0].offence == 1 and bans[0].until == bans[0].ts + 86400
    assert bans[1].offence == 2 and bans[1].until == bans[1].ts + 4 * 86400
    result = run.result()
    row = result.attackers[0]
    assert row["before"] == 12 and row["after"] == 12  # of 288 tries, 24 got through
    assert row["blocked"] == 288 - 24


def test_nat_office_with_stale_phone_is_not_banned() -> None:
    eng = engine()
    run = Replay(eng)
    office = "192.0.2.50"
    users = [f"staff{i}@example.org" for i in range(20)]
    rng = random.Random(3)
    # The office has used mail before: yesterday evening everyone's clients logged in.
    events: list[Event] = [success(office, user, T0 - 4 * 3600) for user in users]
    for day in range(3):
        base = T0 + day * 86400
        for user in users:
            for k in range(8):  # clients poll through the day
                events.append(
                    success(office, user, base + 8 * 3600 + k * 3600 + rng.randrange(600))
                )
            # one typo a day, fixed a minute later
            when = base + 9 * 3600 + rng.randrange(7 * 3600)
            events.append(failure(office, user, when))
            events.append(success(office, user, when + 60))
        # two users mistype three times in a row before getting it right
        for user in users[:2]:
            when = base + 14 * 3600 + rng.randrange(3600)
            events += [failure(office, user, when + i * 10) for i in range(3)]
            events.append(success(office, user, when + 40))
        # one phone still has the old password and retries every 15 minutes, all day
        events += [failure(office, users[5], base + i * 900 + 30) for i in range(96)]
    events.sort(key=lambda e: e.ts)
    for event in events:
        run.feed(event)
    assert [d for d in run.decisions if d.action is Action.BAN] == []
    assert run.legit_logins_blocked == 0
    assert eng.check(ip_address(office), users[0], T0 + 3 * 86400).allow


def test_attacker_behind_the_office_nat_is_still_stopped() -> None:
    eng = engine()
    run = Replay(eng)
    office = "192.0.2.50"
    run.feed(success(office, "staff1", T0))
    t = T0 + 60
    for i in range(40):  # a fast guessing run against other accounts from the same NAT
        t += 2
        run.feed(failure(office, f"admin{i % 3}", t))
    bans = [d for d in run.decisions if d.action is Action.BAN]
    assert bans and bans[0].target == office
    assert bans[0].evidence["limit"] == 9  # rate limit raised x3 for a known-good address
