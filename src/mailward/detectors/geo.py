"""Country and ASN rules: deny lists, allow-only mode (per-country thresholds live in the
failure rules). Lookups come from ``mailward.enrich.geoip`` (``open_geo``, cached in memory;
``MemoryGeo`` is its twin), so the in-line check never waits on I/O.
"""

from __future__ import annotations

from mailward.config.model import GeoRuleSettings
from mailward.decisions.model import Action
from mailward.detectors.base import Finding, Source
from mailward.enrich.geoip import GeoLookup

__all__ = ["GeoLookup", "GeoRule"]


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
