from __future__ import annotations

from mailward.detectors.state import MemoryState, StateStore


def test_memory_state_is_a_state_store() -> None:
    state: StateStore = MemoryState()
    assert state.hit("x", 1, 0.0, window=10, cap=3) == 1


def test_windowed_counter_counts_within_window_and_caps() -> None:
    s = MemoryState()
    assert s.hit("f", 1, 100.0, window=60, cap=5) == 1
    assert s.hit("f", 1, 110.0, window=60, cap=5) == 2
    assert s.hit("f", 1, 120.0, window=60, cap=5, n=2) == 4
    assert s.count("f", 1, 125.0, 60) == 4
    assert s.count("f", 1, 125.0, 10) == 2  # a shorter window over the same timeline
    assert s.count("f", 1, 175.0, 60) == 2  # 100 and 110 have left the window
    assert s.hit("f", 1, 130.0, window=60, cap=5, n=10) == 5  # never more than cap kept
    assert s.count("f", 2, 130.0, 60) == 0
    assert s.count("nope", 2, 130.0, 60) == 0


def test_distinct_members() -> None:
    s = MemoryState()
    for i in range(5):
        s.add_member("u", "bob", i, 100.0 + i, window=60, cap=100)
    assert s.add_member("u", "bob", 3, 106.0, window=60, cap=100) == 5  # a repeat is not new
    assert s.has_member("u", "bob", 3, 107.0, 60)
    assert not s.has_member("u", "bob", 99, 107.0, 60)
    # members older than the window drop out
    assert s.add_member("u", "bob", 42, 162.0, window=60, cap=100) == 3
    assert not s.has_member("u", "bob", 0, 162.0, 60)


def test_distinct_members_grow_past_the_small_form_and_cap() -> None:
    s = MemoryState()
    for i in range(30):
        n = s.add_member("u", "alice", i, 100.0 + i, window=3600, cap=20)
    assert n == 20
    assert not s.has_member("u", "alice", 0, 200.0, 3600)  # the oldest went first
    assert s.has_member("u", "alice", 29, 200.0, 3600)
    assert s.distinct("u", "alice", 200.0, 3600) == 20
    assert s.distinct("u", "alice", 200.0, 80) == 9  # only those seen since 120


def test_marks_extend_only() -> None:
    s = MemoryState()
    assert s.mark("ban", "k", 100.0) == 100.0
    assert s.mark("ban", "k", 50.0) == 100.0
    assert s.marked("ban", "k", 99.0) == 100.0
    assert s.marked("ban", "k", 100.0) is None
    s.unmark("ban", "k")
    assert s.marked("ban", "k", 0.0) is None


def test_reset_and_sweep_drop_expired_state() -> None:
    s = MemoryState()
    for ip in range(1000):
        s.hit("f", ip, 1000.0, window=60, cap=3)
        s.add_member("p", ip // 10, ip, 1000.0, window=600, cap=5)
    s.mark("m", "x", 1500.0)
    s.hit("f", 5, 1090.0, window=60, cap=3)  # keeps key 5 alive a little longer
    assert s.sweep(1000.0) == 0
    assert s.sizes() == {"c:f": 1000, "s:p": 100, "m:m": 1}
    dropped = s.sweep(1100.0)
    assert dropped == 999
    assert s.sizes()["c:f"] == 1 and s.count("f", 5, 1100.0, 60) == 1
    s.sweep(1200.0)
    assert s.sizes()["c:f"] == 0
    s.sweep(2000.0)
    assert s.sizes() == {"c:f": 0, "s:p": 0, "m:m": 0}
    s.hit("f", 7, 3000.0, window=60, cap=3)
    s.reset("f", 7)
    assert s.count("f", 7, 3000.0, 60) == 0


def test_zero_events_is_not_a_hit() -> None:
    s = MemoryState()
    assert s.hit("f", 1, 0.0, window=60, cap=3, n=0) == 0
    assert s.sizes()["c:f"] == 0


def test_distinct_members_match_a_reference_model() -> None:
    """Every path of ``add_member`` (small tuple, full tuple, dict, a cap that changes between
    calls as the prefix rule's does) against a plain ordered list, over a seeded random stream."""
    import random

    rnd = random.Random(11)
    s = MemoryState()
    model: dict[int, list[tuple[int, float]]] = {}
    now = 1000.0
    for _ in range(20_000):
        now += rnd.choice([0.0, 0.5, 3.0, 40.0])
        key, member = rnd.randrange(6), rnd.randrange(14)
        window, cap = 120.0, rnd.choice([3, 5, 8, 8, 8, 12, 15])
        kept = [(m, t) for m, t in model.get(key, []) if m != member and t > now - window]
        kept.append((member, now))
        model[key] = kept[-cap:]
        assert s.add_member("set", key, member, now, window=window, cap=cap) == len(model[key])
        probe = rnd.randrange(14)
        expected = any(m == probe and t > now - 60 for m, t in model[key])
        assert s.has_member("set", key, probe, now, 60.0) is expected
