from __future__ import annotations

from mailward.detectors.history import MemoryHistory, OffenderHistory, StoreHistory

YEAR = 365 * 86400.0


def test_memory_history_counts_since() -> None:
    h: OffenderHistory = MemoryHistory()
    h.record("203.0.113.5", 100.0)
    h.record("203.0.113.5", 200.0)
    h.record("198.51.100.0/24", 150.0)
    assert h.offences("203.0.113.5", 0.0) == 2
    assert h.offences("203.0.113.5", 150.0) == 1
    assert h.offences("198.51.100.0/24", 0.0) == 1
    assert h.offences("192.0.2.1", 0.0) == 0


def test_memory_history_keeps_a_year_then_forgets() -> None:
    h = MemoryHistory(keep=400 * 86400.0)
    h.record("203.0.113.5", 0.0)
    assert h.offences("203.0.113.5", YEAR - 400 * 86400.0) == 1  # still there after a year
    h.sweep(YEAR)
    assert len(h) == 1
    h.sweep(401 * 86400.0)
    assert len(h) == 0


class FakeStore:
    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        self.calls: list[str] = []

    def offences(self, target: str, since: float) -> int:
        self.calls.append(target)
        return self.counts.get(target, 0)


def test_store_history_adds_what_the_store_knew_once() -> None:
    store = FakeStore({"203.0.113.5": 3})
    h = StoreHistory(store)
    assert h.offences("203.0.113.5", 0.0) == 3
    h.record("203.0.113.5", 10.0)
    # the store now also holds this process's decision; it is not asked again, so no double count
    store.counts["203.0.113.5"] = 4
    assert h.offences("203.0.113.5", 0.0) == 4
    h.record("192.0.2.9", 10.0)
    assert h.offences("192.0.2.9", 0.0) == 1
    assert store.calls == ["203.0.113.5", "192.0.2.9"]
