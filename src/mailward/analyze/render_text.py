"""The terminal rendering of a ``Report``: findings first (spikes, breaches, rate evidence), then tables.

Pure: returns a string. ``color`` adds ANSI styles through click; off for pipes and files.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import click

from mailward.analyze.report import Report, Row

_BAR = "█"
_SPARK = "▁▂▃▄▅▆▇█"
# Dovecot's passdb lines (the per-attempt ones) do not say which protocol was used.
_SERVICE_LABEL = {"unknown": "dovecot auth (protocol not logged)"}


def _t(ts: float | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime(fmt)


def _table(
    rows: Sequence[Row], key_title: str, *, ips_title: str = "addrs", count: str = "attempts"
) -> list[str]:
    if not rows:
        return ["  (none)"]
    width = max(len(key_title), *(len(r.key) for r in rows))
    out = [f"  {key_title:<{width}}  {count:>9}  {ips_title:>6}".rstrip()]
    for r in rows:
        out.append(f"  {r.key:<{width}}  {r.attempts:>9,}  {r.ips:>6,}  {r.note}".rstrip())
    return out


def render_text(report: Report, *, color: bool = False) -> str:
    def h(text: str) -> str:
        return click.style(text, bold=True, fg="cyan") if color else text

    def warn(text: str) -> str:
        return click.style(text, bold=True, fg="red") if color else text

    out: list[str] = []
    span_days = (report.last - report.first) / 86400 if report.first and report.last else 0.0
    out.append(h("mailward analyze"))
    out.append(
        f"  {_t(report.first)} → {_t(report.last)} UTC ({span_days:.1f} days), "
        f"{report.events:,} events"
    )
    inputs = report.inputs
    if inputs.get("lines") is not None:
        out.append(
            f"  {inputs['lines']:,} lines read: {inputs.get('recognised', 0):,} recognised, "
            f"{inputs.get('ignored', 0):,} known but uncounted, "
            f"{inputs.get('unrecognised', 0):,} not for mailward"
        )
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(report.kinds.items(), key=lambda kv: -kv[1]))
    out.append(f"  by kind: {kinds or '-'}")
    reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(report.reasons.items()))
    out.append(
        f"  {report.attempts:,} failed login attempts from {report.distinct_ips:,} addresses"
        + (f" ({reasons})" if reasons else "")
    )
    if report.services:
        svc = ", ".join(
            f"{_SERVICE_LABEL.get(k, k)} {v:,}"
            for k, v in sorted(report.services.items(), key=lambda kv: -kv[1])
        )
        out.append(f"  by service: {svc}")
    out.append("")

    out.append(h(f"Spikes ({len(report.spikes)})"))
    if not report.spikes:
        out.append("  none: no hour or day far above its baseline")
    for s in report.spikes:
        what = {
            "attempts": "attempts",
            "busiest_ips": "attempts of the busiest addresses",
            "distinct_ips": "distinct addresses",
        }.get(s.metric, s.metric)
        fmt = "%Y-%m-%d %H:%M" if s.granularity == "hour" else "%Y-%m-%d"
        out.append(
            warn(f"  {_t(s.start, fmt)} → {_t(s.end, fmt)}")
            + f"  {what} per {s.granularity}: peak {s.peak:,.0f} vs baseline {s.baseline:,.0f} "
            f"({s.score:.0f}σ); {s.attempts:,} attempts; {s.verdict}"
        )
        distributed = s.verdict.startswith("distributed")
        for r in s.top_ips[: 1 if distributed else 3]:
            share = r.attempts / s.attempts * 100 if s.attempts else 0
            out.append(f"      {r.key:<39} {r.attempts:>6,} ({share:4.1f}%)  {r.note}".rstrip())
        if s.top_usernames:
            names = ", ".join(f"{u.key} ({u.attempts:,})" for u in s.top_usernames)
            out.append(f"      usernames: {names}")
    out.append("")

    if report.breaches:
        out.append(warn(f"Possible breaches: login after many failures ({len(report.breaches)})"))
        for b in report.breaches:
            out.append(
                f"  {b.ip:<39} {b.failures:,} failures, then {b.successes:,} login(s) as "
                f"{', '.join(b.usernames) or '?'}  {b.note}".rstrip()
            )
        out.append("")

    out.append(
        h(
            f"Over the rate limit of {report.rate_limit_per_minute}/min "
            f"({len(report.rate_exceeded):,} clients): a defence did not hold"
        )
    )
    if not report.rate_exceeded:
        out.append("  none")
    for ex in report.rate_exceeded[:10]:
        out.append(
            f"  {str(ex.ip):<39} peak {ex.peak_per_minute}/min at {_t(ex.peak_minute)}, "
            f"{ex.attempts_over:,} attempts in {ex.minutes_over} minute(s) over the limit, "
            f"{_t(ex.first, '%m-%d %H:%M')}–{_t(ex.last + 60, '%H:%M')}"
        )
    if len(report.rate_exceeded) > 10:
        out.append(f"  … and {len(report.rate_exceeded) - 10:,} more (--json for all)")
    out.append("")

    out.append(h("Failed attempts per day (bar) and distinct addresses"))
    if report.days:
        peak = max(d.attempts for d in report.days) or 1
        for d in report.days:
            bar = _BAR * max(0, round(d.attempts / peak * 40))
            out.append(
                f"  {_t(d.start, '%a %m-%d')}  {d.attempts:>8,}  {d.distinct_ips:>6,}  {bar}"
            )
    out.append("")

    sections: list[tuple[str, Sequence[Row], str, str]] = [
        ("Top addresses", report.top_ips, "address", "addrs"),
        ("Top IPv4 /24 prefixes", report.top_prefixes_v4, "prefix", "addrs"),
        ("Top IPv6 /64 prefixes", report.top_prefixes_v6, "prefix", "addrs"),
        ("Top countries", report.top_countries, "country", "addrs"),
        ("Top networks (ASN)", report.top_asns, "asn", "addrs"),
        ("Targeted usernames", report.top_usernames, "username", "addrs"),
    ]
    for title, rows, key, ips in sections:
        if not rows and title.startswith(("Top countries", "Top networks")):
            out.append(h(title))
            out.append("  (no GeoIP data: configure [geoip] or install the store extras)")
            out.append("")
            continue
        if not rows and "IPv6" in title:
            continue
        out.append(h(title))
        out.extend(_table(rows, key, ips_title=ips))
        out.append("")

    out.append(
        h(f"Unknown-recipient probes: {report.probes:,} from {report.probe_ips:,} addresses")
    )
    if report.top_probe_ips:
        out.extend(_table(report.top_probe_ips, "address", count="probes"))
        out.append(
            "  most probed recipients: "
            + ", ".join(f"{r.key} ({r.attempts:,})" for r in report.top_recipients[:6])
        )
    out.append("")
    if report.approximate:
        out.append(
            "note: some tables are approximate (very many distinct values, or input far out of "
            "time order)"
        )
    return "\n".join(out).rstrip() + "\n"
