"""Per-address failure rules: rate limit, short-window steps, long window (slow guessing).

All of them read one timeline per address (the newest failure times, as many as the largest
threshold needs), so a tracked address costs one counter whatever the number of rules. Thresholds
scale up for addresses with a recent successful login (NAT offices with one stale phone), and a
failure on a username from one of that username's own known-good sources (a device with a stale
password) counts toward the short rules only, never toward the long window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mailward.config.model import DetectorSettings
from mailward.decisions.model import Action
from mailward.detectors.base import Finding, Source, fmt_duration, need
from mailward.detectors.state import StateStore

FAIL: Final = "fail"  # failure times per address
OWNER_FAIL: Final = "ofail"  # failures on a username from one of its own known-good sources
ATTEMPT: Final = "att"  # attempt times per address, when successes count toward the rate limit


@dataclass(frozen=True, slots=True)
class Step:
    failures: int
    window: float
    ban: float
    rule: str


class AddressFailures:
    """Rate limit, short-ban steps and the long window over one failure timeline per address."""

    def __init__(self, settings: DetectorSettings, known_good_factor: float) -> None:
        self.settings = settings
        rate, short, long = settings.rate_limit, settings.short_ban, settings.long_window
        self.steps: list[Step] = []
        if short.enabled:
            self.steps.append(Step(short.failures, short.window, short.ban, "short_ban"))
            self.steps += [Step(s.failures, s.window, s.ban, "short_ban") for s in short.steps]
        if long.enabled:
            self.steps.append(Step(long.failures, long.window, long.ban, "long_window"))
        thresholds = [s.failures for s in self.steps]
        thresholds += list(settings.geo.country_failures.values())
        windows = [s.window for s in self.steps]
        if rate.enabled and not rate.count_successes:
            thresholds.append(rate.attempts + 1)
            windows.append(rate.window)
        self.cap = need(max(thresholds, default=1), known_good_factor)
        self.window = max(windows, default=60.0)
        self.rate_cap = need(rate.attempts + 1, known_good_factor)
        short_windows = [s.window for s in self.steps if s.rule == "short_ban"]
        if rate.enabled:
            short_windows.append(rate.window)
        self.owner_window = max(short_windows, default=60.0)
        self._recent_window = short.window  # ``recent``: asked on every in-line check
        # one read answers every rule: the rate window first, then one per step
        self.windows = (rate.window, *(s.window for s in self.steps))
        # below this many failures in the longest window no rule can fire
        least = [s.failures for s in self.steps] + list(settings.geo.country_failures.values())
        if rate.enabled:
            least.append(rate.attempts + 1)
        self.least = min(least, default=1 << 30)

    def on_failure(
        self, state: StateStore, src: Source, now: float, n: int, *, owner: bool = False
    ) -> list[Finding]:
        """``owner``: the username has logged in successfully from this source of late."""
        rate = self.settings.rate_limit
        key = src.key
        if owner:
            mine = state.hit(OWNER_FAIL, key, now, window=self.owner_window, cap=self.cap, n=n)
            total = mine + state.count(FAIL, key, now, self.window)
        else:
            total = state.hit(FAIL, key, now, window=self.window, cap=self.cap, n=n)
            total += state.count(OWNER_FAIL, key, now, self.owner_window)
        if rate.count_successes and rate.enabled:
            state.hit(ATTEMPT, key, now, window=rate.window, cap=self.rate_cap, n=n)
        elif total < self.least:
            return []  # the common case: a bot's first tries trip nothing
        windows = self.windows
        fails = state.counts(FAIL, key, now, windows)
        owned = state.counts(OWNER_FAIL, key, now, windows)
        findings: list[Finding] = []
        if rate.enabled:
            if rate.count_successes:
                seen = state.count(ATTEMPT, key, now, rate.window)
            else:
                seen = fails[0] + owned[0]
            allowed = need(rate.attempts, src.factor)
            if seen > allowed:
                findings.append(
                    Finding(
                        "rate_limit",
                        src.address,
                        Action.BAN,
                        rate.ban,
                        f"{seen} attempts in {fmt_duration(rate.window)} (limit {allowed})",
                        {"attempts": seen, "window": rate.window, "limit": allowed},
                    )
                )
        best: Finding | None = None
        for i, step in enumerate(self.steps, 1):
            threshold = step.failures
            if i == 1 and step.rule == "short_ban" and src.country is not None:
                threshold = self.settings.geo.country_failures.get(src.country, threshold)
            required = need(threshold, src.factor)
            # An owner's stale device never counts toward the long window.
            seen = fails[i] if step.rule == "long_window" else fails[i] + owned[i]
            if seen >= required and (best is None or step.ban > best.duration):
                evidence: dict[str, int | float | str] = {
                    "failures": seen,
                    "window": step.window,
                    "threshold": required,
                }
                if src.country is not None:
                    evidence["country"] = src.country
                best = Finding(
                    step.rule,
                    src.address,
                    Action.BAN,
                    step.ban,
                    f"{seen} failed logins in {fmt_duration(step.window)}",
                    evidence,
                )
        if best is not None:
            findings.append(best)
        return findings

    def on_success(self, state: StateStore, src: Source, now: float) -> list[Finding]:
        rate = self.settings.rate_limit
        if not (rate.enabled and rate.count_successes):
            return []
        seen = state.hit(ATTEMPT, src.key, now, window=rate.window, cap=self.rate_cap)
        allowed = need(rate.attempts, src.factor)
        if seen <= allowed:
            return []
        return [
            Finding(
                "rate_limit",
                src.address,
                Action.BAN,
                rate.ban,
                f"{seen} attempts in {fmt_duration(rate.window)} (limit {allowed})",
                {"attempts": seen, "window": rate.window, "limit": allowed},
            )
        ]

    def recent(self, state: StateStore, key: int, now: float) -> int:
        """Failures of the address within the short-ban window (tarpit input)."""
        window = self._recent_window
        return state.count(FAIL, key, now, window) + state.count(OWNER_FAIL, key, now, window)
