"""Isolated fan-out to subscribers: each gets its own bounded queue and task, its own failure
and drop counters, and its failures are logged the 1st and every 100th time. A slow or broken
subscriber (a webhook, a notifier) never delays the defence."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from mailward.daemon.tasks import spawn

log = logging.getLogger(__name__)

T = TypeVar("T")
Callback = Callable[[T], Awaitable[None] | None]


class Subscriber(Generic[T]):
    def __init__(self, name: str, callback: Callback[T], maxsize: int) -> None:
        self.name = name
        self.callback = callback
        self.queue: asyncio.Queue[T] = asyncio.Queue(maxsize)
        self.delivered = 0
        self.failures = 0
        self.dropped = 0
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                result = self.callback(item)
                if inspect.isawaitable(result):
                    await result
                self.delivered += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failures += 1
                if self.failures == 1 or self.failures % 100 == 0:
                    log.exception("subscriber %s failed (%d failures)", self.name, self.failures)
            finally:
                self.queue.task_done()

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "delivered": self.delivered,
            "failures": self.failures,
            "dropped": self.dropped,
            "queued": self.queue.qsize(),
        }


class Fanout(Generic[T]):
    def __init__(self, kind: str, maxsize: int = 10_000) -> None:
        self.kind = kind
        self.maxsize = maxsize
        self.subscribers: list[Subscriber[T]] = []
        self._started = False

    def subscribe(self, callback: Callback[T], name: str | None = None) -> None:
        label = name or getattr(callback, "__qualname__", repr(callback))
        sub = Subscriber(f"{self.kind}:{label}", callback, self.maxsize)
        self.subscribers.append(sub)
        if self._started:
            sub.task = spawn(sub.run(), name=sub.name)

    def start(self) -> None:
        self._started = True
        for sub in self.subscribers:
            if sub.task is None:
                sub.task = spawn(sub.run(), name=sub.name)

    def publish(self, item: T) -> None:
        for sub in self.subscribers:
            try:
                sub.queue.put_nowait(item)
            except asyncio.QueueFull:
                sub.dropped += 1
                if sub.dropped == 1 or sub.dropped % 1000 == 0:
                    log.warning("subscriber %s is too slow: %d dropped", sub.name, sub.dropped)

    async def drain(self, timeout: float = 2.0) -> None:
        """Give subscribers a moment to finish what is queued (graceful stop)."""
        waits = [s.queue.join() for s in self.subscribers if s.task is not None]
        if waits:
            try:
                await asyncio.wait_for(asyncio.gather(*waits), timeout)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        tasks = [s.task for s in self.subscribers if s.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        self._started = False
        for s in self.subscribers:
            s.task = None

    def status(self) -> list[dict[str, Any]]:
        return [s.status() for s in self.subscribers]
