"""Events of every kind, with every field set to something other than its default."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from ipaddress import IPv4Address, IPv6Address

from mailward.events import (
    ALL_EVENTS,
    AuthError,
    AuthFailure,
    AuthSuccess,
    Connection,
    Disconnect,
    Event,
    FailReason,
    LoginAborted,
    LostConnection,
    Origin,
    ProtocolViolation,
    RateLimitWarning,
    Service,
    SmtpReject,
    UnknownRecipient,
    Violation,
)

T0 = 1_763_720_102.0
V4 = IPv4Address("203.0.113.45")
V6 = IPv6Address("2001:db8:1::7")


def every_kind() -> list[Event]:
    o = Origin("/var/log/mail.log.1", 42)
    out: list[Event] = [
        AuthFailure(
            ts=T0,
            service=Service.SUBMISSION,
            ip=V4,
            username="info@example.org",
            mechanism="LOGIN",
            reason=FailReason.BAD_PASSWORD,
            session="A1B2",
            attempts=3,
            summary=True,
            origin=o,
        ),
        AuthSuccess(
            ts=T0 + 0.123456,
            service=Service.IMAP,
            ip=V6,
            username="bob",
            mechanism="PLAIN",
            session="<Bx7n5YMF>",
            origin=Origin("journal", None, "s=abc;i=12;b=def"),
        ),
        UnknownRecipient(
            ts=T0 + 1,
            service=Service.SMTP,
            ip=V4,
            recipient="nobody@example.org",
            sender="x@spam.example",
            helo="evil[6.6.6.6]",
            origin=o,
        ),
        Connection(ts=T0 + 2, service=Service.SMTPS, ip=V4, session="s1"),
        Disconnect(
            ts=T0 + 3,
            service=Service.SMTP,
            ip=V4,
            session="s1",
            auth_ok=0,
            auth_total=2,
            commands_ok=2,
            commands_total=4,
            origin=o,
        ),
        LostConnection(ts=T0 + 4, service=Service.SUBMISSION, ip=V6, stage="AUTH", origin=o),
        LoginAborted(
            ts=T0 + 5,
            service=Service.POP3,
            ip=None,
            username=None,
            detail="no auth attempts",
            session="",
        ),
        ProtocolViolation(
            ts=T0 + 6,
            service=Service.POSTSCREEN,
            ip=V4,
            violation=Violation.PREGREET,
            detail="11 after CONNECT: EHLO x\\r\\n",
            origin=o,
        ),
        RateLimitWarning(
            ts=T0 + 7, service=Service.SMTP, ip=V4, limit="Connection rate", count=61, origin=o
        ),
        AuthError(
            ts=T0 + 7,
            service=Service.SMTP,
            ip=V4,
            username="alice",
            detail="Connection lost to authentication server",
            session="mx1:postfix/smtpd[1]",
            origin=o,
        ),
        SmtpReject(
            ts=T0 + 7,
            service=Service.SMTP,
            ip=V6,
            command="RCPT",
            category="relay_denied",
            recipient="victim@example.org",
            helo="WIN-Q4RT8",
            origin=o,
        ),
        AuthFailure(ts=T0 + 8, service=Service.MANAGESIEVE, ip=V4, username=None),
        AuthFailure(ts=T0 + 8, service=Service.UNKNOWN, ip=V4, username="", mechanism=""),
    ]
    # Kinds added to the catalogue later get a generated sample, so they are round-tripped too.
    covered = {type(e) for e in out}
    for n, cls in enumerate(c for c in ALL_EVENTS if c not in covered):
        out.append(_generated(cls, T0 + 9 + n))
    assert {type(e) for e in out} == set(ALL_EVENTS)
    return out


def _generated(cls: type[Event], ts: float) -> Event:
    """An instance with every field set to a non-default value of its type."""
    hints = typing.get_type_hints(cls)
    kw: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.name in ("ts", "service", "ip", "origin"):
            continue
        typ = hints[f.name]
        if isinstance(typ, types.UnionType):
            typ = next(a for a in typing.get_args(typ) if a is not type(None))
        if isinstance(typ, type) and issubclass(typ, enum.Enum):
            kw[f.name] = list(typ)[-1]
        elif typ is bool:
            kw[f.name] = True
        elif typ is int:
            kw[f.name] = 7
        elif typ is float:
            kw[f.name] = 0.5
        else:
            kw[f.name] = f"{f.name}-value"
    return cls(ts=ts, service=Service.IMAP, ip=V6, origin=Origin("gen.log", 9), **kw)


def fail(ts: float, ip: str, user: str | None = "bob", attempts: int = 1) -> AuthFailure:
    return AuthFailure(
        ts=ts,
        service=Service.SUBMISSION,
        ip=IPv4Address(ip) if ":" not in ip else IPv6Address(ip),
        username=user,
        reason=FailReason.BAD_PASSWORD,
        attempts=attempts,
        origin=Origin("mail.log", int(ts) % 1000 + 1),
    )
