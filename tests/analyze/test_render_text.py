from __future__ import annotations

from mailward.analyze.aggregate import Aggregator
from mailward.analyze.render_text import render_text
from mailward.analyze.report import Report, build_report
from mailward.demo.generator import DemoLog


def test_findings_come_first_and_name_the_spike_hosts(
    demo_log: DemoLog, demo_report: Report
) -> None:
    text = render_text(demo_report)
    incident = next(i for i in demo_log.truth.incidents if i.scenario == "spike")
    spikes_at = text.index("Spikes (")
    for ip in incident.ips:
        assert text.index(ip) > spikes_at
        assert ip in text[spikes_at : text.index("Over the rate limit")]
    assert "2 busy addresses" in text
    assert "Possible breaches" in text
    assert text.index("Spikes (") < text.index("Top addresses")
    assert "\x1b[" not in text


def test_color_only_when_asked(demo_report: Report) -> None:
    assert "\x1b[" in render_text(demo_report, color=True)


def test_empty_report_renders() -> None:
    text = render_text(build_report(Aggregator()))
    assert "0 failed login attempts" in text
    assert "none" in text
