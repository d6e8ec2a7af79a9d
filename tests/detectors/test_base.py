from __future__ import annotations

from ipaddress import ip_address

from mailward.detectors.base import Source, canonical_user, fmt_duration, need


def test_canonical_user() -> None:
    assert canonical_user("  Bob@Example.ORG ") == "bob@example.org"
    assert canonical_user("") is None
    assert canonical_user(None) is None
    assert len(canonical_user("x" * 10_000) or "") == 256


def test_need_scales_up_only() -> None:
    assert need(5, 1.0) == 5
    assert need(5, 3.0) == 15
    assert need(3, 1.5) == 5
    assert need(5, 0.5) == 5


def test_fmt_duration() -> None:
    assert fmt_duration(600) == "10m"
    assert fmt_duration(86400) == "1d"
    assert fmt_duration(5400) == "90m"
    assert fmt_duration(42.5) == "42.5s"


def test_source_prefix_target() -> None:
    src = Source(ip=ip_address("2001:db8:1:2:3::4"), key=0, prefix=0, prefixlen=64)
    assert src.prefix_target == "2001:db8:1:2::/64"


def test_canonical_user_remembers_names_as_sent() -> None:
    first = canonical_user("Carol@Example.ORG")
    assert first == "carol@example.org"
    assert canonical_user("Carol@Example.ORG") is first  # from the memory
    assert canonical_user(" carol@example.org") is first  # one object per distinct name
    for _ in range(2):
        assert canonical_user("   ") is None
        long = "Y" * 300 + "z"
        assert canonical_user(long) == "y" * 256  # long names: computed, not remembered


def test_source_address_is_made_on_first_use() -> None:
    for text in ("198.51.100.7", "2001:db8::1"):
        src = Source(ip=ip_address(text), key=0, prefix=0, prefixlen=24)
        assert src.address == text and src.address is src.address
    assert (
        Source(ip=ip_address("192.0.2.1"), key=0, prefix=0, prefixlen=24, address="x").address
        == "x"
    )
