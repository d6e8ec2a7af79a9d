"""Country and ASN rules, and the slice of GeoIP they need: ``country(ip)`` and ``asn(ip)``.

``mailward.enrich.geoip`` provides the real lookups (cached, in memory); any object with these two
methods fits. ``StaticGeo`` is the in-memory twin for tests and replays with a fixed table.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Protocol, TypeVar

from mailward.config.model import GeoRuleSettings
from mailward.decisions.model import Action
from mailward.detectors.base import Finding, Source

IPAddress = IPv4Address | IPv6Address
T = TypeVar("T")


class GeoLookup(Protocol):
    def country(self, ip: IPAddress) -> str | None:
        """ISO 3166 alpha-2 code, or None when unknown."""
        ...

    def asn(self, ip: IPAddress) -> tuple[int, str] | None:
        """(AS number, organisation), or None when unknown."""
        ...


class StaticGeo:
    """Country and ASN by longest matching network from fixed tables."""

    def __init__(
        self,
        countries: Mapping[str, str] | None = None,
        asns: Mapping[str, tuple[int, str]] | None = None,
    ) -> None:
        self._countries = self._index(countries or {})
        self._asns = self._index(asns or {})

    @staticmethod
    def _index(table: Mapping[str, T]) -> list[tuple[IPv4Network | IPv6Network, T]]:
        nets = [(ip_network(cidr, strict=False), value) for cidr, value in table.items()]
        return sorted(nets, key=lambda item: item[0].prefixlen, reverse=True)

    def country(self, ip: IPAddress) -> str | None:
        for net, code in self._countries:
            if net.version == ip.version and ip in net:
                return code.upper()
        return None

    def asn(self, ip: IPAddress) -> tuple[int, str] | None:
        for net, value in self._asns:
            if net.version == ip.version and ip in net:
                return value
        return None


class GeoRule:
    """Deny lists and allow-only mode for countries and ASNs.

    ``refuses`` answers the in-line question (a login from a denied origin is refused before the
    password is checked); a failure from such an origin is banned at once.
    """

    def __init__(self, settings: GeoRuleSettings) -> None:
        self.cfg = settings
        self.deny_countries = frozenset(settings.deny_countries)
        self.allow_countries = frozenset(settings.allow_countries)
        self.deny_asns = frozenset(settings.deny_asns)
        self.active = bool(self.deny_countries or self.allow_countries or self.deny_asns)

    def refuses(self, country: str | None, asn: int | None) -> str | None:
        """Why an origin is refused, or None."""
        if not self.active:
            return None
        if country is not None and country in self.deny_countries:
            return f"country {country} is denied"
        if self.allow_countries and country is not None and country not in self.allow_countries:
            return f"country {country} is not allowed"
        if asn is not None and asn in self.deny_asns:
            return f"AS{asn} is denied"
        return None

    def on_failure(self, src: Source) -> list[Finding]:
        why = self.refuses(src.country, src.asn)
        if why is None or src.banned:
            return []
        evidence: dict[str, int | float | str] = {"failures": 1}
        if src.country is not None:
            evidence["country"] = src.country
        if src.asn is not None:
            evidence["asn"] = src.asn
        return [Finding("geo", src.address, Action.BAN, self.cfg.ban, why, evidence)]
