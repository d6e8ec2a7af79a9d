import asyncio
import socket
import stat
from pathlib import Path

import pytest

from mailward.clock import SystemClock
from mailward.config.model import Settings
from mailward.daemon import control
from mailward.daemon.app import Daemon
from mailward.daemon.ledger import MemoryLedger
from mailward.daemon.twins import ThresholdEngine
from mailward.enforcers.base import MemoryEnforcer
from mailward.errors import MailwardError


@pytest.fixture
async def running(tmp_path: Path):  # type: ignore[no-untyped-def]
    clock = SystemClock()
    enforcer = MemoryEnforcer(clock.now)
    settings = Settings.model_validate({"general": {"state_dir": str(tmp_path)}})
    daemon = Daemon(
        settings, clock=clock, enforcer=enforcer, store=MemoryLedger(), engine=ThresholdEngine()
    )
    server = control.ControlServer(settings.control_socket)
    daemon.add_component(server)
    await daemon.start()
    yield settings.control_socket, enforcer, server
    await daemon.shutdown()


async def ask(path: Path, cmd: str, **args):  # type: ignore[no-untyped-def]
    return await asyncio.to_thread(control.request, path, cmd, **args)


async def test_ban_bans_unban_status_over_socket(running) -> None:  # type: ignore[no-untyped-def]
    path, enforcer, server = running
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    ban = await ask(path, "ban", target="203.0.113.3", reason="by hand", **{"for": "10m"})
    assert ban["target"] == "203.0.113.3" and ban["reason"] == "by hand"
    assert enforcer.banned("203.0.113.3")
    await ask(path, "ban", target="198.51.100.0/24", **{"for": None})
    bans = await ask(path, "bans")
    assert [b["target"] for b in bans] == ["203.0.113.3", "198.51.100.0/24"]
    status = await ask(path, "status")
    assert status["active_bans"] == 2 and status["ok"]
    assert status["components"][0]["status"]["requests"] == 4
    assert await ask(path, "unban", target="203.0.113.3") == ["203.0.113.3"]
    assert await ask(path, "unban", all=True) == ["198.51.100.0/24"]
    assert enforcer.blocked() == []


async def test_errors_are_replies_not_crashes(running) -> None:  # type: ignore[no-untyped-def]
    path, _, server = running
    with pytest.raises(MailwardError, match="unknown command 'explode'"):
        await ask(path, "explode")
    with pytest.raises(MailwardError, match="bad duration"):
        await ask(path, "ban", target="203.0.113.3", **{"for": "soon"})
    with pytest.raises(MailwardError, match="own addresses"):
        await ask(path, "ban", target="::1")
    with pytest.raises(MailwardError, match="needs a"):
        await ask(path, "unban")
    reply = await server.handle(b"{not json")
    assert reply["ok"] is False
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(b'[1, 2]\n{"cmd": "bans"}\n')
    first = await reader.readline()
    second = await reader.readline()
    writer.close()
    assert b'"ok": false' in first and b'"ok": true' in second


async def test_stale_socket_replaced_live_one_refused(tmp_path: Path, running) -> None:  # type: ignore[no-untyped-def]
    path, _, _ = running
    other = control.ControlServer(path)
    with pytest.raises(MailwardError, match="another mailward daemon"):
        await other.start(None)  # type: ignore[arg-type]
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))  # bound, never listening: what a killed daemon leaves
    fresh = control.ControlServer(stale)
    await fresh.start(None)  # type: ignore[arg-type]
    await fresh.stop()
    assert not stale.exists()


def test_client_without_daemon(tmp_path: Path) -> None:
    with pytest.raises(control.DaemonNotRunning):
        control.request(tmp_path / "none.sock", "status")
