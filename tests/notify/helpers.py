"""Event and decision factories shared by the notify tests."""

from __future__ import annotations

from mailward.decisions.model import Action, Decision
from mailward.enrich import geoip
from mailward.events import AuthFailure, AuthSuccess, Service, normalise_ip


def fail(ts: float, ip: str, user: str | None = "alice", attempts: int = 1) -> AuthFailure:
    return AuthFailure(
        ts=ts, service=Service.IMAP, ip=normalise_ip(ip), username=user, attempts=attempts
    )


def ok(ts: float, ip: str, user: str = "alice") -> AuthSuccess:
    return AuthSuccess(ts=ts, service=Service.SUBMISSION, ip=normalise_ip(ip), username=user)


def ban(ts: float, target: str, rule: str = "short_ban") -> Decision:
    return Decision(ts=ts, target=target, action=Action.BAN, rule=rule, until=ts + 3600)


def MemoryGeo(table: dict[str, tuple[str, int]]) -> geoip.MemoryGeo:  # noqa: N802
    """The enrich stage's GeoLookup twin, from {address: (country, asn)}."""
    return geoip.MemoryGeo(
        countries={ip: c for ip, (c, _) in table.items()},
        asns={ip: (n, f"AS-{n}") for ip, (_, n) in table.items()},
    )
