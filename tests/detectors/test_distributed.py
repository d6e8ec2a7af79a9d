from __future__ import annotations

from ipaddress import ip_address

from mailward.config.model import DetectorSettings
from mailward.decisions.model import Action
from mailward.detectors.base import Source
from mailward.detectors.distributed import ATTACK, HOSTILE_ASN, Distributed
from mailward.detectors.keys import ip_key, prefix_key
from mailward.detectors.state import MemoryState


def src(ip: str, asn: int | None = None) -> Source:
    addr = ip_address(ip)
    return Source(
        ip=addr,
        key=ip_key(addr),
        prefix=prefix_key(addr, 24, 64),
        prefixlen=24 if addr.version == 4 else 64,
        asn=asn,
    )


def test_username_from_k_distinct_sources_is_protected() -> None:
    d = Distributed(DetectorSettings(distributed={"user_sources": 3, "prefix_sources": 50}))
    state = MemoryState()
    assert d.on_failure(state, src("192.0.2.1"), "bob", 0) == []
    assert d.on_failure(state, src("192.0.2.1"), "bob", 1) == []  # same source again
    assert d.on_failure(state, src("198.51.100.1"), "bob", 2) == []
    protect, ban = d.on_failure(state, src("203.0.113.1"), "bob", 3)
    assert protect.action is Action.PROTECT_USER and protect.target == "user:bob"
    assert protect.evidence["sources"] == 3
    assert ban.action is Action.BAN and ban.target == "203.0.113.1"


def test_under_attack_new_source_banned_at_first_failure_and_protection_extended() -> None:
    d = Distributed(DetectorSettings())
    state = MemoryState()
    state.mark(ATTACK, "bob", 1000.0)
    extend, ban = d.on_failure(state, src("203.0.113.9"), "bob", 10)
    assert extend.action is Action.PROTECT_USER and extend.reason == "attack goes on"
    assert ban.rule == "user_under_attack" and ban.duration == 86400
    assert ban.evidence == {"user": "bob", "failures": 1}


def test_known_good_sources_and_stale_owner_devices() -> None:
    d = Distributed(DetectorSettings())
    state = MemoryState()
    d.on_success(state, src("192.0.2.10"), "bob", 0, 7 * 86400)
    assert d.is_known_good(state, "bob", src("192.0.2.10"), 100)
    assert d.is_known_good(state, "bob", src("192.0.2.77"), 100)  # same /24
    assert not d.is_known_good(state, "bob", src("198.51.100.1"), 100)
    assert not d.is_known_good(state, "alice", src("192.0.2.10"), 100)
    assert not d.is_known_good(state, "bob", src("192.0.2.10"), 31 * 86400)
    state.mark(ATTACK, "bob", 1000.0)
    # the owner's stale device is not banned by the user rule
    assert d.on_failure(state, src("192.0.2.10"), "bob", 10, owner=True) == []
    # and a success from a new source during the attack does not make it known-good
    d.on_success(state, src("198.51.100.1"), "bob", 20, 7 * 86400)
    assert not d.is_known_good(state, "bob", src("198.51.100.1"), 30)


def test_counting_by_prefix() -> None:
    s = DetectorSettings(
        distributed={"user_sources": 3, "user_count_by": "prefix", "prefix_sources": 50}
    )
    d = Distributed(s)
    state = MemoryState()
    # ten addresses in one /24 are one source
    assert all(d.on_failure(state, src(f"192.0.2.{i + 1}"), "bob", i) == [] for i in range(10))
    out = [d.on_failure(state, src(f"192.0.{i}.1"), "carol", i) for i in range(3)]
    assert out[2][0].action is Action.PROTECT_USER


def test_prefix_with_k_distinct_failing_addresses_is_banned() -> None:
    d = Distributed(DetectorSettings())
    state = MemoryState()
    out = [d.on_failure(state, src(f"198.51.100.{i}"), None, i) for i in range(1, 6)]
    assert out[:4] == [[], [], [], []]
    [finding] = out[4]
    assert finding.target == "198.51.100.0/24" and finding.rule == "prefix"
    assert finding.evidence["addresses"] == 5


def test_prefix_with_a_known_good_address_needs_more() -> None:
    s = DetectorSettings()
    d = Distributed(s)
    state = MemoryState()
    d.on_success(state, src("198.51.100.200"), "bob", 0, 7 * 86400)
    out = [d.on_failure(state, src(f"198.51.100.{i}"), None, i) for i in range(1, 16)]
    assert all(f == [] for f in out[:14])
    assert out[14][0].evidence["threshold"] == 15


def test_asn_rule() -> None:
    s = DetectorSettings(distributed={"asn_sources": 3, "prefix_sources": 50})
    d = Distributed(s)
    state = MemoryState()
    assert d.on_asn_failure(state, src("192.0.2.1", asn=64500), 0) == []
    assert d.on_asn_failure(state, src("198.51.100.1", asn=64500), 1) == []
    [ban] = d.on_asn_failure(state, src("203.0.113.1", asn=64500), 2)
    assert ban.rule == "asn" and ban.evidence["asn"] == 64500
    assert state.marked(HOSTILE_ASN, 64500, 3) is not None
    [ban2] = d.on_asn_failure(state, src("203.0.114.1", asn=64500), 3)
    assert ban2.target == "203.0.114.1"
    assert d.on_asn_failure(state, src("203.0.115.1", asn=64501), 4) == []
    off = Distributed(DetectorSettings())
    assert off.on_asn_failure(MemoryState(), src("203.0.113.1", asn=64500), 0) == []
