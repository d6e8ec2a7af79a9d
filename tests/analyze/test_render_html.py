from __future__ import annotations

import re
import shutil
import subprocess
from ipaddress import ip_address
from pathlib import Path

import pytest

from mailward.analyze.aggregate import Aggregator
from mailward.analyze.render_html import render_html
from mailward.analyze.report import Report, build_report
from mailward.events import AuthFailure, Service


def test_self_contained_with_both_series_and_nothing_to_fetch(demo_report: Report) -> None:
    html = render_html(demo_report)
    assert html.count("<svg") >= 3
    assert "failed attempts / hour" in html and "distinct addresses / hour" in html
    assert "default-src 'none'" in html
    # The only URLs are XML namespaces inside the SVGs: no src=, no link, no script.
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    assert not re.search(r"""\bsrc\s*=|url\(\s*['"]?https?:""", html)
    for url in re.findall(r"https?://[^\s\"'<>]+", html):
        assert url.startswith(
            (
                "http://www.w3.org/",
                "http://purl.org/dc/",
                "http://creativecommons.org/",
                "https://matplotlib.org",
            )
        ), url


def test_log_text_is_escaped() -> None:
    agg = Aggregator()
    evil = "<script>alert(1)</script>@example.org"
    agg.add(AuthFailure(ts=1e9, service=Service.IMAP, ip=ip_address("198.18.0.1"), username=evil))
    html = render_html(build_report(agg))
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


@pytest.mark.slow
def test_renders_in_headless_chromium_without_network(demo_report: Report, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (scripts/setup --system installs it)")
    page = tmp_path / "report.html"
    page.write_text(render_html(demo_report), encoding="utf-8")
    shot = tmp_path / "shot.png"
    base = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,2400",
    ]
    # No network at all (a fresh network namespace) when we may create one: the page must still
    # render completely, which proves it needs nothing from outside.
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"]).returncode == 0:
        base = ["unshare", "-n", *base]
    subprocess.run(
        [*base, f"--screenshot={shot}", page.as_uri()], check=True, capture_output=True, timeout=120
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000  # charts and tables, not a blank page
    dom = subprocess.run(
        [*base, "--dump-dom", page.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "mailward analysis" in dom and "2 busy addresses" in dom
