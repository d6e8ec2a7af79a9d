import gc
from ipaddress import ip_address, ip_network

from hypothesis import given
from hypothesis import strategies as st

from mailward.policy.signals import (
    ConnectionCounter,
    DistinctWindow,
    EventWindow,
    LogBudget,
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


class _WindowModel:
    """What ``DistinctWindow`` must answer, in the plainest form: a dict of last-seen times per
    key, keys in last-used order."""

    def __init__(self, window: float, max_keys: int) -> None:
        self.window, self.max_keys = window, max_keys
        self.keys: dict[object, dict[object, float]] = {}

    def add(self, key: object, value: object, now: float) -> tuple[int, bool]:
        seen = self.keys.pop(key, None)
        if seen is None and len(self.keys) >= self.max_keys:
            del self.keys[next(iter(self.keys))]
        live = {v: t for v, t in (seen or {}).items() if t >= now - self.window}
        new = value not in live
        live.pop(value, None)
        live[value] = now
        self.keys[key] = live
        return len(live), new

    def values(self, key: object, now: float) -> list[object]:
        return [v for v, t in self.keys.get(key, {}).items() if t >= now - self.window]


@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),  # key
            st.integers(0, 14),  # value: up to 15 distinct, past the flat form's 8
            st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0, 10.0]),  # time step
        ),
        max_size=120,
    )
)
def test_distinct_window_answers_like_a_dict_of_last_seen_times(
    steps: list[tuple[int, int, float]],
) -> None:
    """Flat tuples up to 8 values, a dict beyond, values running out of the window, repeats
    moving to the end, keys evicted least recently used first: every answer as the model's."""
    w, model = DistinctWindow(window=20, max_keys=3), _WindowModel(window=20, max_keys=3)
    now = 0.0
    for key, value, step in steps:
        now += step
        assert w.add(key, value, now) == model.add(key, value, now)
        for k in range(4):
            assert w.values(k, now) == model.values(k, now)
            assert w.count(k, now) == len(model.values(k, now))
    assert len(w) == len(model.keys)


def test_distinct_window_small_sets_are_left_alone_by_the_collector() -> None:
    w = DistinctWindow(window=60)
    for i in range(1000):
        w.add(i, ("login", f"{i:04x}"), 0)
        w.add(i, ("login", "beef"), 1)
    gc.collect()
    gc.collect()  # a tuple inside a tuple may need a second pass
    assert not any(gc.is_tracked(v) for v in w._data.values())
    assert w.count(7, 2) == 2


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


def test_log_throttle_speaks_once_per_window_per_client() -> None:
    quiet = LogThrottle(window=60, max_keys=2)
    assert quiet.allow(1, 0)
    assert not quiet.allow(1, 10)
    assert not quiet.allow(1, 59)
    assert quiet.allow(2, 59)  # another client has its own window
    assert quiet.allow(1, 60)
    assert not quiet.allow(1, 61)
    assert quiet.allow(3, 61)  # over max_keys: forgets, never refuses to speak
    assert quiet.allow(1, 62)


def test_log_budget_caps_lines_across_clients_and_counts_what_it_held() -> None:
    budget = LogBudget(per_second=10)
    assert budget.take(0.0) == 0
    assert budget.take(0.05) == -1  # a tenth of a second between lines
    budget.hold()  # held back by a per-client throttle: counted all the same
    assert budget.take(0.1) == 2
    assert budget.take(0.1) == -1
    assert budget.take(5.0) == 1


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
