"""From findings to decisions: escalation, extend-only merging, the breaker, protections.

Detectors say what fired; this decides what it means: the longest ban among an address's
findings, a prefix ban instead of the addresses in it, ``ban × multiplier^offences`` from the
offender history, nothing past the circuit breaker, and protections extended on every rejected
attempt but announced only now and then.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from mailward.config.model import DetectorSettings
from mailward.decisions.ledger import Ledger, Slot, slot_of
from mailward.decisions.model import USER_PREFIX, Action, Decision
from mailward.detectors.base import Evidence, Finding, Source
from mailward.detectors.distributed import ATTACK
from mailward.detectors.failures import FAIL
from mailward.detectors.history import OffenderHistory
from mailward.detectors.safety import CircuitBreaker, Exempt
from mailward.detectors.state import StateStore


class Decider:
    """Turns one event's findings into decisions, over the engine's ledger and history."""

    def __init__(
        self,
        settings: DetectorSettings,
        *,
        state: StateStore,
        ledger: Ledger,
        history: OffenderHistory,
        exempt: Exempt,
        breaker: CircuitBreaker,
        drop_after: float,
    ) -> None:
        self.settings = settings
        self.state = state
        self.ledger = ledger
        self.history = history
        self.exempt = exempt
        self.breaker = breaker
        # a ban this long outlasts every failure window: the failure times can go
        self.drop_after = drop_after
        protect = self._protect_for = settings.distributed.protect
        # a protection is re-announced when extended by this much (always before it runs out)
        self.gap = min(max(60.0, protect / 6), protect / 2)
        self._shared: dict[tuple[str, tuple[object, ...]], tuple[str, Evidence]] = {}

    def decide(self, findings: list[Finding], src: Source, now: float) -> list[Decision]:
        if not findings:
            return []
        out: list[Decision] = []
        address = src.address
        ip_best: Finding | None = None
        nets: dict[str, Finding] = {}
        for finding in findings:
            if finding.action is Action.PROTECT_USER:
                out += self._protect(finding, now)
            elif finding.target == address:
                if ip_best is None or finding.duration > ip_best.duration:
                    ip_best = finding
            else:
                old = nets.get(finding.target)
                if old is None or finding.duration > old.duration:
                    nets[finding.target] = finding
        covered = False
        for finding in nets.values():
            slot = src.prefix_slot if finding.target == src.prefix_target else None
            decision = self.ban(finding, now, slot)
            if decision is not None:
                out.append(decision)
                covered = True
        if ip_best is not None and not covered:
            cover = src.cover
            # A ban on the address itself may still grow; one on its prefix already holds it.
            if cover is None or cover.target == address:
                decision = self.ban(ip_best, now, src.slot)
                if decision is not None:
                    out.append(decision)
                    if decision.until is not None and decision.until - now >= self.drop_after:
                        # Its failure times leave every window before the ban ends: forget
                        # them now (a million banned bots must not cost twice).
                        self.state.reset(FAIL, src.key)
        return out

    def _intern(self, finding: Finding) -> tuple[str, Evidence]:
        """Share equal reasons and evidence between decisions: a botnet's first-failure bans
        all say the same, and a million copies would cost more than the bans themselves.
        Evidence is read-only by contract (``Decision`` is frozen)."""
        key = (finding.reason, tuple(finding.evidence.items()))
        hit = self._shared.get(key)
        if hit is None:
            if len(self._shared) >= 65536:
                self._shared.clear()
            hit = self._shared[key] = (finding.reason, finding.evidence)
        return hit

    def ban(self, finding: Finding, now: float, slot: Slot | None) -> Decision | None:
        target = finding.target
        if slot is None:
            slot = slot_of(target)
        if slot[1] < (32 if slot[0] == 4 else 128) and self.exempt.overlaps_slot(
            slot[0], slot[1], slot[2]
        ):
            return None
        esc = self.settings.escalation
        existing = self.ledger.active_row(slot, now)
        duration = finding.duration
        if existing is not None:
            # Still failing while banned (the firewall lags the log): a stronger rule may
            # lengthen the ban, at the same offence count.
            ts, until, offence = existing
            record = False
            duration = self._grown(duration, offence)
            if until is None or duration <= until - ts:
                return None
            if not self.breaker.allow(now):
                return None
        else:
            # A new ban: ask the breaker first, so a suppressed ban costs no history lookup.
            if not self.breaker.allow(now):
                return None
            offence = (
                self.history.offences(target, now - esc.history) + 1 if finding.escalate else 1
            )
            record = True
            duration = self._grown(duration, offence)
        reason, evidence = self._intern(finding)
        if offence > 1:
            evidence = {**evidence, "previous_offences": offence - 1}
        decision = Decision(
            ts=now,
            target=target,
            action=Action.BAN,
            rule=finding.rule,
            until=now + duration,
            reason=reason,
            offence=offence,
            evidence=evidence,
        )
        stored = self.ledger.add(decision, slot)
        if record:
            self.history.record(target, now)
        return stored

    def _grown(self, duration: float, offence: int) -> float:
        """``duration`` escalated for the ``offence``-th ban, capped at ``max_ban``."""
        if offence > 1:
            esc = self.settings.escalation
            grown = duration * esc.multiplier ** min(offence - 1, 64)
            duration = max(duration, min(grown, esc.max_ban))
        return duration

    def holds(self, slot: Slot, duration: float, now: float) -> bool:
        """Whether the active ban on exactly ``slot`` already outlasts a ban of ``duration``
        (escalated as ``ban`` would): a finding like that there would change nothing, so a
        detector may skip building it (a banned prefix's events, over and over)."""
        existing = self.ledger.active_row(slot, now)
        if existing is None:
            return False
        ts, until, offence = existing
        return until is None or self._grown(duration, offence) <= until - ts

    def _protect(self, finding: Finding, now: float) -> list[Decision]:
        decision = self.touch(sys.intern(finding.target[len(USER_PREFIX) :]), now, finding)
        return [] if decision is None else [decision]

    def touch(self, user: str, now: float, finding: Finding | None = None) -> Decision | None:
        """Extend the protection of ``user``. The ledger, and the caller through the returned
        decision, hear of it only when it moved by ``_gap``: a long attack is not a decision
        per attempt, and the ledger's expiry never passes while attempts go on."""
        until = now + self._protect_for
        self.state.mark(ATTACK, user, until)
        current = self.ledger.user(user, now)
        if current is not None and (current.until is None or until - current.until < self.gap):
            return None
        evidence: Mapping[str, int | float | str]
        if finding is not None:
            rule, reason, evidence = finding.rule, finding.reason, finding.evidence
        elif current is not None:
            rule, reason, evidence = current.rule, current.reason, current.evidence
        else:
            rule, reason, evidence = "user_under_attack", "attack goes on", {}
        decision = Decision(
            ts=now,
            target=USER_PREFIX + user,
            action=Action.PROTECT_USER,
            rule=rule,
            until=until,
            reason=reason,
            evidence=evidence,
        )
        return self.ledger.add(decision)
