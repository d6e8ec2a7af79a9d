"""What every detector shares: the facts about one event's source, and the finding it returns.

A detector is a plain class over ``(state, source, event, now)`` that returns ``Finding``s; the
engine turns findings into decisions (escalation, merging, the circuit breaker), so detectors
never see the ledger, the history or the clock.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from socket import inet_ntoa
from typing import Final

from mailward.decisions.ledger import Slot, network_of
from mailward.decisions.model import Action, Decision

IPAddress = IPv4Address | IPv6Address
Evidence = dict[str, int | float | str]

_V4_END: Final = 1 << 32  # address keys below it are IPv4 (detectors.keys)
MAX_USERNAME: Final = 256  # attacker-chosen text: bound what a key may cost


_CANONICAL: Final[dict[str, str]] = {}  # name as sent -> its canonical form ("" for none)
_CANONICAL_MAX: Final = 32768  # names of up to _CANONICAL_LEN characters: at most a few MB
_CANONICAL_LEN: Final = 128


def canonical_user(name: str | None) -> str | None:
    """Usernames compare case-insensitively (attackers vary case to dodge counters)."""
    if name is None:
        return None
    # The same names come again and again (every report, every check): one lookup instead of
    # strip, lower, slice and intern.
    known = _CANONICAL.get(name)
    if known is None:
        known = name.strip().lower()[:MAX_USERNAME]
        # One string object per distinct name, however many events carry it: it is a key in
        # several tables and the bans' evidence.
        known = sys.intern(known) if known else ""
        if len(name) <= _CANONICAL_LEN:
            if len(_CANONICAL) >= _CANONICAL_MAX:
                _CANONICAL.clear()  # cheaper than LRU bookkeeping on every hit
            _CANONICAL[name] = known
    return known or None


def need(threshold: int, factor: float) -> int:
    """A threshold scaled for a known-good source, never below the configured one."""
    return max(threshold, math.ceil(threshold * factor))


class Source:
    """Per-event facts about the client address, computed once by the engine.

    A plain class, not a dataclass: compiled with mypyc, a dataclass keeps the interpreted
    ``__init__`` the dataclasses module generates, and one ``Source`` is built per event."""

    __slots__ = (
        "ip",
        "key",
        "prefix",
        "prefixlen",
        "factor",
        "country",
        "asn",
        "banned",
        "cover",
        "_address",
        "prefix_held",
        "_prefix_target",
    )

    def __init__(
        self,
        ip: IPAddress,
        key: int,  # detectors.keys.ip_key
        prefix: int,  # detectors.keys.prefix_key
        prefixlen: int,  # the configured prefix length for this address family
        factor: float = 1.0,  # > 1 when the address logged in successfully of late
        country: str | None = None,
        asn: int | None = None,
        banned: bool = False,  # already covered by an active ban (count, but do not ban again)
        cover: Decision | None = None,  # that ban
        address: str = "",  # str(ip), made on first use when not given
    ) -> None:
        self.ip = ip
        self.key = key
        self.prefix = prefix
        self.prefixlen = prefixlen
        self.factor = factor
        self.country = country
        self.asn = asn
        self.banned = banned
        self.cover = cover
        self._address = address
        # its prefix is banned for at least a prefix ban: a prefix finding would add nothing
        self.prefix_held = False
        self._prefix_target = ""  # made on first use

    @property
    def address(self) -> str:
        """``str(ip)``: made only for an event that leads to a finding (most do not)."""
        address = self._address
        if not address:
            address = self._address = str(self.ip)
        return address

    @property
    def prefix_target(self) -> str:
        """The containing prefix as a decision target (``198.51.100.0/24``)."""
        target = self._prefix_target
        if not target:
            if self.ip.version == 4:
                # what str(IPv4Network) gives, without building one per event
                shift = 32 - self.prefixlen
                base = int(self.ip) >> shift << shift
                target = f"{inet_ntoa(base.to_bytes(4, 'big'))}/{self.prefixlen}"
            else:
                target = str(network_of(self.ip, self.prefixlen))
            self._prefix_target = target
        return target

    @property
    def slot(self) -> Slot:
        """The address as a ledger slot (for IPv4 its int is ``key`` itself: one object shared
        by the ledger and the detector state)."""
        if self.ip.version == 4:
            return (4, 32, self.key)
        return (6, 128, int(self.ip))

    @property
    def prefix_slot(self) -> Slot:
        """The containing prefix as a ledger slot."""
        if self.key < _V4_END:  # IPv4: the key is the address itself
            shift = 32 - self.prefixlen
            return (4, self.prefixlen, self.key >> shift << shift)
        value = int(self.ip) >> (128 - self.prefixlen) << (128 - self.prefixlen)
        return (6, self.prefixlen, value)


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule fired: ban (or protect) ``target`` for ``duration`` seconds before escalation."""

    rule: str
    target: str
    action: Action
    duration: float
    reason: str
    evidence: Evidence = field(default_factory=dict)
    escalate: bool = True


def fmt_duration(seconds: float) -> str:
    """``600`` -> ``10m``; for reasons shown to operators."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
