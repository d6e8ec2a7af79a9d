from ipaddress import ip_address, ip_network

from mailward.policy.signals import (
    ConnectionCounter,
    DistinctWindow,
    EventWindow,
    LogThrottle,
    NetSet,
    prefix_of,
)


def test_prefix_of_uses_the_configured_lengths() -> None:
    assert prefix_of(ip_address("198.51.100.7"), 24, 64) == ip_network("198.51.100.0/24")
    assert prefix_of(ip_address("2001:db8:1:2::5"), 24, 48) == ip_network("2001:db8:1::/48")


def test_distinct_window_counts_distinct_values_and_flags_repeats() -> None:
    w = DistinctWindow(window=60)
    assert w.add("ip", "a", 0) == (1, True)
    assert w.add("ip", "a", 1) == (1, False)
    assert w.add("ip", "b", 2) == (2, True)
    assert w.count("ip", 30) == 2
    # "a" was last seen at 1, "b" at 2: at 61.5 only "b" remains in the window
    assert w.count("ip", 61.5) == 1
    assert w.values("ip", 61.5) == ["b"]
    assert w.count("other", 0) == 0


def test_distinct_window_evicts_the_least_recently_used_key() -> None:
    w = DistinctWindow(window=60, max_keys=2)
    w.add("k1", 1, 0)
    w.add("k2", 1, 0)
    w.add("k1", 2, 1)  # k1 is now the most recent
    w.add("k3", 1, 2)
    assert len(w) == 2
    assert w.count("k2", 2) == 0
    assert w.count("k1", 2) == 2


def test_event_window_sums_amounts_in_window() -> None:
    w = EventWindow(window=10)
    assert w.add("u", 0, 3) == 3
    assert w.add("u", 5) == 4
    assert w.count("u", 12) == 1


def test_connection_counter_pairs_connects_with_disconnects() -> None:
    c = ConnectionCounter(ttl=100)
    ip = ip_address("192.0.2.1")
    assert c.connect(ip, 0) == 1
    assert c.connect(ip, 1) == 2
    c.disconnect(ip, 2)
    assert c.open(ip, 2) == 1
    c.disconnect(ip, 3)
    c.disconnect(ip, 4)  # a disconnect with nothing open (port 25) is ignored
    assert c.open(ip, 4) == 0
    assert c.connect(ip, 5) == 1


def test_connection_counter_expires_lost_sessions() -> None:
    c = ConnectionCounter(ttl=100)
    ip = ip_address("192.0.2.1")
    for t in range(5):
        c.connect(ip, t)
    assert c.open(ip, 50) == 5
    assert c.open(ip, 102.5) == 2


def test_netset_matches_addresses_and_prefixes_and_expires() -> None:
    from mailward.policy.signals import NetSet

    s = NetSet()
    assert s.match(ip_address("192.0.2.1"), 0) is None
    s.add(ip_network("192.0.2.0/24"), until=100)
    s.add(ip_network("198.51.100.7/32"))
    s.add(ip_network("2001:db8::/64"), until=50)
    assert s.match(ip_address("192.0.2.200"), 10) == ip_network("192.0.2.0/24")
    assert s.match(ip_address("198.51.100.7"), 10) == ip_network("198.51.100.7/32")
    assert s.match(ip_address("198.51.100.8"), 10) is None
    assert s.match(ip_address("2001:db8::1:2"), 10) == ip_network("2001:db8::/64")
    assert s.match(ip_address("2001:db8::1:2"), 60) is None  # expired and dropped
    assert len(s) == 2
    assert ip_network("192.0.2.0/24") in s and "x" not in s
    s.discard(ip_network("192.0.2.0/24"))
    assert s.match(ip_address("192.0.2.200"), 10) is None


def test_log_throttle_speaks_once_per_window_and_counts_what_it_held() -> None:
    quiet = LogThrottle(window=60, max_keys=2)
    assert quiet.allow(1, 0) == (True, 0)
    assert quiet.allow(1, 10) == (False, 0)
    assert quiet.allow(1, 59) == (False, 0)
    assert quiet.allow(2, 59) == (True, 0)  # another client has its own window
    assert quiet.allow(1, 60) == (True, 2)  # the next line says two were held back
    assert quiet.allow(1, 61) == (False, 0)
    assert quiet.allow(3, 61) == (True, 0)  # over max_keys: forgets, never refuses to speak
    assert quiet.allow(1, 62) == (True, 0)


def test_netset_counts_its_changes_so_derived_answers_can_be_dropped() -> None:
    nets = NetSet()
    net = ip_network("192.0.2.0/24")
    nets.add(net, until=100)
    assert nets.changes == 1
    nets.discard(ip_network("198.51.100.0/24"))  # not there: nothing changed
    assert nets.changes == 1
    nets.discard(net)
    assert nets.changes == 2 and nets.match(ip_address("192.0.2.1"), 0) is None


def test_parse_key_is_strict_and_normalises_mapped_addresses() -> None:
    import pytest

    from mailward.events import ip_key
    from mailward.policy.signals import parse_key, read_ip

    assert parse_key("::ffff:192.0.2.1") == parse_key("192.0.2.1") == 0xC0000201

    for text in (
        "192.0.2.1",
        "::ffff:192.0.2.1",
        "2001:db8::1",
        "fe80::1%lo",
        "0.0.0.0",
        "192.0.2.1%lo",
    ):
        assert parse_key(text) == ip_key(read_ip(text))
        assert parse_key(text) == ip_key(read_ip(text))  # and again from the cache
    for bad in (
        "1.2",
        "192.0.2.256",
        "unknown",
        "",
        "1.2.3.4 ",
        "01.2.3.4",
        "1.2.3.4\x00",
        "\udc80",
    ):
        with pytest.raises(ValueError):
            parse_key(bad)
