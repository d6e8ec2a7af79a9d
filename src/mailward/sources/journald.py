"""Follow the systemd journal through ``journalctl -o json --follow`` with a persisted cursor.

journalctl handles journal rotation itself; when it exits (a vanished cursor, a corrupt file) it is
started again with backoff, from the last cursor read, or from the last entry's time when the
cursor is no longer valid. Its stderr is logged and counted, never fatal (crowdsec#3478).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime
from typing import Any

from mailward.events import Origin
from mailward.sources.live import Batch

log = logging.getLogger(__name__)


def entry_line(entry: dict[str, Any]) -> tuple[str, float | None] | None:
    """A journal entry as a syslog line with an RFC 3339 stamp, plus its time."""
    message = entry.get("MESSAGE")
    if isinstance(message, list):  # journald sends non-UTF-8 messages as byte arrays
        message = bytes(b for b in message if isinstance(b, int) and 0 <= b < 256).decode(
            "utf-8", errors="replace"
        )
    if not isinstance(message, str):
        return None
    ts: float | None = None
    raw_ts = entry.get("__REALTIME_TIMESTAMP")
    if isinstance(raw_ts, str) and raw_ts.isdigit():
        ts = int(raw_ts) / 1_000_000
    stamp = datetime.fromtimestamp(ts if ts is not None else time.time(), UTC)
    host = entry.get("_HOSTNAME") or "localhost"
    ident = entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM") or "unknown"
    pid = entry.get("SYSLOG_PID") or entry.get("_PID")
    tag = f"{ident}[{pid}]" if pid else str(ident)
    text = message.replace("\n", " ").rstrip("\r")
    return f"{stamp.isoformat(timespec='microseconds')} {host} {tag}: {text}", ts


class JournaldFollower:
    kind = "journald"

    def __init__(
        self,
        units: Sequence[str] = (),
        *,
        name: str = "journald",
        command: Sequence[str] = ("journalctl",),
        extra_args: Sequence[str] = (),
        start_at_end: bool = False,
        min_backoff: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        self.name = name
        self.units = list(units)
        self.command = list(command)
        self.extra_args = list(extra_args)
        self.start_at_end = start_at_end
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.cursor: str | None = None
        self.cursor_ts: float | None = None
        self._cursor_failed = False
        self.last_error: str | None = None
        self.restarts = 0
        self.stderr_lines = 0
        self.bad_entries = 0
        self.lines = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.caught_up_at: float | None = None

    def resume(self, position: str | None) -> None:
        if not position:
            return
        try:
            data = json.loads(position)
            self.cursor = data.get("cursor") or None
            self.cursor_ts = data.get("ts")
        except (ValueError, AttributeError):
            log.warning("%s: ignoring unreadable saved cursor %r", self.name, position)

    def position(self) -> str:
        return json.dumps({"cursor": self.cursor, "ts": self.cursor_ts})

    def argv(self) -> list[str]:
        args = [*self.command, "-o", "json", "--follow", "--no-pager", "--all"]
        for unit in self.units:
            args += ["-u", unit]
        if self.cursor and not self._cursor_failed:
            args += ["--after-cursor", self.cursor]
        elif self.cursor_ts is not None:
            # The cursor's file was rotated/vacuumed away: continue from its time (entries in
            # that same microsecond are skipped by the cursor check below).
            args += ["--since", f"@{self.cursor_ts:.6f}"]
        elif self.start_at_end:
            args += ["--lines", "0"]
        return args + self.extra_args

    async def batches(self) -> AsyncGenerator[Batch, None]:
        delay = self.min_backoff
        while True:
            started = time.monotonic()
            produced = False
            async with contextlib.aclosing(self._run_once()) as run:  # journalctl always reaped
                async for batch in run:
                    produced = True
                    yield batch
            if produced or time.monotonic() - started > self.max_backoff:
                delay = self.min_backoff
            self.restarts += 1
            log.warning(
                "%s: journalctl ended (%s); restarting in %.1fs", self.name, self.last_error, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    async def _run_once(self) -> AsyncGenerator[Batch, None]:
        argv = self.argv()
        used_cursor = "--after-cursor" in argv
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=1 << 22,
            )
        except OSError as exc:
            self.last_error = f"cannot run {argv[0]}: {exc}"
            return
        self.proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        errors = _spawn_stderr_reader(self, proc.stderr)
        got_any = False
        try:
            while True:
                batch = await self._read_batch(proc.stdout)
                if batch is None:
                    break
                got_any = got_any or bool(batch.lines)
                yield batch
        finally:
            if proc.returncode is None:
                proc.terminate()
            try:
                code = await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                code = await proc.wait()
            await errors
            self.proc = None
        self.last_error = f"journalctl exited with status {code}" + (
            f": {self._last_stderr}" if self._last_stderr else ""
        )
        if used_cursor and not got_any and code != 0:
            self._cursor_failed = True  # retry from the cursor's time instead
        elif got_any:
            self._cursor_failed = False

    _last_stderr = ""
    _pending = b""

    async def _read_batch(self, stdout: asyncio.StreamReader) -> Batch | None:
        """Everything journalctl has written so far (at least one whole entry), as one batch."""
        while b"\n" not in self._pending:
            chunk = await stdout.read(1 << 20)
            if not chunk:
                self._pending = b""
                return None
            self._pending += chunk
        cut = self._pending.rfind(b"\n")
        complete, self._pending = self._pending[: cut + 1], self._pending[cut + 1 :]
        lines: list[tuple[str, Origin]] = []
        newest: float | None = None
        for raw in complete.splitlines():
            if not raw.strip():
                continue
            item = self._entry(raw)
            if item is not None:
                text, ts = item
                lines.append((text, Origin(source=self.name, cursor=self.cursor)))
                newest = ts if ts is not None else newest
        self.lines += len(lines)
        self.caught_up_at = time.time()
        return Batch(source=self.name, lines=lines, position=self.position(), newest_ts=newest)

    def _entry(self, raw: bytes) -> tuple[str, float | None] | None:
        try:
            entry = json.loads(raw)
        except ValueError:
            self.bad_entries += 1
            return None
        if not isinstance(entry, dict):
            self.bad_entries += 1
            return None
        cursor = entry.get("__CURSOR")
        if isinstance(cursor, str):
            if cursor == self.cursor:
                return None  # --since @ts may repeat the entry the cursor names
            self.cursor = cursor
        made = entry_line(entry)
        if made is None:
            self.bad_entries += 1
            return None
        if made[1] is not None:
            self.cursor_ts = made[1]
        return made

    def unread_bytes(self) -> int | None:
        return None

    def status(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "cursor": self.cursor,
            "restarts": self.restarts,
            "stderr_lines": self.stderr_lines,
            "bad_entries": self.bad_entries,
            "lines": self.lines,
            "running": self.proc is not None and self.proc.returncode is None,
        }


async def _drain_stderr(source: JournaldFollower, stream: asyncio.StreamReader) -> None:
    while True:
        raw = await stream.readline()
        if not raw:
            return
        source.stderr_lines += 1
        text = raw.decode(errors="replace").strip()
        source._last_stderr = text[:300]
        if source.stderr_lines <= 10 or source.stderr_lines % 100 == 0:
            log.warning("%s: journalctl says: %s", source.name, text)


def _spawn_stderr_reader(
    source: JournaldFollower, stream: asyncio.StreamReader
) -> asyncio.Task[None]:
    from mailward.daemon.tasks import spawn

    return spawn(_drain_stderr(source, stream), name=f"{source.name}:stderr")
