"""Sans-IO decisions for Postfix policy requests: attributes and ``now`` in, one action out.

Answers ``DUNNO`` unless something is known against the client: a ban (IP or prefix, from the
detectors or from this module's enumeration count) gets ``421``; too many open sessions get ``421``;
a flagged account's mail gets the configured action. Never ``OK``/``RELAY``. Log events the daemon
feeds in (``disconnect``, ``unknown_recipient``) keep the session and enumeration counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network

from mailward.config.model import PostfixPolicySettings
from mailward.decisions.model import USER_PREFIX, Action, Decision
from mailward.events import Disconnect, Event, IPAddress, UnknownRecipient, ip_key
from mailward.policy.backend import DecisionSink, PolicyBackend
from mailward.policy.signals import (
    ConnectionCounter,
    DistinctWindow,
    NetSet,
    parse_ip,
    prefix_of,
)

log = logging.getLogger(__name__)

DUNNO = "DUNNO"
#: every attribute ``PostfixPolicy.decide`` reads (the server extracts just these, see
#: ``policy.postfix.read_request``); ``request`` is the one the protocol check needs
READS = ("request", "client_address", "protocol_state", "sasl_username", "instance", "recipient")
TOO_MANY_CONNECTIONS = "421 4.7.0 Error: too many connections"

_COMPROMISED_ACTIONS = {
    "defer": "DEFER 4.7.1 Sending from this account is paused, try later",
    "hold": "HOLD held for review by mailward",
    "reject": "REJECT 5.7.1 Sending from this account is suspended",
    "warn": "WARN mailward: account flagged",
}

CountryLookup = Callable[[IPAddress], str | None]


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

    # -- in-line -----------------------------------------------------------------------------

    def decide(self, attrs: Mapping[str, str], now: float) -> str:
        """The action for one request (without the ``action=`` prefix)."""
        self.stats.requests += 1
        address = attrs.get("client_address", "")
        try:
            ip = parse_ip(address)
        except ValueError:
            # Postfix always sends the address; without one there is nothing to decide on.
            log.warning("postfix policy: request without a usable client_address %r", address[:64])
            return DUNNO
        state = attrs.get("protocol_state", "").upper()
        refusal = self._refusal(ip, now)
        if state == "CONNECT":
            # Count refused connections too: each one still produces a disconnect line.
            open_now = self.sessions.connect(ip, now)
            if refusal is None and 0 < self.settings.max_connections_per_client < open_now:
                log.info("postfix policy: %s has %d open sessions: refused", ip, open_now)
                self.stats.refused += 1
                return TOO_MANY_CONNECTIONS
        if refusal is not None:
            log.info("postfix policy: %s refused at %s: %s", ip, state or "?", refusal)
            self.stats.refused += 1
            return self.ban_action
        user = attrs.get("sasl_username", "")
        if user:
            return self._account(user, ip, state, attrs, now)
        return DUNNO

    def _refusal(self, ip: IPAddress, now: float) -> str | None:
        verdict = self.backend.check(ip, None, now)
        if not verdict.allow:
            return verdict.reason or "banned"
        net = self.blocked.match(ip, now)
        if net is not None:
            return f"enumeration from {net}"
        return None

    def _account(
        self, user: str, ip: IPAddress, state: str, attrs: Mapping[str, str], now: float
    ) -> str:
        s = self.settings
        instance = attrs.get("instance", "")
        reasons: list[str] = []
        evidence: dict[str, int | float | str] = {}
        # the address as an int: an ``ip_address`` hashes in Python (hash(hex(int)))
        ips, new_ip = self.acct_ips.add(user, ip_key(ip), now)
        if new_ip and 0 < s.account_max_ips < ips:
            reasons.append(f"{ips} client IPs")
            evidence["ips"] = ips
        if new_ip and self.country is not None:
            cc = self.country(ip)
            if cc:
                countries, new_cc = self.acct_countries.add(user, cc, now)
                if new_cc and 0 < s.account_max_countries < countries:
                    reasons.append(f"{countries} countries")
                    evidence["countries"] = countries
        if state == "RCPT":
            recipient = attrs.get("recipient", "").lower()
            rcpts, new = self.acct_recipients.add(user, (instance, recipient), now)
            if new and 0 < s.account_max_recipients < rcpts:
                reasons.append(f"{rcpts} recipients")
                evidence["recipients"] = rcpts
        elif state in ("DATA", "END-OF-MESSAGE") and instance:
            msgs, new = self.acct_messages.add(user, instance, now)
            if new and 0 < s.account_max_messages < msgs:
                reasons.append(f"{msgs} messages")
                evidence["messages"] = msgs
        if reasons and self.flagged.get(user, 0.0) <= now:
            self.flagged[user] = now + s.account_flag_seconds
            self._emit(
                Decision(
                    now,
                    USER_PREFIX + user,
                    Action.PROTECT_USER,
                    "policy_account_outbound",
                    until=now + s.account_flag_seconds,
                    reason="possible compromised account: " + ", ".join(reasons),
                    evidence={"ip": str(ip), **evidence},
                )
            )
        if self.flagged.get(user, 0.0) > now and state in ("RCPT", "DATA", "END-OF-MESSAGE"):
            self.stats.refused += 1
            return _COMPROMISED_ACTIONS[s.compromised_action]
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
