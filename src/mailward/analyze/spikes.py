"""Spike detection: pure functions over a series of counts per time bucket (hours or days).

The baseline is robust: the median of the neighbouring buckets, and the median absolute deviation
(MAD) scaled to a standard deviation, floored by the Poisson noise of the median so a quiet server's
zero MAD does not make three attempts a spike. A bucket is a spike when it is ``sensitivity`` robust
deviations above the baseline and at least ``min_excess`` above it; adjacent spike buckets merge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation


@dataclass(frozen=True, slots=True)
class Baseline:
    median: float
    sigma: float  # robust standard deviation, never below the Poisson floor


@dataclass(frozen=True, slots=True)
class SpikeWindow:
    """Buckets ``start`` to ``end`` (exclusive) of the series, far above their baseline."""

    start: int
    end: int
    peak_index: int
    peak: float
    baseline: float  # the baseline median at the peak
    sigma: float
    score: float  # (peak - baseline) / sigma
    total: float  # sum of the series over the window
    excess: float  # sum of (value - baseline) over the window


def robust_baseline(history: Sequence[float]) -> Baseline:
    """Median and robust sigma of ``history`` (empty history: zero baseline, unit sigma)."""
    if not history:
        return Baseline(0.0, 1.0)
    mid = median(history)
    mad = median(abs(v - mid) for v in history)
    return Baseline(mid, max(MAD_TO_SIGMA * mad, math.sqrt(max(mid, 1.0))))


def spike_score(value: float, baseline: Baseline) -> float:
    return (value - baseline.median) / baseline.sigma


def is_spike(
    value: float,
    history: Sequence[float],
    *,
    sensitivity: float = 6.0,
    min_excess: float = 20.0,
) -> tuple[bool, Baseline]:
    """For live alerting: is ``value`` (the current bucket) a spike against ``history``?"""
    base = robust_baseline(history)
    hit = value - base.median >= min_excess and spike_score(value, base) >= sensitivity
    return hit, base


def find_spikes(
    series: Sequence[float],
    *,
    sensitivity: float = 6.0,
    min_excess: float = 20.0,
    window: int = 168,
    trailing: bool = False,
    min_history: int = 12,
    merge_gap: int = 2,
) -> list[SpikeWindow]:
    """Spike windows in ``series``.

    The baseline of bucket ``i`` is the ``window`` buckets around it (``trailing=False``, for
    after-the-fact analysis) or before it (``trailing=True``, what a live alert can know). Buckets
    with fewer than ``min_history`` buckets of history are not judged. Spike buckets at most
    ``merge_gap`` buckets apart form one window (a campaign that dips for an hour is still one).
    """
    n = len(series)
    flagged: list[tuple[int, Baseline]] = []
    half = window // 2
    for i, value in enumerate(series):
        if trailing:
            history = list(series[max(0, i - window) : i])
        else:
            lo = max(0, i - half)
            hi = min(n, lo + window + 1)
            lo = max(0, hi - window - 1)
            history = [*series[lo:i], *series[i + 1 : hi]]
        if len(history) < min_history:
            continue
        hit, base = is_spike(value, history, sensitivity=sensitivity, min_excess=min_excess)
        if hit:
            flagged.append((i, base))
    windows: list[SpikeWindow] = []
    run: list[tuple[int, Baseline]] = []
    for item in flagged:
        if run and item[0] > run[-1][0] + 1 + merge_gap:
            windows.append(_window(series, run))
            run = []
        run.append(item)
    if run:
        windows.append(_window(series, run))
    return windows


def _window(series: Sequence[float], run: list[tuple[int, Baseline]]) -> SpikeWindow:
    peak_i, peak_base = max(run, key=lambda item: series[item[0]])
    peak = series[peak_i]
    return SpikeWindow(
        start=run[0][0],
        end=run[-1][0] + 1,
        peak_index=peak_i,
        peak=peak,
        baseline=peak_base.median,
        sigma=peak_base.sigma,
        score=spike_score(peak, peak_base),
        total=sum(series[run[0][0] : run[-1][0] + 1]),
        excess=sum(series[i] - b.median for i, b in run),
    )
