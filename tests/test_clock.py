import time

from mailward.clock import ManualClock, SystemClock


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(100.0)
    assert clock.now() == 100.0
    clock.advance(5)
    assert clock.now() == 105.0


def test_system_clock_is_wall_time() -> None:
    assert abs(SystemClock().now() - time.time()) < 5
