from __future__ import annotations

from datetime import UTC, datetime

from mailward.notify.baseline import HourlyBaseline, SlidingSpike

MONDAY = datetime(2026, 1, 5, tzinfo=UTC).timestamp()


def test_hour_of_week_wins_over_hour_of_day_once_there_are_three_weeks() -> None:
    base = HourlyBaseline(UTC, weeks=8)
    for h in range(24 * 7 * 3):
        ts = MONDAY + h * 3600
        busy = (
            datetime.fromtimestamp(ts, UTC).weekday() < 5
            and 8 <= datetime.fromtimestamp(ts, UTC).hour < 18
        )
        base.add(ts, 40 if busy else 2)
    monday_ten = base.expect(MONDAY + 21 * 86400 + 10 * 3600)
    sunday_ten = base.expect(MONDAY + 27 * 86400 + 10 * 3600)
    assert monday_ten is not None and sunday_ten is not None
    assert (monday_ten.basis, monday_ten.expected) == ("hour of week", 40)
    assert sunday_ten.expected == 2


def test_short_history_uses_a_high_quantile_and_warm_up_returns_none() -> None:
    base = HourlyBaseline(UTC)
    assert base.expect(MONDAY) is None
    for h in range(30):
        base.add(MONDAY + h * 3600, h % 10)
    exp = base.expect(MONDAY + 40 * 3600)
    assert exp is not None and exp.basis == "recent hours" and exp.expected == 8


def test_sliding_window_counts_last_sixty_minutes_and_zero_hours() -> None:
    spike = SlidingSpike(HourlyBaseline(UTC), sensitivity=6, min_count=10, min_ratio=3)
    spike.add(MONDAY, "a", 5)
    spike.add(MONDAY + 1800, "b", 2)
    assert spike.count(MONDAY + 1800) == 7
    assert spike.count(MONDAY + 3600 + 60) == 2
    assert spike.window(MONDAY + 3600 + 60) == {"b": 2}
    spike.check(MONDAY + 30 * 3600)  # 30 hours pass: empty hours are real zeros
    assert spike.baseline.hours == 30


def test_threshold_respects_min_count_and_ratio() -> None:
    spike = SlidingSpike(HourlyBaseline(UTC), sensitivity=6, min_count=30, min_ratio=3)
    spike.seed((MONDAY + h * 3600, 0) for h in range(48))
    check = spike.check(MONDAY + 48 * 3600)
    assert check.threshold == 30 and not check.is_spike
    for i in range(30):
        spike.add(MONDAY + 48 * 3600 + i, "x")
    assert spike.check(MONDAY + 48 * 3600 + 60).is_spike
