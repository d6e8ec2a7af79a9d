"""The daily digest: the last 24 clock hours against the week before, as text, HTML and a chart.

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

from mailward.analyze.aggregate import Aggregator
from mailward.analyze.report import build_report
from mailward.decisions.model import Action, Decision
from mailward.enrich.geoip import GeoLookup
from mailward.events import Event
from mailward.notify.model import Inline, Message, Severity
from mailward.notify.render import hostname

DAY = 86400
HOUR = 3600
ATTEMPT_KINDS = ("auth_failure",)


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
    spikes: list[str] = field(default_factory=list)  # analyze's spike findings, one line each
    breaches: list[str] = field(default_factory=list)  # failures, then a login from that address
    rate_exceeded: int = 0  # addresses above analyze.rate_limit_per_minute
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
            "spikes": self.spikes,
            "breaches": self.breaches,
            "rate_exceeded": self.rate_exceeded,
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
    rate_limit_per_minute: int = 3,
    health: Mapping[str, Any] | None = None,
) -> Digest:
    """The last 24 hours through ``mailward.analyze`` (the same aggregation and report as
    ``mailward analyze``), plus the baseline, decisions and alerts from the store."""
    # 24 clock hours: the current (partial) one and the 23 before it, so every slot lines up
    # with the same clock hour on the days of the baseline.
    since = float((int(now // HOUR) - 23) * HOUR)
    d = Digest(since=since, until=now, health=dict(health or {}))
    agg = Aggregator(rate_limit_per_minute=rate_limit_per_minute)
    agg.add_all(source.events(since, now))
    report = build_report(agg, geo=geo, top=top)
    d.attempts = report.attempts
    d.probes = report.probes
    d.kinds = dict(sorted(report.kinds.items(), key=lambda kv: -kv[1]))
    d.successes = report.kinds.get("auth_success", 0)
    for bucket in report.hours:
        slot = int((bucket.start - since) // HOUR)
        if 0 <= slot < 24:
            d.hourly[slot] += bucket.attempts
            d.hourly_ips[slot] = max(d.hourly_ips[slot], bucket.distinct_ips)
    d.top_ips = [(r.key, r.attempts, _country(r.note)) for r in report.top_ips]
    d.top_countries = [(r.key, r.attempts) for r in report.top_countries]
    d.top_usernames = [(r.key, r.attempts) for r in report.top_usernames]
    d.spikes = [
        f"{_iso(sp.start)} to {_iso(sp.end)}: {sp.attempts} attempts (baseline "
        f"{sp.baseline:.0f}/{sp.granularity}), {sp.verdict}"
        for sp in report.spikes
    ]
    d.breaches = [
        f"{b.ip}: {b.failures} failures then {b.successes} logins as {', '.join(b.usernames)}"
        for b in report.breaches
    ]
    d.rate_exceeded = len(report.rate_exceeded)
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


def _country(note: str) -> str:
    # analyze's note for an address reads "GB AS1234 Org" (or is empty without GeoIP).
    head = note.split(" ", 1)[0].strip()
    return head if len(head) == 2 and head.isalpha() else "??"


def _baseline(d: Digest, source: DigestSource, since: float) -> None:
    """Median per hour of day (and per day) over the 7 days before the digest window; days
    before the first stored attempt do not count as quiet days."""
    start = since - 7 * DAY
    per_hour: dict[int, int] = {}
    for hc in source.counts_per_hour(start, since, ATTEMPT_KINDS):
        key = int(hc.hour // HOUR)
        per_hour[key] = per_hour.get(key, 0) + hc.attempts
    if not per_hour:
        return
    first = min(per_hour)
    base = int(since // HOUR)  # the clock hour of slot 0
    days = [k for k in range(1, 8) if base - 24 * k + 23 >= first]
    if not days:
        return
    for slot in range(24):
        samples = [per_hour.get(base + slot - 24 * k, 0) for k in days]
        d.hourly_baseline[slot] = float(median(samples))
    daily = [sum(per_hour.get(base + slot - 24 * k, 0) for slot in range(24)) for k in days]
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
