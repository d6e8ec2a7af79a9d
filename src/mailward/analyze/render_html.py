"""A self-contained HTML rendering of a ``Report``: inline CSS and inline SVG charts, no scripts.

Works offline and from a mail attachment: nothing is fetched (a Content-Security-Policy forbids it).
Attempts and distinct addresses are plotted one above the other on the same time axis, so two busy
machines (attempts up, addresses flat) are never mistaken for a botnet (addresses up). Every value
that came from a log line (usernames, recipients) is escaped.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from mailward.analyze.report import Report, Row

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d9dde3;padding-bottom:4px}
.sub{color:#5b6472}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{background:#fff;border:1px solid #d9dde3;border-radius:8px;padding:10px 14px;min-width:140px}
.card b{display:block;font-size:20px}.alert{border-left:4px solid #c62828;background:#fff;padding:8px 12px;margin:8px 0;border-radius:4px}
table{border-collapse:collapse;background:#fff;border:1px solid #d9dde3;margin:6px 0 12px;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #eef0f3;text-align:left}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(330px,1fr));gap:16px}
figure{margin:0;background:#fff;border:1px solid #d9dde3;border-radius:8px;padding:8px}svg{max-width:100%;height:auto}
code{font-size:12px}
"""


def _t(ts: float | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime(fmt)


def _table(
    rows: Sequence[Row], key: str, *, count: str = "attempts", ips: str = "addresses"
) -> str:
    if not rows:
        return "<p class=sub>none</p>"
    body = "".join(
        f"<tr><td><code>{escape(r.key)}</code></td><td class=n>{r.attempts:,}</td>"
        f"<td class=n>{r.ips:,}</td><td>{escape(r.note)}</td></tr>"
        for r in rows
    )
    return (
        f"<table><tr><th>{escape(key)}</th><th class=n>{count}</th><th class=n>{ips}</th>"
        f"<th></th></tr>{body}</table>"
    )


def _svg(fig: object) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")  # type: ignore[attr-defined]
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _charts(report: Report) -> list[str]:
    """Inline SVG charts; empty when matplotlib is missing (the tables still tell the story)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: small and searchable
    matplotlib.rcParams["svg.hashsalt"] = "mailward"  # same report, same bytes
    out: list[str] = []
    if report.hours:
        xs = [datetime.fromtimestamp(b.start, UTC) for b in report.hours]
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 5.2), sharex=True)
        ax1.fill_between(
            xs,
            [b.attempts for b in report.hours],
            step="post",
            color="#c62828",
            alpha=0.8,
            linewidth=0,
        )
        ax1.set_ylabel("failed attempts / hour")
        ax2.fill_between(
            xs,
            [b.distinct_ips for b in report.hours],
            step="post",
            color="#1565c0",
            alpha=0.8,
            linewidth=0,
        )
        ax2.set_ylabel("distinct addresses / hour")
        for s in report.spikes:
            for ax in (ax1, ax2):
                ax.axvspan(
                    datetime.fromtimestamp(s.start, UTC),
                    datetime.fromtimestamp(s.end, UTC),
                    color="#ffb300",
                    alpha=0.35,
                    linewidth=0,
                )
            if s.metric != "distinct_ips":
                ax1.annotate(
                    s.verdict, xy=(datetime.fromtimestamp(s.start, UTC), s.peak), fontsize=8
                )
        for ax in (ax1, ax2):
            ax.grid(alpha=0.3)
            ax.spines[["top", "right"]].set_visible(False)
        ax2.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))  # type: ignore[no-untyped-call]
        ax1.set_title("Attempts and distinct addresses per hour (spikes shaded)", fontsize=11)
        out.append(_svg(fig))
        plt.close(fig)
    if report.days:
        xs = [datetime.fromtimestamp(b.start, UTC) for b in report.days]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.0), sharex=True)
        ax1.bar(xs, [b.attempts for b in report.days], color="#c62828", width=0.8)
        ax1.set_title("Failed attempts per day", fontsize=11)
        ax2.bar(xs, [b.distinct_ips for b in report.days], color="#1565c0", width=0.8)
        ax2.set_title("Distinct addresses per day", fontsize=11)
        for ax in (ax1, ax2):
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))  # type: ignore[no-untyped-call]
            ax.tick_params(axis="x", labelrotation=45, labelsize=8)
            ax.grid(axis="y", alpha=0.3)
            ax.spines[["top", "right"]].set_visible(False)
        out.append(_svg(fig))
        plt.close(fig)
    if report.top_countries:
        rows = report.top_countries[::-1]
        fig, ax = plt.subplots(figsize=(5.2, 0.32 * len(rows) + 0.8))
        ax.barh([r.key for r in rows], [r.attempts for r in rows], color="#6a1b9a")
        ax.set_title("Failed attempts by country", fontsize=11)
        ax.spines[["top", "right"]].set_visible(False)
        out.append(_svg(fig))
        plt.close(fig)
    return out


def render_html(report: Report) -> str:
    days = (report.last - report.first) / 86400 if report.first and report.last else 0.0
    parts: list[str] = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data:\">",
        "<meta name=viewport content='width=device-width,initial-scale=1'>",
        f"<title>mailward analysis {_t(report.first, '%Y-%m-%d')} – {_t(report.last, '%Y-%m-%d')}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        "<h1>mailward analysis</h1>",
        f"<p class=sub>{_t(report.first)} → {_t(report.last)} UTC ({days:.1f} days)"
        f"{' · demo data' if report.geo == 'demo' else ''}</p>",
        "<div class=cards>",
        f"<div class=card><b>{report.attempts:,}</b>failed login attempts</div>",
        f"<div class=card><b>{report.distinct_ips:,}</b>attacking addresses</div>",
        f"<div class=card><b>{report.probes:,}</b>unknown-recipient probes</div>",
        f"<div class=card><b>{len(report.spikes)}</b>spikes</div>",
        f"<div class=card><b>{len(report.rate_exceeded):,}</b>clients over {report.rate_limit_per_minute}/min</div>",
        "</div>",
    ]
    for b in report.breaches:
        parts.append(
            f"<div class=alert><b>Possible breach:</b> <code>{escape(b.ip)}</code> failed "
            f"{b.failures:,} times, then logged in as {escape(', '.join(b.usernames))} "
            f"{escape(b.note)}</div>"
        )
    charts = _charts(report)
    if charts:
        parts.append("<h2>Timeline</h2>")
        parts.append(f"<figure>{charts[0]}</figure>")
        if len(charts) > 1:
            parts.append(f"<figure>{charts[1]}</figure>")
    parts.append("<h2>Spikes</h2>")
    if not report.spikes:
        parts.append("<p class=sub>No hour or day far above its baseline.</p>")
    for s in report.spikes:
        fmt = "%Y-%m-%d %H:%M" if s.granularity == "hour" else "%Y-%m-%d"
        what = {
            "attempts": "attempts",
            "busiest_ips": "attempts of the busiest addresses",
            "distinct_ips": "distinct addresses",
        }.get(s.metric, s.metric)
        parts.append(
            f"<div class=alert><b>{_t(s.start, fmt)} → {_t(s.end, fmt)}</b>: {what} per "
            f"{s.granularity} peaked at {s.peak:,.0f} against a baseline of {s.baseline:,.0f} "
            f"({s.score:.0f}σ); {s.attempts:,} attempts — <b>{escape(s.verdict)}</b>"
            + _table(s.top_ips, "address")
            + "</div>"
        )
    parts.append(
        f"<h2>Over the rate limit of {report.rate_limit_per_minute}/min: a defence did not hold</h2>"
    )
    if report.rate_exceeded:
        rows = "".join(
            f"<tr><td><code>{escape(str(r.ip))}</code></td><td class=n>{r.peak_per_minute}</td>"
            f"<td>{_t(r.peak_minute)}</td><td class=n>{r.minutes_over}</td>"
            f"<td class=n>{r.attempts_over:,}</td><td>{_t(r.first)} – {_t(r.last + 60, '%H:%M')}</td></tr>"
            for r in report.rate_exceeded[:25]
        )
        parts.append(
            "<table><tr><th>address</th><th class=n>peak/min</th><th>worst minute</th>"
            "<th class=n>minutes over</th><th class=n>attempts over</th><th>window</th></tr>"
            f"{rows}</table>"
        )
    else:
        parts.append("<p class=sub>none</p>")
    parts.append("<h2>Who</h2><div class=grid>")
    parts.append("<div><h3>Top addresses</h3>" + _table(report.top_ips, "address") + "</div>")
    parts.append(
        "<div><h3>Targeted usernames</h3>" + _table(report.top_usernames, "username") + "</div>"
    )
    parts.append("<div><h3>IPv4 /24</h3>" + _table(report.top_prefixes_v4, "prefix") + "</div>")
    parts.append("<div><h3>IPv6 /64</h3>" + _table(report.top_prefixes_v6, "prefix") + "</div>")
    parts.append("<div><h3>Countries</h3>" + _table(report.top_countries, "country") + "</div>")
    parts.append("<div><h3>Networks (ASN)</h3>" + _table(report.top_asns, "ASN") + "</div>")
    parts.append("</div>")
    if len(charts) > 2:
        parts.append(f"<figure>{charts[2]}</figure>")
    parts.append(
        f"<h2>Unknown-recipient probes</h2><p>{report.probes:,} probes from "
        f"{report.probe_ips:,} addresses.</p><div class=grid>"
        + "<div>"
        + _table(report.top_probe_ips, "address", count="probes")
        + "</div>"
        + "<div>"
        + _table(report.top_recipients, "recipient", count="probes", ips="")
        + "</div></div>"
    )
    kinds = "".join(
        f"<tr><td>{escape(k)}</td><td class=n>{v:,}</td></tr>"
        for k, v in sorted(report.kinds.items(), key=lambda kv: -kv[1])
    )
    parts.append(f"<h2>Events by kind</h2><table>{kinds}</table>")
    if report.approximate:
        parts.append("<p class=sub>Some tables are approximate (very many distinct values).</p>")
    parts.append(
        "<p class=sub>Generated by mailward. This file fetches nothing.</p></main></body></html>"
    )
    return "\n".join(parts)
