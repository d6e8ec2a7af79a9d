"""Shared parser machinery: the IP cache, the rule registry, stats."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Network

import pytest

from mailward.parsers.base import RULES, IPCache, ParseStats, rule


def test_ip_cache_normalises_and_honours_trusted_proxies() -> None:
    cache = IPCache([IPv4Network("192.0.2.0/28"), IPv6Network("2001:db8::/64")])
    assert cache.get("::ffff:203.0.113.5") == IPv4Address("203.0.113.5")
    assert cache.get("192.0.2.3") is None
    assert cache.get("2001:db8::1") is None
    assert cache.get("192.0.2.200") == IPv4Address("192.0.2.200")
    assert cache.get("unknown") is None and cache.get("64.300.200.26") is None
    assert cache.is_trusted("192.0.2.3") and not cache.is_trusted("x")


def test_rule_names_are_unique() -> None:
    name = next(iter(RULES))
    with pytest.raises(ValueError, match="duplicate"):
        rule(name, "again")


def test_stats_merge_and_json() -> None:
    a, b = ParseStats(), ParseStats()
    a.lines, a.recognised = 2, 1
    a.by_kind["connection"] += 1
    b.lines, b.unrecognised = 3, 3
    a.merge(b)
    assert a.to_json()["lines"] == 5 and a.to_json()["by_kind"] == {"connection": 1}
