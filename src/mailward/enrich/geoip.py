"""Country and ASN of an address: offline out of the box, MaxMind/DB-IP ``.mmdb`` when configured.

``open_geo(settings.geoip)`` returns a ``GeoLookup``: the country from the configured country or
city database, else from ``iptocc`` (an offline table shipped on PyPI); the ASN only from an ASN
database. Answers are cached (LRU). Private, loopback, documentation and other non-global
addresses have no country and no ASN. ``MemoryGeo`` is the twin for tests.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import iptocc
import maxminddb
from maxminddb.errors import InvalidDatabaseError

from mailward.errors import ConfigError
from mailward.events import normalise_ip

if TYPE_CHECKING:
    from mailward.config.model import GeoIPSettings

IPAddress = IPv4Address | IPv6Address
ASN = tuple[int, str]


@runtime_checkable
class GeoLookup(Protocol):
    def country(self, ip: IPAddress | str) -> str | None:
        """ISO 3166-1 alpha-2 code (``"GB"``), or None when unknown or not a public address."""
        ...

    def asn(self, ip: IPAddress | str) -> ASN | None:
        """(number, organisation), or None when unknown, not configured or not public."""
        ...


def _addr(ip: IPAddress | str) -> IPAddress | None:
    """The address if it is a public one; None for junk and for non-global ranges."""
    if isinstance(ip, str):
        try:
            ip = normalise_ip(ip)
        except ValueError:
            return None
    elif isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # is_global is False for RFC 1918, loopback, link-local, CGNAT, TEST-NETs, 2001:db8::/32, ...
    if not ip.is_global or ip.is_multicast:
        return None
    return ip


class IptoccGeo:
    """Country from the ``iptocc`` package (data compiled into the wheel: no network, no files)."""

    def country(self, ip: IPAddress | str) -> str | None:
        addr = _addr(ip)
        if addr is None:
            return None
        code: str | None = iptocc.country_code(str(addr))
        return code or None

    def asn(self, ip: IPAddress | str) -> ASN | None:
        return None


@dataclass(frozen=True, slots=True)
class MmdbInfo:
    """What ``mailward doctor`` reports about an .mmdb file."""

    path: Path
    database_type: str
    build_epoch: int
    ip_version: int

    def age_days(self, now: float | None = None) -> float:
        return ((time.time() if now is None else now) - self.build_epoch) / 86400.0


COUNTRY_KINDS = ("Country", "City")  # database_type words usable for geoip.country_db
ASN_KINDS = ("ASN", "ISP")  # ... and for geoip.asn_db


def _open_mmdb(path: Path, key: str, kinds: tuple[str, ...]) -> maxminddb.Reader:
    try:
        reader = maxminddb.open_database(str(path))
    except FileNotFoundError as exc:
        raise ConfigError(key, f"{path}: no such file") from exc
    except (InvalidDatabaseError, ValueError, OSError) as exc:
        raise ConfigError(key, f"{path}: not a readable MaxMind DB file ({exc})") from exc
    dbtype = str(reader.metadata().database_type)
    if not any(k in dbtype for k in kinds):
        reader.close()
        raise ConfigError(
            key, f"{path}: is a {dbtype!r} database, expected one with {' or '.join(kinds)} data"
        )
    return reader


def mmdb_info(path: str | Path, key: str = "geoip.country_db") -> MmdbInfo:
    """Type and build time (``build_epoch``) of an .mmdb; ``ConfigError`` naming ``key`` if bad."""
    p = Path(path)
    reader = _open_mmdb(p, key, ("",))
    try:
        meta = reader.metadata()
        return MmdbInfo(p, str(meta.database_type), int(meta.build_epoch), int(meta.ip_version))
    finally:
        reader.close()


def mmdb_age_days(
    path: str | Path, now: float | None = None, key: str = "geoip.country_db"
) -> float:
    """Days since the database at ``path`` was built (from its metadata, not the file time)."""
    return mmdb_info(path, key).age_days(now)


def _get(reader: maxminddb.Reader, addr: IPAddress) -> Mapping[str, Any] | None:
    try:
        rec = reader.get(addr)
    except ValueError:  # an IPv6 address in an IPv4-only database
        return None
    except InvalidDatabaseError:  # a corrupt data section: answer "unknown", keep defending
        return None
    return rec if isinstance(rec, Mapping) else None


class MmdbGeo:
    """MaxMind (GeoIP2/GeoLite2) or DB-IP databases; either may be absent.

    Without a country database the country comes from ``fallback`` (iptocc by default).
    """

    def __init__(
        self,
        country_db: str | Path | None = None,
        asn_db: str | Path | None = None,
        *,
        fallback: GeoLookup | None = None,
    ) -> None:
        self._country = (
            None
            if country_db is None
            else _open_mmdb(Path(country_db), "geoip.country_db", COUNTRY_KINDS)
        )
        try:
            self._asn = (
                None if asn_db is None else _open_mmdb(Path(asn_db), "geoip.asn_db", ASN_KINDS)
            )
        except ConfigError:
            if self._country is not None:
                self._country.close()
            raise
        self._fallback = fallback if fallback is not None else IptoccGeo()

    def country(self, ip: IPAddress | str) -> str | None:
        addr = _addr(ip)
        if addr is None:
            return None
        if self._country is None:
            return self._fallback.country(addr)
        rec = _get(self._country, addr)
        if rec is None:
            return None
        # Anycast and satellite ranges have no "country"; the registered one is the best guess.
        for field in ("country", "registered_country"):
            sub = rec.get(field)
            if isinstance(sub, Mapping) and isinstance(sub.get("iso_code"), str):
                return str(sub["iso_code"])
        return None

    def asn(self, ip: IPAddress | str) -> ASN | None:
        addr = _addr(ip)
        if addr is None or self._asn is None:
            return None
        rec = _get(self._asn, addr)
        if rec is None:
            return None
        number = rec.get("autonomous_system_number")
        if not isinstance(number, int):
            return None
        return number, str(rec.get("autonomous_system_organization") or "")

    def close(self) -> None:
        for reader in (self._country, self._asn):
            if reader is not None:
                reader.close()


class CachedGeo:
    """A bounded LRU in front of another lookup (attack traffic repeats addresses a lot)."""

    def __init__(self, inner: GeoLookup, maxsize: int = 65536) -> None:
        self.inner = inner
        self.maxsize = maxsize
        self._cache: OrderedDict[IPAddress, tuple[str | None, ASN | None]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def _entry(self, ip: IPAddress | str) -> tuple[str | None, ASN | None]:
        addr = _addr(ip)
        if addr is None:
            return None, None
        with self._lock:
            hit = self._cache.get(addr)
            if hit is not None:
                self.hits += 1
                self._cache.move_to_end(addr)
                return hit
            self.misses += 1
        entry = (self.inner.country(addr), self.inner.asn(addr))
        if self.maxsize > 0:
            with self._lock:  # report builders may share one lookup between threads
                self._cache[addr] = entry
                if len(self._cache) > self.maxsize:
                    self._cache.popitem(last=False)
        return entry

    def country(self, ip: IPAddress | str) -> str | None:
        return self._entry(ip)[0]

    def asn(self, ip: IPAddress | str) -> ASN | None:
        return self._entry(ip)[1]

    def __len__(self) -> int:
        return len(self._cache)


class MemoryGeo:
    """The in-memory twin: networks mapped to countries and ASNs, longest prefix wins.

    Unlike the real lookups it answers for any address it was given, documentation ranges
    included, because that is what tests use."""

    def __init__(
        self,
        countries: Mapping[str, str] | None = None,
        asns: Mapping[str, ASN] | None = None,
    ) -> None:
        self._countries = self._table(countries or {})
        self._asns = self._table(asns or {})

    @staticmethod
    def _table(src: Mapping[str, Any]) -> list[tuple[IPv4Network | IPv6Network, Any]]:
        nets = [(ip_network(k, strict=False), v) for k, v in src.items()]
        return sorted(nets, key=lambda nv: nv[0].prefixlen, reverse=True)

    @staticmethod
    def _find(table: list[tuple[IPv4Network | IPv6Network, Any]], ip: IPAddress | str) -> Any:
        try:
            addr = normalise_ip(ip) if isinstance(ip, str) else ip
        except ValueError:
            return None
        for net, value in table:
            if net.version == addr.version and addr in net:
                return value
        return None

    def country(self, ip: IPAddress | str) -> str | None:
        value: str | None = self._find(self._countries, ip)
        return value

    def asn(self, ip: IPAddress | str) -> ASN | None:
        value: ASN | None = self._find(self._asns, ip)
        return value


def open_geo(settings: GeoIPSettings) -> GeoLookup:
    """The configured lookup, cached. Bad or missing .mmdb files raise ``ConfigError``."""
    inner: GeoLookup
    if settings.country_db is None and settings.asn_db is None:
        inner = IptoccGeo()
    else:
        inner = MmdbGeo(settings.country_db, settings.asn_db)
    if settings.cache_size == 0:
        return inner
    return CachedGeo(inner, settings.cache_size)
