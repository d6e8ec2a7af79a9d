"""The detection engine: events in, decisions out, and the in-line question answered from memory.

``observe`` feeds one correlated event through every detector and turns their findings into
decisions (escalation from offender history, extend-only merging in the ledger, the circuit
breaker). ``check`` answers Postfix/Dovecot policy questions from memory only. Time is always an
argument, so the daemon, the policy servers and ``mailward replay`` share this one object.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Any, Final

from mailward.config.model import DetectorSettings, Settings
from mailward.decisions.ledger import Ledger
from mailward.decisions.model import USER_PREFIX, Action, Decision
from mailward.detectors.base import Finding, Source, canonical_user
from mailward.detectors.decide import Decider
from mailward.detectors.distributed import ATTACK, GOOD_IP, NET_SOURCES, USER_SOURCES, Distributed
from mailward.detectors.enumeration import ENUM_IP, ENUM_NET, Enumeration
from mailward.detectors.failures import ATTEMPT, FAIL, OWNER_FAIL, AddressFailures
from mailward.detectors.geo import GeoLookup, GeoRule
from mailward.detectors.history import MemoryHistory, OffenderHistory
from mailward.detectors.keys import address_of_key, ip_key, prefix_key, prefix_of_key
from mailward.detectors.safety import (
    CircuitBreaker,
    Exempt,
    Resolver,
    Signal,
    resolve_allow,
    system_resolver,
)
from mailward.detectors.state import MemoryState, StateStore
from mailward.events import IPV6_KEY_FLAG as _V6
from mailward.events import (
    AuthFailure,
    AuthSuccess,
    Event,
    FailReason,
    UnknownRecipient,
    ip_int,
    normalise_ip,
)

log = logging.getLogger(__name__)

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

_SWEEP_EVERY: Final = 60.0
_HISTORY_SWEEP_EVERY: Final = 3600.0
# compiled, Final names are C statics: no module-dict lookup per event
_IPv4Address: Final = IPv4Address
_REFUSALS: Final = 16384  # refusal verdicts kept per ban slot (Engine.check)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The in-line answer: refuse (``allow`` False), or allow after ``tarpit`` seconds."""

    allow: bool
    tarpit: float = 0.0
    reason: str = ""
    decision: Decision | None = None


ALLOW: Final = Verdict(True)


class Engine:
    """Combines the detectors over one ``StateStore``, one ledger and one offender history."""

    def __init__(
        self,
        settings: DetectorSettings,
        *,
        state: StateStore | None = None,
        server_addresses: Iterable[Network] = (),
        geo: GeoLookup | None = None,
        history: OffenderHistory | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.settings = settings
        self.state: StateStore = state if state is not None else MemoryState()
        self.geo = geo
        self.history: OffenderHistory = (
            history if history is not None else MemoryHistory(settings.escalation.history)
        )
        self.ledger = Ledger()
        allow = resolve_allow(
            settings.safety.allow, resolver=resolver, key="detectors.safety.allow"
        )
        self.exempt = Exempt([*server_addresses, *allow])
        self.breaker = CircuitBreaker(settings.safety.max_bans_per_minute)
        self.failures = AddressFailures(settings, settings.safety.known_good_factor)
        self.distributed = Distributed(settings)
        self.enumeration = Enumeration(settings)
        self.georule = GeoRule(settings.geo)
        self._need_geo = geo is not None and (
            self.georule.active
            or bool(settings.geo.country_failures)
            or (settings.distributed.enabled and settings.distributed.asn_sources > 0)
        )
        self.decider = Decider(
            settings,
            state=self.state,
            ledger=self.ledger,
            history=self.history,
            exempt=self.exempt,
            breaker=self.breaker,
            drop_after=self.failures.window,
        )
        # frozen settings read per event, copied once (native attributes when compiled)
        self._prefix_v4 = settings.prefix_v4
        self._prefix_v6 = settings.prefix_v6
        self._good_factor = settings.safety.known_good_factor
        tarpit = settings.tarpit
        self._tarpit_per_failure = tarpit.per_failure if tarpit.enabled else 0.0
        self._tarpit_max = tarpit.max_delay
        self._good_for = settings.safety.known_good_for
        self._prefix_ban = settings.distributed.prefix_ban
        # off by default: a success then needs no ban lookup (mail clients poll all day)
        self._count_successes = settings.rate_limit.enabled and settings.rate_limit.count_successes
        self._next_sweep = 0.0
        self._next_history_sweep = 0.0
        # native counters, not a dict: one more per event is a C increment, not two lookups
        self.events_seen = 0
        self.decisions_made = 0
        self.exempt_seen = 0
        self._refusals: dict[int, Verdict] = {}  # by id() of the ban's Decision, which it holds

    @property
    def counts(self) -> dict[str, int]:
        """Events seen, decisions made, events from exempt addresses."""
        return {
            "events": self.events_seen,
            "decisions": self.decisions_made,
            "exempt": self.exempt_seen,
        }

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Engine:
        """An engine for the whole configuration (server addresses come from ``general``)."""
        return cls(settings.detectors, server_addresses=settings.general.server_addresses, **kwargs)

    # -- events -----------------------------------------------------------------------------

    def observe(self, event: Event, now: float) -> list[Decision]:
        """Feed one correlated event; return the decisions it caused (new or extended)."""
        self.events_seen += 1
        if now >= self._next_sweep:
            self._sweep(now)
        kind = type(event)
        if kind is AuthFailure:
            assert isinstance(event, AuthFailure)
            out = self._failure(event, now)
        elif kind is AuthSuccess:
            assert isinstance(event, AuthSuccess)
            out = self._success(event, now)
        elif kind is UnknownRecipient:
            out = self._unknown_recipient(event, now)
        else:
            return []
        self.decisions_made += len(out)
        return out

    def _exempt(self, ip: IPAddress) -> tuple[bool, int]:
        """Whether ``ip`` is exempt, and the address as an int (computed once per event)."""
        value = ip_int(ip)
        exempt = self.exempt
        if not exempt.networks:
            return False, value
        return exempt.holds(4 if isinstance(ip, _IPv4Address) else 6, value), value

    def _source(self, ip: IPAddress, value: int) -> Source:
        # ip_key and prefix_key inlined: this runs once per event.
        if isinstance(ip, _IPv4Address):
            plen = self._prefix_v4
            key = value
            prefix = (value >> (32 - plen) << (32 - plen)) | (plen << 33)
        else:
            plen = self._prefix_v6
            key = value | _V6
            prefix = (value >> (128 - plen) << (128 - plen)) | _V6 | (plen << 129)
        return Source(ip=ip, key=key, prefix=prefix, prefixlen=plen)

    def _facts(self, src: Source, now: float) -> Source:
        """What the rules weigh a source by: a ban already covering it, a recent login from
        it, its country and ASN. Lookups in large tables, so only for events that may count."""
        ip = src.ip
        key = src.key
        if key < _V6:
            found = self.ledger.covering_row(4, key, now)
        else:
            found = self.ledger.covering_row(6, key ^ _V6, now)
        if found is not None:
            src.banned, src.cover = True, self.ledger.view(found[0], found[1])
        if self.state.marked(GOOD_IP, key, now) is not None:
            src.factor = self._good_factor
        if self._need_geo and self.geo is not None:
            src.country = self.geo.country(ip)
            asn = self.geo.asn(ip)
            src.asn = None if asn is None else asn[0]
        return src

    def _failure(self, event: AuthFailure, now: float) -> list[Decision]:
        ip = event.ip
        if ip is None:
            return []
        exempt, value = self._exempt(ip)
        if exempt:
            self.exempt_seen += 1
            return []
        src = self._facts(self._source(ip, value), now)
        user = canonical_user(event.username)
        unknown = event.reason is FailReason.UNKNOWN_USER
        if unknown:
            user = None  # enumeration, not an attack on an account worth protecting
        owner = user is not None and self.distributed.is_known_good(self.state, user, src, now)
        n = max(1, event.attempts)
        cover = src.cover
        if cover is None or (
            cover.until is not None and cover.until - cover.ts < self.decider.drop_after
        ):
            findings = self.failures.on_failure(self.state, src, now, n, owner=owner)
        else:
            # Banned for longer than any failure window (a bot's first-failure ban): counting
            # what slips through while the firewall catches up would only cost memory.
            findings = []
        if self.georule.active:
            findings += self.georule.on_failure(src)
        if src.banned:
            src.prefix_held = self.decider.holds(src.prefix_slot, self._prefix_ban, now)
        findings += self.distributed.on_failure(self.state, src, user, now, owner=owner)
        if src.asn is not None:
            findings += self.distributed.on_asn_failure(self.state, src, now)
        if unknown:
            findings += self.enumeration.on_miss(self.state, src, now, "login")
        return self.decider.decide(findings, src, now)

    def _success(self, event: AuthSuccess, now: float) -> list[Decision]:
        ip = event.ip
        if ip is None:
            return []
        exempt, value = self._exempt(ip)
        if exempt:
            return []
        src = self._source(ip, value)
        findings: list[Finding] = []
        if self._count_successes:
            findings = self.failures.on_success(self.state, self._facts(src, now), now)
        self.distributed.on_success(
            self.state,
            src,
            canonical_user(event.username),
            now,
            self._good_for,
        )
        return self.decider.decide(findings, src, now)

    def _unknown_recipient(self, event: Event, now: float) -> list[Decision]:
        ip = event.ip
        if ip is None:
            return []
        exempt, value = self._exempt(ip)
        if exempt:
            return []
        src = self._facts(self._source(ip, value), now)
        return self.decider.decide(
            self.enumeration.on_miss(self.state, src, now, "recipient"), src, now
        )

    # -- in-line ----------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """The ledger's: only a new ban makes ``check`` refuse an address it allowed (the
        exemptions and the country/ASN rules are fixed for the engine's life)."""
        return self.ledger.generation

    def added_since(self, generation: int) -> list[tuple[int, int, int]] | None:
        """The ledger's: the bans added since ``generation`` when that is all that changed
        for ``standing`` (the exemptions and the country/ASN rules are fixed)."""
        return self.ledger.added_since(generation)

    def check(self, ip: IPAddress | str | None, username: str | None, now: float) -> Verdict:
        """May this login go on? Memory only. Refuses banned addresses and prefixes, denied
        origins, and sources that are not known-good for a username under attack; suggests a
        tarpit for an address with recent failures. ``standing`` then ``pressure``."""
        if ip is None:
            return ALLOW
        if isinstance(ip, str):
            ip = normalise_ip(ip)
        key = ip_key(ip)
        verdict = self.standing(key, now)
        if verdict is not None:
            return verdict
        return self.pressure(key, username, now)

    def standing(self, key: int, now: float) -> Verdict | None:
        """What the address (its ``ip_key``) alone is owed: a refusal for a banned address or
        prefix or a denied origin, ``ALLOW`` for an exempt address (nothing else applies to
        it), or None when ``pressure`` decides. Moves only with ``generation`` (and a refusal
        ends with its ban), so a server may remember it per client."""
        if key < _V6:
            version, value = 4, key
        else:
            version, value = 6, key ^ _V6
        if self.exempt.networks and self.exempt.holds(version, value):
            return ALLOW
        found = self.ledger.covering_row(version, value, now)
        if found is not None:
            banned = self.ledger.view(found[0], found[1])
            # One refusal per standing ban, not one per request (a verdict is read-only).
            refusals = self._refusals
            hit = refusals.get(id(banned))
            if hit is not None and hit.decision is banned:
                return hit
            if len(refusals) >= _REFUSALS:
                refusals.clear()
            verdict = refusals[id(banned)] = Verdict(
                False, reason=f"banned ({banned.rule})", decision=banned
            )
            return verdict
        if self.georule.active and self.geo is not None:
            ip = address_of_key(key)
            asn = self.geo.asn(ip)
            why = self.georule.refuses(self.geo.country(ip), None if asn is None else asn[0])
            if why is not None:
                return Verdict(False, reason=why)
        return None

    def pressure(self, key: int, username: str | None, now: float) -> Verdict:
        """What moves with every event, for an address (its ``ip_key``) that ``standing``
        left open: a username under attack refuses sources not known-good for it, and recent
        failures of the address ask for a tarpit."""
        state = self.state
        user = None if username is None else canonical_user(username)
        if user is not None and state.marked(ATTACK, user, now) is not None:
            cfg = self.settings
            prefix = prefix_of_key(key, cfg.prefix_v4, cfg.prefix_v6)
            if not self.distributed.known_good(state, user, key, prefix, now):
                self.decider.touch(user, now)  # every rejected attempt extends the protection
                return Verdict(
                    False,
                    reason=f"user:{user} is under attack",
                    decision=self.ledger.user(user, now),
                )
        if self._tarpit_per_failure > 0:
            recent = self.failures.recent(state, key, now)
            if recent:
                factor = 1.0
                if state.marked(GOOD_IP, key, now) is not None:
                    factor = self._good_factor
                delay = min(self._tarpit_max, self._tarpit_per_failure * recent / factor)
                return Verdict(True, tarpit=delay, reason=f"{recent} recent failures")
        return ALLOW

    # -- operator and store -----------------------------------------------------------------

    def apply(self, decision: Decision) -> None:
        """Apply a decision made elsewhere: a manual ban or unban, or one restored from the store.
        A ban that would cover an exempt address is refused (logged, not raised)."""
        if decision.action is Action.TARPIT:
            return
        if decision.action is Action.UNBAN:
            self._unban(decision.target)
            return
        if decision.is_user:
            user = canonical_user(decision.target[len(USER_PREFIX) :])
            if user is None:
                log.warning("not applying %s: empty username", decision.rule)
                return
            until = decision.until if decision.until is not None else float("inf")
            self.state.mark(ATTACK, user, until)
            self.ledger.add(replace(decision, target=USER_PREFIX + user))
            return
        net = decision.network
        if net is not None and self.exempt.overlaps(net):
            log.warning("not applying %s on %s: it covers an exempt address", decision.rule, net)
            return
        self.ledger.add(decision)

    def _unban(self, target: str) -> None:
        if target.startswith(USER_PREFIX):
            user = canonical_user(target[len(USER_PREFIX) :]) or ""
            self.ledger.remove(USER_PREFIX + user)
            self.state.unmark(ATTACK, user)
            self.state.reset(USER_SOURCES, user)
            return
        self.ledger.remove(target)
        net = ip_network(target, strict=False)
        cfg = self.settings
        if net.num_addresses == 1:
            key = ip_key(net.network_address)
            for space in (FAIL, OWNER_FAIL, ATTEMPT, ENUM_IP):
                self.state.reset(space, key)
        elif net.prefixlen == (cfg.prefix_v4 if net.version == 4 else cfg.prefix_v6):
            key = prefix_key(net.network_address, cfg.prefix_v4, cfg.prefix_v6)
            for space in (NET_SOURCES, ENUM_NET):
                self.state.reset(space, key)

    def active(self, now: float) -> list[Decision]:
        """Bans and protections in force at ``now``."""
        return self.ledger.active(now)

    def expire(self, now: float) -> list[Decision]:
        """Remove what ran out; returns one UNBAN decision (rule ``expired``) per removed target."""
        out: list[Decision] = []
        for old in self.ledger.expire(now):
            if old.is_user:
                user = old.target[len(USER_PREFIX) :]
                if self.state.marked(ATTACK, user, now) is not None:
                    self.decider.touch(user, now)  # attempts went on in-line: still protected
                    continue
            out.append(
                Decision(
                    ts=now,
                    target=old.target,
                    action=Action.UNBAN,
                    rule="expired",
                    reason=f"{old.rule} {old.action.value} expired",
                    offence=old.offence,
                )
            )
        self._sweep(now)
        return out

    def take_signals(self, now: float | None = None) -> list[Signal]:
        """Circuit-breaker signals (``CircuitOpen``, ``CircuitClosed``) since the last call;
        with ``now``, first close the circuit if the ban rate has fallen."""
        if now is not None:
            self.breaker.poll(now)
        return self.breaker.take_signals()

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + _SWEEP_EVERY
        self.state.sweep(now)
        self.breaker.poll(now)
        if now >= self._next_history_sweep and isinstance(self.history, MemoryHistory):
            self._next_history_sweep = now + _HISTORY_SWEEP_EVERY
            self.history.sweep(now)
