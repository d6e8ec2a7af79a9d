"""The store for asyncio code: one writer thread owns the write connection, reads use a pool.

``await store.write(fn)`` queues ``fn(SqliteStore)`` for the writer thread, which runs the jobs
queued at that moment in one transaction (each in its own savepoint, so one failing job fails
alone) and resolves the futures after the commit. ``await store.read(fn)`` runs
``fn(SqliteReader)`` on a read-only connection in a small thread pool. The event loop never waits
on SQLite.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from mailward.decisions.model import Decision
from mailward.errors import BackendUnavailable
from mailward.events import Event
from mailward.storage.sqlite import (
    DEFAULT_RETENTION_DAYS,
    Alert,
    PruneResult,
    SqliteReader,
    SqliteStore,
)

if TYPE_CHECKING:
    from mailward.config.model import Settings

T = TypeVar("T")
MAX_JOBS_PER_COMMIT = 512

_Job = tuple[Callable[[SqliteStore], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


def _resolve(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.cancelled():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class AsyncStore:
    """Async front of one SQLite database. Create with ``await AsyncStore.open(path)``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        readers: int = 2,
    ) -> None:
        self.path = path
        self.retention_days = retention_days
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="mailward-db-read")
        self._local = threading.local()
        self._readers: list[SqliteReader] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self.jobs_done = 0
        self.commits = 0

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        readers: int = 2,
    ) -> AsyncStore:
        """Start the writer thread; opening/migrating errors (``InputError``) are raised here."""
        store = cls(path, retention_days=retention_days, readers=readers)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        store._thread = threading.Thread(
            target=store._writer, args=(loop, ready), name="mailward-db-writer", daemon=True
        )
        store._thread.start()
        try:
            await ready
        except BaseException:
            store._pool.shutdown(wait=False)
            raise
        return store

    @classmethod
    async def from_settings(cls, settings: Settings) -> AsyncStore:
        return await cls.open(settings.db_path, retention_days=settings.storage.retention_days)

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the writer thread ------------------------------------------------------------------
    def _writer(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            store = SqliteStore(self.path, retention_days=self.retention_days)
        except BaseException as exc:
            loop.call_soon_threadsafe(_resolve, ready, None, exc)
            return
        loop.call_soon_threadsafe(_resolve, ready, None, None)
        try:
            stop = False
            while not stop:
                first = self._jobs.get()
                if first is None:
                    break
                batch = [first]
                # Jobs that queued up while the last commit ran share one transaction.
                while len(batch) < MAX_JOBS_PER_COMMIT:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    batch.append(job)
                self._run(store, batch)
        finally:
            store.close()

    def _run(self, store: SqliteStore, batch: Sequence[_Job]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            with store.transaction():
                for fn, _, _ in batch:
                    try:
                        with store.transaction():
                            outcomes.append((fn(store), None))
                    except Exception as job_exc:
                        outcomes.append((None, job_exc))
        except Exception as exc:  # the commit itself failed: nothing of the batch is stored
            outcomes = [(None, exc)] * len(batch)
        else:
            self.commits += 1
        self.jobs_done += len(batch)
        for (_, loop, fut), (result, error) in zip(batch, outcomes, strict=True):
            try:
                loop.call_soon_threadsafe(_resolve, fut, result, error)
            except RuntimeError:  # the caller's loop is closed; nobody waits for this result
                pass

    # -- public API -------------------------------------------------------------------------
    async def write(self, fn: Callable[[SqliteStore], T]) -> T:
        """Run ``fn`` on the writer connection, in a transaction; returns its result."""
        if self._closed:
            raise RuntimeError("store is closed")
        if self._thread is None or not self._thread.is_alive():
            raise BackendUnavailable(f"{self.path}: the database writer thread is not running")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, loop, fut))
        return await fut

    async def read(self, fn: Callable[[SqliteReader], T]) -> T:
        """Run ``fn`` on a read-only connection in the reader pool."""
        if self._closed:
            raise RuntimeError("store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._read, fn)

    def _read(self, fn: Callable[[SqliteReader], T]) -> T:
        reader: SqliteReader | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = SqliteReader(self.path)
            with self._readers_lock:
                self._readers.append(reader)
        return fn(reader)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self._pool.shutdown, True)
        with self._readers_lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()

    # Convenience wrappers for what the daemon, policy servers and notifiers call most.
    async def add_events(self, events: Iterable[Event]) -> int:
        batch = list(events)
        return await self.write(lambda s: s.add_events(batch))

    async def import_batch(
        self, identity: str, offset: int, events: Iterable[Event], *, path: str | None = None
    ) -> int:
        batch = list(events)
        return await self.write(lambda s: s.import_batch(identity, offset, batch, path=path))

    async def set_import_position(
        self, identity: str, offset: int, *, path: str | None = None
    ) -> None:
        await self.write(lambda s: s.set_import_position(identity, offset, path=path))

    async def add_decision(self, decision: Decision) -> int:
        return await self.write(lambda s: s.add_decision(decision))

    async def add_alert(self, alert: Alert) -> int:
        return await self.write(lambda s: s.add_alert(alert))

    async def prune(self, now: float, *, compact: bool = False) -> PruneResult:
        return await self.write(lambda s: s.prune(now, compact=compact))

    async def import_position(self, identity: str) -> int:
        return await self.read(lambda r: r.import_position(identity))

    async def active_decisions(self, now: float) -> list[Decision]:
        return await self.read(lambda r: r.active_decisions(now))

    async def decisions(
        self, since: float | None = None, until: float | None = None, *, target: str | None = None
    ) -> list[Decision]:
        return await self.read(lambda r: r.decisions(since, until, target=target))

    async def offences(self, target: str, since: float) -> int:
        return await self.read(lambda r: r.offences(target, since))

    async def events(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[Event]:
        k = None if kinds is None else list(kinds)
        return await self.read(lambda r: list(r.events(since, until, k)))
