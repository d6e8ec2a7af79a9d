"""Sans-IO decisions for Postfix policy requests: attributes and ``now`` in, one action out.

Answers ``DUNNO`` unless something is known against the client: a ban (IP or prefix, from the
detectors or from this module's enumeration count) gets ``421``; too many open sessions get ``421``;
a flagged account's mail gets the configured action. Never ``OK``/``RELAY``. Log events the daemon
feeds in (``disconnect``, ``unknown_recipient``) keep the session and enumeration counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Final

from mailward.config.model import PostfixPolicySettings
from mailward.decisions.model import USER_PREFIX, Action, Decision
from mailward.detectors.engine import Engine
from mailward.events import Disconnect, Event, IPAddress, UnknownRecipient
from mailward.policy.backend import DecisionSink, PolicyBackend
from mailward.policy.signals import (
    ConnectionCounter,
    DistinctWindow,
    LogBudget,
    LogThrottle,
    NetSet,
    held_back,
    parse_key,
    prefix_of,
    read_ip,
)

log = logging.getLogger(__name__)

DUNNO: Final = "DUNNO"
#: every attribute ``PostfixPolicy.decide`` reads (the server extracts just these, see
#: ``policy.postfix.read_request``); ``request`` is the one the protocol check needs. Typed as
#: variable-length so mypyc keeps one tuple (a fixed-length one is a C struct boxed per use).
READS: tuple[str, ...] = (
    "request",
    "client_address",
    "protocol_state",
    "sasl_username",
    "instance",
    "recipient",
)
TOO_MANY_CONNECTIONS: Final = "421 4.7.0 Error: too many connections"
_KNOWN_MAX: Final = 65536
_FOREVER: Final = float("inf")
_QUIET: Final = 60.0  # seconds between two log lines about one refused client

_COMPROMISED_ACTIONS = {
    "defer": "DEFER 4.7.1 Sending from this account is paused, try later",
    "hold": "HOLD held for review by mailward",
    "reject": "REJECT 5.7.1 Sending from this account is suspended",
    "warn": "WARN mailward: account flagged",
}

CountryLookup = Callable[[IPAddress], str | None]


def encode_action(action: str) -> bytes:
    """One reply on the wire: ``action=...`` and the empty line that ends it."""
    # Newlines in an action would forge further reply lines; Postfix also wants valid UTF-8.
    clean = action.replace("\r", " ").replace("\n", " ")
    return b"action=" + clean.encode("utf-8", "replace") + b"\n\n"


@dataclass(slots=True)
class _AccountLimits:
    """The account limits ``_account`` reads per request, as native attributes (compiled, a
    read of a pydantic settings field is a generic attribute lookup)."""

    max_ips: int
    max_countries: int
    max_recipients: int
    max_messages: int
    flag_seconds: float


@dataclass
class PolicyStats:
    requests: int = 0
    refused: int = 0
    malformed: int = 0
    errors: int = 0


class PostfixPolicy:
    """The decision core behind the socket. ``decide`` is synchronous and touches memory only."""

    def __init__(
        self,
        settings: PostfixPolicySettings,
        backend: PolicyBackend,
        *,
        country: CountryLookup | None = None,
        on_decisions: DecisionSink | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        # the detector engine, the backend in every real deployment, is called natively (a
        # call through the interpreted ``PolicyBackend`` protocol is a generic one, per request)
        self._engine: Engine | None = backend if isinstance(backend, Engine) else None
        self.country = country
        self.on_decisions = on_decisions
        self.stats = PolicyStats()
        self.ban_action = f"421 {settings.ban_reply}"
        self.sessions = ConnectionCounter(settings.connection_ttl)
        self.unknown_by_ip = DistinctWindow(settings.enumeration_window)
        self.unknown_by_prefix = DistinctWindow(settings.enumeration_window)
        self.blocked = NetSet()  # clients and prefixes refused for enumeration
        self.acct_messages = DistinctWindow(settings.account_window)
        self.acct_recipients = DistinctWindow(settings.account_window)
        self.acct_ips = DistinctWindow(settings.account_source_window)
        self.acct_countries = DistinctWindow(settings.account_source_window)
        self.flagged: dict[str, float] = {}
        self._wire: dict[str, bytes] = {}
        # read per request: native attributes rather than pydantic fields (see _AccountLimits)
        self._max_connections = settings.max_connections_per_client
        self._limits = _AccountLimits(
            settings.account_max_ips,
            settings.account_max_countries,
            settings.account_max_recipients,
            settings.account_max_messages,
            settings.account_flag_seconds,
        )
        self._compromised = _COMPROMISED_ACTIONS[settings.compromised_action]
        self._quiet = LogThrottle()  # one line per client over the session limit per minute
        self._log = LogBudget()  # and ten refusal lines a second across all clients
        # client_address -> (ip_key, refusal or None, valid until, not logged again before) as
        # found while the ban state stood at ``_known_at`` (the backend's generation plus our
        # own): any change empties it, a refusal is kept only until its ban runs out. Every
        # request of an SMTP session names the same client, and a refused client comes back
        # again and again. When a banned client may next be logged lives here too, not in a
        # table of its own. Plain values only: the collector stops tracking such tuples after
        # its first pass, where an address object per client would be scanned by every full
        # collection (26 ms pauses at ~45,000 clients, docs/benchmarks.md).
        self._known: dict[str, tuple[int, str | None, float, float]] = {}
        self._known_at = -1

    # -- in-line -----------------------------------------------------------------------------

    def reply(self, attrs: dict[str, str], now: float) -> bytes:
        """``decide``'s action as the bytes of the reply. Trouble inside answers ``DUNNO``:
        "I could not decide" must not cost the client a retry and ``default_action``."""
        try:
            action = self.decide(attrs, now)
        except Exception:
            self.stats.errors += 1
            log.exception("postfix policy: decision failed; answering DUNNO")
            action = DUNNO
        wire = self._wire.get(action)
        if wire is None:
            # a handful of distinct actions (DUNNO, the ban and account replies) encoded once
            # each; bounded all the same, should a reason ever vary per request
            if len(self._wire) >= 64:
                self._wire.clear()
            wire = self._wire[action] = encode_action(action)
        return wire

    def decide(self, attrs: dict[str, str], now: float) -> str:
        """The action for one request (without the ``action=`` prefix)."""
        self.stats.requests += 1
        address = attrs.get("client_address", "")
        # both counters only grow, so their sum moves whenever either does
        engine = self._engine
        at = (
            self.backend.generation if engine is None else engine.generation
        ) + self.blocked.changes
        if at != self._known_at:
            self._known.clear()
            self._known_at = at
        known = self._known.get(address)
        if known is not None and known[2] > now:
            key, refusal = known[0], known[1]
        else:
            try:
                key = parse_key(address)
            except ValueError:
                # Postfix always sends the address; without one there is nothing to decide on.
                log.warning(
                    "postfix policy: request without a usable client_address %r", address[:64]
                )
                return DUNNO
            refusal, until = self._refusal(key, now)
            if len(self._known) >= _KNOWN_MAX:
                self._known.clear()  # cheaper than LRU bookkeeping on every hit
            known = self._known[address] = (key, refusal, until, 0.0)
        state = attrs.get("protocol_state", "").upper()
        if state == "CONNECT":
            # Count refused connections too: each one still produces a disconnect line.
            open_now = self.sessions.connect_key(key, now)
            if refusal is None and 0 < self._max_connections < open_now:
                held = -1
                if not self._quiet.allow(key, now):
                    self._log.hold()
                else:
                    held = self._log.take(now)
                if held >= 0:
                    log.info(
                        "postfix policy: %s has %d open sessions: refused%s",
                        address,
                        open_now,
                        held_back(held),
                    )
                self.stats.refused += 1
                return TOO_MANY_CONNECTIONS
        if refusal is not None:
            held = -1
            if now < known[3]:
                self._log.hold()
            else:
                held = self._log.take(now)
            if held >= 0:
                self._known[address] = (key, refusal, known[2], now + _QUIET)
                log.info(
                    "postfix policy: %s refused at %s: %s%s",
                    address,
                    state or "?",
                    refusal,
                    held_back(held),
                )
            self.stats.refused += 1
            return self.ban_action
        user = attrs.get("sasl_username", "")
        if user:
            return self._account(user, address, key, state, attrs, now)
        return DUNNO

    def _refusal(self, key: int, now: float) -> tuple[str | None, float]:
        """Why the address ``key`` is refused (None: it is not), and until when that answer
        holds unless the ban state changes. Only what the address alone is owed
        (``standing``): the per-user and tarpit checks are Dovecot's."""
        engine = self._engine
        verdict = self.backend.standing(key, now) if engine is None else engine.standing(key, now)
        if verdict is not None and not verdict.allow:
            ban = verdict.decision
            until = ban.until if ban is not None and ban.until is not None else _FOREVER
            return verdict.reason or "banned", until
        entry = self.blocked.entry_of(key, now)
        if entry is not None:
            return f"enumeration from {entry[0]}", entry[1]
        return None, _FOREVER

    def _account(
        self, user: str, address: str, key: int, state: str, attrs: dict[str, str], now: float
    ) -> str:
        limits = self._limits
        instance = attrs.get("instance", "")
        reasons: list[str] | None = None
        evidence: dict[str, int | float | str] = {}
        ips, new_ip = self.acct_ips.add(user, key, now)
        if new_ip and 0 < limits.max_ips < ips:
            reasons = [f"{ips} client IPs"]
            evidence["ips"] = ips
        if new_ip and self.country is not None:
            cc = self.country(read_ip(address))
            if cc:
                countries, new_cc = self.acct_countries.add(user, cc, now)
                if new_cc and 0 < limits.max_countries < countries:
                    reasons = [*(reasons or ()), f"{countries} countries"]
                    evidence["countries"] = countries
        if state == "RCPT":
            recipient = attrs.get("recipient", "").lower()
            rcpts, new = self.acct_recipients.add(user, (instance, recipient), now)
            if new and 0 < limits.max_recipients < rcpts:
                reasons = [*(reasons or ()), f"{rcpts} recipients"]
                evidence["recipients"] = rcpts
        elif instance and (state == "DATA" or state == "END-OF-MESSAGE"):
            msgs, new = self.acct_messages.add(user, instance, now)
            if new and 0 < limits.max_messages < msgs:
                reasons = [*(reasons or ()), f"{msgs} messages"]
                evidence["messages"] = msgs
        flagged_until = self.flagged.get(user, 0.0)
        if reasons is not None and flagged_until <= now:
            flagged_until = self.flagged[user] = now + limits.flag_seconds
            self._emit(
                Decision(
                    now,
                    USER_PREFIX + user,
                    Action.PROTECT_USER,
                    "policy_account_outbound",
                    until=flagged_until,
                    reason="possible compromised account: " + ", ".join(reasons),
                    evidence={"ip": str(read_ip(address)), **evidence},
                )
            )
        if flagged_until > now and (
            state == "RCPT" or state == "DATA" or state == "END-OF-MESSAGE"
        ):
            self.stats.refused += 1
            return self._compromised
        return DUNNO

    # -- fed from the log --------------------------------------------------------------------

    def observe(self, event: Event, now: float) -> None:
        """Take a log event: disconnects free session slots, unknown recipients count."""
        if event.ip is None:
            return
        if isinstance(event, Disconnect):
            self.sessions.disconnect(event.ip, now)
        elif isinstance(event, UnknownRecipient):
            self._unknown_recipient(event.ip, (event.recipient or "").lower(), now)

    def _unknown_recipient(self, ip: IPAddress, recipient: str, now: float) -> None:
        s = self.settings
        prefix = prefix_of(ip, s.prefix_v4, s.prefix_v6)
        by_ip, _ = self.unknown_by_ip.add(ip, recipient, now)
        by_prefix, _ = self.unknown_by_prefix.add(prefix, recipient, now)
        if 0 < s.unknown_recipients_per_client <= by_ip:
            host = ip_network(ip)
            if self.blocked.match(ip, now) != host:
                self._block(host, "policy_enumeration_ip", by_ip, now)
        if 0 < s.unknown_recipients_per_prefix <= by_prefix and prefix not in self.blocked:
            self._block(prefix, "policy_enumeration_prefix", by_prefix, now)

    def _block(self, net: IPv4Network | IPv6Network, rule: str, count: int, now: float) -> None:
        until = now + self.settings.enumeration_ban
        self.blocked.add(net, until)
        self._emit(
            Decision(
                now,
                str(net.network_address) if net.num_addresses == 1 else str(net),
                Action.BAN,
                rule,
                until=until,
                reason=f"{count} distinct unknown recipients",
                evidence={"unknown_recipients": count},
            )
        )

    def _emit(self, decision: Decision) -> None:
        log.warning(
            "postfix policy decision: %s %s (%s)", decision.action, decision.target, decision.reason
        )
        if self.on_decisions is not None:
            try:
                self.on_decisions([decision])
            except Exception:  # a failing sink must not break the in-line answer
                log.exception("postfix policy: decision sink failed")
