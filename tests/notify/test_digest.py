from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy

from tests.notify.helpers import MemoryGeo, fail, ok

from mailward.decisions.model import Action, Decision
from mailward.events import Event
from mailward.notify.digest import build_digest, chart_png, render_digest
from mailward.notify.render import to_email

NOW = datetime(2026, 3, 10, 7, 0, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class HourCount:
    hour: float
    kind: str
    attempts: int


@dataclass(frozen=True)
class StoredAlert:
    ts: float
    kind: str
    severity: str
    message: str


class MemorySource:
    """The store's read side, in memory."""

    def __init__(
        self, events: list[Event], decisions: list[Decision], alerts: list[StoredAlert]
    ) -> None:
        self._events = sorted(events, key=lambda e: e.ts)
        self._decisions = decisions
        self._alerts = alerts

    def events(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> Iterator[Event]:
        ks = set(kinds) if kinds is not None else None
        for e in self._events:
            if (
                (since is None or e.ts >= since)
                and (until is None or e.ts < until)
                and (ks is None or e.kind in ks)
            ):
                yield e

    def counts_per_hour(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[HourCount]:
        per: dict[tuple[float, str], int] = {}
        for e in self.events(since, until, kinds):
            key = (float(int(e.ts // 3600) * 3600), e.kind)
            per[key] = per.get(key, 0) + getattr(e, "attempts", 1)
        return [HourCount(h, k, n) for (h, k), n in sorted(per.items())]

    def decisions(self, since: float | None = None, until: float | None = None) -> list[Decision]:
        return [
            d
            for d in self._decisions
            if (since is None or d.ts >= since) and (until is None or d.ts < until)
        ]

    def alerts(self, since: float | None = None, until: float | None = None) -> list[StoredAlert]:
        return [
            a
            for a in self._alerts
            if (since is None or a.ts >= since) and (until is None or a.ts < until)
        ]


def week_and_a_day() -> MemorySource:
    events: list[Event] = []
    # Seven ordinary days: 2 failures an hour from scattered addresses.
    for h in range(8 * 24):
        t = NOW - 8 * 86400 + h * 3600 + 60
        events += [
            fail(t, f"198.51.100.{h % 200 + 1}", "info"),
            fail(t + 1, f"198.51.101.{h % 200 + 1}", "admin"),
        ]
    # The last day: a 40-minute spike from two hosts at 03:00.
    spike = NOW - 4 * 3600
    for i in range(100):
        events += [
            fail(spike + i * 24, "81.2.69.160", "alice"),
            fail(spike + i * 24 + 5, "81.2.69.161", "alice"),
        ]
    events.append(ok(NOW - 3600, "89.160.20.112", "bob"))
    decisions = [
        Decision(ts=spike + 60, target="81.2.69.160", action=Action.BAN, rule="rate_limit"),
        Decision(
            ts=spike + 70, target="user:alice", action=Action.PROTECT_USER, rule="distributed"
        ),
    ]
    alerts = [StoredAlert(spike + 300, "login_spike", "high", "Spike: 60 login attempts")]
    return MemorySource(events, decisions, alerts)


def test_digest_data_against_the_baseline() -> None:
    geo = MemoryGeo({"81.2.69.160": ("GB", 1), "81.2.69.161": ("GB", 1)})
    d = build_digest(week_and_a_day(), NOW, geo=geo, top=3, health={"sources": "ok"})
    assert d.attempts == 46 + 200  # 23 full hours and the current one (07:00, empty)
    assert d.baseline_attempts == 48
    assert d.top_ips[0][1] == 100 and d.top_ips[0][2] == "GB"
    assert {ip for ip, _, _ in d.top_ips[:2]} == {"81.2.69.160", "81.2.69.161"}
    assert d.top_countries[0] == ("GB", 200)
    assert d.top_usernames[0] == ("alice", 200)
    assert d.hourly[19] == 2 + 200 and d.hourly_baseline[19] == 2  # the spike hour, 03:00
    assert d.hourly_ips[19] == 4 and d.hourly_baseline[23] == 2
    assert (d.bans, d.bans_by_rule, d.protected_users) == (1, [("rate_limit", 1)], ["alice"])
    assert d.successes == 1 and len(d.alerts) == 1
    # The same spike finding as `mailward analyze` (the digest reuses its aggregation).
    assert d.spikes == [
        "2026-03-10 03:00 UTC to 2026-03-10 04:00 UTC: 202 attempts (baseline 2/hour), 2 busy addresses"
    ]
    assert d.to_json()["top_usernames"][0] == {"username": "alice", "attempts": 200}


def test_digest_mail_has_text_html_and_inline_chart() -> None:
    d = build_digest(week_and_a_day(), NOW)
    msg = render_digest(d, host="mx1")
    assert (
        msg.subject
        == "[mailward mx1] daily digest 2026-03-10: 246 failed logins (5.1x the usual), 1 bans, 1 alerts"
    )
    assert "Top usernames:" in msg.text and "alice" in msg.text
    mail = message_from_bytes(
        to_email(msg, sender="a@b", to=["root"]).as_bytes(), policy=policy.default
    )
    png = [p for p in mail.walk() if p.get_content_type() == "image/png"]
    assert len(png) == 1 and png[0].get_content().startswith(b"\x89PNG")
    html_part = mail.get_body(("html",))
    assert html_part is not None and "cid:attempts-chart" in html_part.get_content()


def test_empty_store_and_chart() -> None:
    d = build_digest(MemorySource([], [], []), NOW)
    assert d.attempts == 0 and d.baseline_attempts == 0
    assert "no baseline yet" in render_digest(d, host="mx1", chart=False).subject
    assert chart_png(d).startswith(b"\x89PNG")
