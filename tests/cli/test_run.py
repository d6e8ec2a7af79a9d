import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailward.cli.main import cli
from mailward.cli.run import build_daemon, file_sources, make_enforcer, real_pipeline
from mailward.config.model import Settings
from mailward.daemon.ledger import MemoryLedger
from mailward.enforcers.base import DryRunEnforcer, NullEnforcer
from mailward.enforcers.nftables import NftablesEnforcer
from mailward.errors import MailwardError

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
    names = [c.name for c in build_daemon(s, pipeline="twin").components]
    assert names == ["control", "store", "alerts", "policy-postfix", "policy-dovecot"]
    dry = [c.name for c in build_daemon(s, dry_run=True, pipeline="twin").components]
    assert dry == ["control", "policy-postfix", "policy-dovecot"]
