import shutil

import pytest

from mailward.clock import ManualClock
from mailward.config.model import EnforceSettings
from mailward.decisions.model import Action, Decision
from mailward.enforcers.nftables import (
    NftablesEnforcer,
    RecordingNft,
    table_definition,
)
from mailward.errors import BackendUnavailable


def ban(target: str, until: float | None = 3600.0, action: Action = Action.BAN) -> Decision:
    return Decision(ts=0.0, target=target, action=action, rule="test", until=until)


def make(**kw):  # type: ignore[no-untyped-def]
    runner = RecordingNft()
    clock = ManualClock(0.0)
    e = NftablesEnforcer(EnforceSettings(**kw), clock=clock.now, runner=runner)
    return e, runner, clock


def test_table_definition_limits_rules_to_ports() -> None:
    text = table_definition(EnforceSettings(ports=[587, 25], action="drop", hooks=["input"]))
    assert text.startswith("table inet mailward {")
    assert "set net4 { type ipv4_addr; flags interval, timeout; }" in text
    assert "set addr6 { type ipv6_addr; flags timeout; }" in text
    assert "ip saddr @addr4 tcp dport { 25, 587 } counter drop" in text
    assert "ip6 saddr @net6 tcp dport { 25, 587 } counter drop" in text
    assert "type filter hook input priority -10; policy accept;" in text
    assert "forward" not in text


def test_default_ports_are_the_mail_ports() -> None:
    text = table_definition(EnforceSettings())
    assert (
        "tcp dport { 25, 110, 143, 465, 587, 993, 995, 4190 } counter reject with tcp reset" in text
    )


async def test_first_batch_builds_table_atomically_then_deltas() -> None:
    e, runner, clock = make()
    await e.apply([ban("203.0.113.5"), ban("2001:db8:1::/64", until=None), ban("user:x")])
    first = runner.scripts[0]
    assert first.startswith(
        "add table inet mailward\ndelete table inet mailward\ntable inet mailward {"
    )
    assert "add element inet mailward addr4 { 203.0.113.5 timeout 3600000ms }" in first
    assert "add element inet mailward net6 { 2001:db8:1::/64 }" in first
    clock.advance(600)
    await e.apply([ban("198.51.100.0/24"), ban("203.0.113.6"), ban("203.0.113.7")])
    assert runner.scripts[1] == (
        "add element inet mailward addr4 { 203.0.113.6 timeout 3000000ms, 203.0.113.7 timeout 3000000ms }\n"
        "add element inet mailward net4 { 198.51.100.0/24 timeout 3000000ms }\n"
    )
    await e.apply([ban("203.0.113.6", action=Action.UNBAN)])
    assert runner.scripts[2] == (
        "add element inet mailward addr4 { 203.0.113.6 timeout 1000ms }\n"
        "delete element inet mailward addr4 { 203.0.113.6 }\n"
    )
    assert len(runner.scripts) == 3 and e.status()["addresses"] == 2


async def test_many_decisions_are_one_batch() -> None:
    e, runner, _ = make()
    await e.apply([])
    await e.apply([ban(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}") for i in range(5000)])
    assert len(runner.scripts) == 2
    assert runner.scripts[1].count("add element") == 3  # chunks of 2000 elements
    assert e.status()["addresses"] == 5000


async def test_failed_batch_rebuilds_from_mirror() -> None:
    e, runner, _ = make()
    await e.apply([ban("203.0.113.5")])
    runner.fail_next = 1
    await e.apply([ban("203.0.113.9")])
    assert runner.scripts[-1].startswith("add table inet mailward\ndelete table")
    assert (
        "203.0.113.5 timeout" in runner.scripts[-1] and "203.0.113.9 timeout" in runner.scripts[-1]
    )
    assert e.status()["failures"] == 1 and e.status()["in_sync"]


async def test_rebuild_failure_raises_and_retries_later() -> None:
    e, runner, _ = make()
    runner.fail_next = 1
    with pytest.raises(BackendUnavailable):
        await e.apply([ban("203.0.113.5")])
    assert not e.status()["in_sync"]
    await e.apply([])
    assert "203.0.113.5" in runner.scripts[-1] and e.status()["in_sync"]


async def test_restore_and_remove_table() -> None:
    e, runner, _ = make(table="mw_test")
    await e.restore([ban("203.0.113.5"), ban("192.0.2.0/24", until=10.0)])
    assert "table inet mw_test {" in runner.scripts[-1]
    await e.remove_table()
    assert runner.scripts[-1] == "add table inet mw_test\ndelete table inet mw_test\n"


async def test_widening_a_prefix_is_an_atomic_rebuild() -> None:
    e, runner, _ = make()
    await e.apply([ban("198.51.100.0/24")])
    await e.apply([ban("198.51.0.0/16")])
    assert runner.scripts[-1].startswith("add table inet mailward\ndelete table")
    assert "198.51.0.0/16 timeout" in runner.scripts[-1]
    assert "198.51.100.0/24" not in runner.scripts[-1]
    assert e.status()["failures"] == 0


@pytest.mark.realstack
async def test_real_nft_in_namespace(netns: str) -> None:
    import time

    e = NftablesEnforcer(EnforceSettings(netns=netns, table="mw_unit"))
    later = time.time() + 3600
    await e.apply(
        [ban("203.0.113.5", later), ban("198.51.100.0/24", later), ban("2001:db8::/64", None)]
    )
    await e.apply([ban("203.0.113.7", later), ban("198.51.100.9", later)])
    await e.apply([ban("198.51.0.0/16", later), ban("203.0.113.5", action=Action.UNBAN)])
    counts = await e.kernel_elements()
    assert counts == {"addr4": 2, "addr6": 0, "net4": 1, "net6": 1}
    assert e.status()["failures"] == 0
    await e.remove_table()
    with pytest.raises(BackendUnavailable):
        await e.kernel_elements()


@pytest.fixture
def netns():  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import uuid

    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"):
        pytest.skip("needs root, nft and ip")
    name = f"mwu-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
