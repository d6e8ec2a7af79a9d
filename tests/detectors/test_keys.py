from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

from mailward.detectors.keys import ip_key, prefix_key


def test_keys_never_collide() -> None:
    # Same integer value in both families, and addresses equal to their own network address.
    addresses = [ip_address(a) for a in ("0.0.0.1", "::1", "10.0.0.0", "::a00:0")]
    address_keys = {ip_key(a) for a in addresses}
    assert len(address_keys) == 4
    prefix_keys = {prefix_key(a, 24, 128) for a in addresses}
    assert len(prefix_keys) == 4
    assert not address_keys & prefix_keys


def test_prefix_key_groups_a_prefix() -> None:
    a, b, c = (ip_address(x) for x in ("198.51.100.1", "198.51.100.254", "198.51.101.1"))
    assert prefix_key(a, 24, 64) == prefix_key(b, 24, 64) != prefix_key(c, 24, 64)
    assert prefix_key(a, 16, 64) == prefix_key(c, 16, 64)
    assert prefix_key(a, 24, 64) != prefix_key(a, 16, 64)
    x, y = ip_address("2001:db8::1"), ip_address("2001:db8::ffff:1")
    assert prefix_key(x, 24, 64) == prefix_key(y, 24, 64)
    assert prefix_key(x, 24, 128) != prefix_key(y, 24, 128)


def test_keys_convert_back_and_prefixes_follow_from_keys() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from mailward.detectors.keys import address_of_key, prefix_of_key

    addresses = st.one_of(
        st.integers(0, 2**32 - 1).map(lambda n: ip_address(n)),
        st.integers(2**32, 2**128 - 1).map(lambda n: ip_address(n)),
    )

    @given(addresses, st.integers(8, 32), st.integers(16, 128))
    def check(ip: IPv4Address | IPv6Address, v4: int, v6: int) -> None:
        key = ip_key(ip)
        back = address_of_key(key)
        assert back == ip and type(back) is type(ip)
        assert hash(back) == hash(ip) and str(back) == str(ip) and int(back) == int(ip)
        assert back.is_private == ip.is_private and back.packed == ip.packed
        assert prefix_of_key(key, v4, v6) == prefix_key(ip, v4, v6)

    check()
