"""The analysis report: a typed model built from an ``Aggregator`` and rendered as text, JSON or HTML.

``build_report`` adds what needs the whole stream: prefix, country and ASN tables (looked up once per
distinct address through an optional ``GeoLookup``), spikes with the addresses that caused them, and
clients that went over the configured rate. ``Report.to_json`` is the documented ``--json`` schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import Any, Protocol

from mailward.analyze.aggregate import DAY, HOUR, Aggregator, HourStat, RateExceed, prefix_of
from mailward.analyze.spikes import SpikeWindow, find_spikes
from mailward.events import IPAddress

SCHEMA_VERSION = 1
# An address that failed this often, and far more often than it succeeded, then logged in: a
# guessed password rather than a user with a typo.
BREACH_MIN_FAILURES = 10
BREACH_FAILURES_PER_SUCCESS = 5
BUSIEST = 3  # the "busiest addresses" spike series: attempts of the top 3 addresses per hour
BUSIEST_MIN_EXCESS = 60.0


class GeoLookup(Protocol):
    """What the report needs from ``mailward.enrich.geoip`` (the store helper's GeoLookup)."""

    def country(self, ip: IPAddress) -> str | None: ...

    def asn(self, ip: IPAddress) -> tuple[int, str] | None: ...


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a top-N table: a key, its failed attempts, and how many addresses made them."""

    key: str
    attempts: int
    ips: int = 1
    note: str = ""  # country/ASN of an address, the failure type of a username, ...


@dataclass(frozen=True, slots=True)
class Bucket:
    """A day or an hour of the timeline."""

    start: float
    attempts: int
    distinct_ips: int
    probes: int
    successes: int


@dataclass(frozen=True, slots=True)
class Spike:
    """A stretch far above baseline, and who made it."""

    metric: str  # "attempts", "busiest_ips" (the top 3 addresses of each hour) or "distinct_ips"
    granularity: str  # "hour" or "day"
    start: float
    end: float
    attempts: int
    baseline: float  # baseline value per bucket at the peak
    peak: float
    score: float  # robust deviations above the baseline
    distinct_ips: int  # largest number of distinct addresses in one bucket of the window
    top_ips: list[Row]
    top_share: float  # share of the window's attempts made by the listed addresses
    top_usernames: list[Row]
    top_prefixes: list[Row] = field(default_factory=list)
    busy: int = 0  # addresses that each made a large part of the window's attempts (0: none)

    @property
    def verdict(self) -> str:
        """Few busy machines or many addresses: the question the side-by-side chart answers."""
        if self.busy:
            return f"{self.busy} busy address{'es' if self.busy != 1 else ''}"
        text = f"distributed: {self.distinct_ips} addresses in the busiest {self.granularity}"
        if self.top_prefixes and self.top_prefixes[0].ips >= 10:
            p = self.top_prefixes[0]
            text += f", {p.ips} of them in {p.key}"
        if self.top_usernames and self.top_usernames[0].attempts >= 0.3 * self.attempts:
            text += f", mostly at {self.top_usernames[0].key}"
        return text


@dataclass(frozen=True, slots=True)
class Breach:
    """An address that failed many times and then logged in: possibly a guessed password."""

    ip: str
    failures: int
    successes: int
    usernames: list[str]
    note: str = ""


@dataclass(slots=True)
class Report:
    first: float | None
    last: float | None
    events: int
    kinds: dict[str, int]
    attempts: int
    distinct_ips: int
    reasons: dict[str, int]
    services: dict[str, int]
    days: list[Bucket]
    hours: list[Bucket]
    top_ips: list[Row]
    top_prefixes_v4: list[Row]
    top_prefixes_v6: list[Row]
    top_countries: list[Row]
    top_asns: list[Row]
    top_usernames: list[Row]
    probes: int
    probe_ips: int
    top_probe_ips: list[Row]
    top_recipients: list[Row]
    spikes: list[Spike]
    rate_limit_per_minute: int
    rate_exceeded: list[RateExceed]
    breaches: list[Breach]
    approximate: bool = False
    geo: str = "none"
    inputs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def rows(items: Sequence[Row]) -> list[dict[str, Any]]:
            return [
                {"key": r.key, "attempts": r.attempts, "ips": r.ips, "note": r.note or None}
                for r in items
            ]

        def buckets(items: Sequence[Bucket]) -> list[dict[str, Any]]:
            return [
                {
                    "start": iso(b.start),
                    "attempts": b.attempts,
                    "distinct_ips": b.distinct_ips,
                    "unknown_recipients": b.probes,
                    "successes": b.successes,
                }
                for b in items
            ]

        return {
            "schema": SCHEMA_VERSION,
            "span": {"first": iso(self.first), "last": iso(self.last)},
            "inputs": self.inputs,
            "events": self.events,
            "events_by_kind": dict(sorted(self.kinds.items())),
            "failed_attempts": self.attempts,
            "failed_attempts_by_reason": dict(sorted(self.reasons.items())),
            "failed_attempts_by_service": dict(sorted(self.services.items())),
            "distinct_ips": self.distinct_ips,
            "days": buckets(self.days),
            "hours": buckets(self.hours),
            "top_ips": rows(self.top_ips),
            "top_prefixes_v4": rows(self.top_prefixes_v4),
            "top_prefixes_v6": rows(self.top_prefixes_v6),
            "top_countries": rows(self.top_countries),
            "top_asns": rows(self.top_asns),
            "top_usernames": rows(self.top_usernames),
            "unknown_recipients": {
                "probes": self.probes,
                "ips": self.probe_ips,
                "top_ips": rows(self.top_probe_ips),
                "top_recipients": rows(self.top_recipients),
            },
            "spikes": [
                {
                    "metric": s.metric,
                    "granularity": s.granularity,
                    "start": iso(s.start),
                    "end": iso(s.end),
                    "attempts": s.attempts,
                    "baseline": round(s.baseline, 2),
                    "peak": s.peak,
                    "score": round(s.score, 1),
                    "distinct_ips": s.distinct_ips,
                    "verdict": s.verdict,
                    "top_ips": rows(s.top_ips),
                    "top_share": round(s.top_share, 3),
                    "busy_addresses": s.busy,
                    "top_usernames": rows(s.top_usernames),
                    "top_prefixes": rows(s.top_prefixes),
                }
                for s in self.spikes
            ],
            "rate_limit_per_minute": self.rate_limit_per_minute,
            "rate_exceeded": [
                {
                    "ip": str(r.ip),
                    "peak_per_minute": r.peak_per_minute,
                    "peak_minute": iso(r.peak_minute),
                    "first": iso(r.first),
                    "last": iso(r.last + 60),
                    "minutes_over": r.minutes_over,
                    "attempts_over": r.attempts_over,
                }
                for r in self.rate_exceeded
            ],
            "possible_breaches": [
                {
                    "ip": b.ip,
                    "failures": b.failures,
                    "successes": b.successes,
                    "usernames": b.usernames,
                    "note": b.note or None,
                }
                for b in self.breaches
            ],
            "approximate": self.approximate,
            "geo": self.geo,
        }


def _geo_note(geo: GeoLookup | None, ip: IPAddress) -> str:
    if geo is None:
        return ""
    parts: list[str] = []
    try:
        cc = geo.country(ip)
        asn = geo.asn(ip)
    except Exception:  # a broken database must not cost the whole report
        return ""
    if cc:
        parts.append(cc)
    if asn:
        parts.append(f"AS{asn[0]} {asn[1]}".strip())
    return " ".join(parts)


def _series(table: dict[int, HourStat], step: int) -> tuple[list[int], list[HourStat]]:
    if not table:
        return [], []
    lo, hi = min(table), max(table)
    keys = list(range(lo, hi + 1))
    empty = HourStat()
    return keys, [table.get(k, empty) for k in keys]


def build_report(
    agg: Aggregator,
    *,
    geo: GeoLookup | None = None,
    top: int = 10,
    sensitivity: float = 6.0,
    min_excess: float = 20.0,
    inputs: dict[str, Any] | None = None,
    geo_name: str = "none",
) -> Report:
    agg.finish()
    ip_att = agg.ip_attempts()
    ranked = sorted(ip_att.items(), key=lambda kv: (-kv[1], str(kv[0])))

    prefixes: dict[str, list[int]] = {}
    countries: dict[str, list[int]] = {}
    asns: dict[str, list[int]] = {}
    for ip, n in ranked:
        p = prefixes.setdefault(prefix_of(ip), [0, 0])
        p[0] += n
        p[1] += 1
        if geo is not None:
            try:
                cc = geo.country(ip) or "??"
                asn = geo.asn(ip)
            except Exception:
                cc, asn = "??", None
            c = countries.setdefault(cc, [0, 0])
            c[0] += n
            c[1] += 1
            key = f"AS{asn[0]} {asn[1]}".strip() if asn else "unknown"
            a = asns.setdefault(key, [0, 0])
            a[0] += n
            a[1] += 1

    def table(d: dict[str, list[int]], pred: Any = None) -> list[Row]:
        items = [(k, v) for k, v in d.items() if pred is None or pred(k)]
        items.sort(key=lambda kv: (-kv[1][0], kv[0]))
        return [Row(k, v[0], v[1]) for k, v in items[:top]]

    top_ips = [Row(str(ip), n, 1, _geo_note(geo, ip)) for ip, n in ranked[:top]]
    users = [
        Row(
            u,
            n,
            agg.user_ips[u].estimate() if u in agg.user_ips else 0,
        )
        for u, n in agg.usernames.top(top)
    ]
    probes_by_ip = sorted(agg.ip_probes().items(), key=lambda kv: (-kv[1], str(kv[0])))
    recipients = [Row(r, n, 0) for r, n in agg.recipients.top(top)]

    hour_keys, hour_stats = _series(agg.hours, HOUR)
    day_keys, day_stats = _series(agg.days, DAY)
    hours = [
        Bucket(k * HOUR, s.attempts, s.distinct_ips, s.probes, s.successes)
        for k, s in zip(hour_keys, hour_stats, strict=True)
    ]
    days = [
        Bucket(k * DAY, s.attempts, s.distinct_ips, s.probes, s.successes)
        for k, s in zip(day_keys, day_stats, strict=True)
    ]

    spikes: list[Spike] = []
    for metric in ("attempts", "distinct_ips"):
        series = [float(getattr(s, metric)) for s in hour_stats]
        for w in find_spikes(series, sensitivity=sensitivity, min_excess=min_excess):
            spikes.append(_spike(metric, "hour", HOUR, hour_keys, hour_stats, w, geo))
        if metric == "attempts":
            # On a busy server a two-machine burst hides in the total; what the few busiest
            # addresses of the hour did does not.
            busiest = [float(sum(n for _, n in s.top_ips[:BUSIEST])) for s in hour_stats]
            for w in find_spikes(busiest, sensitivity=sensitivity, min_excess=BUSIEST_MIN_EXCESS):
                spikes.append(_spike("busiest_ips", "hour", HOUR, hour_keys, hour_stats, w, geo))
        dseries = [float(getattr(s, metric)) for s in day_stats]
        for w in find_spikes(
            dseries,
            sensitivity=sensitivity,
            min_excess=min_excess * 5,
            window=28,
            min_history=7,
        ):
            spike = _spike(metric, "day", DAY, day_keys, day_stats, w, geo)
            if not any(_overlaps(spike, s) for s in spikes):
                spikes.append(spike)
    spikes = _dedupe(spikes)
    spikes.sort(key=lambda s: s.start)

    successes = agg.ip_successes()
    breaches = [
        Breach(str(ip), ip_att.get(ip, 0), successes[ip], sorted(agg.success_usernames(ip)))
        for ip in successes
        if ip_att.get(ip, 0) >= BREACH_MIN_FAILURES
        and ip_att.get(ip, 0) >= BREACH_FAILURES_PER_SUCCESS * successes[ip]
    ]
    breaches.sort(key=lambda b: -b.failures)
    breaches = [
        Breach(b.ip, b.failures, b.successes, b.usernames, _geo_note(geo, _addr(b.ip)))
        for b in breaches[:top]
    ]

    return Report(
        first=agg.first_ts,
        last=agg.last_ts,
        events=sum(agg.kinds.values()),
        kinds=dict(agg.kinds),
        attempts=agg.attempts,
        distinct_ips=len(ip_att),
        reasons={str(k): v for k, v in agg.reasons.items()},
        services={str(k): v for k, v in agg.services.items()},
        days=days,
        hours=hours,
        top_ips=top_ips,
        top_prefixes_v4=table(prefixes, lambda k: ":" not in k),
        top_prefixes_v6=table(prefixes, lambda k: ":" in k),
        top_countries=table(countries),
        top_asns=table(asns),
        top_usernames=users,
        probes=sum(n for _, n in probes_by_ip),
        probe_ips=len(probes_by_ip),
        top_probe_ips=[Row(str(ip), n, 1, _geo_note(geo, ip)) for ip, n in probes_by_ip[:top]],
        top_recipients=recipients,
        spikes=spikes,
        rate_limit_per_minute=agg.rate_limit,
        rate_exceeded=agg.rate_exceeded(),
        breaches=breaches,
        approximate=agg.approximate,
        geo=geo_name if geo is not None else "none",
        inputs=dict(inputs or {}),
    )


def _addr(text: str) -> IPAddress:
    from mailward.events import normalise_ip

    return normalise_ip(text)


def _spike(
    metric: str,
    granularity: str,
    step: int,
    keys: list[int],
    stats: list[HourStat],
    w: SpikeWindow,
    geo: GeoLookup | None,
) -> Spike:
    window = stats[w.start : w.end]
    ips: dict[IPAddress, int] = {}
    users: dict[str, int] = {}
    nets: dict[str, list[int]] = {}
    for s in window:
        for cidr, n, k in s.top_prefixes:
            entry = nets.setdefault(cidr, [0, 0])
            entry[0] += n
            entry[1] = max(entry[1], k)
        for ip, n in s.top_ips:
            ips[ip] = ips.get(ip, 0) + n
        for u, n in s.top_users:
            users[u] = users.get(u, 0) + n
    attempts = sum(s.attempts for s in window)
    ranked = sorted(ips.items(), key=lambda kv: (-kv[1], str(kv[0])))
    lead = ranked[:5]
    share = sum(n for _, n in lead) / attempts if attempts else 0.0
    # A few machines did it when each made a tenth of the window's attempts (at least 20) and
    # together at least 30 %: on a busy server the rest of the hour is the usual background.
    heavy = [n for _, n in lead if n >= max(20.0, 0.1 * attempts)]
    busy = len(heavy) if heavy and sum(heavy) >= 0.3 * attempts else 0
    return Spike(
        metric=metric,
        granularity=granularity,
        start=keys[w.start] * step,
        end=keys[w.end - 1] * step + step,
        attempts=attempts,
        baseline=w.baseline,
        peak=w.peak,
        score=w.score,
        distinct_ips=max(s.distinct_ips for s in window),
        top_ips=[Row(str(ip), n, 1, _geo_note(geo, ip)) for ip, n in lead],
        top_share=share,
        top_usernames=[
            Row(u, n, 0) for u, n in sorted(users.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        ],
        top_prefixes=[
            Row(c, v[0], v[1]) for c, v in sorted(nets.items(), key=lambda kv: -kv[1][1])[:3]
        ],
        busy=busy,
    )


def _overlaps(a: Spike, b: Spike) -> bool:
    return a.start < b.end and b.start < a.end


def _dedupe(spikes: list[Spike]) -> list[Spike]:
    """An attempts spike and a distinct-address spike over the same hours are one finding."""
    out: list[Spike] = []
    order = {"attempts": 0, "busiest_ips": 1, "distinct_ips": 2}
    for s in sorted(spikes, key=lambda s: (s.granularity != "hour", order.get(s.metric, 3))):
        if any(_overlaps(s, o) and s.granularity == o.granularity for o in out):
            continue
        out.append(s)
    return out


def is_v4(text: str) -> bool:
    try:
        IPv4Address(text)
    except ValueError:
        return False
    return True
