"""The ledger of active decisions: bans on addresses and prefixes, protected usernames, with expiry.

Merge semantics are extend-only: a new decision on a target that is already active keeps the later
expiry and the higher offence count, so a replayed or duplicated decision never shortens a ban.
Lookups by address check the exact address and every containing prefix length in use (a dict per
length), so ``covering()`` costs a handful of dict probes whatever the number of bans.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from socket import inet_ntoa
from typing import Final

from mailward.decisions.model import USER_PREFIX, Action, Decision

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

_BUCKET: Final = 60.0  # expiry is swept per minute bucket: no heap entry per ban
_ADDED_LOG: Final = 256  # address and prefix bans remembered for ``added_since``
_VIEWS: Final = (
    16384  # Decisions kept built for the bans read most (see Ledger.view; ~5 MB at most)
)


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
    """Active BAN and PROTECT_USER decisions keyed by target, with fast lookups by address.

    Address and prefix bans are kept as compact rows ``(ts, until, template)`` — the rule,
    reason, evidence and offence are one shared tuple for all the bans that say the same — and
    rebuilt into ``Decision`` objects when read: a million botnet bans must not cost a million
    target strings and decision objects."""

    def __init__(self) -> None:
        # family -> prefix length -> network as int -> row
        self._nets: dict[int, dict[int, dict[int, _Row]]] = {4: {}, 6: {}}
        self._users: dict[str, Decision] = {}
        # minute bucket -> network ints of one table (or usernames) whose expiry falls in it;
        # the ints are the table's own key objects, so the index costs a pointer per ban
        self._buckets: dict[tuple[int, int], dict[int, list[int | str]]] = {}
        self._templates: dict[tuple[str, str, int, int], _Template] = {}
        self._views: dict[int, tuple[_Row, Decision]] = {}
        self._count = 0
        #: grows with every change (a ban or protection added, removed or expired), so readers
        #: may keep what they derived from the ledger until it moves (the policy servers do)
        self.generation = 0
        # (generation, version, prefix length, network) of the latest address and prefix bans
        # added, oldest first; and the generations below which ``added_since`` cannot answer:
        # the last ban lifted or expired, and the newest entry the bounded log let go
        self._added: deque[tuple[int, int, int, int]] = deque()
        self._lifted_at = 0
        self._log_floor = 0

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
        if decision.target.startswith(USER_PREFIX):
            return self._add_user(decision)
        if slot is None:
            slot = slot_of(decision.target)
        version, prefixlen, value = slot
        family = self._nets[version]
        table = family.get(prefixlen)
        if table is None:
            table = family[prefixlen] = {}
        old = table.get(value)
        if old is not None and (old.until is None or old.until > decision.ts):
            if old.until is None or (decision.until is not None and decision.until <= old.until):
                return None
            if old.template[3] > decision.offence:
                decision = replace(decision, offence=old.template[3])
        if old is None:
            self._count += 1
        table[value] = _Row(decision.ts, decision.until, self._template(decision))
        self.generation += 1
        added = self._added
        if len(added) >= _ADDED_LOG:
            self._log_floor = added.popleft()[0]
        added.append((self.generation, version, prefixlen, value))
        if decision.until is not None:
            self._due((version, prefixlen), decision.until).append(value)
        return decision

    def _add_user(self, decision: Decision) -> Decision | None:
        old = self._users.get(decision.target)
        if old is not None and _is_active(old, decision.ts):
            if old.until is None or (decision.until is not None and decision.until <= old.until):
                return None
        if old is None:
            self._count += 1
        self._users[decision.target] = decision
        self.generation += 1
        if decision.until is not None:
            self._due(_USERS, decision.until).append(decision.target)
        return decision

    def _due(self, table: tuple[int, int], until: float) -> list[int | str]:
        buckets = self._buckets.get(table)
        if buckets is None:
            buckets = self._buckets[table] = {}
        bucket = int(until // _BUCKET)
        due = buckets.get(bucket)
        if due is None:
            due = buckets[bucket] = []
        return due

    def _template(self, decision: Decision) -> _Template:
        key = (decision.rule, decision.reason, id(decision.evidence), decision.offence)
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) >= 65536:
                self._templates.clear()  # only sharing is lost
            template = (decision.rule, decision.reason, decision.evidence, decision.offence)
            self._templates[key] = template
        return template

    def remove(self, target: str) -> Decision | None:
        """Drop the decision on exactly ``target`` (a prefix ban is not split by unbanning one
        address inside it); returns what was removed."""
        target = canonical_target(target)
        if target.startswith(USER_PREFIX):
            user = self._users.pop(target, None)
            if user is not None:
                self._count -= 1
                self.generation += 1
            return user
        slot = slot_of(target)
        table = self._nets[slot[0]].get(slot[1])
        row = None if table is None else table.pop(slot[2], None)
        if row is None:
            return None
        self._count -= 1
        self.generation += 1
        self._lifted_at = self.generation
        return _decision(slot, row)

    def expire(self, now: float) -> list[Decision]:
        """Remove and return the decisions whose expiry has passed."""
        out: list[Decision] = []
        current = int(now // _BUCKET)
        for where, buckets in self._buckets.items():
            table: dict[int, _Row] | None = None
            if where != _USERS:
                table = self._nets[where[0]].get(where[1])
            for bucket in sorted(b for b in buckets if b <= current):
                keep: list[int | str] = []
                for item in buckets.pop(bucket):
                    until: float | None
                    if isinstance(item, str):
                        user = self._users.get(item)
                        until = None if user is None else user.until
                        if user is not None and until is not None and until <= now:
                            del self._users[item]
                            self._count -= 1
                            out.append(user)
                            continue
                    else:
                        row = None if table is None else table.get(item)
                        until = None if row is None else row.until
                        if table is not None and row is not None and until is not None:
                            if until <= now:
                                del table[item]
                                self._count -= 1
                                out.append(_decision((where[0], where[1], item), row))
                                continue
                    if until is not None and int(until // _BUCKET) == bucket:
                        keep.append(item)  # later in this same minute
                if keep:
                    buckets[bucket] = keep
        if out:
            self.generation += 1
            self._lifted_at = self.generation
        return out

    def added_since(self, generation: int) -> list[tuple[int, int, int]] | None:
        """The address and prefix bans added after ``generation`` as ``(version, prefix
        length, network)``, newest first: all that changed since then for an address's
        standing. None when more changed (a ban was lifted or ran out) or the record does not
        reach back that far: then everything derived from the ledger is to be dropped."""
        if generation >= self.generation:
            return []
        if generation < self._lifted_at or generation < self._log_floor:
            return None
        out: list[tuple[int, int, int]] = []
        for at, version, prefixlen, network in reversed(self._added):
            if at <= generation:
                break
            out.append((version, prefixlen, network))
        return out

    # -- reads ------------------------------------------------------------------------------

    def get(self, target: str, now: float, slot: Slot | None = None) -> Decision | None:
        """The active decision on exactly ``target`` (its ``slot`` may be given, as in ``add``)."""
        if slot is None:
            target = canonical_target(target)
            if target.startswith(USER_PREFIX):
                user = self._users.get(target)
                return user if user is not None and _is_active(user, now) else None
            slot = slot_of(target)
        table = self._nets[slot[0]].get(slot[1])
        row = None if table is None else table.get(slot[2])
        if row is None or (row.until is not None and row.until <= now):
            return None
        return _decision(slot, row)

    def active_row(self, slot: Slot, now: float) -> tuple[float, float | None, int] | None:
        """``(ts, until, offence)`` of the active ban on exactly ``slot``: what ``get`` says,
        without rebuilding the target string and the ``Decision`` (the detectors' hot path)."""
        table = self._nets[slot[0]].get(slot[1])
        row = None if table is None else table.get(slot[2])
        if row is None or (row.until is not None and row.until <= now):
            return None
        return row.ts, row.until, row.template[3]

    def covering(self, ip: IPAddress, now: float) -> Decision | None:
        """The active ban on ``ip`` or on a prefix containing it (longest expiry wins)."""
        found = self.covering_row(4 if isinstance(ip, IPv4Address) else 6, int(ip), now)
        return None if found is None else self.view(found[0], found[1])

    def covering_row(self, version: int, value: int, now: float) -> tuple[Slot, _Row] | None:
        """``covering`` for an address given as ints, as the raw row: the in-line check asks
        this for every request and needs a ``Decision`` only when there is a ban."""
        bits = 32 if version == 4 else 128
        best: tuple[Slot, _Row] | None = None
        for plen, table in self._nets[version].items():
            if not table:
                continue
            base = value >> (bits - plen) << (bits - plen)
            row = table.get(base)
            if row is None:
                continue
            until = row.until
            if until is not None and until <= now:
                continue
            if (
                best is None
                or until is None
                or (best[1].until is not None and until > best[1].until)
            ):
                best = ((version, plen, base), row)
        return best

    def view(self, slot: Slot, row: _Row) -> Decision:
        """``row_decision(slot, row)``, built once while the row stands: the in-line check and
        every event from a banned source ask for the same few bans over and over. A row is
        replaced, never changed, so the row object itself says whether the view still holds."""
        views = self._views
        hit = views.get(id(row))
        if hit is not None and hit[0] is row:
            return hit[1]
        if len(views) >= _VIEWS:
            views.clear()  # only the sharing is lost
        decision = _decision(slot, row)
        views[id(row)] = (row, decision)  # the entry keeps the row, so its id is not reused
        return decision

    def user(self, name: str, now: float) -> Decision | None:
        """The active protection of username ``name``, if any."""
        decision = self._users.get(USER_PREFIX + name)
        return decision if decision is not None and _is_active(decision, now) else None

    def active(self, now: float) -> list[Decision]:
        out: list[Decision] = []
        for version, family in self._nets.items():
            for plen, table in family.items():
                for value, row in table.items():
                    if row.until is None or row.until > now:
                        out.append(_decision((version, plen, value), row))
        out += [d for d in self._users.values() if _is_active(d, now)]
        return out


_USERS: Final = (0, 0)  # the bucket index of protections
_Template = tuple[str, str, Mapping[str, int | float | str], int]  # rule, reason, evidence, offence


class _Row:
    """One address or prefix ban: replaced, never changed, when the ban changes, so a reader
    may keep what it built from it for as long as the table holds this very object (``view``).
    A slotted object rather than a tuple: compiled, a typed tuple is unboxed into a C struct
    and boxed anew wherever it crosses a call, and identity is lost with it."""

    __slots__ = ("ts", "until", "template")

    def __init__(self, ts: float, until: float | None, template: _Template) -> None:
        self.ts = ts
        self.until = until
        self.template = template


def _target(slot: Slot) -> str:
    version, prefixlen, value = slot
    if version == 4:
        address = inet_ntoa(value.to_bytes(4, "big"))  # str(IPv4Address(value)), 3x cheaper
        return address if prefixlen == 32 else f"{address}/{prefixlen}"
    address = str(IPv6Address(value))
    return address if prefixlen == 128 else f"{address}/{prefixlen}"


def row_decision(slot: Slot, row: _Row) -> Decision:
    """The ``Decision`` a ledger row stands for (rebuilt when read: rows stay compact)."""
    return _decision(slot, row)


def _decision(slot: Slot, row: _Row) -> Decision:
    ts, until, (rule, reason, evidence, offence) = row.ts, row.until, row.template
    return Decision(
        ts=ts,
        target=_target(slot),
        action=Action.BAN,
        rule=rule,
        until=until,
        reason=reason,
        offence=offence,
        evidence=evidence,
    )
