"""Copies the daemon's events and decisions into the shared store (``mailward.db``), which
``mailward analyze``, the digest and the reports read. A component fed by subscriptions: it only
appends to a list in the event loop and writes in batches through ``AsyncStore``'s writer thread,
so a slow disk never delays detection. (The ledger is what makes processing exactly-once; this
copy is written after it, so a crash in between can repeat up to one batch here.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mailward.daemon.tasks import spawn
from mailward.decisions.model import Decision
from mailward.events import Event

if TYPE_CHECKING:
    from mailward.daemon.app import Daemon
    from mailward.storage.aio import AsyncStore

log = logging.getLogger(__name__)

MAX_PENDING = 1_000_000  # beyond this the store is hopelessly behind: drop and count


class StoreWriter:
    name = "store"

    def __init__(
        self,
        open_store: Callable[[], Awaitable[AsyncStore]],
        *,
        interval: float = 0.5,
        batch: int = 5000,
    ) -> None:
        self.open_store = open_store
        self.interval = interval
        self.batch = batch
        self.store: AsyncStore | None = None
        self._events: list[Event] = []
        self._decisions: list[Decision] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written_events = 0
        self.written_decisions = 0
        self.failures = 0
        self.dropped = 0
        self.last_error: str | None = None

    async def start(self, daemon: Daemon) -> None:
        self.store = await self.open_store()
        daemon.on_event(self._add_event, name="store")
        daemon.on_decision(self._add_decision, name="store")
        self._task = spawn(self._loop(), name="store:writer")

    def _add_event(self, event: Event) -> None:
        if len(self._events) >= MAX_PENDING:
            self.dropped += 1
            return
        self._events.append(event)
        if len(self._events) >= self.batch:
            self._wake.set()

    def _add_decision(self, decision: Decision) -> None:
        self._decisions.append(decision)
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        if self.store is None or not (self._events or self._decisions):
            return
        events, self._events = self._events, []
        decisions, self._decisions = self._decisions, []

        def job(store: Any) -> None:
            store.add_events(events)
            for decision in decisions:
                store.add_decision(decision)

        try:
            await self.store.write(job)
        except Exception as exc:
            # Keep them for the next try; the ledger has them in any case.
            self._events[:0] = events
            self._decisions[:0] = decisions
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self.failures == 1 or self.failures % 100 == 0:
                log.error("cannot write to the store (%d failures): %s", self.failures, exc)
            return
        self.written_events += len(events)
        self.written_decisions += len(decisions)
        self.last_error = None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()
        if self.store is not None:
            await self.store.close()
            self.store = None

    def status(self) -> dict[str, Any]:
        return {
            "events": self.written_events,
            "decisions": self.written_decisions,
            "pending": len(self._events) + len(self._decisions),
            "failures": self.failures,
            "dropped": self.dropped,
            "last_error": self.last_error,
        }
