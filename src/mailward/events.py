"""The event catalogue: every typed, frozen event that passes between pipeline stages.

Parsers emit these, the correlator de-duplicates them, detectors consume them, the store keeps them.
Nothing between stages is a ``dict``. ``ALL_EVENTS`` lists every class; a test checks that each one
is emitted somewhere and described in ``docs/events.md``. Timestamps are POSIX seconds (UTC by
definition) as floats, because one datetime object per line costs more than the parse itself.

The build compiles this module with mypyc (see ``mailward.speedups``), so compiled stages read event
fields as C struct members. Two mypyc rules shape the code: optional fields are annotated with a
quoted alias such as ``"OptStr"`` (mypyc passes a quoted name through to ``@dataclass`` as written,
but an inline union reaches it as ``type``, which would hide the real type from the store's codec),
and ``kind`` lives on a plain base class (mypyc hands a ``ClassVar`` in a dataclass body to
``@dataclass`` as if it were a field).
"""

import re
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address
from socket import AF_INET, inet_pton
from typing import Any, ClassVar, Final

from mypy_extensions import mypyc_attr

IPAddress = IPv4Address | IPv6Address

# Field types of optional fields (see the module docstring for why they are aliases).
OptStr = str | None
OptInt = int | None
OptIP = IPAddress | None


class Service(StrEnum):
    """The listening service a line or request is about (the master.cf/Dovecot service)."""

    SMTP = "smtp"  # port 25, postfix/smtpd
    SUBMISSION = "submission"  # 587, postfix/submission/smtpd, dovecot submission-login
    SMTPS = "smtps"  # 465, postfix/smtps/smtpd
    POSTSCREEN = "postscreen"
    IMAP = "imap"
    POP3 = "pop3"
    MANAGESIEVE = "managesieve"
    UNKNOWN = "unknown"


class FailReason(StrEnum):
    """Why a login failed: the enumeration-versus-guessing split matters downstream."""

    BAD_PASSWORD = "bad_password"
    UNKNOWN_USER = "unknown_user"
    POLICY_REJECT = "policy_reject"
    UNSPECIFIED = "unspecified"  # e.g. Postfix "(reason unavailable)", Dovecot "auth failed"


class Violation(StrEnum):
    """Protocol misbehaviour that betrays a bot rather than a person."""

    PREGREET = "pregreet"
    HANGUP = "hangup"
    NON_SMTP_COMMAND = "non_smtp_command"
    TOO_MANY_ERRORS = "too_many_errors"
    PIPELINING = "pipelining"
    BARE_NEWLINE = "bare_newline"
    COMMAND_LIMIT = "command_limit"  # postscreen COMMAND TIME/COUNT/LENGTH LIMIT


def normalise_ip(text: str) -> IPAddress:
    """Parse an address, mapping IPv4-mapped IPv6 (``::ffff:a.b.c.d``) to IPv4.

    Raises ValueError for anything that is not an address (a zone suffix ``%lo`` is dropped).
    """
    if ":" not in text:
        # The common case: inet_pton is strict (four decimal octets, no leading zeros), the
        # same grammar ipaddress accepts, and about five times faster than parsing in Python.
        try:
            return IPv4Address(inet_pton(AF_INET, text))
        except (OSError, ValueError, UnicodeError):
            # The slow path decides, with ipaddress's own ValueError (a zone suffix is dropped).
            return IPv4Address(text.split("%", 1)[0])
    if "%" in text:
        text = text.split("%", 1)[0]
    addr = IPv6Address(text)
    mapped = addr.ipv4_mapped
    return addr if mapped is None else mapped


IPV6_KEY_FLAG: Final = 1 << 128  # ip_key: IPv6 as int(ip) | flag, so the two families never collide


# ``int(ip)`` calls the address's ``__int__``, a Python function, whose whole body returns the
# one slot both address classes keep their value in; compiled callers read the slot instead.
# Guarded: should a Python release rename it, ``int()`` it is (tests/test_events.py holds the
# two equal).
_IP_SLOT: Final = "_ip" in getattr(IPv4Address, "__slots__", ()) and "_ip" in getattr(
    IPv6Address, "__slots__", ()
)


def ip_int(ip: IPAddress) -> int:
    """``int(ip)``, without a Python call."""
    if _IP_SLOT:
        value: int = getattr(ip, "_ip")  # noqa: B009 (a slot typeshed does not declare)
        return value
    return int(ip)


def ip_key(ip: IPAddress) -> int:
    """An address as a plain int key: ipaddress objects hash and compare in Python code (about
    1 µs a hash), ints in C. IPv4 keys are below 2**32, IPv6 keys carry ``IPV6_KEY_FLAG``."""
    return ip_int(ip) if type(ip) is IPv4Address else ip_int(ip) | IPV6_KEY_FLAG


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an event came from: a file and 1-based line, a journald cursor, or a live request."""

    source: str
    line: "OptInt" = None
    cursor: "OptStr" = None


OptOrigin = Origin | None

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


@mypyc_attr(allow_interpreted_subclasses=True)
class Kinded:
    """Gives every event class its ``kind``, derived from the class name, so the catalogue and the
    JSON cannot drift apart."""

    __slots__ = ()
    kind: ClassVar[str] = "event"

    def __init_subclass__(cls) -> None:
        # No super() call: slots=True rebuilds the class, which breaks zero-argument super().
        cls.kind = _CAMEL.sub("_", cls.__name__).lower()


# Interpreted subclasses (tests model future event kinds) are allowed; they must not pass
# slots=True, which would shadow the compiled fields with slots of their own.
@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, kw_only=True)
class Event(Kinded):
    """Base of all events. ``ts`` is POSIX seconds, UTC."""

    ts: float
    service: Service
    ip: "OptIP"
    origin: "OptOrigin" = None

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.ts, UTC)

    def to_json(self) -> dict[str, Any]:
        """The stable JSON shape used by ``mailward parse --json`` and the store (docs/events.md)."""
        out: dict[str, Any] = {
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "kind": self.kind,
            "service": self.service.value,
            "ip": None if self.ip is None else str(self.ip),
            "username": getattr(self, "username", None),
        }
        for name in _json_fields(type(self)):
            value = getattr(self, name)
            out[name] = value.value if isinstance(value, StrEnum) else value
        if self.origin is not None:
            out["file"] = self.origin.source
            out["line"] = self.origin.line
            if self.origin.cursor is not None:
                out["cursor"] = self.origin.cursor
        return out


_JSON_FIELDS: dict[type, tuple[str, ...]] = {}


def _json_fields(cls: type) -> tuple[str, ...]:
    """The fields ``to_json`` writes after the common ones, in declaration order (cached)."""
    names = _JSON_FIELDS.get(cls)
    if names is None:
        common = ("ts", "service", "ip", "origin", "username")
        names = tuple(f.name for f in fields(cls) if f.name not in common)
        _JSON_FIELDS[cls] = names
    return names


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthFailure(Event):
    """A failed login. ``attempts`` > 1 only for session summaries (``auth=0/3``, Dovecot
    ``3 attempts``); ``summary`` marks those so the correlator counts each attempt once."""

    username: "OptStr"
    mechanism: "OptStr" = None
    reason: FailReason = FailReason.UNSPECIFIED
    session: "OptStr" = None
    attempts: int = 1
    summary: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthError(Event):
    """A login that failed for a server-side reason (``Connection lost to authentication
    server``): not evidence against the client. The correlator uses it to keep the session's
    ``auth=0/N`` counter from being counted as failures, and does not pass it on."""

    username: "OptStr" = None
    detail: str = ""
    session: "OptStr" = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSuccess(Event):
    """A successful login (SMTP AUTH, IMAP/POP3/ManageSieve login)."""

    username: "OptStr"
    mechanism: "OptStr" = None
    session: "OptStr" = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownRecipient(Event):
    """RCPT/VRFY rejected because the recipient does not exist: the enumeration signal."""

    recipient: "OptStr"
    sender: "OptStr" = None
    helo: "OptStr" = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpReject(Event):
    """Postfix refused an SMTP command for another reason than an unknown user: relay denied,
    HELO/sender/client rejected, DNSBL, policy. ``category`` says which; spam-run evidence."""

    command: str  # RCPT, MAIL, DATA, CONNECT, HELO, ...
    category: str = "other"
    recipient: "OptStr" = None
    helo: "OptStr" = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection(Event):
    """A client connected (``connect from``)."""

    session: "OptStr" = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnect(Event):
    """A client went away; Postfix reports its command counters (``auth=0/2 commands=2/4``)."""

    session: "OptStr" = None
    auth_ok: int = 0
    auth_total: int = 0
    commands_ok: int = 0
    commands_total: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class LostConnection(Event):
    """``lost connection after STAGE``: after AUTH it is a guess the attacker abandoned."""

    stage: str
    session: "OptStr" = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginAborted(Event):
    """A Dovecot login session that ended without a failed password (no auth attempts, TLS
    handshake, cleartext disabled, ...). A weak signal: phones and NAT produce it too."""

    username: "OptStr" = None
    detail: str = ""
    session: "OptStr" = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolViolation(Event):
    """PREGREET, HANGUP, non-SMTP command, too many errors: bot behaviour."""

    violation: Violation
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitWarning(Event):
    """Postfix anvil says a client exceeded a limit (``Connection rate limit exceeded: 61``)."""

    limit: str
    count: int = field(default=0)


ALL_EVENTS: tuple[type[Event], ...] = (
    AuthFailure,
    AuthError,
    AuthSuccess,
    UnknownRecipient,
    SmtpReject,
    Connection,
    Disconnect,
    LostConnection,
    LoginAborted,
    ProtocolViolation,
    RateLimitWarning,
)

EVENT_BY_KIND: dict[str, type[Event]] = {cls.kind: cls for cls in ALL_EVENTS}
