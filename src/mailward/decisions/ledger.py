"""The ledger of active decisions: bans on addresses and prefixes, protected usernames, with expiry.

Merge semantics are extend-only: a new decision on a target that is already active keeps the later
expiry and the higher offence count, so a replayed or duplicated decision never shortens a ban.
Lookups by address check the exact address and every containing prefix length in use (a dict per
length), so ``covering()`` costs a handful of dict probes whatever the number of bans.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

from mailward.decisions.model import USER_PREFIX, Action, Decision

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

_BUCKET = 60.0  # expiry is swept per minute bucket: no heap entry per ban


def network_of(ip: IPAddress, prefixlen: int) -> Network:
    """The network of ``prefixlen`` bits that contains ``ip``."""
    if isinstance(ip, IPv4Address):
        return IPv4Network((int(ip) >> (32 - prefixlen) << (32 - prefixlen), prefixlen))
    return IPv6Network((int(ip) >> (128 - prefixlen) << (128 - prefixlen), prefixlen))


def canonical_target(target: str) -> str:
    """``user:NAME`` as given; an address or CIDR in its canonical form (``10.1.2.0/24``).

    Raises ValueError for a target that is neither.
    """
    if target.startswith(USER_PREFIX):
        if len(target) == len(USER_PREFIX):
            raise ValueError("empty username in target")
        return target
    net = ip_network(target.strip(), strict=False)
    if net.num_addresses == 1:
        return str(net.network_address)
    return str(net)


Slot = tuple[int, int, int]
"""(IP version, prefix length, network as int): a parsed address or prefix target."""


def slot_of(target: str) -> Slot:
    """The slot of an address or CIDR target (ValueError for anything else)."""
    net = ip_network(target, strict=False)
    return net.version, net.prefixlen, int(net.network_address)


def _is_active(decision: Decision, now: float) -> bool:
    return decision.until is None or decision.until > now


class Ledger:
    """Active BAN and PROTECT_USER decisions keyed by target, with fast lookups by address."""

    def __init__(self) -> None:
        # family -> prefix length -> network as int -> decision
        self._nets: dict[int, dict[int, dict[int | str, Decision]]] = {4: {}, 6: {}}
        self._users: dict[int | str, Decision] = {}
        self._buckets: dict[int, list[str]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    # -- writes -----------------------------------------------------------------------------

    def add(self, decision: Decision, slot: Slot | None = None) -> Decision | None:
        """Record a BAN or PROTECT_USER decision; returns the stored (merged) decision when it
        changed anything, ``None`` when an active decision already covered it. Callers that
        built the target themselves may pass its ``slot`` (and a canonical target) to skip
        parsing it again."""
        if decision.action not in (Action.BAN, Action.PROTECT_USER):
            raise ValueError(f"the ledger holds bans and protections, not {decision.action}")
        if slot is None:
            target = canonical_target(decision.target)
            if target != decision.target:
                decision = replace(decision, target=target)
        table, key = self._table(decision.target, slot)
        old = table.get(key)
        if old is not None and _is_active(old, decision.ts):
            if old.until is None or (decision.until is not None and decision.until <= old.until):
                return None
            if old.offence > decision.offence:
                decision = replace(decision, offence=old.offence)
        if old is None:
            self._count += 1
        table[key] = decision
        if decision.until is not None:
            bucket = int(decision.until // _BUCKET)
            due = self._buckets.get(bucket)
            if due is None:
                due = self._buckets[bucket] = []
            due.append(decision.target)
        return decision

    def remove(self, target: str) -> Decision | None:
        """Drop the decision on exactly ``target`` (a prefix ban is not split by unbanning one
        address inside it); returns what was removed."""
        target = canonical_target(target)
        table, key = self._slot(target)
        old = table.pop(key, None)
        if old is not None:
            self._count -= 1
        return old

    def expire(self, now: float) -> list[Decision]:
        """Remove and return the decisions whose expiry has passed."""
        out: list[Decision] = []
        due = [b for b in self._buckets if b <= int(now // _BUCKET)]
        for bucket in sorted(due):
            keep: list[str] = []
            for target in self._buckets.pop(bucket):
                table, key = self._slot(target)
                decision = table.get(key)
                if decision is None or decision.until is None:
                    continue
                if decision.until <= now:
                    del table[key]
                    self._count -= 1
                    out.append(decision)
                elif int(decision.until // _BUCKET) == bucket:
                    keep.append(target)  # later in this same minute
            if keep:
                self._buckets[bucket] = keep
        return out

    # -- reads ------------------------------------------------------------------------------

    def get(self, target: str, now: float, slot: Slot | None = None) -> Decision | None:
        """The active decision on exactly ``target`` (its ``slot`` may be given, as in ``add``)."""
        if slot is None:
            target = canonical_target(target)
        table, key = self._table(target, slot)
        decision = table.get(key)
        return decision if decision is not None and _is_active(decision, now) else None

    def covering(self, ip: IPAddress, now: float) -> Decision | None:
        """The active ban on ``ip`` or on a prefix containing it (longest expiry wins)."""
        if isinstance(ip, IPv4Address):
            lengths, bits = self._nets[4], 32
        else:
            lengths, bits = self._nets[6], 128
        value = int(ip)
        best: Decision | None = None
        for plen, table in lengths.items():
            if not table:
                continue
            decision = table.get(value >> (bits - plen) << (bits - plen))
            if decision is None or not _is_active(decision, now):
                continue
            if best is None or decision.until is None:
                best = decision
            elif best.until is not None and decision.until > best.until:
                best = decision
        return best

    def user(self, name: str, now: float) -> Decision | None:
        """The active protection of username ``name``, if any."""
        decision = self._users.get(USER_PREFIX + name)
        return decision if decision is not None and _is_active(decision, now) else None

    def active(self, now: float) -> list[Decision]:
        return [d for d in self._all() if _is_active(d, now)]

    def _all(self) -> Iterator[Decision]:
        for family in self._nets.values():
            for table in family.values():
                yield from table.values()
        yield from self._users.values()

    def _slot(self, target: str) -> tuple[dict[int | str, Decision], int | str]:
        return self._table(target, None)

    def _table(self, target: str, slot: Slot | None) -> tuple[dict[int | str, Decision], int | str]:
        if slot is None:
            if target.startswith(USER_PREFIX):
                return self._users, target
            slot = slot_of(target)
        version, prefixlen, value = slot
        family = self._nets[version]
        table = family.get(prefixlen)
        if table is None:
            table = family[prefixlen] = {}
        return table, value
