from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv6Address

import pytest

from mailward.events import (
    ALL_EVENTS,
    EVENT_BY_KIND,
    AuthFailure,
    FailReason,
    Origin,
    Service,
    normalise_ip,
)


def test_kind_comes_from_class_name() -> None:
    assert AuthFailure.kind == "auth_failure"
    assert set(EVENT_BY_KIND) == {cls.kind for cls in ALL_EVENTS}


def test_events_are_frozen() -> None:
    ev = AuthFailure(ts=0.0, service=Service.IMAP, ip=IPv4Address("192.0.2.1"), username="bob")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.username = "x"  # type: ignore[misc]


def test_mapped_ipv6_is_normalised() -> None:
    assert normalise_ip("::ffff:192.0.2.7") == IPv4Address("192.0.2.7")
    assert normalise_ip("2001:db8::1") == IPv6Address("2001:db8::1")
    assert normalise_ip("fe80::1%lo") == IPv6Address("fe80::1")
    with pytest.raises(ValueError):
        normalise_ip("64.300.200.26")


def test_json_shape() -> None:
    ev = AuthFailure(
        ts=1763720102.5,
        service=Service.SUBMISSION,
        ip=IPv4Address("203.0.113.45"),
        username="info@example.org",
        mechanism="LOGIN",
        reason=FailReason.BAD_PASSWORD,
        origin=Origin("mail.log", 7),
    )
    out = ev.to_json()
    assert out["time"] == "2025-11-21T10:15:02.500000Z"
    assert out["kind"] == "auth_failure"
    assert out["service"] == "submission"
    assert out["ip"] == "203.0.113.45"
    assert out["username"] == "info@example.org"
    assert out["reason"] == "bad_password"
    assert (out["file"], out["line"]) == ("mail.log", 7)
