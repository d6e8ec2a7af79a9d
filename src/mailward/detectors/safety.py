"""Safety nets around the detectors: exempt networks and the ban circuit breaker.

Exempt networks (the server's own addresses, the allow list with host names resolved once at start)
are never counted and never banned, and no prefix ban may cover them. The circuit breaker stops
issuing bans beyond a per-minute bound and raises a ``CircuitOpen`` signal for alerting, because a
flood of bans is more often a broken parser or a mistaken rule than a real attack.
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Any

from mailward.errors import ConfigError

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
Resolver = Callable[[str], Sequence[str]]


def system_resolver(name: str) -> list[str]:
    """Every address ``name`` resolves to (A and AAAA)."""
    infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def resolve_allow(
    entries: Iterable[str], *, resolver: Resolver = system_resolver, key: str = "allow"
) -> list[Network]:
    """Turn allow-list entries (CIDRs, addresses, host names) into networks. A name that does not
    resolve is a ``ConfigError`` naming ``key``: an allow list that silently shrinks is unsafe."""
    out: list[Network] = []
    for entry in entries:
        text = entry.strip()
        try:
            out.append(ip_network(text, strict=False))
            continue
        except ValueError:
            pass
        try:
            addresses = resolver(text)
        except OSError as exc:
            raise ConfigError(key, f"cannot resolve {text!r}: {exc}") from exc
        if not addresses:
            raise ConfigError(key, f"{text!r} resolves to no address")
        for address in addresses:
            out.append(ip_network(address.split("%", 1)[0]))
    return out


class Exempt:
    """Networks that are never counted or banned, checked with one dict probe per length."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = list(networks)
        self._index: dict[int, dict[int, set[int]]] = {4: {}, 6: {}}
        for net in self.networks:
            self._index[net.version].setdefault(net.prefixlen, set()).add(int(net.network_address))

    def __contains__(self, ip: IPAddress) -> bool:
        return self.holds(ip.version, int(ip))

    def holds(self, version: int, value: int) -> bool:
        """``in`` for an address given as ints."""
        bits = 32 if version == 4 else 128
        for plen, nets in self._index[version].items():
            if value >> (bits - plen) << (bits - plen) in nets:
                return True
        return False

    def overlaps(self, net: Network) -> bool:
        """Whether banning ``net`` would touch an exempt address."""
        return any(n.version == net.version and n.overlaps(net) for n in self.networks)

    def overlaps_slot(self, version: int, prefixlen: int, value: int) -> bool:
        """``overlaps`` for a network given as ints (a ledger slot): no network object built."""
        bits = 32 if version == 4 else 128
        for n in self.networks:
            if n.version == version:
                shift = bits - min(prefixlen, n.prefixlen)  # one contains the other
                if value >> shift == int(n.network_address) >> shift:
                    return True
        return False


@dataclass(frozen=True, slots=True)
class CircuitOpen:
    """Bans stopped: more than ``limit`` new bans within a minute. Alert on it."""

    ts: float
    bans_last_minute: int
    limit: int

    kind = "circuit_open"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "time": datetime.fromtimestamp(self.ts, UTC).isoformat().replace("+00:00", "Z"),
            "bans_last_minute": self.bans_last_minute,
            "limit": self.limit,
        }


@dataclass(frozen=True, slots=True)
class CircuitClosed:
    """Bans resumed; ``suppressed`` bans were not issued while the circuit was open."""

    ts: float
    suppressed: int

    kind = "circuit_closed"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "time": datetime.fromtimestamp(self.ts, UTC).isoformat().replace("+00:00", "Z"),
            "suppressed": self.suppressed,
        }


Signal = CircuitOpen | CircuitClosed


class CircuitBreaker:
    """Allows at most ``limit`` bans in any 60 s; the one beyond opens the circuit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._times: deque[float] = deque(maxlen=limit)
        self.is_open = False
        self.suppressed = 0
        self.total_suppressed = 0
        self.signals: list[Signal] = []

    def _recent(self, now: float) -> int:
        while self._times and self._times[0] <= now - 60.0:
            self._times.popleft()
        return len(self._times)

    def allow(self, now: float) -> bool:
        """Ask to issue one ban at ``now``; False while the bound is reached."""
        if self._recent(now) < self.limit:
            self.poll(now)
            self._times.append(now)
            return True
        self.suppressed += 1
        self.total_suppressed += 1
        if not self.is_open:
            self.is_open = True
            self.signals.append(CircuitOpen(now, len(self._times), self.limit))
        return False

    def poll(self, now: float) -> None:
        """Close the circuit once the last minute is back under the bound."""
        if self.is_open and self._recent(now) < self.limit:
            self.is_open = False
            self.signals.append(CircuitClosed(now, self.suppressed))
            self.suppressed = 0

    def take_signals(self) -> list[Signal]:
        out, self.signals = self.signals, []
        return out
