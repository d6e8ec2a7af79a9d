"""Outbound heartbeat to a dead-man's switch (healthchecks.io, Uptime Kuma push, cronitor, ...).

While mailward is healthy it pings ``notify.heartbeat_url`` every ``heartbeat_seconds``; when it
is unhealthy (a source lagging or silent) or dead, or the host is down, the pings stop and the
service on the other side alerts someone. Nothing here can delay the defence: one task, a timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from mailward.daemon.tasks import spawn
from mailward.notify.metrics import Metrics

log = logging.getLogger(__name__)


class Heartbeat:
    name = "heartbeat"

    def __init__(
        self,
        url: str,
        interval: float,
        *,
        healthy: Callable[[], bool] = lambda: True,
        timeout: float = 10.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.url = url
        self.interval = interval
        self.healthy = healthy
        self.timeout = timeout
        self.metrics = metrics
        self.sent = 0
        self.skipped = 0
        self.failures = 0
        self._task: asyncio.Task[Any] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self, daemon: object | None = None) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        self._task = spawn(self._loop(), name="heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _count(self, result: str) -> None:
        if self.metrics:
            self.metrics.heartbeats.labels(result=result).inc()

    async def beat(self) -> bool:
        """One ping if healthy. True when the switch was told we are alive."""
        try:
            ok = self.healthy()
        except Exception:
            ok = False
        if not ok:
            self.skipped += 1
            self._count("skipped")
            log.warning("heartbeat withheld: mailward is not healthy")
            return False
        assert self._session is not None
        try:
            async with self._session.get(self.url) as resp:
                if resp.status >= 400:
                    raise aiohttp.ClientResponseError(
                        resp.request_info, resp.history, status=resp.status
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.failures += 1
            self._count("failed")
            if self.failures == 1 or self.failures % 100 == 0:
                # The URL carries a secret token: never log it.
                log.warning(
                    "heartbeat ping failed (%d so far): %s", self.failures, type(exc).__name__
                )
            return False
        self.sent += 1
        self._count("sent")
        return True

    async def _loop(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.interval)
