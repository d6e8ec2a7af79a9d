"""In-memory twins of the parser and the detector engine, for daemon tests and ``--dry-run``
demos before the real stages are wired: ``TwinParser`` reads RFC 3339-stamped Postfix SASL
failure lines only; ``ThresholdEngine`` bans an address after N failures within a window."""

from __future__ import annotations

import re
from collections import defaultdict, deque
from datetime import datetime

from mailward.decisions.model import Action, Decision
from mailward.enforcers.bantable import as_network
from mailward.events import AuthFailure, Event, FailReason, Origin, Service, normalise_ip

_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d))\s+\S+\s+postfix/(?P<svc>[\w/]+?)/smtpd\[\d+\]:"
    r" warning: [^\[\s]*\[(?P<ip>[0-9A-Fa-f:.]+)\]: SASL (?P<mech>[\w-]+) authentication failed"
    r"(?:.*?sasl_username=(?P<user>\S+))?"
)
_SERVICES = {"submission": Service.SUBMISSION, "smtps": Service.SMTPS}


class TwinParser:
    def parse(self, line: str, origin: Origin | None = None) -> Event | None:
        m = _LINE.match(line)
        if m is None:
            return None
        try:
            ip = normalise_ip(m.group("ip"))
            ts = datetime.fromisoformat(m.group("ts").replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
        return AuthFailure(
            ts=ts,
            service=_SERVICES.get(m.group("svc"), Service.SMTP),
            ip=ip,
            origin=origin,
            username=m.group("user"),
            mechanism=m.group("mech"),
            reason=FailReason.UNSPECIFIED,
        )


class ThresholdEngine:
    """``failures`` auth failures from one address within ``window`` seconds -> a ban of
    ``ban_seconds``. Enough to drive the daemon end to end; the real rules live in detectors."""

    def __init__(
        self, failures: int = 5, window: float = 600.0, ban_seconds: float = 3600.0
    ) -> None:
        self.failures = failures
        self.window = window
        self.ban_seconds = ban_seconds
        self.seen: dict[str, deque[float]] = defaultdict(deque)
        self.bans: dict[str, Decision] = {}
        self.observed = 0

    def observe(self, event: Event, now: float) -> list[Decision]:
        self.observed += 1
        if not isinstance(event, AuthFailure) or event.ip is None:
            return []
        key = str(event.ip)
        if self._banned(key, now):
            return []
        times = self.seen[key]
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < self.failures:
            return []
        times.clear()
        decision = Decision(
            ts=now,
            target=key,
            action=Action.BAN,
            rule="threshold",
            until=now + self.ban_seconds,
            reason=f"{self.failures} failed logins in {self.window:g}s",
            evidence={"failures": self.failures},
        )
        self.bans[key] = decision
        return [decision]

    def _banned(self, key: str, now: float) -> bool:
        ban = self.bans.get(key)
        return ban is not None and (ban.until is None or ban.until > now)

    def apply(self, decision: Decision) -> None:
        if decision.action is Action.BAN:
            self.bans[decision.target] = decision
        elif decision.action is Action.UNBAN:
            lifted = as_network(decision.target)
            for target in list(self.bans):
                net = as_network(target)
                if net.version == lifted.version and net.subnet_of(lifted):  # type: ignore[arg-type]
                    del self.bans[target]
                    self.seen.pop(target, None)

    def active(self, now: float) -> list[Decision]:
        return [d for d in self.bans.values() if d.until is None or d.until > now]

    def expire(self, now: float) -> list[Decision]:
        ended = [d for d in self.bans.values() if d.until is not None and d.until <= now]
        for d in ended:
            del self.bans[d.target]
        return ended
