from __future__ import annotations

import json
from ipaddress import ip_address
from pathlib import Path

from click.testing import CliRunner

from mailward.cli.main import cli
from mailward.events import AuthFailure, AuthSuccess, Service

T = 1_763_700_000.0


def write_events(path: Path) -> Path:
    events = [
        AuthSuccess(ts=T - 60, service=Service.IMAP, ip=ip_address("192.0.2.10"), username="bob")
    ]
    t = T
    for i in range(40):  # one username from 40 addresses, 2 tries each
        for _ in range(2):
            t += 5
            events.append(
                AuthFailure(
                    ts=t, service=Service.IMAP, ip=ip_address(f"198.18.{i}.1"), username="bob"
                )
            )
    path.write_text("".join(json.dumps(e.to_json()) + "\n" for e in events))
    return path


def config(tmp_path: Path) -> Path:
    path = tmp_path / "mailward.toml"
    path.write_text("[general]\nserver_addresses = []\n")
    return path


def test_replay_json_lines(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl")
    result = CliRunner().invoke(
        cli, ["-c", str(config(tmp_path)), "replay", "--events", "--json", str(events)]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    *decisions, summary = lines
    assert summary["summary"] is True
    assert all(set(d) >= {"time", "target", "rule", "until", "evidence"} for d in decisions)
    assert decisions[0]["target"] == "user:bob" or any(d["target"] == "user:bob" for d in decisions)
    assert summary["events"] == 81 and summary["attempts"] == 80
    campaign = next(c for c in summary["campaigns"] if c["campaign"] == "user:bob")
    assert campaign["attackers"] == 40
    assert summary["after_first_ban_total"] == 0
    assert {"ip", "before", "after", "blocked", "first_ban", "campaign"} <= set(
        summary["attackers"][0]
    )


def test_replay_text_report(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl")
    result = CliRunner().invoke(
        cli, ["-c", str(config(tmp_path)), "replay", "--events", "--top", "3", str(events)]
    )
    assert result.exit_code == 0, result.output
    assert "Replayed 81 events" in result.output
    assert "user:bob" in result.output
    assert "more (--top N or --json for all)" in result.output


def test_replay_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "auth_failure"}\n')
    result = CliRunner().invoke(cli, ["-c", str(config(tmp_path)), "replay", "--events", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:1: not an event" in result.output
    missing = CliRunner().invoke(
        cli, ["-c", str(config(tmp_path)), "replay", "--events", str(tmp_path / "nope")]
    )
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_replay_raw_logs(tmp_path: Path) -> None:
    lines = []
    for i in range(40):  # a botnet rotating addresses against one mailbox, one try each
        stamp = f"Nov 21 10:{(20 * i) // 60:02d}:{(20 * i) % 60:02d}"
        lines.append(
            f"{stamp} mx1 postfix/submission/smtpd[{4000 + i}]: warning: unknown[198.18.{i}.7]: "
            "SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=info@example.org"
        )
    for i in range(10):  # one fast guesser
        lines.append(
            f"Nov 21 10:15:{5 * i:02d} mx1 postfix/submission/smtpd[5000]: warning: "
            "unknown[203.0.113.45]: SASL PLAIN authentication failed: (reason unavailable), "
            "sasl_username=bob@example.org"
        )
    log = tmp_path / "mail.log"
    log.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["-c", str(config(tmp_path)), "replay", "--json", str(log)])
    assert result.exit_code == 0, result.output
    *decisions, summary = [json.loads(line) for line in result.output.splitlines()]
    assert decisions[0]["target"] == "user:info@example.org"
    assert decisions[0]["evidence"]["sources"] == 8
    fast = [d for d in decisions if d["target"] == "203.0.113.45"]
    assert [d["rule"] for d in fast] == ["rate_limit"]
    assert summary["attempts"] == 50 and summary["blocked"] == 32 + 6
    assert summary["after_first_ban_total"] == 0
    missing = CliRunner().invoke(
        cli, ["-c", str(config(tmp_path)), "replay", str(tmp_path / "nope.log")]
    )
    assert missing.exit_code == 2 and "nope.log" in missing.output
