"""``mailward parse``: JSON Lines format, summary, unrecognised lines, errors."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mailward.cli.main import cli
from mailward.cli.parse import redact

LOG = """\
Nov 21 10:15:02 mx1 postfix/submission/smtpd[48211]: warning: unknown[203.0.113.45]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=info@example.org
Nov 21 10:15:03 mx1 postfix/qmgr[778]: 4F1A2B3C4D: removed
Nov 21 10:25:00 mx1 postfix/anvil[48101]: statistics: max connection rate 61/60s for (smtp:203.0.113.9) at Nov 21 10:22:09
Nov 21 10:33:11 mx1 dovecot: auth: something (given password: hunter2)
Nov 21 10:30:12 mx1 dovecot: imap-login: Login: user=<bob@example.org>, method=PLAIN, rip=198.51.100.4, lip=192.0.2.10, mpid=1, session=<k3Jd8fQxWtDLcXEt>
"""


def _run(tmp_path: Path, *args: str) -> tuple[int, str]:
    path = tmp_path / "mail.log"
    path.write_text(LOG)
    result = CliRunner().invoke(
        cli,
        ["--set", "parsing.timezone=UTC", "parse", *[a.replace("LOG", str(path)) for a in args]],
    )
    return result.exit_code, result.output


def test_json_lines_and_summary(tmp_path: Path) -> None:
    code, output = _run(tmp_path, "LOG", "--json", "--year", "2025")
    assert code == 0, output
    rows = [json.loads(line) for line in output.splitlines()]
    assert rows[0] == {
        "time": "2025-11-21T10:15:02Z",
        "kind": "auth_failure",
        "service": "submission",
        "ip": "203.0.113.45",
        "username": "info@example.org",
        "mechanism": "LOGIN",
        "reason": "unspecified",
        "session": "mx1:postfix/submission/smtpd[48211]",
        "attempts": 1,
        "summary": False,
        "file": str(tmp_path / "mail.log"),
        "line": 1,
        "rule": "postfix.sasl_failed",
    }
    assert rows[1]["kind"] == "auth_success" and rows[1]["line"] == 5
    summary = rows[-1]
    assert summary["summary"] is True
    assert (
        summary["lines"],
        summary["recognised"],
        summary["ignored"],
        summary["unrecognised"],
    ) == (
        5,
        2,
        1,
        2,
    )
    assert summary["by_kind"] == {"auth_failure": 1, "auth_success": 1}
    assert len(rows) == 3


def test_unrecognised_lines_are_printed_redacted(tmp_path: Path) -> None:
    code, output = _run(tmp_path, "LOG", "--json", "--unrecognised")
    assert code == 0
    rows = [json.loads(line) for line in output.splitlines()]
    unrec = [r for r in rows if "kind" in r and r["kind"] is None]
    assert all(set(r) == {"file", "line", "kind", "text"} for r in unrec)
    assert [r["line"] for r in unrec] == [2, 4]
    assert "hunter2" not in output


def test_text_output(tmp_path: Path) -> None:
    code, output = _run(tmp_path, "LOG")
    assert code == 0
    assert (
        "auth_failure  submission  203.0.113.45  info@example.org  [postfix.sasl_failed]" in output
    )
    assert "Lines: 5, recognised: 2, ignored: 1, unrecognised: 2" in output
    code, output = _run(tmp_path, "LOG", "-q")
    assert "auth_failure  submission" not in output and "recognised: 2" in output


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["parse", str(tmp_path / "nope.log")])
    assert result.exit_code == 2
    assert "nope.log" in result.output and "Traceback" not in result.output


def test_redact() -> None:
    assert redact("x: Password mismatch (given password: a b c)") == (
        "x: Password mismatch (given password: <redacted>)"
    )
    assert "21bd12" not in redact("unknown user (SHA1 of given password: 21bd12)")
