from __future__ import annotations

from ipaddress import ip_address

from mailward.demo.geo import ATTACK_COUNTRIES, DemoGeo, block_index


def test_attack_range_maps_to_a_country_and_documentation_or_private_asn() -> None:
    geo = DemoGeo()
    cc = geo.country(ip_address("198.18.5.9"))
    asn = geo.asn(ip_address("198.18.5.9"))
    assert cc in {c for c, _ in ATTACK_COUNTRIES}
    assert asn is not None
    number, name = asn
    assert 64496 <= number <= 65551 or 4_200_000_000 <= number <= 4_294_967_294
    assert name.startswith("Demo")


def test_same_block_same_answer_and_other_addresses_unknown() -> None:
    geo = DemoGeo()
    assert geo.country(ip_address("198.19.7.1")) == geo.country(ip_address("198.19.7.254"))
    assert geo.country(ip_address("8.8.8.8")) is None
    assert geo.asn(ip_address("2001:4860::1")) is None
    assert geo.country(ip_address("192.0.2.20")) == "DE"
    assert geo.country(ip_address("2001:db8:bad:7::1")) == "VN"


def test_block_index_honours_the_country() -> None:
    import random

    rng = random.Random(1)
    geo = DemoGeo()
    for cc in ("GB", "CN", "BR"):
        block = block_index(cc, rng)
        ip = ip_address(f"198.{18 + (block >> 8)}.{block & 255}.10")
        assert geo.country(ip) == cc
