from __future__ import annotations

from mailward.analyze.counting import BoundedCounter, DistinctSketch


def test_bounded_counter_and_sketch() -> None:
    c = BoundedCounter(cap=10)
    for i in range(100):
        c.add(f"u{i}")
    c.add("hot", 50)
    assert len(c.counts) <= 11
    assert c.top(1) == [("hot", 50)]
    assert c.pruned > 0
    s = DistinctSketch(k=64)
    for i in range(20):
        s.add(i)
        s.add(i)
    assert s.exact and s.estimate() == 20
    for i in range(20_000):
        s.add(i)
    assert not s.exact
    assert 14_000 < s.estimate() < 28_000


def test_sketch_of_sequential_values_is_not_fooled_by_their_order() -> None:
    s = DistinctSketch(k=128)
    for i in range(100_000):
        s.add(3_232_235_520 + i)  # consecutive IPv4 addresses as ints
    assert 85_000 < s.estimate() < 115_000
