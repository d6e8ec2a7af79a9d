"""Event and decision factories shared by the notify tests."""

from __future__ import annotations

from mailward.decisions.model import Action, Decision
from mailward.events import AuthFailure, AuthSuccess, IPAddress, Service, normalise_ip


def fail(ts: float, ip: str, user: str | None = "alice", attempts: int = 1) -> AuthFailure:
    return AuthFailure(
        ts=ts, service=Service.IMAP, ip=normalise_ip(ip), username=user, attempts=attempts
    )


def ok(ts: float, ip: str, user: str = "alice") -> AuthSuccess:
    return AuthSuccess(ts=ts, service=Service.SUBMISSION, ip=normalise_ip(ip), username=user)


def ban(ts: float, target: str, rule: str = "short_ban") -> Decision:
    return Decision(ts=ts, target=target, action=Action.BAN, rule=rule, until=ts + 3600)


class MemoryGeo:
    """GeoLookup twin: fixed answers per address."""

    def __init__(self, table: dict[str, tuple[str, int]]) -> None:
        self.table = table

    def country(self, ip: IPAddress) -> str | None:
        hit = self.table.get(str(ip))
        return hit[0] if hit else None

    def asn(self, ip: IPAddress) -> tuple[int, str] | None:
        hit = self.table.get(str(ip))
        return (hit[1], f"AS-{hit[1]}") if hit else None
