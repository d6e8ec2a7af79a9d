from __future__ import annotations

from pathlib import Path

from mailward.storage.base import Store
from mailward.storage.memory import MemoryStore
from mailward.storage.reader import SqliteReader
from mailward.storage.sqlite import SqliteStore


def test_both_stores_implement_the_protocol(tmp_path: Path) -> None:
    real = SqliteStore(tmp_path / "p.db")
    assert isinstance(real, Store)
    assert isinstance(MemoryStore(), Store)
    # A read-only connection is not a Store: it cannot write.
    with SqliteReader(real.path) as reader:
        assert not isinstance(reader, Store)
    real.close()


def test_protocol_methods_are_documented() -> None:
    for name, member in vars(Store).items():
        if callable(member) and not name.startswith("_"):
            assert member.__doc__, name
