from __future__ import annotations

import math
import random

from mailward.analyze.spikes import find_spikes, is_spike, robust_baseline


def _rhythm(days: int, seed: int, base: float = 30.0) -> list[float]:
    """Hourly attempt counts with a daily and weekly rhythm and Poisson-like noise."""
    rng = random.Random(seed)
    out = []
    for h in range(days * 24):
        day_factor = 1 + 0.5 * math.sin((h % 24 - 8) / 24 * 2 * math.pi)
        week_factor = 0.7 if (h // 24) % 7 in (5, 6) else 1.0
        lam = base * day_factor * week_factor
        out.append(max(0.0, round(rng.gauss(lam, math.sqrt(lam)))))
    return out


def test_quiet_month_with_daily_and_weekly_rhythm_has_no_spike() -> None:
    for seed in range(5):
        assert find_spikes(_rhythm(30, seed)) == []
        assert find_spikes(_rhythm(30, seed), trailing=True) == []


def test_two_host_spike_over_a_quiet_baseline_is_found_once() -> None:
    series = _rhythm(30, 1, base=8.0)
    at = 20 * 24 + 2  # 02:00 on day 20, a quiet night hour
    series[at] += 150
    series[at + 1] += 56  # 206 guesses over 39 minutes straddling an hour boundary
    spikes = find_spikes(series)
    assert len(spikes) == 1
    s = spikes[0]
    assert (s.start, s.end) == (at, at + 2)
    assert s.peak_index == at
    assert s.excess > 180
    assert s.score > 6


def test_trailing_mode_only_looks_back() -> None:
    series = [10.0] * 48 + [200.0] + [10.0] * 5
    spikes = find_spikes(series, trailing=True, min_history=24)
    assert [(s.start, s.end) for s in spikes] == [(48, 49)]
    # Not enough history yet: not judged.
    assert find_spikes([200.0] + [10.0] * 5, trailing=True) == []


def test_poisson_floor_keeps_a_few_attempts_on_a_silent_server_from_being_a_spike() -> None:
    base = robust_baseline([0.0] * 100)
    assert base.median == 0 and base.sigma == 1.0
    hit, _ = is_spike(5, [0.0] * 100)
    assert not hit  # 5 attempts: far in sigmas, but below min_excess
    hit, _ = is_spike(40, [0.0] * 100)
    assert hit


def test_sensitivity_is_respected() -> None:
    series = [20.0 + (i % 3) for i in range(200)]
    series[150] = 60.0
    assert find_spikes(series, sensitivity=100) == []
    assert len(find_spikes(series, sensitivity=5)) == 1


def test_adjacent_spike_hours_merge_across_a_short_dip() -> None:
    series = [10.0] * 100
    for i in (50, 51, 53, 54):
        series[i] = 120.0
    spikes = find_spikes(series, merge_gap=2)
    assert [(s.start, s.end) for s in spikes] == [(50, 55)]
    assert len(find_spikes(series, merge_gap=0)) == 2
