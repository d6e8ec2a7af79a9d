import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailward.cli.main import cli

from . import daemon_proc  # type: ignore[attr-defined]


def run(cfg: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-c", str(cfg), *args])
    return result.exit_code, result.output


def test_direct_mode_without_daemon(tmp_path: Path) -> None:
    cfg = daemon_proc.write_config(tmp_path, backend="dry-run")
    assert run(cfg, "bans") == (0, "no active bans\n")
    code, out = run(cfg, "ban", "203.0.113.9", "--for", "2h", "--reason", "seen in logs")
    assert code == 0 and out == "banned 203.0.113.9 for 2h\n"
    assert run(cfg, "ban", "2001:db8:7::1/64", "--for", "permanent")[0] == 0
    code, out = run(cfg, "bans", "--json")
    bans = json.loads(out)
    assert [b["target"] for b in bans] == ["203.0.113.9", "2001:db8:7::/64"]
    assert bans[0]["reason"] == "seen in logs" and bans[1]["until"] is None
    code, out = run(cfg, "bans")
    assert "203.0.113.9" in out and "permanent" in out and "seen in logs" in out
    assert run(cfg, "unban", "203.0.113.9") == (0, "unbanned 1: 203.0.113.9\n")
    assert run(cfg, "unban", "--all", "--json")[1].strip().startswith("[")
    assert run(cfg, "bans") == (0, "no active bans\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ban", "not-an-ip"], "not an IP address or CIDR prefix: 'not-an-ip'"),
        (["ban", "203.0.113.1", "--for", "3 years"], "--for: bad duration"),
        (["ban", "127.0.0.1"], "overlaps the server's own addresses"),
        (["unban"], "give either a TARGET or --all"),
        (["unban", "1.2.3.4", "--all"], "give either a TARGET or --all"),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    cfg = daemon_proc.write_config(tmp_path)
    code, out = run(cfg, *args)
    assert code == 2 and message in out and "Traceback" not in out


def test_nft_remove_reports_backend_errors(tmp_path: Path) -> None:
    cfg = daemon_proc.write_config(tmp_path, backend="nftables")
    cfg.write_text(
        cfg.read_text().replace(
            'backend = "nftables"', 'backend = "nftables"\nnft = "/nonexistent/nft"'
        )
    )
    code, out = run(cfg, "nft", "remove")
    assert code == 1 and "cannot run /nonexistent/nft" in out
    code, out = run(cfg, "ban", "203.0.113.1")
    assert code == 1 and "recorded in the ledger, but the firewall was not updated" in out


@pytest.mark.slow
def test_through_the_running_daemon(tmp_path: Path) -> None:
    cfg = daemon_proc.write_config(tmp_path)
    proc = daemon_proc.start(cfg)

    def cli_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mailward.cli.main", "-c", str(cfg), *args],
            capture_output=True,
            text=True,
        )

    try:
        assert cli_run("ban", "198.51.100.0/24", "--for", "1h").returncode == 0
        bans = json.loads(cli_run("bans", "--json").stdout)
        assert [b["target"] for b in bans] == ["198.51.100.0/24"]
        assert bans[0]["evidence"] == {"by": "cli"}
        status = json.loads(cli_run("status", "--json").stdout)
        assert status["active_bans"] == 1 and status["enforcer"]["prefixes"] == 1
        refused = cli_run("nft", "remove")
        assert refused.returncode == 2 and "stop it first" in refused.stderr
        lifted = cli_run("unban", "198.51.100.7")  # inside the banned prefix: lifts it
        assert lifted.stdout == "unbanned 1: 198.51.100.0/24\n"
        assert json.loads(cli_run("bans", "--json").stdout) == []
    finally:
        assert daemon_proc.stop(proc) == 0
    # after the daemon stopped, the ledger it wrote is what direct mode reads
    assert run(cfg, "bans") == (0, "no active bans\n")


def test_nft_show_names_a_missing_table(tmp_path: Path) -> None:
    # An nft stand-in that answers like the real one when the table was never created.
    fake = tmp_path / "nft"
    fake.write_text(
        "#!/bin/sh\necho 'Error: No such file or directory' >&2\n"
        "echo 'list set inet mailward addr4' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    cfg = daemon_proc.write_config(tmp_path, backend="nftables")
    cfg.write_text(
        cfg.read_text().replace('backend = "nftables"', f'backend = "nftables"\nnft = "{fake}"')
    )
    code, out = run(cfg, "nft", "show", "--json")
    assert code == 1
    assert "table inet mailward does not exist (mailward run creates it at start)" in out
