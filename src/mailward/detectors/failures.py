"""Per-address failure rules: rate limit, short-window steps, long window (slow guessing).

All of them read one timeline per address (the newest failure times, as many as the largest
threshold needs), so a tracked address costs one counter whatever the number of rules. Thresholds
scale up for addresses with a recent successful login (NAT offices with one stale phone), and a
failure on a username from one of that username's own known-good sources (a device with a stale
password) counts toward the short rules only, never toward the long window.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailward.config.model import DetectorSettings
from mailward.decisions.model import Action
from mailward.detectors.base import Finding, Source, fmt_duration, need
from mailward.detectors.state import StateStore

FAIL = "fail"  # failure times per address
OWNER_FAIL = "ofail"  # failures on a username from one of its own known-good sources
ATTEMPT = "att"  # attempt times per address, when successes count toward the rate limit


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

    def _count(self, state: StateStore, src: Source, now: float, window: float, long: bool) -> int:
        seen = state.count(FAIL, src.key, now, window)
        if not long:
            seen += state.count(OWNER_FAIL, src.key, now, window)
        return seen

    def on_failure(
        self, state: StateStore, src: Source, now: float, n: int, *, owner: bool = False
    ) -> list[Finding]:
        """``owner``: the username has logged in successfully from this source of late."""
        if owner:
            state.hit(OWNER_FAIL, src.key, now, window=self.owner_window, cap=self.cap, n=n)
        else:
            state.hit(FAIL, src.key, now, window=self.window, cap=self.cap, n=n)
        findings: list[Finding] = []
        rate = self.settings.rate_limit
        if rate.enabled:
            if rate.count_successes:
                state.hit(ATTEMPT, src.key, now, window=rate.window, cap=self.rate_cap, n=n)
                seen = state.count(ATTEMPT, src.key, now, rate.window)
            else:
                seen = self._count(state, src, now, rate.window, long=False)
            allowed = need(rate.attempts, src.factor)
            if seen > allowed:
                findings.append(
                    Finding(
                        "rate_limit",
                        str(src.ip),
                        Action.BAN,
                        rate.ban,
                        f"{seen} attempts in {fmt_duration(rate.window)} (limit {allowed})",
                        {"attempts": seen, "window": rate.window, "limit": allowed},
                    )
                )
        best: Finding | None = None
        for i, step in enumerate(self.steps):
            threshold = step.failures
            if i == 0 and step.rule == "short_ban" and src.country is not None:
                threshold = self.settings.geo.country_failures.get(src.country, threshold)
            required = need(threshold, src.factor)
            seen = self._count(state, src, now, step.window, long=step.rule == "long_window")
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
                    str(src.ip),
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
                str(src.ip),
                Action.BAN,
                rate.ban,
                f"{seen} attempts in {fmt_duration(rate.window)} (limit {allowed})",
                {"attempts": seen, "window": rate.window, "limit": allowed},
            )
        ]

    def recent(self, state: StateStore, key: int, now: float) -> int:
        """Failures of the address within the short-ban window (tarpit input)."""
        window = self.settings.short_ban.window
        return state.count(FAIL, key, now, window) + state.count(OWNER_FAIL, key, now, window)
