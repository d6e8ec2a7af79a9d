"""Fan-out to the channels, isolated: one worker task and one spool lane per channel.

``submit`` only writes the message to the spool (a few milliseconds) and wakes the workers, so
neither the defence nor another channel ever waits on a slow relay. Each worker sends with a
timeout; a failure is retried with exponential backoff, counted, and logged on the 1st and every
100th failure. Undelivered messages survive restarts and are sent when the channel comes back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from mailward.clock import Clock
from mailward.daemon.tasks import spawn
from mailward.notify.channels.base import Notifier
from mailward.notify.metrics import Metrics
from mailward.notify.model import Message
from mailward.notify.spool import Spool

log = logging.getLogger(__name__)

LOG_EVERY = 100


class _Lane:
    def __init__(self, channel: Notifier) -> None:
        self.channel = channel
        self.wake = asyncio.Event()
        self.task: asyncio.Task[Any] | None = None
        self.failures = 0
        self.delivered = 0
        self.dropped = 0
        self.last_error: str | None = None
        self.healthy = True  # the last attempt succeeded


class Dispatcher:
    def __init__(
        self,
        channels: Sequence[Notifier],
        spool: Spool,
        *,
        clock: Clock,
        timeout: float = 30.0,
        max_pending: int = 1000,
        retry_initial: float = 30.0,
        retry_max: float = 3600.0,
        max_age: float = 7 * 86400,
        metrics: Metrics | None = None,
    ) -> None:
        self.spool = spool
        self.clock = clock
        self.timeout = timeout
        self.max_pending = max_pending
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.max_age = max_age
        self.metrics = metrics
        self.lanes = {c.name: _Lane(c) for c in channels}

    def submit(self, message: Message) -> None:
        """Queue ``message`` for every channel. Never blocks, never raises for a channel."""
        now = self.clock.now()
        for name, lane in self.lanes.items():
            try:
                self.spool.add(name, message, now)
                dropped = self.spool.trim(name, self.max_pending)
            except Exception:
                log.exception("notify: cannot spool a message for %s", name)
                continue
            if dropped:
                lane.dropped += dropped
                if self.metrics:
                    self.metrics.delivery_dropped.labels(channel=name).inc(dropped)
                log.warning("notify: %s spool full, dropped %d oldest message(s)", name, dropped)
            lane.wake.set()
            self._gauge(name)

    def start(self) -> None:
        for name, lane in self.lanes.items():
            lane.task = spawn(self._run(lane), name=f"notify:{name}")

    async def stop(self, *, drain: float = 5.0) -> None:
        """Give due messages ``drain`` seconds to go out, then stop the workers (what is left
        stays in the spool for the next start)."""
        if drain > 0:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + drain
            while loop.time() < deadline and any(
                lane.healthy and self.spool.due(n, self.clock.now(), 1)
                for n, lane in self.lanes.items()
            ):
                await asyncio.sleep(0.05)
        tasks = [lane.task for lane in self.lanes.values() if lane.task is not None]
        while tasks:
            # Cancel until they are done: a cancellation can be lost when it races with a
            # send that completes at the same moment (asyncio.wait_for on Python 3.11).
            for task in tasks:
                task.cancel()
            _, pending = await asyncio.wait(tasks, timeout=1.0)
            tasks = list(pending)

    def status(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "pending": self.spool.pending(name),
                "delivered": lane.delivered,
                "failures": lane.failures,
                "dropped": lane.dropped,
                "last_error": lane.last_error,
            }
            for name, lane in self.lanes.items()
        }

    def _gauge(self, name: str) -> None:
        if self.metrics:
            self.metrics.outbox.labels(channel=name).set(self.spool.pending(name))

    def _backoff(self, attempts: int) -> float:
        return float(min(self.retry_max, self.retry_initial * 2 ** max(attempts - 1, 0)))

    async def _run(self, lane: _Lane) -> None:
        name = lane.channel.name
        while True:
            now = self.clock.now()
            try:
                expired = self.spool.expire(now - self.max_age)
                if expired:
                    log.error(
                        "notify: %s: dropped %d message(s) older than the limit", name, expired
                    )
                    if self.metrics:
                        self.metrics.delivery_dropped.labels(channel=name).inc(expired)
                batch = self.spool.due(name, now)
            except Exception:
                log.exception("notify: %s: spool read failed", name)
                batch = []
            for item in batch:
                await self._deliver(lane, item.id, item.attempts, item.message)
            if batch:
                continue
            next_due = self.spool.next_due(name)
            wait = 5.0 if next_due is None else max(0.05, min(5.0, next_due - self.clock.now()))
            lane.wake.clear()
            try:
                async with asyncio.timeout(wait):
                    await lane.wake.wait()
            except TimeoutError:
                pass

    async def _deliver(self, lane: _Lane, item_id: int, attempts: int, message: Message) -> None:
        name = lane.channel.name
        try:
            async with asyncio.timeout(self.timeout):
                await lane.channel.send(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # isolated: one channel's failure stays in its lane
            lane.failures += 1
            lane.healthy = False
            error = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                error = f"timed out after {self.timeout} s"
            lane.last_error = error
            delay = self._backoff(attempts + 1)
            self.spool.failed(item_id, self.clock.now() + delay, error)
            if self.metrics:
                self.metrics.delivery_failures.labels(channel=name).inc()
            if lane.failures == 1 or lane.failures % LOG_EVERY == 0:
                log.warning(
                    "notify: %s delivery failed (%d failures so far), retry in %.0f s: %s",
                    name,
                    lane.failures,
                    delay,
                    error,
                )
            return
        lane.delivered += 1
        lane.healthy = True
        self.spool.done(item_id)
        if self.metrics:
            self.metrics.deliveries.labels(channel=name).inc()
        self._gauge(name)
