from ipaddress import ip_network

from hypothesis import given, settings
from hypothesis import strategies as st

from mailward.enforcers.bantable import BanTable, as_network


def n(text: str):  # type: ignore[no-untyped-def]
    return ip_network(text)


def test_host_reban_only_extends() -> None:
    t = BanTable()
    assert t.ban(n("10.0.0.1/32"), 100.0).add == [(n("10.0.0.1/32"), 100.0)]
    assert not t.ban(n("10.0.0.1/32"), 50.0)
    change = t.ban(n("10.0.0.1/32"), 200.0)
    assert change.delete == [n("10.0.0.1/32")] and change.add == [(n("10.0.0.1/32"), 200.0)]
    assert not t.ban(n("10.0.0.1/32"), 150.0)
    assert t.ban(n("10.0.0.1/32"), None).add == [(n("10.0.0.1/32"), None)]
    assert not t.ban(n("10.0.0.1/32"), 1e12)


def test_prefix_inside_longer_ban_is_noop() -> None:
    t = BanTable()
    t.ban(n("10.0.0.0/16"), 500.0)
    assert not t.ban(n("10.0.1.0/24"), 100.0)
    assert t.prefixes == {n("10.0.0.0/16"): 500.0}


def test_longer_inner_ban_splits_outer() -> None:
    t = BanTable()
    t.ban(n("10.0.0.0/16"), 100.0)
    change = t.ban(n("10.0.1.0/24"), 500.0)
    assert n("10.0.0.0/16") in change.delete
    assert t.prefixes[n("10.0.1.0/24")] == 500.0
    assert sum(p.num_addresses for p in t.prefixes) == 65536
    _assert_disjoint(t)


def test_wider_ban_swallows_shorter_inner_and_keeps_longer() -> None:
    t = BanTable()
    t.ban(n("10.0.1.0/24"), 50.0)
    t.ban(n("10.0.2.0/24"), 900.0)
    change = t.ban(n("10.0.0.0/16"), 100.0)
    assert n("10.0.1.0/24") in change.delete
    assert n("10.0.2.0/24") not in change.delete
    assert t.prefixes[n("10.0.2.0/24")] == 900.0
    assert sum(p.num_addresses for p in t.prefixes) == 65536
    _assert_disjoint(t)


def test_unban_address_inside_prefix_splits_it() -> None:
    t = BanTable()
    t.ban(n("10.0.0.0/24"), 100.0)
    t.ban(n("10.0.0.7/32"), 100.0)
    t.unban(n("10.0.0.7/32"))
    assert not t.covers(n("10.0.0.7/32"))
    assert t.covers(n("10.0.0.8/32"))
    assert sum(p.num_addresses for p in t.prefixes) == 255


def test_unban_prefix_removes_hosts_inside() -> None:
    t = BanTable()
    t.ban(n("192.0.2.1/32"), None)
    t.ban(n("192.0.2.2/32"), None)
    t.ban(n("198.51.100.1/32"), None)
    change = t.unban(n("192.0.2.0/24"))
    assert sorted(map(str, change.delete)) == ["192.0.2.1/32", "192.0.2.2/32"]
    assert list(t.hosts) == [n("198.51.100.1/32")]


def test_expire_forgets() -> None:
    t = BanTable()
    t.ban(n("10.0.0.1/32"), 10.0)
    t.ban(n("2001:db8::/64"), 20.0)
    t.ban(n("10.9.0.0/24"), None)
    assert len(t.expire(15.0)) == 1
    assert len(t.expire(25.0)) == 1
    assert len(t) == 1


def test_as_network_maps_ipv4_mapped_and_masks() -> None:
    assert str(as_network("::ffff:203.0.113.9")) == "203.0.113.9/32"
    assert str(as_network("10.0.0.5/24")) == "10.0.0.0/24"


def _assert_disjoint(t: BanTable) -> None:
    nets = sorted(t.prefixes, key=lambda p: (p.version, p.network_address))
    for a, b in zip(nets, nets[1:], strict=False):
        assert not a.overlaps(b), (a, b)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.integers(0, 15),
            st.sampled_from([22, 24, 26, 28, 30]),
            st.one_of(st.none(), st.integers(1, 5)),
        ),
        max_size=25,
    )
)
def test_prefixes_stay_disjoint_and_cover_the_max(ops) -> None:  # type: ignore[no-untyped-def]
    """Model check: every address is covered until the latest expiry any ban gave it."""
    t = BanTable()
    expect: dict[int, float] = {}
    for is_unban, third, length, until in ops:
        net = ip_network(f"10.0.{third * 4}.0/{length}", strict=False)
        inf = float("inf") if until is None else float(until)
        if is_unban:
            t.unban(net)
            for a in range(int(net.network_address), int(net.broadcast_address) + 1):
                expect.pop(a, None)
        else:
            t.ban(net, None if until is None else float(until))
            for a in range(int(net.network_address), int(net.broadcast_address) + 1):
                expect[a] = max(expect.get(a, 0.0), inf)
        _assert_disjoint(t)
    got: dict[int, float] = {}
    for p, u in t.prefixes.items():
        for a in range(int(p.network_address), int(p.broadcast_address) + 1):
            got[a] = float("inf") if u is None else u
    assert got == expect
