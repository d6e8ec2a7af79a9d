from __future__ import annotations

from ipaddress import ip_address

from mailward.config.model import GeoRuleSettings
from mailward.decisions.model import Action
from mailward.detectors.base import Source
from mailward.detectors.geo import GeoRule


def source(country: str | None, asn: int | None, banned: bool = False) -> Source:
    ip = ip_address("203.0.113.5")
    return Source(ip=ip, key=1, prefix=2, prefixlen=24, country=country, asn=asn, banned=banned)


def test_deny_lists_and_allow_only_mode() -> None:
    rule = GeoRule(GeoRuleSettings(deny_countries=["cn"], deny_asns=[64500]))
    assert rule.refuses("CN", None) == "country CN is denied"
    assert rule.refuses("DE", 64500) == "AS64500 is denied"
    assert rule.refuses("DE", 64501) is None
    allow_only = GeoRule(GeoRuleSettings(allow_countries=["DE", "AT"]))
    assert allow_only.refuses("AT", None) is None
    assert allow_only.refuses("US", None) == "country US is not allowed"
    assert allow_only.refuses(None, None) is None  # unknown origin passes
    assert not GeoRule(GeoRuleSettings()).active


def test_failure_from_denied_origin_is_banned_at_once() -> None:
    rule = GeoRule(GeoRuleSettings(deny_countries=["CN"], ban=7200))
    [finding] = rule.on_failure(source("CN", 4134))
    assert finding.action is Action.BAN and finding.duration == 7200
    assert finding.evidence == {"failures": 1, "country": "CN", "asn": 4134}
    assert rule.on_failure(source("DE", None)) == []
    assert rule.on_failure(source("CN", None, banned=True)) == []
