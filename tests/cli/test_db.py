from __future__ import annotations

import json
import time
from ipaddress import IPv4Address
from pathlib import Path

from click.testing import CliRunner, Result

from mailward.cli.main import cli
from mailward.events import AuthFailure, Service
from mailward.storage.sqlite import DAY, SqliteStore


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_stats_and_prune(tmp_path: Path) -> None:
    db = tmp_path / "state" / "mailward.db"
    now = time.time()
    store = SqliteStore(db)
    store.add_events(
        AuthFailure(ts=ts, service=Service.IMAP, ip=IPv4Address("192.0.2.1"), username="bob")
        for ts in (now - 500 * DAY, now - 10, now - 5)
    )
    store.close()
    setting = f"storage.path={db}"
    r = run("--set", setting, "db", "stats", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["events"] == 3
    assert data["schema_version"] == data["latest_schema_version"]
    assert data["retention_days"] == 400
    r = run("--set", setting, "db", "prune", "--compact", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["events"] == 1
    r = run("--set", setting, "db", "stats")
    assert "events" in r.output and " 2\n" in r.output
    r = run("--set", setting, "db", "prune")
    assert r.output.startswith("deleted 0 events")


def test_missing_or_corrupt_database_is_one_clear_line(tmp_path: Path) -> None:
    r = run("--set", f"storage.path={tmp_path / 'none.db'}", "db", "stats")
    assert r.exit_code == 2
    assert "no mailward database" in r.output
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"junk" * 1000)
    r = run("--set", f"storage.path={bad}", "db", "prune")
    assert r.exit_code == 2
    assert str(bad) in r.output and "Traceback" not in r.output
