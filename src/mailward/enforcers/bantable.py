"""The pure model of what an enforcer holds: banned addresses and non-overlapping banned prefixes,
each with an expiry. ``ban``/``unban`` return the element changes to send to the backend, so a
kernel interval set never receives overlapping prefixes and a re-ban never shortens a ban.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

Net = IPv4Network | IPv6Network


def as_network(target: str) -> Net:
    """Parse an address or CIDR target; host bits are masked (``10.0.0.5/24`` = ``10.0.0.0/24``).
    IPv4-mapped IPv6 addresses become IPv4, as everywhere in mailward."""
    target = target.strip()
    if "/" not in target:
        addr = ip_address(target)  # much cheaper than parsing a network
        if isinstance(addr, IPv6Address):
            mapped = addr.ipv4_mapped
            return IPv4Network((int(mapped), 32)) if mapped else IPv6Network((int(addr), 128))
        return IPv4Network((int(addr), 32))
    net = ip_network(target, strict=False)
    if isinstance(net, IPv6Network) and net.prefixlen == 128:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            return IPv4Network(mapped)
    return net


def is_host(net: Net) -> bool:
    return net.prefixlen == net.max_prefixlen


def _key(until: float | None) -> float:
    return math.inf if until is None else until


@dataclass
class Change:
    """Elements to delete and to add, applied in that order in one atomic batch."""

    delete: list[Net] = field(default_factory=list)
    add: list[tuple[Net, float | None]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.delete or self.add)

    def extend(self, other: Change) -> None:
        self.delete.extend(other.delete)
        self.add.extend(other.add)


class BanTable:
    """Addresses (any number) and prefixes (never overlapping) with an expiry (None = permanent)."""

    def __init__(self) -> None:
        self.hosts: dict[Net, float | None] = {}
        self.prefixes: dict[Net, float | None] = {}
        self._lengths: Counter[tuple[int, int]] = Counter()  # (version, prefixlen) in prefixes

    def __len__(self) -> int:
        return len(self.hosts) + len(self.prefixes)

    def elements(self) -> Iterator[tuple[Net, float | None]]:
        yield from self.hosts.items()
        yield from self.prefixes.items()

    def get(self, net: Net) -> float | None | bool:
        """The expiry of exactly this element, or False when absent."""
        table = self.hosts if is_host(net) else self.prefixes
        return table[net] if net in table else False

    def ban(self, net: Net, until: float | None) -> Change:
        if is_host(net):
            old = self.hosts.get(net, False)
            if old is not False and _key(old) >= _key(until):
                return Change()
            change = Change(delete=[net] if old is not False else [])
            self.hosts[net] = until
            change.add.append((net, until))
            return change
        return self._ban_prefix(net, until)

    def _ban_prefix(self, net: Net, until: float | None) -> Change:
        change = Change()
        if net in self.prefixes:
            if _key(self.prefixes[net]) >= _key(until):
                return change
            self._drop(net, change)
            self._put(net, until, change)
            return change
        bigger = self._container(net)
        if bigger is not None:
            old = self.prefixes[bigger]
            if _key(old) >= _key(until):
                return change
            self._drop(bigger, change)
            for piece in bigger.address_exclude(net):  # type: ignore[arg-type]
                self._put(piece, old, change)
            self._put(net, until, change)
            return change
        pieces: list[Net] = [net]
        for small in self._contained(net):
            if _key(self.prefixes[small]) > _key(until):
                pieces = _exclude(pieces, small)  # keep the longer ban, fill around it
            else:
                self._drop(small, change)
        for piece in pieces:
            self._put(piece, until, change)
        return change

    def unban(self, net: Net) -> Change:
        """Lift every ban inside ``net``; a larger banned prefix is split around it."""
        change = Change()
        if is_host(net):
            if net in self.hosts:
                del self.hosts[net]
                change.delete.append(net)
        else:
            for host in [h for h in self.hosts if h.version == net.version and h.subnet_of(net)]:  # type: ignore[arg-type]
                del self.hosts[host]
                change.delete.append(host)
        bigger = self._container(net) if net not in self.prefixes else None
        if bigger is not None:
            old = self.prefixes[bigger]
            self._drop(bigger, change)
            for piece in bigger.address_exclude(net):  # type: ignore[arg-type]
                self._put(piece, old, change)
        if net in self.prefixes:
            self._drop(net, change)
        for small in self._contained(net):
            self._drop(small, change)
        return change

    def expire(self, now: float) -> list[Net]:
        """Forget elements whose expiry has passed (the kernel times them out by itself)."""
        gone = [n for n, u in self.hosts.items() if u is not None and u <= now]
        for n in gone:
            del self.hosts[n]
        gone_p = [n for n, u in self.prefixes.items() if u is not None and u <= now]
        for n in gone_p:
            self._forget(n)
        return gone + gone_p

    def clear(self) -> None:
        self.hosts.clear()
        self.prefixes.clear()
        self._lengths.clear()

    def covers(self, net: Net) -> bool:
        """True when ``net`` (an address or prefix) lies inside some ban."""
        if net in self.hosts or net in self.prefixes:
            return True
        return self._container(net) is not None

    # -- internals ---------------------------------------------------------------------------
    def _container(self, net: Net) -> Net | None:
        # Only prefix lengths actually present are tried: usually one or two, not 32 or 128.
        for version, length in sorted(self._lengths, key=lambda k: -k[1]):
            if (
                version != net.version
                or length >= net.prefixlen
                or not self._lengths[(version, length)]
            ):
                continue
            candidate = net.supernet(new_prefix=length)
            if candidate in self.prefixes:
                return candidate
        return None

    def _contained(self, net: Net) -> list[Net]:
        if not any(
            v == net.version and length > net.prefixlen and count
            for (v, length), count in self._lengths.items()
        ):
            return []
        return [
            p
            for p in self.prefixes
            if p.version == net.version and p.prefixlen > net.prefixlen and p.subnet_of(net)  # type: ignore[arg-type]
        ]

    def _put(self, net: Net, until: float | None, change: Change) -> None:
        self.prefixes[net] = until
        self._lengths[(net.version, net.prefixlen)] += 1
        change.add.append((net, until))

    def _drop(self, net: Net, change: Change) -> None:
        self._forget(net)
        change.delete.append(net)

    def _forget(self, net: Net) -> None:
        del self.prefixes[net]
        self._lengths[(net.version, net.prefixlen)] -= 1


def _exclude(pieces: Iterable[Net], hole: Net) -> list[Net]:
    out: list[Net] = []
    for piece in pieces:
        if piece.version == hole.version and hole.subnet_of(piece):  # type: ignore[arg-type]
            out.extend(piece.address_exclude(hole) if piece != hole else ())  # type: ignore[arg-type]
        else:
            out.append(piece)
    return out
