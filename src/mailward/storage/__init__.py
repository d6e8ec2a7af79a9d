"""Memory: the long-term store of events, decisions, alerts and import positions (SQLite).

``SqliteStore`` is the synchronous writer, ``SqliteReader`` a read-only connection and
``AsyncStore`` the asyncio front the daemon uses (one writer thread, a reader pool).
"""

from mailward.storage.aio import AsyncStore
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
    "PruneResult",
    "SqliteReader",
    "SqliteStore",
    "open_store",
]
