import json
from pathlib import Path

from click.testing import CliRunner

from mailward.cli.main import cli
from mailward.cli.status import render

from . import daemon_proc  # type: ignore[attr-defined]

HEALTH = {
    "ok": False,
    "problems": ["source file:/var/log/mail.log: /var/log/mail.log does not exist (yet)"],
    "uptime_seconds": 3725,
    "sources": [
        {
            "name": "file:/var/log/mail.log",
            "lag_seconds": 1.25,
            "newest_line_ts": 1795256102.0,
            "unread_bytes": 2048,
            "lines": 10,
            "events": 4,
        }
    ],
    "tasks": [
        {"name": "pipeline", "state": "running", "restarts": 0},
        {"name": "source:x", "state": "backoff", "restarts": 2},
    ],
    "enforcer": {"backend": "nftables", "addresses": 3, "prefixes": 1, "last_error": None},
    "active_bans": 4,
    "last_decision": {
        "time": "2026-11-21T10:00:00Z",
        "action": "ban",
        "target": "203.0.113.4",
        "rule": "threshold",
        "until": "2026-11-21T11:00:00Z",
    },
    "counters": {"lines": 10, "events": 4, "decisions": 1, "parse_errors": 0},
    "components": [
        {"name": "control", "error": None},
        {"name": "postfix-policy", "error": "port in use"},
    ],
}


def test_render_human_status() -> None:
    text = render(HEALTH)
    assert text.splitlines()[0] == "mailward: running for 1h2m, 1 problem(s)"
    assert "lag    1.2s  unread   2.0 KiB  lines 10  events 4" in text
    assert "source:x backoff (2 restarts)" in text
    assert "enforcer: nftables (addresses 3, prefixes 1)" in text
    assert "active bans: 4" in text and "ban 203.0.113.4 (threshold)" in text
    assert "components: control, postfix-policy FAILED" in text


def test_not_running_exit_3(tmp_path: Path) -> None:
    cfg = daemon_proc.write_config(tmp_path)
    result = CliRunner().invoke(cli, ["-c", str(cfg), "status"])
    assert result.exit_code == 3 and "not running" in result.output
    result = CliRunner().invoke(cli, ["-c", str(cfg), "status", "--json"])
    assert result.exit_code == 3 and json.loads(result.output)["running"] is False
