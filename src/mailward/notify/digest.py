"""The daily digest: the last 24 hours against the week before, as text, HTML and a PNG chart.

``build_digest(source, now)`` reads a ``DigestSource`` (the SQLite store: the same events
``mailward analyze --store`` keeps) and returns plain data; ``render_digest`` turns it into a
``Message`` whose HTML shows the chart inline (``cid:``), so it reads the same offline.
"""

from __future__ import annotations

import html
import io
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import median
from typing import Any, Protocol

from mailward.decisions.model import Action, Decision
from mailward.events import AuthFailure, Event, IPAddress
from mailward.notify.alerts import GeoLookup
from mailward.notify.model import Inline, Message, Severity
from mailward.notify.render import hostname

DAY = 86400
HOUR = 3600
ATTEMPT_KINDS = ("auth_failure",)
PROBE_KINDS = ("unknown_recipient",)


class HourCountLike(Protocol):
    @property
    def hour(self) -> float: ...
    @property
    def kind(self) -> str: ...
    @property
    def attempts(self) -> int: ...


class StoredAlertLike(Protocol):
    @property
    def ts(self) -> float: ...
    @property
    def kind(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def message(self) -> str: ...


class DigestSource(Protocol):
    """The read side of ``mailward.storage.sqlite.SqliteStore`` the digest needs."""

    def events(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> Iterator[Event]: ...

    def counts_per_hour(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> Sequence[HourCountLike]: ...

    def decisions(
        self, since: float | None = None, until: float | None = None
    ) -> list[Decision]: ...

    def alerts(
        self, since: float | None = None, until: float | None = None
    ) -> Sequence[StoredAlertLike]: ...


@dataclass
class Digest:
    since: float
    until: float
    attempts: int = 0
    baseline_attempts: float = 0.0  # median of the previous 7 days, per day
    probes: int = 0
    successes: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    hourly: list[int] = field(default_factory=lambda: [0] * 24)  # attempts per hour, oldest first
    hourly_ips: list[int] = field(default_factory=lambda: [0] * 24)
    hourly_baseline: list[float] = field(default_factory=lambda: [0.0] * 24)
    top_ips: list[tuple[str, int, str]] = field(default_factory=list)  # ip, attempts, country
    top_countries: list[tuple[str, int]] = field(default_factory=list)
    top_usernames: list[tuple[str, int]] = field(default_factory=list)
    bans: int = 0
    bans_by_rule: list[tuple[str, int]] = field(default_factory=list)
    protected_users: list[str] = field(default_factory=list)
    alerts: list[tuple[float, str, str, str]] = field(
        default_factory=list
    )  # ts, severity, kind, msg
    health: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def iso(ts: float) -> str:
            return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")

        return {
            "since": iso(self.since),
            "until": iso(self.until),
            "attempts": self.attempts,
            "baseline_attempts": self.baseline_attempts,
            "probes": self.probes,
            "successes": self.successes,
            "kinds": self.kinds,
            "hourly": self.hourly,
            "hourly_distinct_ips": self.hourly_ips,
            "hourly_baseline": self.hourly_baseline,
            "top_ips": [{"ip": i, "attempts": n, "country": c} for i, n, c in self.top_ips],
            "top_countries": [{"country": c, "attempts": n} for c, n in self.top_countries],
            "top_usernames": [{"username": u, "attempts": n} for u, n in self.top_usernames],
            "bans": self.bans,
            "bans_by_rule": dict(self.bans_by_rule),
            "protected_users": self.protected_users,
            "alerts": [
                {"time": iso(t), "severity": s, "kind": k, "message": m}
                for t, s, k, m in self.alerts
            ],
            "health": self.health,
        }


def build_digest(
    source: DigestSource,
    now: float,
    *,
    geo: GeoLookup | None = None,
    top: int = 10,
    health: Mapping[str, Any] | None = None,
) -> Digest:
    since = now - DAY
    d = Digest(since=since, until=now, health=dict(health or {}))
    by_ip: Counter[IPAddress] = Counter()
    by_user: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    hour_ips: list[set[IPAddress]] = [set() for _ in range(24)]
    for ev in source.events(since, now):
        kinds[ev.kind] += 1
        if ev.kind in ATTEMPT_KINDS:
            n = ev.attempts if isinstance(ev, AuthFailure) else 1
            slot = min(23, int((ev.ts - since) // HOUR))
            d.hourly[slot] += n
            d.attempts += n
            if ev.ip is not None:
                by_ip[ev.ip] += n
                hour_ips[slot].add(ev.ip)
            user = getattr(ev, "username", None)
            if user:
                by_user[user] += n
        elif ev.kind in PROBE_KINDS:
            d.probes += 1
        elif ev.kind == "auth_success":
            d.successes += 1
    d.kinds = dict(kinds.most_common())
    d.hourly_ips = [len(s) for s in hour_ips]
    countries: Counter[str] = Counter()
    country_of: dict[IPAddress, str] = {}
    for ip, n in by_ip.items():
        c = (geo.country(ip) if geo else None) or "??"
        country_of[ip] = c
        countries[c] += n
    d.top_ips = [(str(ip), n, country_of.get(ip, "??")) for ip, n in by_ip.most_common(top)]
    d.top_countries = countries.most_common(top)
    d.top_usernames = by_user.most_common(top)
    _baseline(d, source, since)
    decisions = source.decisions(since, now)
    bans = [x for x in decisions if x.action is Action.BAN]
    d.bans = len(bans)
    d.bans_by_rule = Counter(x.rule for x in bans).most_common()
    d.protected_users = sorted(
        {x.target.removeprefix("user:") for x in decisions if x.action is Action.PROTECT_USER}
    )
    d.alerts = [(a.ts, a.severity, a.kind, a.message) for a in source.alerts(since, now)]
    return d


def _baseline(d: Digest, source: DigestSource, since: float) -> None:
    """Median per hour of day (and per day) over the 7 days before the digest window."""
    start = since - 7 * DAY
    per_hour: dict[int, int] = {}
    for hc in source.counts_per_hour(start, since, ATTEMPT_KINDS):
        per_hour[int(hc.hour)] = per_hour.get(int(hc.hour), 0) + hc.attempts
    if not per_hour:
        return
    first = min(per_hour)
    days = max(1, min(7, int((since - first) // DAY) + 1))
    for slot in range(24):
        samples = [per_hour.get(int(since - k * DAY + slot * HOUR), 0) for k in range(1, days + 1)]
        d.hourly_baseline[slot] = float(median(samples))
    daily = [
        sum(per_hour.get(int(since - k * DAY + h * HOUR), 0) for h in range(24))
        for k in range(1, days + 1)
    ]
    d.baseline_attempts = float(median(daily))


def chart_png(d: Digest) -> bytes:
    """Attempts per hour (bars) against the baseline (line), distinct IPs on a second axis: two
    busy machines and a botnet look different."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3), dpi=100)
    ax = fig.subplots()
    hours = [datetime.fromtimestamp(d.since + h * HOUR, UTC).strftime("%H") for h in range(24)]
    ax.bar(range(24), d.hourly, color="#cb4b16", label="attempts")
    ax.plot(range(24), d.hourly_baseline, color="#268bd2", label="baseline (median, 7 days)")
    ax.set_xticks(range(0, 24, 3), [hours[i] for i in range(0, 24, 3)])
    ax.set_xlabel("hour (UTC)")
    ax.set_ylabel("login attempts")
    ax2 = ax.twinx()
    ax2.plot(range(24), d.hourly_ips, color="#859900", linestyle="--", label="distinct IPs")
    ax2.set_ylabel("distinct IPs")
    handles = ax.get_legend_handles_labels()
    handles2 = ax2.get_legend_handles_labels()
    ax.legend(handles[0] + handles2[0], handles[1] + handles2[1], loc="upper left", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _table(rows: Sequence[Sequence[object]], head: Sequence[str]) -> str:
    th = "".join(f"<th align='left'>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table cellpadding='3'><tr>{th}</tr>{body}</table>"


def render_digest(d: Digest, *, host: str | None = None, chart: bool = True) -> Message:
    host = host or hostname()
    day = datetime.fromtimestamp(d.until, UTC).strftime("%Y-%m-%d")
    ratio = (
        f"{d.attempts / d.baseline_attempts:.1f}x the usual"
        if d.baseline_attempts
        else "no baseline yet"
    )
    severity = (
        Severity.HIGH if any(a[1] in ("critical", "high") for a in d.alerts) else Severity.INFO
    )
    subject = (
        f"[mailward {host}] daily digest {day}: {d.attempts} failed logins ({ratio}), "
        f"{d.bans} bans, {len(d.alerts)} alerts"
    )
    lines = [
        f"mailward digest for {host}, {_iso(d.since)} to {_iso(d.until)}",
        "",
        f"Failed login attempts: {d.attempts} (usual day: {d.baseline_attempts:.0f}; {ratio})",
        f"Unknown-recipient probes: {d.probes}. Successful logins: {d.successes}.",
        f"Bans: {d.bans}"
        + (f" ({', '.join(f'{r} {n}' for r, n in d.bans_by_rule)})" if d.bans_by_rule else ""),
    ]
    if d.protected_users:
        lines.append(
            f"Usernames protected during distributed attacks: {', '.join(d.protected_users)}"
        )
    lines += ["", "Top IPs:"] + (
        [f"  {ip:<40} {n:>7}  {c}" for ip, n, c in d.top_ips] or ["  none"]
    )
    lines += ["", "Top countries:"] + [f"  {c:<4} {n:>7}" for c, n in d.top_countries]
    lines += ["", "Top usernames:"] + [f"  {u:<40} {n:>7}" for u, n in d.top_usernames]
    lines += ["", f"Alerts ({len(d.alerts)}):"] + [
        f"  {_iso(t)} {s.upper():<8} {m}" for t, s, _, m in d.alerts
    ]
    if d.health:
        lines += ["", "Health:"] + [f"  {k}: {v}" for k, v in d.health.items()]
    text = "\n".join(lines) + "\n"
    images: tuple[Inline, ...] = ()
    img = ""
    if chart:
        images = (Inline("attempts-chart", chart_png(d)),)
        img = "<p><img src='cid:attempts-chart' alt='attempts per hour'></p>"
    body = (
        f"<h2>mailward digest for {html.escape(host)}</h2>"
        f"<p>{html.escape(_iso(d.since))} to {html.escape(_iso(d.until))}</p>"
        f"<p><b>{d.attempts}</b> failed login attempts ({html.escape(ratio)}), "
        f"<b>{d.probes}</b> unknown-recipient probes, <b>{d.successes}</b> successful logins, "
        f"<b>{d.bans}</b> bans, <b>{len(d.alerts)}</b> alerts.</p>{img}"
        "<h3>Top IPs</h3>"
        + _table(d.top_ips, ["IP", "attempts", "country"])
        + "<h3>Top countries</h3>"
        + _table(d.top_countries, ["country", "attempts"])
        + "<h3>Top usernames</h3>"
        + _table(d.top_usernames, ["username", "attempts"])
        + "<h3>Bans by rule</h3>"
        + _table(d.bans_by_rule, ["rule", "bans"])
        + "<h3>Alerts</h3>"
        + _table([(_iso(t), s, m) for t, s, _, m in d.alerts], ["time", "severity", "alert"])
        + (
            "<h3>Health</h3>" + _table(list(d.health.items()), ["check", "state"])
            if d.health
            else ""
        )
    )
    return Message(
        subject=subject,
        text=text,
        severity=severity,
        html=f"<html><body>{body}</body></html>",
        images=images,
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
