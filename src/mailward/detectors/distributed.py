"""Distributed attacks: many addresses against one username, a prefix, or an ASN.

A username failing from ``user_sources`` distinct sources within a window is *under attack*: it is
protected (PROTECT_USER), accepts logins only from its known-good sources (addresses or prefixes
with a recent successful login for it), any other address failing on it is banned at its first
failure, and every rejected attempt extends the protection. A prefix with ``prefix_sources``
distinct failing addresses is banned whole; a hostile ASN gets its addresses banned at first failure.
"""

from __future__ import annotations

from typing import Final

from mailward.config.model import DetectorSettings
from mailward.decisions.model import USER_PREFIX, Action
from mailward.detectors.base import Evidence, Finding, Source, fmt_duration, need
from mailward.detectors.state import StateStore

GOOD: Final = "good"  # username -> known-good addresses and prefixes (last success)
GOOD_IP: Final = "goodip"  # address -> mark: a recent successful login from it, any username
GOOD_NET: Final = "goodnet"  # prefix -> mark: a recent successful login from inside it
ATTACK: Final = "attack"  # username -> mark: under attack until
USER_SOURCES: Final = "usrc"  # username -> distinct failing sources
NET_SOURCES: Final = "nsrc"  # prefix -> distinct failing addresses
ASN_SOURCES: Final = "asrc"  # ASN -> distinct failing addresses
HOSTILE_ASN: Final = "hasn"  # ASN -> mark: hostile until

_GOOD_CAP: Final = 64  # known-good sources remembered per username
_CACHE: Final = 4096  # shared findings/evidence kept for usernames under attack


class Distributed:
    def __init__(self, settings: DetectorSettings) -> None:
        self.settings = settings
        cfg = self.cfg = settings.distributed
        # Settings are frozen: the values read per event are copied once, so compiled code
        # reads a native attribute instead of looking a pydantic field up by name.
        self._known_good = cfg.known_good
        self._enabled = cfg.enabled
        self._by_ip = cfg.user_count_by == "ip"
        self._user_window = cfg.user_window
        self._user_sources = cfg.user_sources
        self._prefix_sources = cfg.prefix_sources
        self._prefix_window = cfg.prefix_window
        self._good_factor = settings.safety.known_good_factor
        self._goes_on: dict[tuple[str, int], Finding] = {}
        self._first_evidence: dict[str, Evidence] = {}

    # -- known-good sources -----------------------------------------------------------------

    def is_known_good(self, state: StateStore, user: str, src: Source, now: float) -> bool:
        return self.known_good(state, user, src.key, src.prefix, now)

    def known_good(self, state: StateStore, user: str, key: int, prefix: int, now: float) -> bool:
        """``user`` logged in of late from the address ``key`` or from its prefix."""
        window = self._known_good
        return state.has_member(GOOD, user, key, now, window) or state.has_member(
            GOOD, user, prefix, now, window
        )

    def on_success(
        self, state: StateStore, src: Source, user: str | None, now: float, known_good_for: float
    ) -> None:
        state.mark(GOOD_IP, src.key, now + known_good_for)
        state.mark(GOOD_NET, src.prefix, now + known_good_for)
        if user is None:
            return
        if state.marked(ATTACK, user, now) is not None and not self.is_known_good(
            state, user, src, now
        ):
            # A success from a new source during an attack may be the attacker's: never let it
            # whitelist itself.
            return
        window = self._known_good
        state.add_member(GOOD, user, src.key, now, window=window, cap=_GOOD_CAP)
        state.add_member(GOOD, user, src.prefix, now, window=window, cap=_GOOD_CAP)

    # -- failures ---------------------------------------------------------------------------

    def on_failure(
        self, state: StateStore, src: Source, user: str | None, now: float, *, owner: bool = False
    ) -> list[Finding]:
        """``owner``: ``user`` has logged in from this source of late (``is_known_good``)."""
        if not self._enabled:
            return []
        findings: list[Finding] = []
        if user is not None and not owner:
            # The owner's own device with a stale password is left to the per-address rules.
            findings += self._user(state, src, user, now)
        findings += self._prefix(state, src, now)
        return findings

    def _user(self, state: StateStore, src: Source, user: str, now: float) -> list[Finding]:
        cfg = self.cfg
        target = USER_PREFIX + user
        under_attack = state.marked(ATTACK, user, now) is not None
        member = src.key if self._by_ip else src.prefix
        sources = state.add_member(
            USER_SOURCES, user, member, now, window=self._user_window, cap=self._user_sources
        )
        findings: list[Finding] = []
        if not under_attack and sources >= self._user_sources:
            findings.append(
                Finding(
                    "user_under_attack",
                    target,
                    Action.PROTECT_USER,
                    cfg.protect,
                    f"{sources} distinct failing {cfg.user_count_by}s in "
                    f"{fmt_duration(cfg.user_window)}",
                    {"sources": sources, "window": cfg.user_window, "count_by": cfg.user_count_by},
                    escalate=False,
                )
            )
            under_attack = True
        elif under_attack:
            # Every rejected attempt extends the protection. The finding is the same for every
            # attempt with the same count: made once (findings and evidence are read-only).
            goes_on = self._goes_on.get((target, sources))
            if goes_on is None:
                if len(self._goes_on) >= _CACHE:
                    self._goes_on.clear()
                goes_on = self._goes_on[target, sources] = Finding(
                    "user_under_attack",
                    target,
                    Action.PROTECT_USER,
                    cfg.protect,
                    "attack goes on",
                    {"sources": sources, "window": cfg.user_window},
                    escalate=False,
                )
            findings.append(goes_on)
        if under_attack and not src.banned:
            evidence = self._first_evidence.get(user)
            if evidence is None:
                if len(self._first_evidence) >= _CACHE:
                    self._first_evidence.clear()
                evidence = self._first_evidence[user] = {"user": user, "failures": 1}
            findings.append(
                Finding(
                    "user_under_attack",
                    src.address,
                    Action.BAN,
                    cfg.first_failure_ban,
                    "failed on a username under attack, from a source that is not known-good",
                    evidence,
                )
            )
        return findings

    def _prefix(self, state: StateStore, src: Source, now: float) -> list[Finding]:
        factor = src.factor
        if factor == 1.0 and state.marked(GOOD_NET, src.prefix, now) is not None:
            factor = self._good_factor
        required = need(self._prefix_sources, factor)
        distinct = state.add_member(
            NET_SOURCES, src.prefix, src.key, now, window=self._prefix_window, cap=required
        )
        if distinct < required or src.prefix_held:
            return []
        cfg = self.cfg
        return [
            Finding(
                "prefix",
                src.prefix_target,
                Action.BAN,
                cfg.prefix_ban,
                f"{distinct} distinct failing addresses in {fmt_duration(cfg.prefix_window)}",
                {"addresses": distinct, "window": cfg.prefix_window, "threshold": required},
            )
        ]

    def on_asn_failure(self, state: StateStore, src: Source, now: float) -> list[Finding]:
        cfg = self.cfg
        if not cfg.enabled or cfg.asn_sources <= 0 or src.asn is None or src.banned:
            return []
        hostile = state.marked(HOSTILE_ASN, src.asn, now) is not None
        distinct = state.add_member(
            ASN_SOURCES, src.asn, src.key, now, window=cfg.asn_window, cap=cfg.asn_sources
        )
        if not hostile and distinct >= cfg.asn_sources:
            state.mark(HOSTILE_ASN, src.asn, now + cfg.asn_hostile)
            hostile = True
        if not hostile:
            return []
        return [
            Finding(
                "asn",
                src.address,
                Action.BAN,
                self.cfg.first_failure_ban,
                f"failure from AS{src.asn}, hostile after {distinct} distinct failing addresses",
                {"asn": src.asn, "addresses": distinct, "window": cfg.asn_window},
            )
        ]
