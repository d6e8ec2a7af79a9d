"""The demo's own geography: synthetic address ranges mapped to countries and documentation ASNs.

The demo never names a real address as an attacker: attackers come from 198.18.0.0/15 (RFC 2544
benchmarking space), people and peers from the RFC 5737/3849 documentation ranges, and every ASN is
from the RFC 5398 documentation blocks. ``DemoGeo`` answers like any ``GeoLookup``, so the demo's
country and ASN tables are filled without a GeoIP database and without pretending the ranges are real.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address, ip_network

# Weighted attack origins: a spread like the one real mail servers see (many CN/US/RU/BR/VN hosts).
ATTACK_COUNTRIES: tuple[tuple[str, int], ...] = (
    ("CN", 18),
    ("US", 10),
    ("RU", 9),
    ("BR", 9),
    ("VN", 8),
    ("IN", 7),
    ("ID", 5),
    ("NL", 4),
    ("KR", 4),
    ("TR", 4),
    ("DE", 3),
    ("GB", 3),
    ("UA", 3),
    ("FR", 2),
    ("IR", 2),
    ("EG", 2),
    ("AR", 2),
    ("MX", 2),
    ("TH", 2),
    ("PK", 2),
    ("SG", 2),
    ("HK", 2),
    ("BD", 2),
    ("PL", 1),
    ("RO", 1),
    ("ZA", 1),
    ("CO", 1),
    ("JP", 1),
    ("TW", 1),
    ("PH", 1),
)

# RFC 5398 documentation ASNs: 64496-64511 and 65536-65551. Never real networks.
_DOC_ASNS = tuple(range(64496, 64512)) + tuple(range(65536, 65552))
_ATTACK_V4 = ip_network("198.18.0.0/15")
_BLOCKS = 512  # /24s in 198.18.0.0/15

# Fixed (not seeded): the map of ranges is part of the demo, the same for every seed.
_rng = random.Random(20261121)
_countries = [c for c, _ in ATTACK_COUNTRIES]
_weights = [w for _, w in ATTACK_COUNTRIES]
BLOCK_COUNTRY: tuple[str, ...] = tuple(_rng.choices(_countries, _weights, k=_BLOCKS))
# Country ISPs get RFC 6996 private-use ASNs: like documentation ASNs, never a real network.
_COUNTRY_ASN = {cc: 4_200_000_000 + i for i, cc in enumerate(sorted(_countries))}
_ASN_NAME = {asn: f"Demo ISP {cc}" for cc, asn in _COUNTRY_ASN.items()}
_CLOUD_ASN = _DOC_ASNS[-1]  # one "cloud" network with machines in several countries
_CLOUD_COUNTRIES = frozenset({"US", "NL", "SG", "DE", "GB"})
BLOCK_ASN: tuple[int, ...] = tuple(
    _CLOUD_ASN if cc in _CLOUD_COUNTRIES and _rng.random() < 0.4 else _COUNTRY_ASN[cc]
    for cc in BLOCK_COUNTRY
)

# Documentation ranges used by the demo's people and peers: (network, country, asn, name).
FIXED_RANGES: tuple[tuple[str, str, int, str], ...] = (
    ("192.0.2.0/24", "DE", 64496, "Demo Telecom DSL"),
    ("2001:db8:100::/48", "DE", 64497, "Demo Mobile"),
    ("203.0.113.0/24", "US", 64498, "Demo Mail Cloud"),
    ("198.51.100.0/24", "NL", 64499, "Demo Hosting NL"),
    ("2001:db8:bad::/48", "VN", 64500, "Demo Broadband VN"),
)
_FIXED = tuple((ip_network(net), cc, asn, name) for net, cc, asn, name in FIXED_RANGES)


def block_index(country: str, rng: random.Random) -> int:
    """A random /24 index in 198.18.0.0/15 that the demo geography places in ``country``."""
    candidates = _BY_COUNTRY.get(country)
    if not candidates:
        return rng.randrange(_BLOCKS)
    return rng.choice(candidates)


_BY_COUNTRY: dict[str, list[int]] = {}
for _i, _cc in enumerate(BLOCK_COUNTRY):
    _BY_COUNTRY.setdefault(_cc, []).append(_i)


class DemoGeo:
    """``GeoLookup`` for the demo ranges; anything else is unknown (None)."""

    def country(self, ip: IPv4Address | IPv6Address) -> str | None:
        hit = self._lookup(ip)
        return None if hit is None else hit[0]

    def asn(self, ip: IPv4Address | IPv6Address) -> tuple[int, str] | None:
        hit = self._lookup(ip)
        return None if hit is None else (hit[1], hit[2])

    @staticmethod
    def _lookup(ip: IPv4Address | IPv6Address) -> tuple[str, int, str] | None:
        if isinstance(ip, IPv4Address) and ip in _ATTACK_V4:
            block = (int(ip) - int(_ATTACK_V4.network_address)) >> 8
            cc, asn = BLOCK_COUNTRY[block], BLOCK_ASN[block]
            return cc, asn, "Demo Cloud" if asn == _CLOUD_ASN else _ASN_NAME[asn]
        for net, cc, asn, name in _FIXED:
            if ip.version == net.version and ip in net:
                return cc, asn, name
        return None
