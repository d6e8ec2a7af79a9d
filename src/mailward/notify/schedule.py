"""The daemon's daily digest: once a day at ``digest.hour`` (local time), at most once per day.

The day it was sent is kept in the notify ledger, so a restart after the hour does not send it
twice. The store is read in a worker thread through ``open_source`` (a fresh read connection), so
building the digest never stalls the event loop; delivery goes through the isolated dispatcher.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

from mailward.clock import Clock
from mailward.daemon.tasks import spawn
from mailward.enrich.geoip import GeoLookup
from mailward.notify.digest import DigestSource, build_digest, render_digest
from mailward.notify.model import Message
from mailward.notify.spool import Spool

log = logging.getLogger(__name__)


def due_day(now: float, tz: tzinfo, hour: int, last_sent_day: str | None) -> str | None:
    """The local date to send the digest for, if it is due at ``now``; else None."""
    local = datetime.fromtimestamp(now, tz)
    day = local.strftime("%Y-%m-%d")
    if local.hour < hour or last_sent_day == day:
        return None
    return day


class DailyDigest:
    name = "digest"

    def __init__(
        self,
        open_source: Callable[[], DigestSource],
        send: Callable[[Message], None],
        spool: Spool,
        *,
        clock: Clock,
        tz: tzinfo,
        hour: int,
        chart: bool = True,
        geo: GeoLookup | None = None,
        top: int = 10,
        health: Callable[[], dict[str, Any]] | None = None,
        check_seconds: float = 60.0,
    ) -> None:
        self.open_source = open_source
        self.send = send
        self.spool = spool
        self.clock = clock
        self.tz = tz
        self.hour = hour
        self.chart = chart
        self.geo = geo
        self.top = top
        self.health = health
        self.check_seconds = check_seconds
        self._task: asyncio.Task[Any] | None = None

    def _last_day(self) -> str | None:
        # The ledger stores times; the digest's key carries the date it was sent for.
        row = self.spool.last_sent("digest")
        if row is None:
            return None
        return datetime.fromtimestamp(row[0], self.tz).strftime("%Y-%m-%d")

    def _build(self, now: float) -> Message:
        source = self.open_source()
        try:
            health = self.health() if self.health else None
            data = build_digest(source, now, geo=self.geo, top=self.top, health=health)
        finally:
            close = getattr(source, "close", None)
            if callable(close):
                close()
        return render_digest(data, chart=self.chart)

    async def run_once(self) -> bool:
        now = self.clock.now()
        if due_day(now, self.tz, self.hour, self._last_day()) is None:
            return False
        try:
            message = await asyncio.to_thread(self._build, now)
        except Exception:
            log.exception("digest: could not build it; will try again")
            return False
        self.send(message)
        self.spool.mark_sent("digest", now)
        return True

    async def start(self, daemon: object | None = None) -> None:
        self._task = spawn(self._loop(), name="digest")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.check_seconds)
