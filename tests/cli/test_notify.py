from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from tests.notify.sinks import read_outbox, sendmail_stub

from mailward.cli.main import cli


def test_notify_test_reports_each_channel(tmp_path: Path) -> None:
    script, outbox = sendmail_stub(tmp_path)
    config = tmp_path / "m.toml"
    config.write_text(f'[notify]\nsendmail_path = "{script}"\n')
    result = CliRunner().invoke(cli, ["-c", str(config), "notify", "test"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "sendmail: sent"
    assert "test notification" in read_outbox(outbox)[0]["Subject"]

    config.write_text(
        f'[notify]\nsendmail_path = "{tmp_path / "missing"}"\n'
        'smtp_host = "127.0.0.1"\nsmtp_port = 1\nsmtp_security = "none"\ntimeout_seconds = 5\n'
    )
    result = CliRunner().invoke(cli, ["-c", str(config), "notify", "test", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ok"] is False and "cannot run" in data["channels"]["sendmail"]
    assert data["channels"]["smtp"].startswith("smtp 127.0.0.1:1")


def test_notify_test_without_channels(tmp_path: Path) -> None:
    config = tmp_path / "m.toml"
    config.write_text("[notify]\nenabled = false\n")
    result = CliRunner().invoke(cli, ["-c", str(config), "notify", "test"])
    assert result.exit_code == 2 and "no notification channel" in result.output


def test_notify_failure_cli(tmp_path: Path) -> None:
    script, outbox = sendmail_stub(tmp_path)
    config = tmp_path / "m.toml"
    config.write_text(f'[notify]\nsendmail_path = "{script}"\n')
    result = CliRunner().invoke(
        cli, ["-c", str(config), "notify", "failure", "mailward.service", "--no-journal"]
    )
    assert result.exit_code == 0 and "failure notice for mailward.service sent" in result.output
    assert len(read_outbox(outbox)) == 1
