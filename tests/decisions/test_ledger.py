from __future__ import annotations

from ipaddress import ip_address

import pytest

from mailward.decisions.ledger import Ledger, canonical_target, network_of
from mailward.decisions.model import Action, Decision


def ban(target: str, ts: float, until: float | None, offence: int = 1) -> Decision:
    return Decision(
        ts=ts, target=target, action=Action.BAN, rule="test", until=until, offence=offence
    )


def test_canonical_target() -> None:
    assert canonical_target("10.1.2.3/24") == "10.1.2.0/24"
    assert canonical_target("10.1.2.3/32") == "10.1.2.3"
    assert canonical_target("2001:DB8::1") == "2001:db8::1"
    assert canonical_target("user:bob") == "user:bob"
    with pytest.raises(ValueError):
        canonical_target("user:")
    with pytest.raises(ValueError):
        canonical_target("not an address")


def test_network_of() -> None:
    assert str(network_of(ip_address("198.51.100.77"), 24)) == "198.51.100.0/24"
    assert str(network_of(ip_address("2001:db8:1:2:3::4"), 64)) == "2001:db8:1:2::/64"


def test_lookup_by_address_and_containing_prefixes() -> None:
    ledger = Ledger()
    ledger.add(ban("203.0.113.5", 0, 100))
    ledger.add(ban("198.51.100.0/24", 0, 200))
    ledger.add(ban("2001:db8:1:2::/64", 0, 300))
    ledger.add(ban("10.0.0.0/8", 0, None))
    assert ledger.covering(ip_address("203.0.113.5"), 50) is not None
    assert ledger.covering(ip_address("203.0.113.6"), 50) is None
    hit = ledger.covering(ip_address("198.51.100.99"), 50)
    assert hit is not None and hit.target == "198.51.100.0/24"
    assert ledger.covering(ip_address("2001:db8:1:2:ffff::1"), 50) is not None
    assert ledger.covering(ip_address("2001:db8:1:3::1"), 50) is None
    forever = ledger.covering(ip_address("10.20.30.40"), 1e12)
    assert forever is not None and forever.until is None
    # expired entries do not cover, even before they are swept
    assert ledger.covering(ip_address("203.0.113.5"), 100) is None
    assert len(ledger) == 4


def test_merge_is_extend_only() -> None:
    ledger = Ledger()
    first = ledger.add(ban("203.0.113.5", 0, 1000, offence=2))
    assert first is not None
    assert ledger.add(ban("203.0.113.5", 10, 500)) is None  # shorter: no change
    longer = ledger.add(ban("203.0.113.5", 20, 5000))
    assert longer is not None and longer.until == 5000 and longer.offence == 2
    assert len(ledger) == 1
    # an expired one is replaced, not merged
    fresh = ledger.add(ban("203.0.113.5", 6000, 7000))
    assert fresh is not None and fresh.offence == 1


def test_users_and_removal() -> None:
    ledger = Ledger()
    protect = Decision(ts=0, target="user:bob", action=Action.PROTECT_USER, rule="t", until=60)
    ledger.add(protect)
    assert ledger.user("bob", 10) == protect
    assert ledger.user("bob", 61) is None
    assert ledger.remove("user:bob") == protect
    assert ledger.remove("user:bob") is None
    with pytest.raises(ValueError):
        ledger.add(Decision(ts=0, target="1.2.3.4", action=Action.UNBAN, rule="t"))


def test_expire_returns_what_ran_out() -> None:
    ledger = Ledger()
    ledger.add(ban("192.0.2.1", 0, 100))
    ledger.add(ban("192.0.2.2", 0, 130))
    ledger.add(ban("192.0.2.3", 0, 100))
    ledger.add(ban("192.0.2.3", 50, 10_000))  # extended: must survive the first sweep
    ledger.add(ban("192.0.2.4", 0, None))
    gone = ledger.expire(120)
    assert [d.target for d in gone] == ["192.0.2.1"]
    assert [d.target for d in ledger.expire(200)] == ["192.0.2.2"]
    assert {d.target for d in ledger.active(200)} == {"192.0.2.3", "192.0.2.4"}
    assert [d.target for d in ledger.expire(20_000)] == ["192.0.2.3"]
    assert len(ledger) == 1


def test_get_exact_target_only() -> None:
    ledger = Ledger()
    ledger.add(ban("198.51.100.0/24", 0, 100))
    assert ledger.get("198.51.100.7/24", 1) is not None
    assert ledger.get("198.51.100.7", 1) is None


def test_covering_builds_a_ban_once_and_follows_its_changes() -> None:
    ledger = Ledger()
    ledger.add(ban("198.51.100.0/24", 0, 100))
    first = ledger.covering(ip_address("198.51.100.7"), 10)
    assert first is not None and first.until == 100
    assert ledger.covering(ip_address("198.51.100.8"), 10) is first  # one object per ban
    ledger.add(ban("198.51.100.0/24", 5, 500, offence=2))
    later = ledger.covering(ip_address("198.51.100.7"), 10)
    assert later is not None and later.until == 500 and later.offence == 2
    assert first.until == 100  # what was handed out is never changed
    ledger.remove("198.51.100.0/24")
    assert ledger.covering(ip_address("198.51.100.7"), 10) is None
    # banned again: a new row, so nothing built from the old one is handed out
    ledger.add(ban("198.51.100.0/24", 6, 300))
    again = ledger.covering(ip_address("198.51.100.9"), 10)
    assert again is not None and again.until == 300 and again.offence == 1


def test_generation_moves_with_every_change_and_only_then() -> None:
    ledger = Ledger()
    seen = [ledger.generation]

    def moved() -> bool:
        seen.append(ledger.generation)
        return seen[-1] > seen[-2]

    assert ledger.add(ban("192.0.2.0/24", 0, 100)) is not None and moved()
    assert ledger.add(ban("192.0.2.0/24", 1, 50)) is None and not moved()  # already covered
    assert ledger.add(ban("user:alice", 0, 100)) is not None and moved()
    assert ledger.remove("198.51.100.1") is None and not moved()
    assert ledger.remove("user:alice") is not None and moved()
    assert ledger.expire(10) == [] and not moved()
    assert ledger.expire(200) and moved()


def test_added_since_tells_what_bans_came_and_when_more_than_that_moved() -> None:
    led = Ledger()
    g0 = led.generation
    led.add(Decision(1, "198.51.100.0/24", Action.BAN, "r", until=100))
    led.add(Decision(2, "user:bob", Action.PROTECT_USER, "r", until=100))  # not an address's
    g1 = led.generation
    led.add(Decision(3, "2001:db8::/64", Action.BAN, "r", until=100))
    assert led.added_since(g0) == [(6, 64, 0x20010DB8 << 96), (4, 24, 0xC6336400)]
    assert led.added_since(g1) == [(6, 64, 0x20010DB8 << 96)]
    assert led.added_since(led.generation) == []
    g2 = led.generation
    led.remove("198.51.100.0/24")  # a ban lifted: answers may turn from refusals to allows
    assert led.added_since(g2) is None and led.added_since(led.generation) == []
    g3 = led.generation
    led.add(Decision(4, "192.0.2.1", Action.BAN, "r", until=10))
    assert led.added_since(g3) == [(4, 32, 0xC0000201)]
    assert led.expire(11) and led.added_since(g3) is None  # one ran out
    g4 = led.generation
    for i in range(300):  # more than the record holds
        led.add(Decision(20, f"203.0.{i >> 8}.{i & 255}", Action.BAN, "r", until=1000))
    assert led.added_since(g4) is None
    assert len(led.added_since(led.generation - 10) or []) == 10
