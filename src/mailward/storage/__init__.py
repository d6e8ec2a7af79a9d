"""Memory: the long-term store of events, decisions, alerts and import positions (SQLite).

``Store`` is the protocol; ``SqliteStore`` the synchronous writer, ``SqliteReader`` a read-only
connection, ``AsyncStore`` the asyncio front the daemon uses (one writer thread, a reader pool)
and ``MemoryStore`` the in-memory twin.
"""

from mailward.storage.aio import AsyncStore
from mailward.storage.base import Store
from mailward.storage.memory import MemoryStore
from mailward.storage.sqlite import (
    Alert,
    HourCount,
    PruneResult,
    SqliteReader,
    SqliteStore,
    open_store,
)

__all__ = [
    "Alert",
    "AsyncStore",
    "HourCount",
    "MemoryStore",
    "PruneResult",
    "SqliteReader",
    "SqliteStore",
    "Store",
    "open_store",
]
