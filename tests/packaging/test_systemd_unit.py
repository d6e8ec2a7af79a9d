"""The shipped unit keeps its promises: notify + watchdog, always restarted, hardened, only
CAP_NET_ADMIN; and ``systemd-analyze verify`` accepts it where systemd is installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "packaging" / "systemd" / "mailward.service"


def settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_notify_watchdog_and_restart() -> None:
    s = settings()
    assert s["Type"] == ["notify"]
    assert s["WatchdogSec"] and s["WatchdogSec"][0] != "0"
    assert s["Restart"] == ["always"]
    assert "RestartPreventExitStatus" not in s  # the fail2ban#3487 trap
    assert s["OnFailure"] == ["mailward-failure@%n.service"]
    assert s["ExecStart"] == ["/usr/bin/mailward run"]


def test_doctor_runs_before_start() -> None:
    assert settings()["ExecStartPre"] == ["/usr/bin/mailward doctor --startup"]


def test_hardening() -> None:
    s = settings()
    assert s["CapabilityBoundingSet"] == ["CAP_NET_ADMIN"]
    assert s["AmbientCapabilities"] == ["CAP_NET_ADMIN"]
    assert s["ProtectSystem"] == ["strict"]
    assert s["ReadWritePaths"] == ["/var/lib/mailward"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables"):
        assert s[key] == ["yes"], key
    assert set(s["SupplementaryGroups"][0].split()) == {"adm", "systemd-journal"}
    assert "AF_NETLINK" in s["RestrictAddressFamilies"][0]  # nft talks netlink


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # Point ExecStartPre/ExecStart at a binary that exists here; the rest is verified as shipped.
    unit = tmp_path / "mailward.service"
    text = UNIT.read_text()
    assert text.count("=/usr/bin/mailward ") == 2
    unit.write_text(text.replace("=/usr/bin/mailward ", f"={sys.executable} -m mailward.cli.main "))
    failure = tmp_path / "mailward-failure@.service"
    failure.write_text("[Service]\nType=oneshot\nExecStart=/bin/true %i\n")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True
    )
    problems = [line for line in result.stderr.splitlines() if "mailward" in line]
    assert result.returncode == 0 and not problems, result.stderr
