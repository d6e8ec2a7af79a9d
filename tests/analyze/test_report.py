from __future__ import annotations

import json
from datetime import UTC, datetime
from ipaddress import ip_address

import pytest

from mailward.analyze.aggregate import Aggregator
from mailward.analyze.report import Report, build_report
from mailward.demo.generator import DemoConfig, DemoLog
from mailward.events import AuthFailure, Service

END = datetime(2026, 11, 21, tzinfo=UTC)


def test_demo_spike_is_found_with_its_two_hosts_named(
    demo_log: DemoLog, demo_report: Report
) -> None:
    incident = next(i for i in demo_log.truth.incidents if i.scenario == "spike")
    spikes = [s for s in demo_report.spikes if s.start <= incident.start < s.end]
    assert len(spikes) == 1
    spike = spikes[0]
    assert spike.metric == "attempts"
    assert {r.key for r in spike.top_ips[:2]} == set(incident.ips)
    assert [r.attempts for r in spike.top_ips[:2]] == [103, 103]
    assert spike.verdict == "2 busy addresses"
    assert spike.top_ips[0].note.startswith("GB ")


def test_distributed_incidents_are_called_distributed(
    demo_log: DemoLog, demo_report: Report
) -> None:
    sweep = next(i for i in demo_log.truth.incidents if i.scenario == "sweep")
    found = [s for s in demo_report.spikes if s.start <= sweep.start < s.end]
    assert found and found[0].verdict.startswith("distributed")
    assert sweep.ips[0] in found[0].verdict  # "…, 92 of them in 198.x.y.0/24"
    ipv6 = next(i for i in demo_log.truth.incidents if i.scenario == "ipv6")
    found = [s for s in demo_report.spikes if s.start <= ipv6.start + 3600 < s.end]
    assert found and "2001:db8:bad:7::/64" in found[0].verdict


def test_no_spike_outside_the_scripted_incidents(demo_log: DemoLog, demo_report: Report) -> None:
    windows = [(i.start - 3600, i.end + 3600) for i in demo_log.truth.incidents]
    for s in demo_report.spikes:
        assert any(a < s.end and s.start < b for a, b in windows), s


def test_rate_evidence_names_the_spike_hosts_first(demo_log: DemoLog, demo_report: Report) -> None:
    incident = next(i for i in demo_log.truth.incidents if i.scenario == "spike")
    first_two = {str(r.ip) for r in demo_report.rate_exceeded[:2]}
    assert first_two == set(incident.ips)
    assert all(r.peak_per_minute > 3 for r in demo_report.rate_exceeded)


def test_tables(demo_log: DemoLog, demo_report: Report) -> None:
    r = demo_report
    assert r.attempts == demo_log.truth.attempts
    assert r.top_usernames[0].key == "info@example.org"  # the botnet's one target
    assert r.top_usernames[0].ips > 300
    assert r.top_prefixes_v6[0].key == "2001:db8:bad:7::/64"
    sweep = next(i for i in demo_log.truth.incidents if i.scenario == "sweep")
    assert any(p.key == sweep.ips[0] and p.ips >= 250 for p in r.top_prefixes_v4)
    assert r.top_countries and r.top_asns
    assert r.probes == demo_log.truth.probes
    enum = next(i for i in demo_log.truth.incidents if i.scenario == "enumeration")
    assert {x.key for x in r.top_probe_ips[:2]} == set(enum.ips)
    assert sum(d.attempts for d in r.days) == r.attempts
    assert sum(h.attempts for h in r.hours) == r.attempts


def test_breach_is_the_guesser_that_got_in(demo_log: DemoLog, demo_report: Report) -> None:
    breach = next(i for i in demo_log.truth.incidents if i.scenario == "breach")
    assert [b.ip for b in demo_report.breaches] == [breach.ips[0]]
    assert demo_report.breaches[0].usernames == ["office@example.org"]


def test_json_shape_is_stable(demo_report: Report) -> None:
    data = json.loads(json.dumps(demo_report.to_json()))
    assert data["schema"] == 1
    for key in (
        "span",
        "events_by_kind",
        "failed_attempts",
        "distinct_ips",
        "days",
        "hours",
        "top_ips",
        "top_prefixes_v4",
        "top_prefixes_v6",
        "top_countries",
        "top_asns",
        "top_usernames",
        "unknown_recipients",
        "spikes",
        "rate_exceeded",
        "possible_breaches",
    ):
        assert key in data, key
    spike = data["spikes"][0]
    assert set(spike) >= {"start", "end", "attempts", "baseline", "score", "verdict", "top_ips"}
    assert data["span"]["first"].endswith("Z")


def test_without_geo_the_country_tables_are_empty_not_broken() -> None:
    agg = Aggregator()
    agg.add(AuthFailure(ts=1e9, service=Service.IMAP, ip=ip_address("198.18.0.1"), username="x"))
    report = build_report(agg)
    assert report.top_countries == [] and report.geo == "none"
    assert report.top_ips[0].note == ""


def test_a_failing_geo_database_costs_only_the_geo_columns() -> None:
    class Broken:
        def country(self, ip: object) -> str | None:
            raise OSError("corrupt database")

        def asn(self, ip: object) -> tuple[int, str] | None:
            raise OSError("corrupt database")

    agg = Aggregator()
    agg.add(AuthFailure(ts=1e9, service=Service.IMAP, ip=ip_address("198.18.0.1"), username="x"))
    report = build_report(agg, geo=Broken())
    assert report.top_ips[0].key == "198.18.0.1"
    assert report.top_countries[0].key == "??"


def test_empty_input() -> None:
    report = build_report(Aggregator())
    assert report.attempts == 0 and report.spikes == [] and report.first is None
    assert report.to_json()["span"] == {"first": None, "last": None}


@pytest.mark.parametrize("lines", [60_000, 600_000])
def test_a_month_of_ordinary_traffic_and_steady_guessing_has_no_spike(lines: int) -> None:
    """Daily and weekly rhythm, persistent guessers and drive-by scanners: nothing to flag."""
    quiet = frozenset({"users", "steady", "scanners"})
    log = DemoLog(DemoConfig(lines=lines, seed=11, end=END, scenarios=quiet))
    report = build_report(Aggregator().add_all(log.events()))
    assert report.spikes == []
    assert report.attempts > 1000


@pytest.mark.slow
def test_busy_server_two_host_burst_is_found_by_the_busiest_addresses() -> None:
    """At a million lines a month the burst hides in the hourly total; the busiest-address
    series still shows it, and the verdict names the two hosts."""
    scenarios = frozenset({"users", "steady", "scanners", "spike"})
    log = DemoLog(DemoConfig(lines=1_000_000, seed=1, end=END, scenarios=scenarios))
    report = build_report(Aggregator().add_all(log.events()))
    incident = next(i for i in log.truth.incidents if i.scenario == "spike")
    (spike,) = report.spikes
    assert spike.start <= incident.start < spike.end
    assert {r.key for r in spike.top_ips[:2]} == set(incident.ips)
    assert spike.verdict == "2 busy addresses"
