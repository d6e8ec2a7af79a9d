import asyncio
from ipaddress import ip_address

import pytest

from mailward.clock import ManualClock
from mailward.decisions.model import Action, Decision
from mailward.events import AuthFailure, AuthSuccess, Service
from mailward.policy.backend import MemoryBackend, bind_host

IP = ip_address("203.0.113.5")


def fail(ip: str, user: str, ts: float) -> AuthFailure:
    return AuthFailure(ts=ts, service=Service.IMAP, ip=ip_address(ip), username=user)


def test_memory_backend_tarpits_then_bans() -> None:
    b = MemoryBackend(ban_after=5, tarpit_after=3)
    decisions = []
    for t in range(5):
        assert b.check(IP, "bob", t).allow
        decisions += b.observe(fail(str(IP), "bob", t), t)
        if t == 2:
            assert b.check(IP, "bob", t).tarpit == 1.0
        if t == 3:
            assert b.check(IP, "bob", t).tarpit == 2.0
    assert [d.action for d in decisions] == [Action.BAN]
    verdict = b.check(IP, None, 10)
    assert not verdict.allow and "memory_failures" in verdict.reason
    assert b.check(IP, None, 3700).allow  # the ban expired


def test_memory_backend_protects_a_user_but_lets_known_good_in() -> None:
    b = MemoryBackend(protect_after=3)
    b.observe(
        AuthSuccess(ts=0, service=Service.IMAP, ip=ip_address("198.51.100.1"), username="bob"), 0
    )
    out = []
    for i in range(3):
        out += b.observe(fail(f"192.0.2.{i + 1}", "bob", 10 + i), 10 + i)
    assert [d.target for d in out] == ["user:bob"]
    assert not b.check(ip_address("192.0.2.99"), "bob", 20).allow
    assert b.check(ip_address("198.51.100.1"), "bob", 20).allow
    assert b.check(ip_address("192.0.2.99"), "alice", 20).allow


def test_memory_backend_applies_and_lifts_prefix_bans() -> None:
    b = MemoryBackend()
    b.apply(Decision(0, "203.0.113.0/24", Action.BAN, "manual", until=None))
    assert not b.check(IP, None, 1).allow
    b.apply(Decision(2, "203.0.113.0/24", Action.UNBAN, "manual"))
    assert b.check(IP, None, 3).allow


async def test_bind_host_prefers_explicit_parts_and_falls_back_to_the_daemon() -> None:
    class Daemon:
        engine = MemoryBackend()
        clock = ManualClock(5)

        def __init__(self) -> None:
            self.submitted: list[Decision] = []
            self.fed: list[object] = []

        async def submit(self, decisions: list[Decision]) -> None:
            self.submitted += decisions

        async def feed(self, events: list[object]) -> list[Decision]:
            self.fed += events
            return []

    d = Daemon()
    link = bind_host(d, None, None, None)
    assert link.backend is d.engine and link.clock is d.clock
    assert link.decisions is not None and link.events is not None
    link.start()
    decision = Decision(0, "192.0.2.1", Action.BAN, "x")
    link.decisions([decision])
    event = AuthSuccess(ts=0, service=Service.IMAP, ip=IP, username="bob")
    for _ in range(3):
        link.events(event)
    await asyncio.sleep(0.01)
    assert d.submitted == [decision] and d.fed == [event] * 3
    link.events(event)  # accepted before stop: still handed over
    await link.stop()
    assert len(d.fed) == 4

    mine = MemoryBackend()
    link = bind_host(d, mine, ManualClock(1), print)
    assert link.backend is mine and link.clock.now() == 1 and link.decisions is print


async def test_outbox_contains_daemon_failures_and_bounds_its_queue() -> None:
    from mailward.errors import BackendUnavailable
    from mailward.policy.backend import Outbox

    calls: list[list[int]] = []

    async def flaky(items: list[int]) -> None:
        calls.append(items)
        raise BackendUnavailable("nft down")

    box: Outbox[int] = Outbox("t", flaky, maxsize=2)
    for i in range(4):
        box.put([i])
    assert box.dropped == 2
    box.start()
    await asyncio.sleep(0.01)
    assert calls == [[0, 1]] and box.failures == 1  # coalesced, failure contained
    box.put([9])
    await asyncio.sleep(0.01)
    assert calls[-1] == [9]
    await box.stop()


def test_bind_host_without_backend_or_daemon_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        bind_host(None, None, None, None)


def test_policy_components_follow_the_config() -> None:
    from mailward.config.model import Settings
    from mailward.policy import DovecotPolicyServer, PostfixPolicyServer, policy_components

    assert policy_components(Settings()) == []
    s = Settings.model_validate(
        {"policy": {"postfix": {"enabled": True}, "dovecot": {"enabled": True}}}
    )
    kinds = [type(c) for c in policy_components(s, country=lambda ip: "DE")]
    assert kinds == [PostfixPolicyServer, DovecotPolicyServer]


def test_bind_host_prefers_the_daemons_non_blocking_intake_and_applies_own_decisions() -> None:
    class Daemon:
        def __init__(self) -> None:
            self.engine = MemoryBackend()
            self.clock = ManualClock(0)
            self.decisions: list[Decision] = []
            self.events: list[object] = []

        def submit_decisions(self, decisions: list[Decision]) -> None:
            self.decisions += decisions

        def submit_event(self, event: object) -> None:
            self.events.append(event)

    d = Daemon()
    link = bind_host(d, None, None, None)
    assert link.outboxes == []  # nothing to start: the daemon queues itself
    ban = Decision(0, "192.0.2.7", Action.BAN, "policy_pwhash_ip")
    assert link.decisions is not None and link.events is not None
    link.decisions([ban])
    assert d.decisions == [ban]
    assert not d.engine.check(ip_address("192.0.2.7"), None, 1).allow  # applied to the engine
    event = AuthSuccess(ts=0, service=Service.IMAP, ip=IP, username="bob")
    link.events(event)
    assert d.events == [event]
