"""Decisions: what a detector (or an operator) decided about a target, with why and until when.

A target is an address (``203.0.113.4``), a prefix (``198.51.100.0/24``, ``2001:db8:1::/64``) or a
protected username (``user:bob``, while a distributed attack on it goes on). Enforcers, the policy
servers, the store, notifications and ``replay --json`` all read this one type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any, Final

USER_PREFIX: Final = "user:"


class Action(StrEnum):
    BAN = "ban"  # refuse the address or prefix until ``until``
    UNBAN = "unban"  # lift a ban early (operator, or allow-list change)
    PROTECT_USER = "protect_user"  # username accepts only known-good sources until ``until``
    TARPIT = "tarpit"  # slow the client down (Dovecot policy status > 0)


@dataclass(frozen=True, slots=True)
class Decision:
    ts: float
    target: str
    action: Action
    rule: str
    until: float | None = None
    reason: str = ""
    offence: int = 1
    evidence: Mapping[str, int | float | str] = field(default_factory=dict)

    @property
    def is_user(self) -> bool:
        return self.target.startswith(USER_PREFIX)

    @property
    def network(self) -> IPv4Network | IPv6Network | None:
        """The target as a network (a bare address is a /32 or /128), or None for ``user:``."""
        if self.is_user:
            return None
        return ip_network(self.target, strict=False)

    def to_json(self) -> dict[str, Any]:
        def iso(ts: float | None) -> str | None:
            if ts is None:
                return None
            return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")

        return {
            "time": iso(self.ts),
            "target": self.target,
            "action": self.action.value,
            "rule": self.rule,
            "until": iso(self.until),
            "reason": self.reason,
            "offence": self.offence,
            "evidence": dict(self.evidence),
        }
