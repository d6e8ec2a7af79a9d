import gc
from collections.abc import Iterator

import pytest

from mailward.daemon.heap import HeapFreezer


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # leave the test process as it was


def test_freeze_moves_live_objects_out_of_the_collector() -> None:
    gc.unfreeze()
    state = [{"ip": i} for i in range(10_000)]  # long-lived detector-like state
    heap = HeapFreezer()
    frozen = heap.freeze()
    assert frozen >= len(state) and gc.get_freeze_count() == frozen
    collected = {id(o) for o in gc.get_objects()}  # the permanent generation is not listed
    assert not any(id(x) in collected for x in state)
    assert heap.status()["freezes"] == 1


def test_refreezes_only_after_large_growth() -> None:
    size = [1_000_000]
    heap = HeapFreezer(factor=1.5, min_growth=100_000, blocks=lambda: size[0])
    heap.freeze()
    size[0] = 1_400_000  # +40 %: not yet
    assert not heap.maybe_freeze()
    size[0] = 1_600_000
    assert heap.maybe_freeze() and heap.baseline == 1_600_000 and heap.freezes == 2
    size[0] = 1_650_000
    assert not heap.maybe_freeze()
