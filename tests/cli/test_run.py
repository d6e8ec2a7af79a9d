import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mailward.cli.main import cli
from mailward.cli.run import build_daemon, file_sources, make_enforcer, real_pipeline
from mailward.config import load
from mailward.config.model import Settings
from mailward.daemon.ledger import MemoryLedger
from mailward.enforcers.base import DryRunEnforcer, NullEnforcer
from mailward.enforcers.nftables import NftablesEnforcer
from mailward.errors import MailwardError
from mailward.storage.ledger import StoreLedger
from mailward.storage.reader import SqliteReader

from . import daemon_proc  # type: ignore[attr-defined]


def test_file_sources_expand_globs_and_skip_rotated(tmp_path: Path) -> None:
    for name in ["mail.log", "mail.log.1", "mail.log.2.gz", "mail.err", "mail.log-20261120"]:
        (tmp_path / name).touch()
    s = Settings.model_validate(
        {
            "sources": {
                "files": [str(tmp_path / "mail.*"), str(tmp_path / "missing.log")],
                "journald": True,
            }
        }
    )
    names = [src.name for src in file_sources(s)]
    assert names == [
        f"file:{tmp_path}/mail.err",
        f"file:{tmp_path}/mail.log",
        f"file:{tmp_path}/missing.log",
        "journald",
    ]


def test_enforcer_choice() -> None:
    assert isinstance(make_enforcer(Settings()), NftablesEnforcer)
    assert isinstance(make_enforcer(Settings(), dry_run=True), DryRunEnforcer)
    none = Settings.model_validate({"enforce": {"backend": "none"}})
    assert isinstance(make_enforcer(none), NullEnforcer)


def test_twin_pipeline_builds(tmp_path: Path) -> None:
    s = Settings.model_validate({"general": {"state_dir": str(tmp_path)}, "sources": {"files": []}})
    daemon = build_daemon(s, dry_run=True, pipeline="twin")
    assert [c.name for c in daemon.components] == ["control"]
    assert daemon.enforcer.name == "dry-run"


def test_real_pipeline_missing_stage_is_a_clear_error() -> None:
    try:
        real_pipeline(Settings(), MemoryLedger())
    except MailwardError as exc:
        assert "--pipeline twin" in str(exc)
    else:  # the ingest and detect stages are merged: the pipeline builds
        pass


def test_the_ledger_is_the_shared_store(tmp_path: Path) -> None:
    s = Settings.model_validate(
        {
            "general": {"state_dir": str(tmp_path)},
            "sources": {"files": []},
            "storage": {"retention_days": 30},
        }
    )
    daemon = build_daemon(s, pipeline="twin")
    try:
        assert isinstance(daemon.store, StoreLedger)
        assert daemon.store.path == s.db_path and daemon.store.store.retention_days == 30
    finally:
        daemon.store.close()
    assert (tmp_path / "mailward.db").exists() and not (tmp_path / "ledger.db").exists()


def test_run_refuses_bad_config_cleanly(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--set", "enforce.ports=[70000]", "run"])
    assert result.exit_code == 2
    assert "enforce.ports" in result.output


@pytest.mark.slow
def test_run_process_serves_and_stops_gracefully(tmp_path: Path) -> None:
    cfg = daemon_proc.write_config(tmp_path)
    proc = daemon_proc.start(cfg)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "mailward.cli.main", "-c", str(cfg), "status", "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        status = json.loads(out.stdout)
        assert status["running"] and status["enforcer"]["backend"] == "dry-run"
    finally:
        code = daemon_proc.stop(proc)
    assert code == 0
    assert not (tmp_path / "control.sock").exists()


def test_components_follow_the_config(tmp_path: Path) -> None:
    s = Settings.model_validate(
        {
            "general": {"state_dir": str(tmp_path)},
            "sources": {"files": []},
            "policy": {"postfix": {"enabled": True}, "dovecot": {"enabled": True}},
        }
    )
    daemon = build_daemon(s, pipeline="twin")
    daemon.store.close()
    names = [c.name for c in daemon.components]
    assert names == [
        "control",
        "alert-record",
        "alerts",
        "policy-outage",
        "policy-postfix",
        "policy-dovecot",
    ]
    dry = [c.name for c in build_daemon(s, dry_run=True, pipeline="twin").components]
    assert dry == ["control", "policy-postfix", "policy-dovecot"]


async def test_alerts_raised_by_the_daemon_are_recorded_and_in_the_digest(tmp_path: Path) -> None:
    cfg = daemon_proc.write_config(tmp_path, backend="dry-run")
    settings = load(cfg, env={})
    daemon = build_daemon(settings, pipeline="twin")
    crashes = 0

    async def broken() -> None:
        nonlocal crashes
        crashes += 1
        if crashes == 1:
            raise RuntimeError("disk on fire")
        await asyncio.Event().wait()

    await daemon.start()
    try:
        daemon.supervisor.supervise("broken", broken)  # crash -> alert through the manager
        deadline = time.monotonic() + 5
        alerts: list[Any] = []
        while not alerts and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            reader = SqliteReader(settings.db_path)
            alerts = [a for a in reader.alerts() if a.kind == "task_crashed"]
            reader.close()
    finally:
        await daemon.shutdown()
        daemon.store.close()
    [alert] = alerts
    assert "'broken' crashed" in alert.message and alert.severity == "high"
    assert alert.data["facts"]["task"] == "broken"
    out = CliRunner().invoke(cli, ["-c", str(cfg), "digest", "--json"])
    assert out.exit_code == 0, out.output
    listed = json.loads(out.output)["alerts"]
    assert [a["kind"] for a in listed] == ["task_crashed"]
    assert "disk on fire" not in listed[0]["message"] and "'broken'" in listed[0]["message"]


async def test_policy_servers_observe_latency_into_the_daemons_metrics(tmp_path: Path) -> None:
    import aiohttp

    cfg = daemon_proc.write_config(
        tmp_path,
        extra='[policy.postfix]\nenabled = true\nlisten = ["inet:127.0.0.1:0"]\n'
        "[policy.dovecot]\nenabled = true\nport = 0\n",
    )
    settings = load(cfg, env={})
    daemon = build_daemon(settings, pipeline="twin")
    await daemon.start()
    try:
        parts = {c.name: c for c in daemon.components}
        metrics = parts["alerts"].metrics  # type: ignore[attr-defined]
        postfix, dovecot = parts["policy-postfix"], parts["policy-dovecot"]
        host, port = postfix.addresses[0][:2]  # type: ignore[attr-defined]
        reader, writer = await asyncio.open_connection(host, port)
        for _ in range(2):
            writer.write(b"request=smtpd_access_policy\nprotocol_state=CONNECT\n")
            writer.write(b"client_address=192.0.2.7\n\n")
            await writer.drain()
            assert (await reader.readuntil(b"\n\n")).startswith(b"action=")
        writer.close()
        url = f"http://127.0.0.1:{dovecot.port}/?command=allow"  # type: ignore[attr-defined]
        async with aiohttp.ClientSession() as http:
            body = {"login": "bob", "remote": "192.0.2.7", "protocol": "imap"}
            async with http.post(url, json=body) as resp:
                assert resp.status == 200
    finally:
        await daemon.shutdown()
        daemon.store.close()

    def count(server: str) -> float:
        value = metrics.registry.get_sample_value(
            "mailward_policy_latency_seconds_count", {"server": server}
        )
        return value or 0.0

    assert count("postfix") == 2 and count("dovecot") == 1


def test_real_pipeline_gives_the_policy_server_the_geoip_country_lookup(tmp_path: Path) -> None:
    s = Settings.model_validate(
        {
            "general": {"state_dir": str(tmp_path)},
            "sources": {"files": []},
            "policy": {"postfix": {"enabled": True}},
        }
    )
    daemon = build_daemon(s, pipeline="real")
    daemon.store.close()
    geo = daemon.engine.geo  # type: ignore[attr-defined]
    [postfix] = [c for c in daemon.components if c.name == "policy-postfix"]
    assert geo is not None and postfix._country == geo.country  # type: ignore[attr-defined]
