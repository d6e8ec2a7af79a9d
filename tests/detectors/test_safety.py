from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_address, ip_network

import pytest

from mailward.detectors.safety import (
    CircuitBreaker,
    CircuitClosed,
    CircuitOpen,
    Exempt,
    resolve_allow,
)
from mailward.errors import ConfigError


def fake_resolver(name: str) -> Sequence[str]:
    table = {"mx.example.org": ["192.0.2.25", "2001:db8::25"], "empty.example.org": []}
    if name not in table:
        raise OSError("Name or service not known")
    return table[name]


def test_resolve_allow_cidrs_addresses_and_names() -> None:
    nets = resolve_allow(["10.0.0.0/8", "198.51.100.7", "mx.example.org"], resolver=fake_resolver)
    assert [str(n) for n in nets] == [
        "10.0.0.0/8",
        "198.51.100.7/32",
        "192.0.2.25/32",
        "2001:db8::25/128",
    ]


def test_unresolvable_name_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_allow(["nope.invalid"], resolver=fake_resolver, key="detectors.safety.allow")
    assert info.value.key == "detectors.safety.allow"
    with pytest.raises(ConfigError, match="resolves to no address"):
        resolve_allow(["empty.example.org"], resolver=fake_resolver)


def test_exempt_membership_and_overlap() -> None:
    exempt = Exempt([ip_network("127.0.0.0/8"), ip_network("::1/128"), ip_network("192.0.2.25/32")])
    assert ip_address("127.1.2.3") in exempt
    assert ip_address("::1") in exempt
    assert ip_address("192.0.2.25") in exempt
    assert ip_address("192.0.2.26") not in exempt
    assert exempt.overlaps(ip_network("192.0.2.0/24"))
    assert not exempt.overlaps(ip_network("198.51.100.0/24"))


def test_circuit_breaker_opens_and_closes() -> None:
    breaker = CircuitBreaker(limit=3)
    assert all(breaker.allow(100.0 + i) for i in range(3))
    assert not breaker.allow(103.0)
    assert not breaker.allow(104.0)
    assert breaker.is_open
    [opened] = breaker.take_signals()
    assert isinstance(opened, CircuitOpen)
    assert opened.to_json()["bans_last_minute"] == 3 and opened.limit == 3
    breaker.poll(150.0)
    assert breaker.is_open  # still 3 bans in the last minute
    assert breaker.allow(160.5)
    assert not breaker.is_open
    [closed] = breaker.take_signals()
    assert isinstance(closed, CircuitClosed) and closed.suppressed == 2
    assert closed.to_json()["kind"] == "circuit_closed"
    assert breaker.total_suppressed == 2
