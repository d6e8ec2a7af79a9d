"""Replay: run the detectors over historical events on the events' own clock, and measure.

Each event is first asked the in-line question (``Engine.check``, or only the firewall ban set with
``inline=False``): what mailward would have refused never reaches the detectors, as in real life.
What got through is fed to ``Engine.observe``. The result says what would have been banned and
when, and for each attacker (an address with failed logins or unknown recipients) how many attempts
got through before and after its first ban, and per campaign after the campaign's first ban.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address, ip_network
from typing import Any

from mailward.decisions.model import USER_PREFIX, Action, Decision
from mailward.detectors.base import canonical_user
from mailward.detectors.engine import Engine
from mailward.events import (
    EVENT_BY_KIND,
    AuthFailure,
    AuthSuccess,
    Event,
    FailReason,
    Origin,
    ProtocolViolation,
    Service,
    UnknownRecipient,
    Violation,
    normalise_ip,
)

IPAddress = IPv4Address | IPv6Address

_EXPIRE_EVERY = 60.0
_USERS_KEPT = 4  # usernames remembered per attacker, to assign it to a campaign


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class Attacker:
    """One address that failed logins or probed recipients."""

    ip: IPAddress
    passed: array[float] = field(default_factory=lambda: array("d"))  # attempts that got through
    blocked: int = 0
    first_ban: float | None = None
    users: tuple[str, ...] = ()

    def before(self, when: float | None) -> int:
        if when is None:
            return len(self.passed)
        return sum(1 for t in self.passed if t <= when)

    def after(self, when: float | None) -> int:
        if when is None:
            return 0
        return sum(1 for t in self.passed if t > when)


@dataclass(slots=True)
class ReplayResult:
    decisions: list[Decision]
    attackers: list[dict[str, Any]]
    campaigns: list[dict[str, Any]]
    events: int
    first_event: float | None
    last_event: float | None
    attempts: int
    blocked: int
    after_first_ban_total: int
    legit_logins_blocked: int
    signals: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        """The final ``--json`` object (docs/replay-format.md)."""
        rules = Counter(f"{d.action.value}:{d.rule}" for d in self.decisions)
        return {
            "summary": True,
            "events": self.events,
            "first_event": iso(self.first_event),
            "last_event": iso(self.last_event),
            "attempts": self.attempts,
            "blocked": self.blocked,
            "decisions": len(self.decisions),
            "by_rule": dict(sorted(rules.items())),
            "after_first_ban_total": self.after_first_ban_total,
            "legit_logins_blocked": self.legit_logins_blocked,
            "circuit": self.signals,
            "campaigns": self.campaigns,
            "attackers": self.attackers,
        }


class Replay:
    """Feed events in time order with ``feed``; read the outcome with ``result``."""

    def __init__(self, engine: Engine, *, inline: bool = True) -> None:
        self.engine = engine
        self.inline = inline
        self.decisions: list[Decision] = []
        self.attackers: dict[IPAddress, Attacker] = {}
        self.events = 0
        self.attempts = 0
        self.blocked = 0
        self.legit_logins_blocked = 0
        self.first_event: float | None = None
        self.now = float("-inf")
        self._next_expire = float("-inf")
        self._signals: list[dict[str, Any]] = []

    def feed(self, event: Event) -> list[Decision]:
        """Replay one event; returns the decisions it caused."""
        self.events += 1
        if self.first_event is None:
            self.first_event = event.ts
        # Logs from several files interleave slightly out of order; time never goes back here.
        now = self.now = max(self.now, event.ts)
        if now >= self._next_expire:
            self._next_expire = now + _EXPIRE_EVERY
            self.engine.expire(now)
            self._signals += [s.to_json() for s in self.engine.take_signals(now)]
        ip = event.ip
        if ip is None:
            return []
        is_attempt = isinstance(event, AuthFailure | UnknownRecipient)
        username = getattr(event, "username", None)
        # A banned address never connects: no log line, nothing for the detectors.
        firewalled = self.engine.ledger.covering(ip, now) is not None
        refused = firewalled
        if not refused and self.inline and isinstance(event, AuthFailure | AuthSuccess):
            refused = not self.engine.check(ip, username, now).allow
        if is_attempt:
            attacker = self.attackers.get(ip)
            if attacker is None:
                attacker = self.attackers[ip] = Attacker(ip)
            user = canonical_user(username) if isinstance(event, AuthFailure) else None
            if (
                user is not None
                and user not in attacker.users
                and len(attacker.users) < _USERS_KEPT
            ):
                attacker.users += (user,)
            count = event.attempts if isinstance(event, AuthFailure) else 1
            self.attempts += count
            if refused:
                attacker.blocked += count
                self.blocked += count
            else:
                attacker.passed.extend([event.ts] * count)
        elif refused and isinstance(event, AuthSuccess):
            self.legit_logins_blocked += 1
        if firewalled:
            return []
        if refused:
            # Refused in-line: the server logs it as a failed login, which the detectors see.
            event = AuthFailure(
                ts=event.ts,
                service=event.service,
                ip=ip,
                origin=event.origin,
                username=username,
                reason=FailReason.POLICY_REJECT,
                attempts=event.attempts if isinstance(event, AuthFailure) else 1,
            )
        out = self.engine.observe(event, now)
        for decision in out:
            self.decisions.append(decision)
            if decision.action is Action.BAN and not decision.is_user:
                net = ip_network(decision.target, strict=False)
                if net.num_addresses == 1:
                    banned = self.attackers.get(net.network_address)
                    if banned is not None and banned.first_ban is None:
                        banned.first_ban = decision.ts
        self._signals += [s.to_json() for s in self.engine.take_signals()]
        return out

    def run(self, events: Iterable[Event]) -> Iterator[Decision]:
        for event in events:
            yield from self.feed(event)

    def result(self) -> ReplayResult:
        """Attribute attackers to prefix bans and campaigns, and count."""
        net_bans: dict[tuple[int, int], dict[int, float]] = {}
        protected: dict[str, float] = {}
        for d in self.decisions:
            if d.action is Action.PROTECT_USER:
                protected.setdefault(d.target[len(USER_PREFIX) :], d.ts)
            elif d.action is Action.BAN:
                net = ip_network(d.target, strict=False)
                if net.num_addresses > 1:
                    table = net_bans.setdefault((net.version, net.prefixlen), {})
                    table.setdefault(int(net.network_address), d.ts)
        campaigns: dict[str, dict[str, Any]] = {}
        members: dict[str, list[Attacker]] = {}
        rows: list[dict[str, Any]] = []
        for attacker in self.attackers.values():
            bits = 32 if attacker.ip.version == 4 else 128
            value = int(attacker.ip)
            first_net: tuple[float, str] | None = None
            for (version, plen), table in net_bans.items():
                if version != attacker.ip.version:
                    continue
                base = value >> (bits - plen) << (bits - plen)
                when = table.get(base)
                if when is not None and (first_net is None or when < first_net[0]):
                    first_net = (when, f"{ip_network((base, plen))}")
            first_ban = attacker.first_ban
            if first_net is not None and (first_ban is None or first_net[0] < first_ban):
                first_ban = first_net[0]
            campaign = next((USER_PREFIX + u for u in attacker.users if u in protected), None)
            if campaign is None:
                campaign = first_net[1] if first_net is not None else str(attacker.ip)
            if first_ban is None and campaign == str(attacker.ip):
                continue  # never banned, in no caught campaign: not an attacker we can score
            members.setdefault(campaign, []).append(attacker)
            rows.append(
                {
                    "ip": str(attacker.ip),
                    "campaign": campaign,
                    "first_ban": iso(first_ban),
                    "before": attacker.before(first_ban),
                    "after": attacker.after(first_ban),
                    "blocked": attacker.blocked,
                    "_first_ban": first_ban,
                }
            )
        first_by_campaign: dict[str, float | None] = {}
        for row in rows:
            name = row["campaign"]
            when = row.pop("_first_ban")
            candidates = [t for t in (first_by_campaign.get(name), when) if t is not None]
            if name.startswith(USER_PREFIX):
                candidates.append(protected[name[len(USER_PREFIX) :]])
            first_by_campaign[name] = min(candidates) if candidates else None
        total_after = 0
        for name, group in members.items():
            start = first_by_campaign.get(name)
            after = sum(a.after(start) for a in group)
            total_after += after
            campaigns[name] = {
                "campaign": name,
                "first_ban": iso(start),
                "attackers": len(group),
                "before": sum(a.before(start) for a in group),
                "after_first_ban": after,
                "blocked": sum(a.blocked for a in group),
            }
        rows.sort(key=lambda r: (-(r["before"] + r["after"]), r["ip"]))
        return ReplayResult(
            decisions=self.decisions,
            attackers=rows,
            campaigns=sorted(campaigns.values(), key=lambda c: -c["after_first_ban"]),
            events=self.events,
            first_event=self.first_event,
            last_event=None if self.events == 0 else self.now,
            attempts=self.attempts,
            blocked=self.blocked,
            after_first_ban_total=total_after,
            legit_logins_blocked=self.legit_logins_blocked,
            signals=self._signals,
        )


def decision_line(decision: Decision) -> dict[str, Any]:
    """One ``--json`` line per decision (docs/replay-format.md)."""
    return {
        "time": iso(decision.ts),
        "target": decision.target,
        "action": decision.action.value,
        "rule": decision.rule,
        "until": iso(decision.until),
        "offence": decision.offence,
        "reason": decision.reason,
        "evidence": dict(decision.evidence),
    }


def event_from_json(obj: dict[str, Any]) -> Event:
    """Rebuild an event from its ``Event.to_json()`` shape (``mailward parse --json`` output).

    Raises ValueError naming the problem for anything else.
    """
    kind = obj.get("kind")
    cls = EVENT_BY_KIND.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    time = obj.get("time")
    if not isinstance(time, str):
        raise ValueError("missing 'time'")
    ts = datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp()
    ip_text = obj.get("ip")
    kwargs: dict[str, Any] = {
        "ts": ts,
        "service": Service(obj.get("service", "unknown")),
        "ip": None if ip_text is None else normalise_ip(str(ip_text)),
    }
    if obj.get("file") is not None:
        kwargs["origin"] = Origin(str(obj["file"]), obj.get("line"), obj.get("cursor"))
    for name in (f.name for f in fields(cls)):
        if name in kwargs or name == "origin" or name not in obj:
            continue
        kwargs[name] = obj[name]
    try:
        if cls is AuthFailure and "reason" in kwargs:
            kwargs["reason"] = FailReason(kwargs["reason"])
        if cls is ProtocolViolation and "violation" in kwargs:
            kwargs["violation"] = Violation(kwargs["violation"])
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad {kind} event: {exc}") from None
