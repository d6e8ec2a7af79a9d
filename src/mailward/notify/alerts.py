"""Attack alert rules: pure functions of (state, event or decision, now) that return ``Alert``s.

Rules: login-attempt spike against an hour-of-week baseline, distributed attack on a username,
ban storm, successful login after many failures (possible breach) and login from a country or ASN
never seen for the account. Each rule fires once per episode; cooldowns are the manager's job.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, deque
from datetime import tzinfo
from ipaddress import IPv4Address, IPv6Network
from pathlib import Path
from typing import Protocol

from mailward.config.model import AlertSettings
from mailward.decisions.model import Action, Decision
from mailward.enrich.geoip import GeoLookup
from mailward.events import AuthFailure, AuthSuccess, Event, IPAddress, normalise_ip
from mailward.notify.baseline import HourlyBaseline, SlidingSpike
from mailward.notify.model import Alert, Severity, iso

TOP = 5
MAX_STAMPS = 1000  # failure times kept per address or prefix (thresholds are far lower)
PRUNE_EVERY = 600.0  # seconds; pruning walks every tracked address


class LocationHistory(Protocol):
    """Countries and ASNs each account has logged in from; must survive restarts."""

    def seen(self, username: str) -> tuple[set[str], set[int]]: ...

    def add(self, username: str, country: str | None, asn: int | None, now: float) -> None: ...


class MemoryLocations:
    def __init__(self) -> None:
        self._data: dict[str, tuple[set[str], set[int]]] = {}

    def seen(self, username: str) -> tuple[set[str], set[int]]:
        countries, asns = self._data.get(username, (set(), set()))
        return set(countries), set(asns)

    def add(self, username: str, country: str | None, asn: int | None, now: float) -> None:
        countries, asns = self._data.setdefault(username, (set(), set()))
        if country:
            countries.add(country)
        if asn is not None:
            asns.add(asn)


class SqliteLocations:
    """Per-account locations in a small SQLite table (``notify.db`` in ``general.state_dir``)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS account_location (username TEXT NOT NULL, "
            "kind TEXT NOT NULL, value TEXT NOT NULL, first_seen REAL NOT NULL, "
            "PRIMARY KEY (username, kind, value))"
        )
        self._db.commit()

    def seen(self, username: str) -> tuple[set[str], set[int]]:
        rows = self._db.execute(
            "SELECT kind, value FROM account_location WHERE username = ?", (username,)
        ).fetchall()
        return {v for k, v in rows if k == "country"}, {int(v) for k, v in rows if k == "asn"}

    def add(self, username: str, country: str | None, asn: int | None, now: float) -> None:
        rows = [("country", country)] if country else []
        if asn is not None:
            rows.append(("asn", str(asn)))
        self._db.executemany(
            "INSERT OR IGNORE INTO account_location VALUES (?, ?, ?, ?)",
            [(username, k, v, now) for k, v in rows],
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def prefix_of(ip: IPAddress) -> str:
    """The /24 or /64 around an address, as text (hot path: integer arithmetic, no parsing)."""
    n = int(ip)
    if isinstance(ip, IPv4Address):
        n >>= 8
        return f"{n >> 16}.{(n >> 8) & 255}.{n & 255}.0/24"
    return str(IPv6Network((n >> 64 << 64, 64)))


def _top(counter: Counter[str], n: int = TOP) -> str:
    return ", ".join(f"{k} ({v})" for k, v in counter.most_common(n)) or "none"


class _Episode:
    """Fire once when a level crosses ``on``; re-arm only after it falls below ``off``."""

    def __init__(self) -> None:
        self.active: set[str] = set()

    def update(self, key: str, level: float, on: float, off: float) -> bool:
        if key in self.active:
            if level < off:
                self.active.discard(key)
            return False
        if level >= on:
            self.active.add(key)
            return True
        return False


class AttackRules:
    """All attack rules over one stream of events and decisions. Feed it in time order."""

    def __init__(
        self,
        settings: AlertSettings,
        *,
        tz: tzinfo,
        geo: GeoLookup | None = None,
        locations: LocationHistory | None = None,
    ) -> None:
        self.s = settings
        self.geo = geo
        self.locations = locations if locations is not None else MemoryLocations()
        self.spike = SlidingSpike(
            HourlyBaseline(tz, weeks=settings.spike_history_weeks),
            sensitivity=settings.spike_sensitivity,
            min_count=settings.spike_min_count,
            min_ratio=settings.spike_min_ratio,
        )
        self._spike_kinds = frozenset(settings.spike_kinds)
        self._episodes = _Episode()
        # username -> ip -> last failure ts
        self._user_ips: dict[str, dict[str, float]] = {}
        # ip / prefix -> recent failure timestamps and usernames tried
        self._fails: dict[str, deque[float]] = {}
        self._fail_users: dict[str, dict[str, int]] = {}
        self._bans: deque[Decision] = deque()
        self._banned: dict[str, Decision] = {}  # target -> latest ban, for "what mailward did"
        self._protected: dict[str, Decision] = {}
        self._pruned = 0.0

    # -- feeding -------------------------------------------------------------------------------

    def observe(self, event: Event, now: float) -> list[Alert]:
        out: list[Alert] = []
        ip = str(event.ip) if event.ip is not None else "unknown"
        if event.kind in self._spike_kinds:
            attempts = event.attempts if isinstance(event, AuthFailure) else 1
            self.spike.add(event.ts, ip, attempts)
        if isinstance(event, AuthFailure) and event.ip is not None:
            self._failure(event, ip)
            alert = self._distributed(event, ip, now)
            if alert:
                out.append(alert)
        elif isinstance(event, AuthSuccess) and event.ip is not None:
            out.extend(self._success(event, now))
        return out

    def decide(self, decision: Decision, now: float) -> list[Alert]:
        if decision.action is Action.BAN:
            self._banned[decision.target] = decision
            self._bans.append(decision)
            return self._ban_storm(decision, now)
        if decision.action is Action.UNBAN:
            self._banned.pop(decision.target, None)
        if decision.action is Action.PROTECT_USER:
            user = decision.target.removeprefix("user:")
            self._protected[user] = decision
            ips = self._user_ips.get(user, {})
            key = f"distributed:{user}"
            if key in self._episodes.active:
                return []
            self._episodes.active.add(key)
            return [self._distributed_alert(user, ips, now, decision)]
        return []

    def circuit(self, signal: object, now: float) -> list[Alert]:
        """A circuit-breaker signal from the engine (``CircuitOpen`` / ``CircuitClosed``)."""
        kind = getattr(signal, "kind", "")
        if kind == "circuit_open":
            rate = int(getattr(signal, "bans_last_minute", 0))
            limit = int(getattr(signal, "limit", self.s.ban_storm_per_minute))
            self._episodes.active.add("ban_storm")
            return [
                Alert(
                    ts=now,
                    kind="ban_storm",
                    key="circuit_breaker",
                    severity=Severity.CRITICAL,
                    title=f"Ban storm: the circuit breaker STOPPED new bans ({rate} bans in a "
                    f"minute, limit {limit})",
                    details=(
                        f"More than {limit} new bans within a minute ({rate}); mailward stops "
                        "issuing bans until the rate falls, so a parser or allow-list mistake "
                        "cannot lock everyone out.",
                        "While it is open, attackers are NOT being banned. Check `mailward bans` "
                        "and the recent decisions: a real flood, or a NAT/monitoring address?",
                    ),
                    facts={"bans_per_minute": rate, "limit": limit, "circuit_breaker": True},
                )
            ]
        if kind == "circuit_closed":
            suppressed = int(getattr(signal, "suppressed", 0))
            return [
                Alert(
                    ts=now,
                    kind="ban_storm_over",
                    key="circuit_breaker_closed",
                    severity=Severity.WARNING,
                    title=f"Bans resumed: the circuit breaker closed ({suppressed} bans were "
                    "not issued while it was open)",
                    details=(f"{suppressed} bans were suppressed while the circuit was open.",),
                    facts={"suppressed": suppressed},
                )
            ]
        return []

    def tick(self, now: float) -> list[Alert]:
        """Time-driven rules (the spike window) and pruning; call every few seconds."""
        self._prune(now)
        check = self.spike.check(now)
        exp = check.expectation
        off = max(exp.expected + (check.threshold - exp.expected) / 2, 1.0) if exp else 0.0
        if not self._episodes.update(
            "login_spike", check.count if exp else 0, check.threshold, off
        ):
            return []
        assert exp is not None
        sources = self.spike.window(now)
        did = self._what_was_done(sources)
        what = (
            "login attempts"
            if self._spike_kinds <= {"auth_failure", "auth_success"}
            else "/".join(sorted(self._spike_kinds)) + " events"
        )
        return [
            Alert(
                ts=now,
                kind="login_spike",
                key="login_spike",
                severity=Severity.HIGH,
                title=f"Spike: {check.count} {what} in the last 60 minutes "
                f"(baseline {exp.expected:.0f})",
                details=(
                    f"{check.count} {what} between {iso(now - 3600)} and {iso(now)}; "
                    f"the {exp.basis} baseline is {exp.expected:.1f} ± {exp.scale:.1f} per hour "
                    f"({exp.samples} samples), alert threshold {check.threshold:.0f}.",
                    f"{len(sources)} sources; top: {_top(sources)}.",
                    *did,
                ),
                facts={
                    "count": check.count,
                    "expected": round(exp.expected, 2),
                    "scale": round(exp.scale, 2),
                    "threshold": round(check.threshold, 2),
                    "basis": exp.basis,
                    "sources": dict(sources.most_common(TOP)),
                    "window_start": now - 3600,
                    "window_end": now,
                },
            )
        ]

    # -- rules ---------------------------------------------------------------------------------

    def _failure(self, ev: AuthFailure, ip: str) -> None:
        assert ev.ip is not None
        n = max(ev.attempts, 1)
        user = ev.username
        for key in (ip, prefix_of(ev.ip)):
            stamps = self._fails.get(key)
            if stamps is None:
                stamps = self._fails[key] = deque(maxlen=MAX_STAMPS)
            if n == 1:
                stamps.append(ev.ts)
            else:
                stamps.extend([ev.ts] * min(n, MAX_STAMPS))
            if user:
                users = self._fail_users.get(key)
                if users is None:
                    users = self._fail_users[key] = {}
                if user in users or len(users) < 50:
                    users[user] = users.get(user, 0) + n

    def _distributed(self, ev: AuthFailure, ip: str, now: float) -> Alert | None:
        if not ev.username:
            return None
        ips = self._user_ips.get(ev.username)
        if ips is None:
            ips = self._user_ips[ev.username] = {}
        # Re-insert so the dict stays ordered by last failure: expiry pops from the front.
        ips.pop(ip, None)
        ips[ip] = ev.ts
        cutoff = now - self.s.distributed_window_seconds
        while ips:
            oldest = next(iter(ips))
            if ips[oldest] >= cutoff:
                break
            del ips[oldest]
        key = f"distributed:{ev.username}"
        k = self.s.distributed_min_ips
        if self._episodes.update(key, len(ips), k, k / 2):
            return self._distributed_alert(ev.username, ips, now, self._protected.get(ev.username))
        return None

    def _distributed_alert(
        self, user: str, ips: dict[str, float], now: float, protect: Decision | None
    ) -> Alert:
        prefixes = Counter(prefix_of(_ip(ip)) for ip in ips)
        did = (
            f"mailward protects {user!r}: only known-good sources may log in until "
            f"{iso(protect.until)} (rule {protect.rule})."
            if protect and protect.until
            else f"mailward protects {user!r} (rule {protect.rule})."
            if protect
            else "No protection decision has been issued for this username yet."
        )
        return Alert(
            ts=now,
            kind="distributed_attack",
            key=f"distributed:{user}",
            severity=Severity.HIGH,
            title=f"Distributed attack on username {user!r}: {len(ips)} IPs",
            details=(
                f"{len(ips)} distinct IPs from {len(prefixes)} prefixes failed to log in as "
                f"{user!r} within {self.s.distributed_window_seconds / 60:.0f} minutes "
                f"(alert threshold {self.s.distributed_min_ips}).",
                f"Top prefixes: {_top(prefixes)}.",
                did,
            ),
            facts={"username": user, "ips": len(ips), "prefixes": len(prefixes)},
        )

    def _ban_storm(self, decision: Decision, now: float) -> list[Alert]:
        while self._bans and self._bans[0].ts < now - 60:
            self._bans.popleft()
        rate = len(self._bans)
        breaker = "circuit" in decision.rule
        limit = self.s.ban_storm_per_minute
        if not self._episodes.update("ban_storm", rate if not breaker else limit, limit, limit / 2):
            return []
        rules = Counter(d.rule for d in self._bans)
        nets = Counter(prefix_of(n.network_address) for d in self._bans if (n := d.network))
        return [
            Alert(
                ts=now,
                kind="ban_storm",
                key="ban_storm",
                severity=Severity.HIGH,
                title=f"Ban storm: {rate} bans in the last minute",
                details=(
                    f"{rate} bans within 60 seconds (alert bound {limit} per minute)"
                    + (
                        f"; the detector's circuit breaker tripped ({decision.reason})."
                        if breaker
                        else "."
                    ),
                    f"By rule: {_top(rules)}. By prefix: {_top(nets)}.",
                    "mailward keeps banning; check that this is an attack and not a parser or "
                    "allow-list problem (a NAT gateway or your own monitoring).",
                ),
                facts={"bans_per_minute": rate, "circuit_breaker": breaker},
            )
        ]

    def _count_fails(self, key: str, since: float) -> int:
        stamps = self._fails.get(key)
        return sum(1 for t in stamps if t >= since) if stamps else 0

    def _success(self, ev: AuthSuccess, now: float) -> list[Alert]:
        assert ev.ip is not None
        out: list[Alert] = []
        since = ev.ts - self.s.breach_window_seconds
        ip, prefix = str(ev.ip), prefix_of(ev.ip)
        by_ip, by_prefix = self._count_fails(ip, since), self._count_fails(prefix, since)
        if by_ip >= self.s.breach_min_failures or by_prefix >= self.s.breach_prefix_min_failures:
            scope, n = (ip, by_ip) if by_ip >= self.s.breach_min_failures else (prefix, by_prefix)
            users = Counter(self._fail_users.get(scope, {}))
            banned = self._ban_for(ev.ip)
            out.append(
                Alert(
                    ts=now,
                    kind="possible_breach",
                    key=f"possible_breach:{ev.username}:{scope}",
                    severity=Severity.CRITICAL,
                    title=f"POSSIBLE BREACH: {ev.username!r} logged in from {ip} after {n} "
                    f"failed attempts from {scope}",
                    details=(
                        f"Successful {ev.service.value} login as {ev.username!r} from {ip} at "
                        f"{iso(ev.ts)}, after {n} failures from {scope} in the preceding "
                        f"{self.s.breach_window_seconds / 3600:.0f} h (threshold "
                        f"{self.s.breach_min_failures} per IP, "
                        f"{self.s.breach_prefix_min_failures} per prefix).",
                        f"Usernames tried from {scope}: {_top(users)}.",
                        (
                            f"mailward had banned {banned.target} (rule {banned.rule}); the login "
                            "got through anyway: check enforcement."
                            if banned
                            else "mailward had not banned this source."
                        ),
                        f"Act now: change the password of {ev.username!r}, end its sessions, "
                        f"and ban {scope} (`mailward ban {scope}`) if it is not the user.",
                    ),
                    facts={"username": ev.username, "ip": ip, "scope": scope, "failures": n},
                )
            )
        if self.s.new_location and self.geo is not None and ev.username and ev.ip.is_global:
            alert = self._new_location(ev, now)
            if alert:
                out.append(alert)
        return out

    def _new_location(self, ev: AuthSuccess, now: float) -> Alert | None:
        assert ev.ip is not None and self.geo is not None and ev.username
        country = self.geo.country(ev.ip)
        asn_info = self.geo.asn(ev.ip)
        asn = asn_info[0] if asn_info else None
        countries, asns = self.locations.seen(ev.username)
        self.locations.add(ev.username, country, asn, ev.ts)
        if not countries and not asns:
            return None  # first login we see: learn, do not alert
        new = []
        if country and country not in countries:
            new.append(f"country {country} (seen before: {', '.join(sorted(countries)) or '-'})")
        if asn is not None and asns and asn not in asns:
            org = asn_info[1] if asn_info else ""
            new.append(f"AS{asn} {org} (seen before: {', '.join(f'AS{a}' for a in sorted(asns))})")
        if not new:
            return None
        return Alert(
            ts=now,
            kind="new_location",
            key=f"new_location:{ev.username}:{country}:{asn}",
            severity=Severity.HIGH,
            title=f"{ev.username!r} logged in from a new location: {ev.ip} ({country or '?'}, "
            f"AS{asn if asn is not None else '?'})",
            details=(
                f"Successful {ev.service.value} login as {ev.username!r} from {ev.ip} at "
                f"{iso(ev.ts)}: new {' and new '.join(new)}.",
                "mailward took no action (a login is not an attack); confirm with the user.",
            ),
            facts={"username": ev.username, "ip": str(ev.ip), "country": country, "asn": asn},
        )

    # -- helpers -------------------------------------------------------------------------------

    def _ban_for(self, ip: IPAddress) -> Decision | None:
        for key in (str(ip), prefix_of(ip)):
            if key in self._banned:
                return self._banned[key]
        if len(self._banned) > 10_000:
            return None  # a full scan per lookup would cost more than the answer is worth
        for decision in self._banned.values():
            net = decision.network
            if net is not None and net.version == ip.version and ip in net:
                return decision
        return None

    def _what_was_done(self, sources: Counter[str]) -> list[str]:
        lines = []
        for src, n in sources.most_common(TOP):
            try:
                banned = self._ban_for(_ip(src))
            except ValueError:
                continue
            if banned:
                lines.append(
                    f"{src} ({n}): banned at {iso(banned.ts)} by rule {banned.rule}"
                    + (f" until {iso(banned.until)}." if banned.until else ".")
                )
            else:
                lines.append(f"{src} ({n}): NOT banned by mailward. Check that enforcement works.")
        return lines

    def _prune(self, now: float) -> None:
        if now - self._pruned < PRUNE_EVERY:
            return
        self._pruned = now
        cutoff = now - max(self.s.breach_window_seconds, self.s.distributed_window_seconds)
        for key in [k for k, d in self._fails.items() if not d or d[-1] < cutoff]:
            del self._fails[key]
            self._fail_users.pop(key, None)
        for stamps in self._fails.values():
            while stamps and stamps[0] < cutoff:
                stamps.popleft()
        wcut = now - self.s.distributed_window_seconds
        for user in list(self._user_ips):
            ips = self._user_ips[user]
            for ip in [ip for ip, ts in ips.items() if ts < wcut]:
                del ips[ip]
            if not ips:
                del self._user_ips[user]
                self._episodes.active.discard(f"distributed:{user}")
        for target in [t for t, d in self._banned.items() if d.until is not None and d.until < now]:
            del self._banned[target]
        for user in [
            u for u, d in self._protected.items() if d.until is not None and d.until < now
        ]:
            del self._protected[user]


def _ip(text: str) -> IPAddress:
    return normalise_ip(text)
