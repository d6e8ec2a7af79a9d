from ipaddress import ip_address

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


def test_bind_host_prefers_explicit_parts_and_falls_back_to_the_daemon() -> None:
    class Daemon:
        engine = MemoryBackend()
        clock = ManualClock(5)
        seen: list[list[Decision]] = []

        def submit_decisions(self, decisions: list[Decision]) -> None:
            self.seen.append(decisions)

    d = Daemon()
    backend, clock, sink = bind_host(d, None, None, None)
    assert backend is d.engine and clock is d.clock and sink is not None
    mine = MemoryBackend()
    backend, clock, _ = bind_host(d, mine, ManualClock(1), None)
    assert backend is mine and clock.now() == 1


def test_bind_host_without_backend_or_daemon_is_an_error() -> None:
    import pytest

    with pytest.raises(RuntimeError):
        bind_host(None, None, None, None)
