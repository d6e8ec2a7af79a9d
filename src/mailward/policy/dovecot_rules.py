"""Sans-IO decisions for Dovecot auth-policy requests: a parsed JSON body and ``now`` in.

``allow`` answers from memory: ``-1`` for a banned IP/prefix or a new IP on a protected username,
a positive tarpit for rising suspicion, ``0`` otherwise. ``report`` turns the outcome into an
``AuthFailure``/``AuthSuccess`` event for the detectors and counts distinct failed password hashes
per IP and per login (weakforced's signal: brute force vs. one stale client retrying).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from ipaddress import ip_network
from typing import Any, Final

from msgspec.structs import astuple

from mailward.config.model import DovecotPolicySettings
from mailward.decisions.model import USER_PREFIX, Action, Decision
from mailward.detectors.engine import Engine
from mailward.detectors.keys import address_of_key, ip_key
from mailward.errors import ProtocolError
from mailward.events import (
    IPV6_KEY_FLAG,
    Event,
    FailReason,
    IPAddress,
    Origin,
    Service,
)
from mailward.factories import new_auth_failure, new_auth_success
from mailward.policy.backend import DecisionSink, EventSink, PolicyBackend
from mailward.policy.dovecot_body import DECODER, AuthBody, body_error, body_from
from mailward.policy.signals import (
    DistinctWindow,
    LogBudget,
    LogThrottle,
    NetSet,
    held_back,
    parse_key,
)

log = logging.getLogger(__name__)

_KNOWN_MAX: Final = 65536
_FORGET_ONE_BY_ONE: Final = 64  # more bans than this at once: forget every client
_FORGET_RANGE: Final = 4096  # a ban this large or less: its addresses are looked up one by one
_FOREVER: Final = float("inf")
_QUIET: Final = 60.0  # seconds between two log lines about one refused client

ORIGIN: Final = Origin("dovecot-policy")
# compiled, Final names are C statics: the decoder's bound method and msgspec's astuple are
# called per request without a module-dict lookup or a method lookup
_decode: Final = DECODER.decode
_astuple: Final = astuple
REFUSE_MSG = "Authentication failed"  # reaches the client: says nothing about why

_SERVICES: Final = {
    "imap": Service.IMAP,
    "pop3": Service.POP3,
    "sieve": Service.MANAGESIEVE,
    "managesieve": Service.MANAGESIEVE,
    "submission": Service.SUBMISSION,
    # Postfix with smtpd_sasl_type=dovecot: SMTP AUTH, which mailward files under submission.
    "smtp": Service.SUBMISSION,
}
_FAIL_TYPES: Final = {
    "credentials": FailReason.BAD_PASSWORD,
    "account": FailReason.UNKNOWN_USER,
    "policy": FailReason.POLICY_REJECT,
}


class AuthRequest:
    """The fields mailward reads from a Dovecot policy body (the rest is ignored).

    The client address is kept as its ``ip_key`` (-1 when Dovecot sent none): an int is what
    the in-line answer looks things up by, and ``ip`` builds the address object only for the
    reports that need one. A plain class, not a dataclass: compiled with mypyc, a dataclass
    keeps the interpreted ``__init__`` the dataclasses module generates, and one is built per
    request."""

    __slots__ = (
        "key",
        "login",
        "protocol",
        "pwhash",
        "session",
        "success",
        "policy_reject",
        "fail_type",
        "at",
    )

    def __init__(
        self,
        key: int,
        login: str | None,
        protocol: str,
        pwhash: str,
        session: str | None,
        success: bool,
        policy_reject: bool,
        fail_type: str,
    ) -> None:
        self.key = key
        self.login = login
        self.protocol = protocol
        self.pwhash = pwhash
        self.session = session
        self.success = success
        self.policy_reject = policy_reject
        self.fail_type = fail_type
        self.at = 0.0  # when it came: set by a server that queues it

    @property
    def ip(self) -> IPAddress | None:
        """The client address (None when Dovecot sent none)."""
        return None if self.key < 0 else address_of_key(self.key)

    def __repr__(self) -> str:
        return (
            f"AuthRequest(ip={self.ip!r}, login={self.login!r}, protocol={self.protocol!r}, "
            f"pwhash={self.pwhash!r}, session={self.session!r}, success={self.success!r}, "
            f"policy_reject={self.policy_reject!r}, fail_type={self.fail_type!r})"
        )

    @staticmethod
    def from_raw(raw: bytes) -> AuthRequest:
        """Decode and check a request body; ``ProtocolError`` names what is wrong."""
        return AuthRequest.from_body(_decoded(raw))

    @staticmethod
    def from_json(body: Any) -> AuthRequest:
        """The same for a body already decoded from JSON."""
        return AuthRequest.from_body(body_from(body))

    @staticmethod
    def from_body(body: AuthBody) -> AuthRequest:
        # one C call for all eight fields: compiled, each attribute read of a struct msgspec
        # defines is a generic lookup
        fields: tuple[Any, ...] = _astuple(body)
        remote: str | None = fields[0]
        login: str | None = fields[1]
        protocol: str | None = fields[2]
        pwhash: str | None = fields[3]
        session_id: str | None = fields[4]
        fail_type: str | None = fields[5]
        success: bool = fields[6]
        policy_reject: bool = fields[7]
        fail = fail_type or ""
        return AuthRequest(  # compiled, a direct call to the native constructor
            key=_key_of(remote),
            login=login or None,
            protocol=_protocol_name(protocol or ""),
            pwhash=pwhash or "",
            session=session_id or None,
            success=success,
            policy_reject=policy_reject or fail == "policy",
            fail_type=fail,
        )


def client_of(raw: bytes) -> tuple[int, str | None, str]:
    """What ``allow`` reads of a body — (``ip_key`` of the client or -1, login, protocol) —
    checked as ``from_raw`` checks all of it, without building an ``AuthRequest``."""
    fields: tuple[Any, ...] = _astuple(_decoded(raw))
    remote: str | None = fields[0]
    login: str | None = fields[1]
    protocol: str | None = fields[2]
    return _key_of(remote), login or None, _protocol_name(protocol or "")


def _decoded(raw: bytes) -> AuthBody:
    try:
        body: AuthBody = _decode(raw)
    except (ValueError, RecursionError) as exc:
        raise body_error(exc) from None
    return body


def _key_of(remote: str | None) -> int:
    if not remote:
        return -1
    try:
        return parse_key(remote)
    except ValueError:
        raise ProtocolError(f"remote {remote[:60]!r} is not an address") from None


def _protocol_name(sent: str) -> str:
    """``sent.lower()``. What Dovecot sends is compared first: a comparison with a constant
    costs less than a new string, and a dict lookup would hash each new one."""
    if sent == "imap":
        return "imap"
    if sent == "smtp":
        return "smtp"
    if sent == "pop3":
        return "pop3"
    if sent == "submission":
        return "submission"
    return sent.lower()


@dataclass
class DovecotStats:
    allow: int = 0
    refused: int = 0
    tarpitted: int = 0
    reports: int = 0
    failures: int = 0
    successes: int = 0
    repeats: int = 0
    policy_rejects: int = 0
    dropped: int = 0
    bad_requests: int = 0
    unauthorized: int = 0
    errors: int = 0


class DovecotPolicy:
    """Decision core. ``allow`` is synchronous and memory-only; ``report`` may be deferred."""

    def __init__(
        self,
        settings: DovecotPolicySettings,
        backend: PolicyBackend,
        *,
        feed: EventSink | None = None,
        on_decisions: DecisionSink | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        # Compiled, a call through ``PolicyBackend`` (a protocol, interpreted) is a generic
        # method call: argument parsing and a method lookup per request. The detector engine,
        # the backend in every real deployment, is called natively instead.
        self._engine: Engine | None = backend if isinstance(backend, Engine) else None
        self.on_decisions = on_decisions
        self.feed: EventSink = feed or self._observe
        self._own_feed = feed is None  # events go straight to the backend: a native call
        self.stats = DovecotStats()
        self.pwhash_by_ip = DistinctWindow(settings.pwhash_window)
        self.pwhash_by_login = DistinctWindow(settings.pwhash_window)
        self.blocked = NetSet()  # IPs banned for too many distinct wrong passwords
        self._protected: dict[str, float] = {}
        self._quiet = LogThrottle()  # one line per refused client per minute (``pressure``)
        self._log = LogBudget()  # and ten lines a second across all clients
        # read per request: native attributes rather than pydantic fields
        self._max_tarpit = settings.max_tarpit
        self._max_tarpit_smtp = settings.max_tarpit_smtp
        self._skip_repeated = settings.skip_repeated_pwhash
        self._pwhash_per_ip = settings.pwhash_per_ip
        self._pwhash_per_login = settings.pwhash_per_login
        # client ip_key -> (why refused or None, valid until, final, not logged again before)
        # as ``_standing`` found it while the backend's ban state stood at ``_known_at`` and our
        # own at ``_blocked_at``; ``_forget`` drops what a change may have touched. Dovecot asks
        # about a client before and after each login, and a refused client comes back again and
        # again. When a banned client was last logged lives in its entry: one table looked up
        # per request, not two (lookups in large tables are what a request costs most). Plain
        # values, as in the Postfix core, which the collector stops tracking.
        self._known: dict[int, tuple[str | None, float, bool, float]] = {}
        self._known_at = -1
        self._blocked_at = 0

    def allow(self, req: AuthRequest, now: float) -> int:
        """Dovecot's ``status``: < 0 refuse, 0 go on, > 0 tarpit that many seconds."""
        return self.allow_client(req.key, req.login, req.protocol, now)

    def allow_client(self, key: int, login: str | None, protocol: str, now: float) -> int:
        """``allow`` for what it reads of a request (``client_of``): the client's ``ip_key``
        (-1 for none), the login and the protocol."""
        self.stats.allow += 1
        if key < 0:
            return 0  # nothing to judge by; Dovecot's own checks still apply
        engine = self._engine
        generation = self.backend.generation if engine is None else engine.generation
        if generation != self._known_at or self.blocked.changes != self._blocked_at:
            self._forget(generation)
        known = self._known.get(key)
        if known is None or known[1] <= now:
            known = self._standing(key, now)
            if len(self._known) >= _KNOWN_MAX:
                self._known.clear()  # cheaper than LRU bookkeeping on every hit
            self._known[key] = known
        refusal = known[0]
        if refusal is not None:
            self.stats.refused += 1
            if now < known[3]:
                self._log.hold()
            else:
                held = self._log.take(now)
                if held >= 0:
                    self._known[key] = (refusal, known[1], True, now + _QUIET)
                    self._log_refusal(key, login, protocol, refusal, held)
            return -1
        if known[2]:
            return 0
        if engine is None:
            verdict = self.backend.pressure(key, login, now)
        else:
            verdict = engine.pressure(key, login, now)
        if not verdict.allow:
            return self._refuse(key, login, protocol, verdict.reason, now)
        if verdict.tarpit > 0:
            cap = self._max_tarpit_smtp if protocol == "smtp" else self._max_tarpit
            seconds = min(cap, math.ceil(verdict.tarpit))
            if seconds > 0:
                self.stats.tarpitted += 1
                return seconds
        return 0

    def _forget(self, generation: int) -> None:
        """Drop what the ban state's move since ``_known_at`` may have changed: only the
        clients inside the bans added, when that is all that happened (a botnet's prefix bans
        land exactly when the load is highest), else everything."""
        added = self.backend.added_since(self._known_at)
        known = self._known
        if (
            added is None
            or len(added) > _FORGET_ONE_BY_ONE
            or self.blocked.changes != self._blocked_at
        ):
            known.clear()
        else:
            for version, prefixlen, network in added:
                if version == 4:
                    low, span = network, 32 - prefixlen
                else:
                    low, span = network | IPV6_KEY_FLAG, 128 - prefixlen
                high = low + (1 << span)
                if high - low <= min(_FORGET_RANGE, len(known)):
                    for k in range(low, high):
                        known.pop(k, None)
                else:
                    for k in [k for k in known if low <= k < high]:
                        del known[k]
        self._known_at = generation
        self._blocked_at = self.blocked.changes

    def _standing(self, key: int, now: float) -> tuple[str | None, float, bool, float]:
        """(why the address is refused or None, until when that holds unless the ban state
        moves, whether the answer is final, and a log throttle not yet started) for a client
        seen anew."""
        entry = self.blocked.entry_of(key, now)
        if entry is not None:
            return "too many distinct wrong passwords", entry[1], True, 0.0
        engine = self._engine
        verdict = self.backend.standing(key, now) if engine is None else engine.standing(key, now)
        if verdict is None:
            return None, _FOREVER, False, 0.0
        if verdict.allow:
            return None, _FOREVER, True, 0.0  # exempt: nothing else applies
        ban = verdict.decision
        until = ban.until if ban is not None and ban.until is not None else _FOREVER
        return verdict.reason or "banned", until, True, 0.0

    def _refuse(self, key: int, login: str | None, protocol: str, reason: str, now: float) -> int:
        """A refusal ``pressure`` asked for: throttled in a table of its own (rare: the
        refusals of a ban go through the client's remembered entry)."""
        self.stats.refused += 1
        if not self._quiet.allow(key, now):
            self._log.hold()
        else:
            held = self._log.take(now)
            if held >= 0:
                self._log_refusal(key, login, protocol, reason, held)
        return -1

    def _log_refusal(
        self, key: int, login: str | None, protocol: str, reason: str, held: int
    ) -> None:
        log.info(
            "dovecot policy: refused %s login=%s protocol=%s: %s%s",
            address_of_key(key),
            login,
            protocol,
            reason,
            held_back(held),
        )

    def report(self, req: AuthRequest, now: float) -> None:
        """Turn an outcome into an event; a policy-refused attempt is not counted again."""
        self.stats.reports += 1
        ip = req.ip
        if ip is None:
            return
        if req.policy_reject:
            self.stats.policy_rejects += 1
            return
        service = _SERVICES.get(req.protocol, Service.UNKNOWN)
        if req.success:
            self.stats.successes += 1
            # the builders: compiled, a dataclass's own __init__ would run interpreted
            event: Event = new_auth_success(
                ts=now,
                service=service,
                ip=ip,
                origin=ORIGIN,
                username=req.login,
                session=req.session,
            )
        else:
            self.stats.failures += 1
            if req.pwhash and self._count_pwhash(req, ip, now) and self._skip_repeated:
                self.stats.repeats += 1
                return
            event = new_auth_failure(
                ts=now,
                service=service,
                ip=ip,
                origin=ORIGIN,
                username=req.login,
                reason=_FAIL_TYPES.get(req.fail_type, FailReason.UNSPECIFIED),
                session=req.session,
            )
        if self._own_feed:
            self._observe(event)
        else:
            self.feed(event)

    def _count_pwhash(self, req: AuthRequest, ip: IPAddress, now: float) -> bool:
        """Count distinct failed hashes; True when this (IP, login, hash) is a repeat."""
        s = self.settings
        login = req.login or ""
        per_ip, new = self.pwhash_by_ip.add(req.key, (login, req.pwhash), now)
        per_login, _ = self.pwhash_by_login.add(login, req.pwhash, now)
        if 0 < self._pwhash_per_ip <= per_ip and self.blocked.match(ip, now) is None:
            current = self.blocked.changes == self._blocked_at
            self.blocked.add(ip_network(ip), now + s.pwhash_ban)
            # the one remembered answer this changes; any other change of the set still drops
            # them all at the next ``allow``
            self._known.pop(req.key, None)
            if current:
                self._blocked_at = self.blocked.changes
            self._emit(
                Decision(
                    now,
                    str(ip),
                    Action.BAN,
                    "policy_pwhash_ip",
                    until=now + s.pwhash_ban,
                    reason=f"{per_ip} distinct wrong passwords",
                    evidence={"distinct_pwhash": per_ip},
                )
            )
        if (
            login
            and 0 < self._pwhash_per_login <= per_login
            and self._protected.get(login, 0) <= now
        ):
            self._protected[login] = now + s.pwhash_ban
            self._emit(
                Decision(
                    now,
                    USER_PREFIX + login,
                    Action.PROTECT_USER,
                    "policy_pwhash_login",
                    until=now + s.pwhash_ban,
                    reason=f"{per_login} distinct wrong passwords",
                    evidence={"distinct_pwhash": per_login},
                )
            )
        return not new

    def distinct_pwhash(
        self, now: float, *, ip: IPAddress | None = None, login: str | None = None
    ) -> int:
        """Distinct failed password hashes seen recently for an IP or a login."""
        if ip is not None:
            return self.pwhash_by_ip.count(ip_key(ip), now)
        return self.pwhash_by_login.count(login or "", now)

    def _observe(self, event: Event) -> None:
        engine = self._engine
        if engine is None:
            self._emit_all(self.backend.observe(event, event.ts))
        else:
            self._emit_all(engine.observe(event, event.ts))

    def _emit(self, decision: Decision) -> None:
        log.warning(
            "dovecot policy decision: %s %s (%s)", decision.action, decision.target, decision.reason
        )
        self._emit_all([decision])

    def _emit_all(self, decisions: list[Decision]) -> None:
        if decisions and self.on_decisions is not None:
            try:
                self.on_decisions(decisions)
            except Exception:
                log.exception("dovecot policy: decision sink failed")
