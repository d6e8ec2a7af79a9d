"""The body of a Dovecot auth-policy request, decoded and type-checked in one pass by msgspec.

Only the fields mailward reads are declared; msgspec skips the rest of the object without
building it. A field sent as ``null`` counts as absent. Kept out of the mypyc-compiled modules:
a ``msgspec.Struct`` has its own metaclass, and the decoding is msgspec's C either way.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from mailward.errors import ProtocolError


class AuthBody(msgspec.Struct, frozen=True, gc=False):
    # ``AuthRequest.from_body`` reads these by position (``astuple``): keep the order.
    # gc=False: text and flags cannot form a cycle, so the collector need not track one per
    # request.
    remote: str | None = None
    login: str | None = None
    protocol: str | None = None
    pwhash: str | None = None
    session_id: str | None = None
    fail_type: str | None = None
    success: bool = False
    policy_reject: bool = False


#: Called by the compiled request builder directly (one C call per body); its errors go
#: through ``body_error``.
DECODER: Final = msgspec.json.Decoder(AuthBody)


def decode_body(raw: bytes) -> AuthBody:
    """Strict RFC 8259 JSON and UTF-8; ``ProtocolError`` says what is wrong and where."""
    try:
        return DECODER.decode(raw)
    except (ValueError, RecursionError) as exc:  # msgspec.DecodeError, bad UTF-8, deep nesting
        raise body_error(exc) from None


def body_error(exc: ValueError | RecursionError) -> ProtocolError:
    """What ``DECODER.decode`` raised, as the error the client is told."""
    if isinstance(exc, msgspec.ValidationError):  # JSON, but not the shape Dovecot sends
        return ProtocolError(f"body: {exc}")
    return ProtocolError(f"body is not JSON: {exc}")


def body_from(obj: Any) -> AuthBody:
    """The same checks for a body already decoded from JSON (``AuthRequest.from_json``)."""
    try:
        return msgspec.convert(obj, AuthBody)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"body: {exc}") from None
