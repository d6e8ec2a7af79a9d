"""How bans reach nftables at 10,000 bans, inside a throw-away network namespace (root only).

Measures, with mailward's own NftablesEnforcer and the real nft binary:
  - one atomic batch of 10,000 address bans (plus 2,000 /24 and 1,000 /64 prefix bans);
  - the resulting set sizes as the kernel lists them, and kernel slab memory used;
  - a restore on start (the whole table rebuilt from 13,000 active decisions in one batch);
  - 100 incremental batches of 100 bans, and single-ban batches, for comparison.

    sudo .venv/bin/python bench/bench_nft.py [--bans 10000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from ipaddress import IPv4Address, IPv6Network

from mailward.config.model import EnforceSettings
from mailward.decisions.model import Action, Decision
from mailward.enforcers.nftables import NftablesEnforcer


def slab_kib() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("Slab:"):
                return int(line.split()[1])
    return 0


def decisions(
    n_addr: int, n_v4net: int, n_v6net: int, until: float, start: int = 0
) -> list[Decision]:
    out = []
    base = int(IPv4Address("100.64.0.0"))
    for i in range(start, start + n_addr):
        out.append(
            Decision(
                ts=0,
                target=str(IPv4Address(base + i)),
                action=Action.BAN,
                rule="bench",
                until=until,
            )
        )
    for i in range(n_v4net):
        out.append(
            Decision(
                ts=0,
                target=f"198.{18 + i // 256}.{i % 256}.0/24",
                action=Action.BAN,
                rule="bench",
                until=until,
            )
        )
    v6 = IPv6Network("2001:db8::/32")
    for i in range(n_v6net):
        net = IPv6Network((int(v6.network_address) + (i << 64), 64))
        out.append(Decision(ts=0, target=str(net), action=Action.BAN, rule="bench", until=until))
    return out


async def bench(ns: str, n: int) -> dict[str, object]:
    settings = EnforceSettings(netns=ns, table="mw_bench")
    enforcer = NftablesEnforcer(settings)
    until = time.time() + 86400
    await enforcer.apply([])  # create the empty table
    results: dict[str, object] = {}

    bulk = decisions(n, 2000, 1000, until)
    slab0 = slab_kib()
    t = time.perf_counter()
    await enforcer.apply(bulk)
    results["batch_seconds"] = round(time.perf_counter() - t, 3)
    results["batch_elements"] = len(bulk)
    await asyncio.sleep(0.5)
    results["slab_kib_delta"] = slab_kib() - slab0
    results["kernel_elements"] = await enforcer.kernel_elements()
    listing = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "list", "set", "inet", "mw_bench", "addr4"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    results["addr4_listing_bytes"] = len(listing)

    fresh = NftablesEnforcer(settings)  # a daemon starting: mirror empty, table exists
    t = time.perf_counter()
    await fresh.restore(bulk)
    results["restore_seconds"] = round(time.perf_counter() - t, 3)
    results["kernel_elements_after_restore"] = await fresh.kernel_elements()

    times = []
    for b in range(100):
        chunk = decisions(100, 0, 0, until, start=10 * n + b * 100)
        t = time.perf_counter()
        await fresh.apply(chunk)
        times.append(time.perf_counter() - t)
    results["incremental_100_bans_ms_median"] = round(statistics.median(times) * 1000, 2)
    results["incremental_100_bans_ms_max"] = round(max(times) * 1000, 2)

    singles = []
    for i in range(200):
        chunk = decisions(1, 0, 0, until, start=20 * n + i)
        t = time.perf_counter()
        await fresh.apply(chunk)
        singles.append(time.perf_counter() - t)
    results["single_ban_ms_median"] = round(statistics.median(singles) * 1000, 2)
    results["one_ban_per_batch_extrapolated_seconds"] = round(statistics.median(singles) * n, 1)

    t = time.perf_counter()
    await fresh.remove_table()
    results["remove_table_seconds"] = round(time.perf_counter() - t, 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bans", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"):
        sys.exit("bench_nft: needs root, nft and ip")
    ns = f"mwbench-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        results = asyncio.run(bench(ns, args.bans))
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    nft_version = subprocess.run(
        ["nft", "--version"], capture_output=True, text=True
    ).stdout.strip()
    results = {
        "bans": args.bans,
        "nft": nft_version,
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        **results,
    }
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key:<42} {value}")


if __name__ == "__main__":
    main()
