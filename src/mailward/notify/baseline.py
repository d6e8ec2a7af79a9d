"""Robust baseline of hourly counts and a sliding 60-minute spike test. Pure: time is passed in.

The expected count for an hour comes from the same hour of the week over past weeks (median and
MAD), falling back to the same hour of day over the past two weeks, then to the 90th percentile of
the past week while history is short; a Poisson floor keeps quiet hours from looking volatile.
(Self-contained on purpose: alerts must not depend on the analysis report code.)
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from statistics import median

HOUR = 3600
MINUTE = 60
MIN_SAMPLES = 3
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True, slots=True)
class Expectation:
    expected: float
    scale: float
    basis: str  # "hour of week", "hour of day", "recent hours"
    samples: int


@dataclass(frozen=True, slots=True)
class SpikeCheck:
    count: int
    threshold: float
    expectation: Expectation | None  # None while warming up

    @property
    def is_spike(self) -> bool:
        return self.expectation is not None and self.count >= self.threshold


def _mad(values: list[float], centre: float) -> float:
    return median(abs(v - centre) for v in values)


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]


class HourlyBaseline:
    """Closed hourly counts, indexed by local hour of week and hour of day."""

    def __init__(self, tz: tzinfo, *, weeks: int = 8) -> None:
        self.tz = tz
        self._by_how: dict[int, deque[int]] = {}
        self._by_hod: dict[int, deque[int]] = {}
        self._recent: deque[int] = deque(maxlen=168)
        self._weeks = weeks
        self._cache: dict[tuple[int, int], Expectation | None] = {}
        self.hours = 0

    def _keys(self, ts: float) -> tuple[int, int]:
        local = datetime.fromtimestamp(ts, self.tz)
        return local.weekday() * 24 + local.hour, local.hour

    def add(self, hour_start: float, count: int) -> None:
        how, hod = self._keys(hour_start)
        self._by_how.setdefault(how, deque(maxlen=self._weeks)).append(count)
        self._by_hod.setdefault(hod, deque(maxlen=14)).append(count)
        self._recent.append(count)
        self._cache.clear()
        self.hours += 1

    @property
    def weeks(self) -> int:
        return self._weeks

    def expect(self, ts: float) -> Expectation | None:
        keys = self._keys(ts)
        if keys not in self._cache:
            self._cache[keys] = self._expect(*keys)
        return self._cache[keys]

    def _expect(self, how: int, hod: int) -> Expectation | None:
        for basis, samples, centre in (
            ("hour of week", self._by_how.get(how, ()), None),
            ("hour of day", self._by_hod.get(hod, ()), None),
            ("recent hours", self._recent if len(self._recent) >= 24 else (), _p90),
        ):
            values = [float(v) for v in samples]
            if len(values) < MIN_SAMPLES:
                continue
            mid = centre(values) if centre else median(values)
            scale = max(MAD_TO_SIGMA * _mad(values, median(values)), math.sqrt(max(mid, 1.0)))
            return Expectation(mid, scale, basis, len(values))
        return None


class SlidingSpike:
    """Counts attempts per minute for the last hour, per source, and closes hours into the
    baseline as time passes. ``check(now)`` compares the last 60 minutes with the baseline."""

    def __init__(
        self,
        baseline: HourlyBaseline,
        *,
        sensitivity: float,
        min_count: int,
        min_ratio: float,
    ) -> None:
        self.baseline = baseline
        self.sensitivity = sensitivity
        self.min_count = min_count
        self.min_ratio = min_ratio
        self._minutes: deque[tuple[int, Counter[str]]] = deque()
        self._hour: int | None = None  # start of the open hour
        self._hour_count = 0
        self._total = 0  # attempts in self._minutes

    def seed(self, hourly: Iterable[tuple[float, int]], *, until: float | None = None) -> None:
        """Prime the baseline with closed hours (e.g. from the store), oldest first. Hours
        missing between them are zeros; with ``until``, so are those up to its hour, and the
        window continues from there (a restart keeps its baseline)."""
        last: int | None = None
        for hour_start, count in sorted(hourly):
            hour = int(hour_start // HOUR) * HOUR
            if last is not None:
                for gap in range(last + HOUR, hour, HOUR):
                    self.baseline.add(gap, 0)
            self.baseline.add(hour, count)
            last = hour
        if until is not None and last is not None:
            current = int(until // HOUR) * HOUR
            for gap in range(last + HOUR, current, HOUR):
                self.baseline.add(gap, 0)
            if self._hour is None:
                self._hour = current

    def _roll(self, ts: float) -> None:
        hour = int(ts // HOUR) * HOUR
        if self._hour is None:
            self._hour = hour
            return
        # Hours with no attempt are real zeros; a gap longer than the history is capped.
        gap = 0
        while self._hour < hour and gap < 24 * 7 * self.baseline.weeks:
            self.baseline.add(self._hour, self._hour_count)
            self._hour += HOUR
            self._hour_count = 0
            gap += 1
        self._hour = max(self._hour, hour)

    def add(self, ts: float, source: str, count: int = 1) -> None:
        self._roll(ts)
        if self._hour is not None and ts >= self._hour:
            self._hour_count += count
        minute = int(ts // MINUTE)
        if self._minutes and self._minutes[-1][0] == minute:
            self._minutes[-1][1][source] += count
        elif not self._minutes or self._minutes[-1][0] < minute:
            self._minutes.append((minute, Counter({source: count})))
        else:  # late event: put it in its minute if still in the window
            for m, counter in self._minutes:
                if m == minute:
                    counter[source] += count
                    break
            else:
                return
        self._total += count

    def _trim(self, now: float) -> None:
        oldest = int(now // MINUTE) - 59
        while self._minutes and self._minutes[0][0] < oldest:
            _, counter = self._minutes.popleft()
            self._total -= sum(counter.values())

    def count(self, now: float) -> int:
        self._trim(now)
        return self._total

    def window(self, now: float) -> Counter[str]:
        """Attempts per source in the last 60 minutes."""
        self._trim(now)
        total: Counter[str] = Counter()
        for _, counter in self._minutes:
            total.update(counter)
        return total

    def check(self, now: float) -> SpikeCheck:
        self._roll(now)
        count = self.count(now)
        # The window spans two clock hours: hold it to the higher of their baselines so the
        # morning rise is never a spike.
        worst: Expectation | None = None
        threshold = 0.0
        for ts in (now - HOUR + 1, now):
            exp = self.baseline.expect(ts)
            if exp is None:
                continue
            t = max(
                exp.expected + self.sensitivity * exp.scale,
                self.min_ratio * exp.expected,
                float(self.min_count),
            )
            if t >= threshold:
                worst, threshold = exp, t
        if worst is None:
            threshold = math.inf
        return SpikeCheck(count, threshold, worst)
