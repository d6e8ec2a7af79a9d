"""Fast constructors for the frozen events, for stages that build them by the million.

``new_auth_failure(ts=..., ...)`` returns exactly what ``AuthFailure(ts=..., ...)`` returns (same
keywords, same defaults, equal result). Compiled with mypyc (``mailward.speedups``), each builder
is a C function that allocates the event and writes its fields as struct members, about ten times
faster than the dataclass ``__init__``, which sets every field through ``object.__setattr__``
because the class is frozen. Frozen means frozen to Python code: only these builders, compiled, write
fields directly. In a pure-Python build those direct writes would meet the frozen ``__setattr__``;
there each builder is replaced at import by ``fast_factory(cls)``, which writes the slots through
their descriptors (about 3x faster than ``__init__``). A test checks both against the dataclasses.
"""

# mypy: disable-error-code="misc"
# (every builder assigns fields of a frozen dataclass: the one place allowed to)

import dataclasses
from collections.abc import Callable
from typing import Any, Final, TypeVar

from mailward.events import (
    AuthError,
    AuthFailure,
    AuthSuccess,
    Connection,
    Disconnect,
    Event,
    FailReason,
    IPAddress,
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

E = TypeVar("E", bound=Event | Origin)


def fast_factory(cls: type[E]) -> Callable[..., E]:
    """A constructor for a frozen slotted dataclass that skips the dataclass ``__init__``: it
    takes the same keyword arguments with the same defaults and writes each slot through its
    descriptor. The builders' stand-in in a pure-Python build; only for classes whose fields have
    plain defaults (no factories)."""
    params: list[str] = []
    body: list[str] = []
    ns: dict[str, Any] = {"_new": cls.__new__, "_cls": cls}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type,unused-ignore]
        if f.default is not dataclasses.MISSING:
            ns[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: default factories are not supported")
        else:
            params.append(f.name)
        ns[f"_s_{f.name}"] = getattr(cls, f.name).__set__
        body.append(f"    _s_{f.name}(o, {f.name})")
    # Required fields may follow defaulted ones (kw_only dataclasses): make all keyword-only.
    src = (
        f"def make(*, {', '.join(params)}):\n    o = _new(_cls)\n"
        + "\n".join(body)
        + "\n    return o\n"
    )
    exec(src, ns)  # noqa: S102 - generated from the dataclass's own field names
    make: Callable[..., E] = ns["make"]
    make.__qualname__ = make.__name__ = f"make_{cls.__name__}"
    return make


def new_origin(
    *,
    source: str,
    line: int | None = None,
    cursor: str | None = None,
) -> Origin:
    e = Origin.__new__(Origin)
    e.source = source
    e.line = line
    e.cursor = cursor
    return e


def new_auth_failure(
    *,
    ts: float,
    service: Service,
    ip: IPAddress | None,
    origin: Origin | None = None,
    username: str | None,
    mechanism: str | None = None,
    reason: FailReason = FailReason.UNSPECIFIED,
    session: str | None = None,
    attempts: int = 1,
    summary: bool = False,
) -> AuthFailure:
    e = AuthFailure.__new__(AuthFailure)
    e.ts = ts
    e.service = service
    e.ip = ip
    e.origin = origin
    e.username = username
    e.mechanism = mechanism
    e.reason = reason
    e.session = session
    e.attempts = attempts
    e.summary = summary
    return e


def new_auth_error(
    *,
    ts: float,
    service: Service,
    ip: IPAddress | None,
    origin: Origin | None = None,
    username: str | None = None,
    detail: str = "",
    session: str | None = None,
) -> AuthError:
    e = AuthError.__new__(AuthError)
    e.ts = ts
    e.service = service
    e.ip = ip
    e.origin = origin
    e.username = username
    e.detail = detail
    e.session = session
    return e


def new_auth_success(
    *,
    ts: float,
    service: Service,
    ip: IPAddress | None,
    origin: Origin | None = None,
    username: str | None,
    mechanism: str | None = None,
    session: str | None = None,
) -> AuthSuccess:
    e = AuthSuccess.__new__(AuthSuccess)
    e.ts = ts
    e.service = service
    e.ip = ip
    e.origin = origin
    e.username = username
    e.mechanism = mechanism
    e.session = session
    return e


def new_unknown_recipient(
    *,
    ts: float,
    service: Service,
    ip: IPAddress | None,
    origin: Origin | None = None,
    recipient: str | None,
    sender: str | None = None,
    helo: str | None = None,
) -> UnknownRecipient:
    e = UnknownRecipient.__new__(UnknownRecipient)
    e.ts = ts
    e.service = service
    e.ip = ip
    e.origin = origin
    e.recipient = recipient
    e.sender = sender
    e.helo = helo
    return e


def new_smtp_reject(
    *,
    ts: float,
    service: Service,
    ip: IPAddress | None,
    origin: Origin | None = None,
    command: str,
    category: str = "other",
    recipient: str | None = None,
    helo: str | None = None,
) -> SmtpReject:
    e = SmtpReject.__new__(SmtpReject)
    e.ts = ts
    e.service = service
    e.ip = ip
    e.origin = origin
    e.command = command
    e.category = category
    e.recipient = recipient
    e.helo = helo
    return e


def new_connection(
    *,
    ts: float,
    service: Service,
    ip: IPAddress | None,
    origin: Origin | None = None,
    session: str | None = None,
) -> Connection:
    e = Connection.__new__(Connection)
    e.ts = ts
    e.service = service
    e.ip = ip
    e.origin = origin
    e.session = session
    return e


def new_disconnect(
    *,
    ts: float,
    service: Service,
    ip: IPAddress | None,
    origin: Origin | None = None,
    session: str | None = None,
    auth_ok: int = 0,
    auth_total: int = 0,
    commands_ok: int = 0,
    commands_total: int = 0,
) -> Disconnect:
    e = Disconnect.__new__(Disconnect)
    e.ts = ts
    e.service = service
    e.ip = ip
    e.origin = origin
    e.session = session
    e.auth_ok = auth_ok
    e.auth_total = auth_total
    e.commands_ok = commands_ok
    e.commands_total = commands_total
    return e


def new_lost_connection(
    *,
    ts: float,
    service: Service,
    ip: IPAddress | None,
    origin: Origin | None = None,
    stage: str,
    session: str | None = None,
) -> LostConnection:
    e = LostConnection.__new__(LostConnection)
    e.ts = ts
    e.service = service
    e.ip = ip
    e.origin = origin
    e.stage = stage
    e.session = session
    return e


def new_login_aborted(
    *,
    ts: float,
    service: Service,
    ip: IPAddress | None,
    origin: Origin | None = None,
    username: str | None = None,
    detail: str = "",
    session: str | None = None,
) -> LoginAborted:
    e = LoginAborted.__new__(LoginAborted)
    e.ts = ts
    e.service = service
    e.ip = ip
    e.origin = origin
    e.username = username
    e.detail = detail
    e.session = session
    return e


def new_protocol_violation(
    *,
    ts: float,
    service: Service,
    ip: IPAddress | None,
    origin: Origin | None = None,
    violation: Violation,
    detail: str = "",
) -> ProtocolViolation:
    e = ProtocolViolation.__new__(ProtocolViolation)
    e.ts = ts
    e.service = service
    e.ip = ip
    e.origin = origin
    e.violation = violation
    e.detail = detail
    return e


def new_rate_limit_warning(
    *,
    ts: float,
    service: Service,
    ip: IPAddress | None,
    origin: Origin | None = None,
    limit: str,
    count: int = 0,
) -> RateLimitWarning:
    e = RateLimitWarning.__new__(RateLimitWarning)
    e.ts = ts
    e.service = service
    e.ip = ip
    e.origin = origin
    e.limit = limit
    e.count = count
    return e


BUILDERS: Final[dict[type[Event] | type[Origin], Callable[..., Any]]] = {
    Origin: new_origin,
    AuthFailure: new_auth_failure,
    AuthError: new_auth_error,
    AuthSuccess: new_auth_success,
    UnknownRecipient: new_unknown_recipient,
    SmtpReject: new_smtp_reject,
    Connection: new_connection,
    Disconnect: new_disconnect,
    LostConnection: new_lost_connection,
    LoginAborted: new_login_aborted,
    ProtocolViolation: new_protocol_violation,
    RateLimitWarning: new_rate_limit_warning,
}
"""Class -> its builder as defined above (the direct-write version, whichever build this is)."""


def _writes_fields() -> bool:
    """True when the builders above can write frozen fields: this module runs compiled."""
    try:
        new_origin(source="")
    except dataclasses.FrozenInstanceError:
        return False
    return True


NATIVE: Final[bool] = _writes_fields()

if not NATIVE:
    for _cls, _builder in BUILDERS.items():
        globals()[_builder.__name__] = fast_factory(_cls)
