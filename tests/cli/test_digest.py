from __future__ import annotations

import json
import time
from email.message import EmailMessage
from pathlib import Path

from click.testing import CliRunner
from tests.notify.helpers import fail
from tests.notify.sinks import read_outbox, sendmail_stub

from mailward.cli.main import cli
from mailward.decisions.model import Action, Decision
from mailward.storage.sqlite import Alert as StoredAlert
from mailward.storage.sqlite import SqliteStore


def test_digest_without_a_database_says_what_to_do(tmp_path: Path) -> None:
    config = tmp_path / "m.toml"
    config.write_text(f'[general]\nstate_dir = "{tmp_path}"\n')
    result = CliRunner().invoke(cli, ["-c", str(config), "digest"])
    assert result.exit_code == 2
    assert "no database at" in result.output and "mailward analyze --store" in result.output


def test_digest_from_the_real_store_json_and_sent_with_chart(tmp_path: Path) -> None:
    script, outbox = sendmail_stub(tmp_path)
    config = tmp_path / "m.toml"
    config.write_text(
        f'[general]\nstate_dir = "{tmp_path}"\n[notify]\nsendmail_path = "{script}"\n'
    )
    now = time.time()
    store = SqliteStore(tmp_path / "mailward.db")
    store.add_events([fail(now - k * 3600, "198.51.100.7", "info") for k in range(24, 24 * 8)])
    store.add_events([fail(now - 7200 + i, "81.2.69.160", "alice") for i in range(50)])
    store.add_decision(
        Decision(ts=now - 7000, target="81.2.69.160", action=Action.BAN, rule="short_ban")
    )
    store.add_alert(
        StoredAlert(now - 7100, "login_spike", "high", "Spike: 50 login attempts", "login_spike")
    )
    store.close()

    result = CliRunner().invoke(cli, ["-c", str(config), "digest", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["attempts"] == 50
    assert data["top_ips"][0]["ip"] == "81.2.69.160" and data["top_ips"][0]["country"] == "GB"
    assert data["top_usernames"][0] == {"username": "alice", "attempts": 50}
    assert data["bans"] == 1 and data["alerts"][0]["message"] == "Spike: 50 login attempts"
    assert data["baseline_attempts"] == 24  # one failure an hour on the days before

    result = CliRunner().invoke(cli, ["-c", str(config), "digest", "--send"])
    assert result.exit_code == 0, result.output
    [mail] = read_outbox(outbox)
    assert isinstance(mail, EmailMessage) and "daily digest" in mail["Subject"]
    assert [p.get_content_type() for p in mail.walk()].count("image/png") == 1
