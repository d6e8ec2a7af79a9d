"""The control API: one JSON object per line over a UNIX socket (``<state_dir>/control.sock``,
mode 0660). Requests ``{"cmd": "status"|"bans"|"ban"|"unban"|"health", ...}``; replies
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``. The CLI is the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailward.daemon.durations import parse_duration
from mailward.errors import BackendUnavailable, InputError, MailwardError

if TYPE_CHECKING:
    from mailward.daemon.app import Daemon

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
COMMANDS = ("status", "health", "bans", "ban", "unban")


class ControlServer:
    """A ``Component``: serves the control API for the daemon it is started with."""

    name = "control"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server: asyncio.Server | None = None
        self.daemon: Daemon | None = None
        self.requests = 0
        self.errors = 0

    async def start(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if _alive(self.path):
                raise MailwardError(f"another mailward daemon is listening on {self.path}")
            self.path.unlink()
        self.server = await asyncio.start_unix_server(self._client, path=str(self.path))
        os.chmod(self.path, 0o660)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def status(self) -> dict[str, Any]:
        return {"socket": str(self.path), "requests": self.requests, "errors": self.errors}

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    await _send(writer, {"ok": False, "error": "request too large"})
                    return
                reply = await self.handle(raw)
                await _send(writer, reply)
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def handle(self, raw: bytes) -> dict[str, Any]:
        self.requests += 1
        try:
            request = json.loads(raw)
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise InputError('a request is a JSON object with a "cmd" string')
            handler = self._handlers().get(request["cmd"])
            if handler is None:
                raise InputError(
                    f"unknown command {request['cmd']!r}; known: {', '.join(COMMANDS)}"
                )
            return {"ok": True, "result": await handler(request)}
        except (ValueError, MailwardError) as exc:
            self.errors += 1
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # never let one request kill the server
            self.errors += 1
            log.exception("control request failed")
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[Any]]]:
        return {
            "status": self._status,
            "health": self._status,
            "bans": self._bans,
            "ban": self._ban,
            "unban": self._unban,
        }

    async def _status(self, _: dict[str, Any]) -> Any:
        assert self.daemon is not None
        return self.daemon.health()

    async def _bans(self, _: dict[str, Any]) -> Any:
        assert self.daemon is not None
        return [d.to_json() for d in sorted(self.daemon.active_bans(), key=lambda d: d.ts)]

    async def _ban(self, req: dict[str, Any]) -> Any:
        assert self.daemon is not None
        target = req.get("target")
        if not isinstance(target, str):
            raise InputError('"ban" needs a "target" string')
        duration = req.get("for", "1d")
        seconds = parse_duration(duration) if isinstance(duration, str) else duration
        if seconds is not None and (not isinstance(seconds, int | float) or seconds <= 0):
            raise InputError('"for" must be a duration such as "1h" or a positive number')
        reason = str(req.get("reason") or "")
        try:
            decision = await self.daemon.ban(target, seconds, reason, by=str(req.get("by", "cli")))
        except BackendUnavailable as exc:
            raise MailwardError(str(exc)) from exc
        return decision.to_json()

    async def _unban(self, req: dict[str, Any]) -> Any:
        assert self.daemon is not None
        target = req.get("target")
        if req.get("all") is True:
            target = None
        elif not isinstance(target, str):
            raise InputError('"unban" needs a "target" string or "all": true')
        decisions = await self.daemon.unban(target, by=str(req.get("by", "cli")))
        return [d.target for d in decisions]


async def _send(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
    writer.write(json.dumps(reply, default=str).encode() + b"\n")
    await writer.drain()


def _alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


class DaemonNotRunning(MailwardError):
    """No daemon answers on the control socket."""


def request(path: Path, cmd: str, timeout: float = 30.0, **args: Any) -> Any:
    """Send one request and return its result; raise ``DaemonNotRunning`` when nobody listens and
    ``MailwardError`` with the daemon's message when it refuses."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(f"no daemon on {path}") from exc
        except PermissionError as exc:
            raise MailwardError(
                f"no permission to use {path} (run as root or group member)"
            ) from exc
        sock.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    if not data:
        raise MailwardError(f"the daemon closed {path} without answering")
    reply = json.loads(data)
    if not reply.get("ok"):
        raise MailwardError(str(reply.get("error")))
    return reply.get("result")
