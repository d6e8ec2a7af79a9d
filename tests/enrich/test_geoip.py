from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import shared_file

from mailward.config.model import GeoIPSettings
from mailward.enrich.geoip import (
    CachedGeo,
    GeoLookup,
    IptoccGeo,
    MemoryGeo,
    MmdbGeo,
    mmdb_age_days,
    mmdb_info,
    open_geo,
)
from mailward.errors import ConfigError

MM = "maxmind-db/test-data/"
SRC = "maxmind-db/source-data/"
NOT_PUBLIC = ["10.1.2.3", "127.0.0.1", "192.168.0.1", "192.0.2.1", "198.51.100.7", "203.0.113.9",
              "169.254.1.1", "100.64.0.1", "::1", "fe80::1", "2001:db8::1", "fc00::1", "224.0.0.1",
              "not an ip", ""]  # fmt: skip


def test_iptocc_works_offline_and_skips_non_public() -> None:
    geo = IptoccGeo()
    assert geo.country("8.8.8.8") == "US"
    assert geo.country(IPv4Address("81.2.69.142")) == "GB"
    assert geo.country("2001:4860:4860::8888") == "US"
    assert geo.country("::ffff:81.2.69.142") == "GB"  # mapped IPv6 is the IPv4 address
    assert geo.asn("8.8.8.8") is None
    for ip in NOT_PUBLIC:
        assert geo.country(ip) is None, ip


def test_default_is_cached_iptocc() -> None:
    geo = open_geo(GeoIPSettings())
    assert isinstance(geo, CachedGeo) and isinstance(geo.inner, IptoccGeo)
    assert isinstance(geo, GeoLookup)
    assert open_geo(GeoIPSettings(cache_size=0)).__class__ is IptoccGeo


def _expectations(name: str) -> Iterator[tuple[IPv4Network | IPv6Network, dict[str, Any]]]:
    for entry in json.loads(shared_file(SRC + name + ".json").read_text()):
        ((key, record),) = entry.items()
        net = ip_network(key, strict=False)
        if isinstance(net, IPv6Network) and net.prefixlen >= 96:
            packed = net.network_address.packed
            if packed[:12] == bytes(12):  # IPv4-compatible form ::1.2.0.0/112
                net = IPv4Network((packed[12:], net.prefixlen - 96))
        yield net, record


def _probe(net: IPv4Network | IPv6Network) -> IPv4Address | IPv6Address:
    return net.network_address if net.num_addresses == 1 else net[net.num_addresses // 2]


@pytest.mark.shared
@pytest.mark.parametrize(
    "name",
    ["GeoIP2-Country-Test", "GeoLite2-Country-Test", "GeoIP2-City-Test", "GeoLite2-City-Test"],
)
def test_country_db_matches_source_data(name: str) -> None:
    geo = MmdbGeo(country_db=shared_file(MM + name + ".mmdb"))
    checked = 0
    for net, rec in _expectations(name):
        ip = _probe(net)
        if not ip.is_global:
            continue
        want = (rec.get("country") or rec.get("registered_country") or {}).get("iso_code")
        assert geo.country(ip) == want, (name, str(net))
        checked += 1
    assert checked > 200
    assert geo.country("81.2.69.142") == "GB"
    assert geo.asn("81.2.69.142") is None  # no ASN database configured
    geo.close()


@pytest.mark.shared
@pytest.mark.parametrize("name", ["GeoLite2-ASN-Test", "GeoIP2-ISP-Test"])
def test_asn_db_matches_source_data(name: str) -> None:
    geo = MmdbGeo(asn_db=shared_file(MM + name + ".mmdb"))
    checked = 0
    for net, rec in _expectations(name):
        want = None
        if "autonomous_system_number" in rec:
            want = (rec["autonomous_system_number"], rec.get("autonomous_system_organization", ""))
        assert geo.asn(_probe(net)) == want, (name, str(net))
        checked += 1
    assert checked > 700
    geo.close()


@pytest.mark.shared
def test_known_asn_answers_and_country_fallback() -> None:
    geo = open_geo(GeoIPSettings(asn_db=shared_file(MM + "GeoLite2-ASN-Test.mmdb"), cache_size=16))
    assert geo.asn("1.128.0.0") == (1221, "Telstra Pty Ltd")
    assert geo.asn("1.159.255.255") == (1221, "Telstra Pty Ltd")  # end of 1.128.0.0/11
    assert geo.asn("1.0.0.1") == (15169, "Google Inc.")
    assert geo.asn(IPv6Address("2600:6000::1")) == (237, "Merit Network Inc.")
    assert geo.asn("8.8.4.4") is None  # not in the test database
    assert geo.country("8.8.8.8") == "US"  # no country_db: iptocc answers
    for ip in NOT_PUBLIC:
        assert geo.asn(ip) is None


@pytest.mark.shared
def test_city_and_asn_together_through_settings() -> None:
    geo = open_geo(
        GeoIPSettings(
            country_db=shared_file(MM + "GeoIP2-City-Test.mmdb"),
            asn_db=shared_file(MM + "GeoLite2-ASN-Test.mmdb"),
        )
    )
    assert geo.country("81.2.69.142") == "GB"
    assert geo.country("::ffff:81.2.69.142") == "GB"
    assert geo.country("8.8.8.8") is None  # the configured database is authoritative
    assert geo.asn("1.128.0.0") == (1221, "Telstra Pty Ltd")


@pytest.mark.shared
def test_build_age_for_doctor() -> None:
    path = shared_file(MM + "GeoLite2-ASN-Test.mmdb")
    info = mmdb_info(path)
    assert info.database_type == "GeoLite2-ASN"
    assert info.build_epoch > 1_400_000_000
    assert info.age_days(info.build_epoch + 86400 * 3) == pytest.approx(3.0)
    assert mmdb_age_days(path, now=info.build_epoch + 86400) == pytest.approx(1.0)


def test_missing_and_corrupt_db_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^geoip\.country_db: .*no such file"):
        open_geo(GeoIPSettings(country_db=tmp_path / "absent.mmdb"))
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(ConfigError, match=r"^geoip\.asn_db: .*not a readable MaxMind DB"):
        open_geo(GeoIPSettings(asn_db=junk))
    with pytest.raises(ConfigError, match=r"^geoip\.country_db"):
        mmdb_info(junk)


@pytest.mark.shared
def test_wrong_kind_of_database_is_refused() -> None:
    asn = shared_file(MM + "GeoLite2-ASN-Test.mmdb")
    with pytest.raises(ConfigError, match=r"^geoip\.country_db: .*GeoLite2-ASN"):
        MmdbGeo(country_db=asn)
    with pytest.raises(ConfigError, match=r"^geoip\.asn_db"):
        MmdbGeo(asn_db=shared_file(MM + "GeoIP2-Country-Test.mmdb"))


def test_cache_is_bounded_lru() -> None:
    calls: list[str] = []

    class Counting(MemoryGeo):
        def country(self, ip: Any) -> str | None:
            calls.append(str(ip))
            return super().country(ip)

    inner = Counting({"8.0.0.0/8": "US", "9.0.0.0/8": "FR"}, {"8.0.0.0/8": (15169, "Google")})
    geo = CachedGeo(inner, maxsize=2)
    assert geo.country("8.8.8.8") == "US"
    assert geo.asn("8.8.8.8") == (15169, "Google")
    assert geo.country("9.9.9.9") == "FR"
    assert calls == ["8.8.8.8", "9.9.9.9"]
    geo.country("8.8.8.8")  # refresh: 9.9.9.9 is now the oldest
    geo.country("8.8.4.4")  # evicts 9.9.9.9
    assert len(geo) == 2
    geo.country("9.9.9.9")
    assert calls == ["8.8.8.8", "9.9.9.9", "8.8.4.4", "9.9.9.9"]
    assert geo.country("10.0.0.1") is None  # private: never reaches the inner lookup
    assert calls[-1] == "9.9.9.9"


def test_memory_geo_longest_prefix_and_doc_ranges() -> None:
    geo = MemoryGeo(
        {"203.0.113.0/24": "GB", "203.0.113.128/25": "DE", "2001:db8::/32": "NL"},
        {"203.0.113.0/24": (64500, "Example AS")},
    )
    assert geo.country("203.0.113.5") == "GB"
    assert geo.country(IPv4Address("203.0.113.200")) == "DE"
    assert geo.country("2001:db8::1") == "NL"
    assert geo.asn("203.0.113.200") == (64500, "Example AS")
    assert geo.country("198.51.100.1") is None
    assert geo.country("junk") is None
    assert isinstance(geo, GeoLookup)


def test_iptocc_needs_no_network() -> None:
    """The default country data ships inside the wheel: look it up with no network at all."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-n", "true"], check=False).returncode:
        pytest.skip("cannot create a network namespace here (needs unshare and root)")
    code = (
        "from mailward.enrich.geoip import IptoccGeo; "
        "print(IptoccGeo().country('81.2.69.142'), IptoccGeo().country('8.8.8.8'))"
    )
    out = subprocess.run(
        [unshare, "-n", sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["GB", "US"]
