from mailward.clock import ManualClock
from mailward.decisions.model import Action, Decision
from mailward.enforcers.base import (
    DryRunEnforcer,
    Enforcer,
    MemoryEnforcer,
    NullEnforcer,
    enforceable,
)


def ban(target: str, until: float | None = 100.0, action: Action = Action.BAN) -> Decision:
    return Decision(ts=0.0, target=target, action=action, rule="test", until=until)


async def test_memory_enforcer_bans_expires_and_unbans() -> None:
    clock = ManualClock(0.0)
    e = MemoryEnforcer(clock.now)
    assert isinstance(e, Enforcer)
    await e.apply([ban("203.0.113.5"), ban("198.51.100.0/24", until=None), ban("user:bob")])
    assert e.banned("203.0.113.5") and e.banned("198.51.100.77")
    assert not e.banned("203.0.113.6")
    clock.advance(150)
    assert not e.banned("203.0.113.5") and e.banned("198.51.100.77")
    await e.apply([ban("198.51.100.0/24", action=Action.UNBAN)])
    assert not e.banned("198.51.100.77")
    assert e.status()["addresses"] == 0


async def test_already_expired_decision_is_not_enforced() -> None:
    clock = ManualClock(500.0)
    e = MemoryEnforcer(clock.now)
    await e.apply([ban("203.0.113.5", until=100.0)])
    assert not e.banned("203.0.113.5")


async def test_restore_replaces_everything() -> None:
    e = MemoryEnforcer(ManualClock(0.0).now)
    await e.apply([ban("203.0.113.5")])
    await e.restore([ban("192.0.2.1")])
    assert [str(n) for n in e.blocked()] == ["192.0.2.1/32"]
    await e.remove(["192.0.2.1"])
    assert e.blocked() == []


async def test_dry_run_logs(caplog) -> None:  # type: ignore[no-untyped-def]
    e = DryRunEnforcer(ManualClock(0.0).now)
    await e.apply([ban("203.0.113.5")])
    await e.remove(["203.0.113.5"])
    assert "would block 203.0.113.5/32" in caplog.text
    assert "would lift 203.0.113.5/32" in caplog.text


async def test_null_enforcer_and_filter() -> None:
    e = NullEnforcer()
    await e.apply([ban("203.0.113.5")])
    assert e.status() == {"backend": "none"}
    assert not enforceable(ban("user:x"))
    assert not enforceable(ban("1.2.3.4", action=Action.TARPIT))
