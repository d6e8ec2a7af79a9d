from __future__ import annotations

import typing
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

import pytest

from mailward.events import ALL_EVENTS, Event, Service
from mailward.storage.codec import (
    COLUMNS,
    INT_SLOTS,
    LAYOUTS,
    TEXT_SLOTS,
    Codec,
    decode_ip,
    encode_ip,
    layout_for,
)

from .samples import every_kind


class _Strings:
    """An in-memory interning table, enough to drive the codec without SQLite."""

    def __init__(self) -> None:
        self.ids: dict[typing.Any, int] = {}
        self.names: dict[int, str] = {}

    def intern(self, value: str) -> int:
        sid = self.ids.get(str(value))
        if sid is None:
            sid = len(self.names) + 1
            self.names[sid] = str(value)
        self.ids[value] = self.ids[str(value)] = sid
        return sid


def _roundtrip(codec: Codec, ev: Event) -> Event:
    enc = codec.encoder(type(ev))
    bound = dict(zip(enc.columns, enc.fn(ev, 7), strict=True))
    defaults = {"user": 0, "attempts": 1, "session": "", "src": 0, "extra": ""}
    row = tuple(bound.get(c, defaults.get(c, 0)) for c in COLUMNS)
    return codec.decode(row)


def test_every_kind_has_a_layout_without_overflow() -> None:
    for cls in ALL_EVENTS:
        layout = LAYOUTS[cls.kind]
        assert layout.cls is cls
        columns = [f.column for f in layout.fields]
        # Today's catalogue fits the fixed columns; "extra" is the escape hatch for new kinds.
        assert "extra" not in columns, cls
        assert len(columns) == len(set(columns)), cls


def test_every_kind_roundtrips_through_the_codec() -> None:
    s = _Strings()
    codec = Codec(s.ids.get, s.intern, s.names.__getitem__)
    for ev in every_kind():
        assert _roundtrip(codec, ev) == ev


def test_interned_none_is_zero_and_service_is_interned() -> None:
    s = _Strings()
    codec = Codec(s.ids.get, s.intern, s.names.__getitem__)
    ev = next(e for e in every_kind() if e.kind == "auth_failure" and e.username is None)  # type: ignore[attr-defined]
    enc = codec.encoder(type(ev))
    row = dict(zip(enc.columns, enc.fn(ev, 1), strict=True))
    assert row["user"] == 0
    assert s.names[row["service"]] == "managesieve"
    assert s.names[row["kind"]] == "auth_failure"


def test_ip_encoding() -> None:
    assert encode_ip(IPv4Address("1.2.3.4")) == 0x01020304
    assert encode_ip(IPv6Address("::1")) == bytes(15) + b"\x01"
    assert decode_ip(0x01020304) == IPv4Address("1.2.3.4")
    assert decode_ip(bytes(15) + b"\x01") == IPv6Address("::1")
    assert decode_ip(None) is None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Wide(Event):
    """A future kind with more fields than the fixed slots: the rest goes to ``extra``."""

    a: str
    b: str | None
    c: str
    d: str
    n1: int
    n2: int
    n3: int
    n4: int
    n5: int
    f: float
    flag: bool | None = None
    svc: Service = Service.IMAP


def test_overflow_fields_go_to_extra_and_roundtrip() -> None:
    layout = layout_for(_Wide)
    by_name = {f.name: f.column for f in layout.fields}
    assert [by_name[n] for n in ("a", "b", "c")] == list(TEXT_SLOTS)
    assert by_name["d"] == "extra"
    assert [by_name[n] for n in ("n1", "n2", "n3", "n4")] == list(INT_SLOTS)
    assert by_name["n5"] == by_name["f"] == by_name["flag"] == by_name["svc"] == "extra"
    s = _Strings()
    codec = Codec(s.ids.get, s.intern, s.names.__getitem__)
    ev = _Wide(
        ts=1.5, service=Service.IMAP, ip=None, a="x", b=None, c="", d="é", n1=1, n2=2, n3=3,
        n4=4, n5=5, f=0.25, flag=True, svc=Service.POP3,
    )  # fmt: skip
    try:
        assert _roundtrip(codec, ev) == ev
    finally:
        LAYOUTS.pop(_Wide.kind, None)


def test_unstorable_field_type_is_refused() -> None:
    @dataclass(frozen=True, slots=True, kw_only=True)
    class _Bad(Event):
        blob: bytes

    with pytest.raises(TypeError, match="blob"):
        layout_for(_Bad)
