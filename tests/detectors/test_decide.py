from __future__ import annotations

from ipaddress import ip_address, ip_network

from mailward.config.model import DetectorSettings
from mailward.decisions.ledger import Ledger
from mailward.decisions.model import Action
from mailward.detectors.base import Finding, Source
from mailward.detectors.decide import Decider
from mailward.detectors.history import MemoryHistory
from mailward.detectors.keys import ip_key, prefix_key
from mailward.detectors.safety import CircuitBreaker, Exempt
from mailward.detectors.state import MemoryState

T = 1_763_700_000.0


def decider(**kw: object) -> Decider:
    settings = DetectorSettings(**kw)  # type: ignore[arg-type]
    return Decider(
        settings,
        state=MemoryState(),
        ledger=Ledger(),
        history=MemoryHistory(),
        exempt=Exempt([ip_network("192.0.2.25/32")]),
        breaker=CircuitBreaker(settings.safety.max_bans_per_minute),
        drop_after=86400.0,
    )


def src(ip: str) -> Source:
    addr = ip_address(ip)
    return Source(ip=addr, key=ip_key(addr), prefix=prefix_key(addr, 24, 64), prefixlen=24)


def ban(target: str, duration: float, rule: str = "r") -> Finding:
    return Finding(rule, target, Action.BAN, duration, "why", {"n": 1})


def test_longest_address_ban_wins() -> None:
    d = decider()
    [out] = d.decide(
        [ban("203.0.113.5", 900, "a"), ban("203.0.113.5", 3600, "b")], src("203.0.113.5"), T
    )
    assert out.rule == "b" and out.until == T + 3600


def test_prefix_ban_replaces_the_address_ban() -> None:
    d = decider()
    out = d.decide(
        [ban("203.0.113.5", 900), ban("203.0.113.0/24", 86400, "prefix")], src("203.0.113.5"), T
    )
    assert [x.target for x in out] == ["203.0.113.0/24"]


def test_no_prefix_ban_over_an_exempt_address() -> None:
    d = decider()
    out = d.decide([ban("192.0.2.0/24", 86400, "prefix")], src("192.0.2.7"), T)
    assert out == []


def test_equal_evidence_is_shared() -> None:
    d = decider()
    a = d.ban(ban("203.0.113.5", 86400), T, None)
    b = d.ban(ban("203.0.113.6", 86400), T, None)
    assert a is not None and b is not None
    assert a.evidence is b.evidence and a.reason is b.reason


def test_long_first_ban_drops_the_failure_counter() -> None:
    d = decider()
    s = src("203.0.113.5")
    d.state.hit("fail", s.key, T, window=86400, cap=5)
    d.decide([ban("203.0.113.5", 86400)], s, T)
    assert d.state.count("fail", s.key, T, 86400) == 0
    t = src("203.0.113.6")
    d.state.hit("fail", t.key, T, window=86400, cap=5)
    d.decide([ban("203.0.113.6", 900)], t, T)
    assert d.state.count("fail", t.key, T, 86400) == 1


def test_protection_touch_announces_only_now_and_then() -> None:
    d = decider()
    first = d.touch("bob", T)
    assert first is not None and first.action is Action.PROTECT_USER and first.until == T + 6 * 3600
    assert d.touch("bob", T + 60) is None  # extended in state, not announced
    assert d.state.marked("attack", "bob", T) == T + 60 + 6 * 3600
    again = d.touch("bob", T + 3600)
    assert again is not None and again.until == T + 7 * 3600


def test_holds_says_exactly_when_a_ban_would_change_nothing() -> None:
    """``holds`` lets a detector skip a finding: it must agree with ``ban`` on every row, with
    escalated offences, expired and permanent bans, over a seeded random set of cases."""
    import random

    from mailward.decisions.model import Decision

    rnd = random.Random(5)
    checked = held = 0
    for _ in range(400):
        d = decider(escalation={"multiplier": rnd.choice([1.0, 2.0, 4.0]), "max_ban": 200_000})
        slot = (4, 24, int(ip_address("198.51.100.0")))
        start = T - rnd.choice([0, 10, 1000, 90_000])
        until = rnd.choice([None, start + rnd.choice([60, 600, 3600, 86400, 400_000])])
        if rnd.random() < 0.9:
            old = Decision(
                start,
                "198.51.100.0/24",
                Action.BAN,
                "old",
                until=until,
                offence=rnd.randrange(1, 5),
            )
            d.ledger.add(old)
        duration = rnd.choice([600.0, 3600.0, 86400.0, 100_000.0])
        holds = d.holds(slot, duration, T)
        out = d.ban(ban("198.51.100.0/24", duration, "prefix"), T, slot)
        assert holds == (out is None), (until, duration)
        checked += 1
        held += holds
    assert 50 < held < checked - 50  # both answers were exercised
