from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mailward.cli import analyze as analyze_mod
from mailward.cli.main import cli
from mailward.demo.generator import DemoConfig, DemoLog
from mailward.events import Event


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_demo_generate_is_deterministic_and_writes_truth(tmp_path: Path) -> None:
    a, b, truth = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "truth.json"
    r1 = run(
        "demo",
        "generate",
        "--lines",
        "3000",
        "--seed",
        "5",
        "--end",
        "2026-11-21",
        "--truth",
        str(truth),
        str(a),
    )
    r2 = run("demo", "generate", "--lines", "3000", "--seed", "5", "--end", "2026-11-21", str(b))
    assert r1.exit_code == 0 and r2.exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    assert a.read_text().count("\n") == 3000
    data = json.loads(truth.read_text())
    assert data["lines"] == 3000 and data["failed_attempts"] > 0


def test_demo_generate_to_stdout_and_bad_end() -> None:
    r = run("demo", "generate", "--lines", "50", "--end", "2026-11-21", "-")
    assert r.exit_code == 0 and r.output.count("\n") == 50
    r = CliRunner().invoke(cli, ["demo", "generate", "--end", "yesterday", "-"])
    assert r.exit_code == 2 and "--end 'yesterday'" in r.output


def test_analyze_needs_input_and_refuses_both() -> None:
    r = CliRunner().invoke(cli, ["analyze"])
    assert r.exit_code == 2 and "no input" in r.output
    r = CliRunner().invoke(cli, ["analyze", "--demo", "x.log"])
    assert r.exit_code == 2 and "not both" in r.output


def _typed_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wiring, without the parsers: typed ground-truth events stand in for read_inputs."""

    def fake(specs: list[str], settings: Any, stats: Any, **kw: Any) -> Iterator[Event]:
        log = DemoLog(DemoConfig(lines=60_000, seed=3))
        stats.files = 1
        for event in log.events():
            stats.lines += 1
            stats.recognised += 1
            yield event

    monkeypatch.setattr(analyze_mod, "read_inputs", fake)


def test_analyze_json_and_html_wiring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _typed_events(monkeypatch)
    html = tmp_path / "r.html"
    r = run("analyze", "--json", "--html", str(html), "--no-progress", "whatever.log")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["failed_attempts"] > 0 and data["inputs"]["files"] == 1
    assert any(s["verdict"] == "2 busy addresses" for s in data["spikes"])
    assert "<svg" in html.read_text()


def test_analyze_text_and_rate_limit_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    _typed_events(monkeypatch)
    r = run("--set", "analyze.rate_limit_per_minute=5", "analyze", "x.log")
    assert r.exit_code == 0, r.output
    assert "Over the rate limit of 5/min" in r.output
    assert "Spikes (" in r.output


def test_missing_parsers_or_files_fail_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    r = CliRunner().invoke(cli, ["analyze", str(tmp_path / "nope.log")])
    assert r.exit_code == 2
    assert r.output.startswith("mailward: ") and "Traceback" not in r.output


def test_demo_end_to_end_names_the_spike_hosts() -> None:
    r = run("analyze", "--demo", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    truth = data["inputs"]["demo"]["ground_truth"]
    spike = next(i for i in truth["incidents"] if i["scenario"] == "spike")
    found = [s for s in data["spikes"] if {x["key"] for x in s["top_ips"][:2]} == set(spike["ips"])]
    assert found and found[0]["verdict"] == "2 busy addresses"
    # Every failed attempt once: the parsers and correlator against the generator's ground truth.
    assert data["failed_attempts"] == truth["failed_attempts"]


def test_progress_goes_to_stderr_only_when_asked(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    DemoLog(DemoConfig(lines=20_000, seed=1)).write(log)
    r = CliRunner().invoke(cli, ["analyze", "--progress", "--json", str(log)])
    assert r.exit_code == 0
    json.loads(r.stdout)
    assert "MB" in r.stderr


def test_store_twice_adds_nothing_the_second_time(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    DemoLog(DemoConfig(lines=20_000, seed=1)).write(log)
    db = f"storage.path={tmp_path / 'm.db'}"
    first = json.loads(run("--set", db, "analyze", "--store", "--json", str(log)).output)
    second = json.loads(run("--set", db, "analyze", "--store", "--json", str(log)).output)
    assert first["inputs"]["stored_events"] > 0
    assert second["inputs"]["stored_events"] == 0
    assert second["failed_attempts"] == first["failed_attempts"]
