from __future__ import annotations

import dataclasses
import ipaddress
import types
import typing
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


def test_optional_field_types_survive_compilation() -> None:
    # mypyc turns an inline union annotation into ``type`` (events.py docstring): optional
    # fields use the quoted Opt* aliases. Caught here in either build.
    for cls in (*ALL_EVENTS, Origin):
        for klass in cls.__mro__:
            for name, ann in vars(klass).get("__annotations__", {}).items():
                assert not isinstance(ann, types.UnionType), f"{klass.__name__}.{name}"
        for name, hint in typing.get_type_hints(cls).items():
            assert hint is not type, f"{cls.__name__}.{name}"


def _reference_normalise(text: str) -> IPv4Address | IPv6Address:
    addr = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


_ADDRESSY = st.text(alphabet="0123456789abcdef.:%lo \x00٣", max_size=24)


@given(
    st.one_of(
        _ADDRESSY,
        st.ip_addresses().map(str),
        st.ip_addresses(v=6).map(lambda a: f"{a}%eth0"),
        st.tuples(*[st.integers(0, 300)] * 4).map(lambda t: ".".join(map(str, t))),
        st.tuples(*[st.text("0123456789", min_size=1, max_size=4)] * 4).map(".".join),
    )
)
def test_normalise_ip_agrees_with_ipaddress(text: str) -> None:
    try:
        expected: IPv4Address | IPv6Address | None = _reference_normalise(text)
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError):
            normalise_ip(text)
    else:
        got = normalise_ip(text)
        assert got == expected and type(got) is type(expected)


def test_ip_int_and_ip_key_read_the_address_value() -> None:
    from ipaddress import ip_address

    from mailward.events import IPV6_KEY_FLAG, ip_int, ip_key

    @given(st.one_of(st.integers(0, 2**32 - 1), st.integers(2**32, 2**128 - 1)))
    def check(n: int) -> None:
        ip = ip_address(n)
        assert ip_int(ip) == int(ip) == n
        assert ip_key(ip) == (n if ip.version == 4 else n | IPV6_KEY_FLAG)

    check()
    scoped = ip_address("fe80::1%eth0")
    assert ip_int(scoped) == int(scoped)
