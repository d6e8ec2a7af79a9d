"""Detector benchmarks (issue 3): events/s through the Engine, and memory per tracked address.

    .venv/bin/python bench/bench_detectors.py [--ips 1000000] [--events 300000] [--json]

1. Throughput: a realistic mix fed to ``Engine.observe`` (and ``Engine.check`` per login, as the
   Dovecot policy server does) on a synthetic clock: botnet failures from rotating addresses,
   a few fast brute-forcers, legitimate logins and typos from a user pool, unknown recipients.
2. Memory: ``--ips`` distinct attacking addresses, each failing 3 times within one hour against
   10,000 usernames, default settings except an unbounded circuit breaker (so the bans the
   attack causes are included). Reported as RSS growth and tracemalloc-traced bytes per address.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import time
import tracemalloc
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from mailward.config.model import DetectorSettings
from mailward.detectors.engine import Engine
from mailward.detectors.state import MemoryState
from mailward.events import AuthFailure, AuthSuccess, Event, FailReason, Service, UnknownRecipient

T0 = 1_763_700_000.0


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize()


def mix(n: int, seed: int = 1) -> list[tuple[Event, str | None]]:
    """n events with the username the in-line check would be asked about."""
    rng = random.Random(seed)
    users = [f"user{i}@example.org" for i in range(2000)]
    user_ips = [IPv4Address(rng.randrange(1 << 32)) for _ in range(3000)]
    brute = [IPv4Address(rng.randrange(1 << 32)) for _ in range(20)]
    out: list[tuple[Event, str | None]] = []
    t = T0
    for _ in range(n):
        t += 0.05
        r = rng.random()
        if r < 0.55:  # rotating botnet, random addresses, a handful of target accounts
            user = users[rng.randrange(20)]
            ip: IPv4Address | IPv6Address = IPv4Address(rng.randrange(1 << 32))
            if rng.random() < 0.1:
                ip = IPv6Address((0x20010DB8 << 96) | rng.getrandbits(80))
            ev: Event = AuthFailure(ts=t, service=Service.SUBMISSION, ip=ip, username=user)
        elif r < 0.70:  # fast brute-forcers
            user = users[rng.randrange(len(users))]
            ev = AuthFailure(
                ts=t,
                service=Service.IMAP,
                ip=rng.choice(brute),
                username=user,
                reason=FailReason.BAD_PASSWORD,
            )
        elif r < 0.92:  # real users: mostly successes, some typos
            k = rng.randrange(len(users))
            user = users[k]
            ip = user_ips[k % len(user_ips)]
            if rng.random() < 0.95:
                ev = AuthSuccess(ts=t, service=Service.IMAP, ip=ip, username=user)
            else:
                ev = AuthFailure(ts=t, service=Service.IMAP, ip=ip, username=user)
        else:  # recipient probing
            user = None
            ev = UnknownRecipient(
                ts=t,
                service=Service.SMTP,
                ip=IPv4Address(rng.randrange(1 << 32)),
                recipient=f"x{rng.randrange(10**6)}@example.org",
            )
        out.append((ev, user))
    return out


def throughput(n: int) -> dict[str, Any]:
    events = mix(n)
    engine = Engine(DetectorSettings())
    decisions = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for ev, _ in events:
        decisions += len(engine.observe(ev, ev.ts))
    observe_wall, observe_cpu = time.perf_counter() - wall, time.process_time() - cpu
    # The in-line question, as the policy server asks it before each login.
    wall, cpu = time.perf_counter(), time.process_time()
    refused = 0
    for ev, user in events:
        if ev.ip is not None and not engine.check(ev.ip, user, ev.ts).allow:
            refused += 1
    check_wall, check_cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "events": n,
        "observe_events_per_cpu_s": round(n / observe_cpu),
        "observe_events_per_wall_s": round(n / observe_wall),
        "check_per_cpu_s": round(n / check_cpu),
        "check_per_wall_s": round(n / check_wall),
        "check_cpu_us": round(check_cpu / n * 1e6, 2),
        "decisions": decisions,
        "refused_checks": refused,
        "active": len(engine.ledger),
    }


def attack(n_ips: int, seed: int = 2) -> Iterator[AuthFailure]:
    """3 failures per address, n_ips distinct addresses, all within one hour."""
    rng = random.Random(seed)
    users = [f"user{i}@example.org" for i in range(10_000)]
    step = 3600.0 / (3 * n_ips)
    t = T0
    # addresses rotate: each makes its 3 tries, interleaved with the next ones
    pending: list[tuple[IPv4Address, int]] = []
    seen: set[int] = set()
    made = 0
    while made < n_ips or pending:
        if made < n_ips and (len(pending) < 64 or rng.random() < 0.5):
            value = rng.randrange(1 << 32)
            while value in seen:
                value = rng.randrange(1 << 32)
            seen.add(value)
            pending.append((IPv4Address(value), 3))
            made += 1
        i = rng.randrange(len(pending))
        ip, left = pending[i]
        t += step
        yield AuthFailure(
            ts=t, service=Service.SUBMISSION, ip=ip, username=users[rng.randrange(len(users))]
        )
        if left == 1:
            pending[i] = pending[-1]
            pending.pop()
        else:
            pending[i] = (ip, left - 1)


def memory(n_ips: int, traced: bool) -> dict[str, Any]:
    settings = DetectorSettings(safety={"max_bans_per_minute": 10**9})
    events = attack(n_ips)  # generated lazily; the generator's own set is measured out below
    gc.collect()
    if traced:
        tracemalloc.start()
    base = rss_bytes()
    state = MemoryState()
    engine = Engine(settings, state=state)
    cpu = time.process_time()
    count = 0
    last = T0
    for ev in events:
        engine.observe(ev, ev.ts)
        last = ev.ts
        count += 1
    elapsed = time.process_time() - cpu  # includes generating the events
    gc.collect()
    grown = rss_bytes() - base
    traced_bytes = tracemalloc.get_traced_memory()[0] if traced else None
    if traced:
        tracemalloc.stop()
    # the generator's seen-set (one int per address) is not detector state
    seen_set = 8 * 2 * n_ips * 2 + 32 * n_ips  # set slots at load <= 2/3 plus the int objects
    out = {
        "ips": n_ips,
        "events": count,
        "events_per_cpu_s_incl_generation": round(count / elapsed),
        "rss_growth_mb": round(grown / 2**20, 1),
        "rss_bytes_per_ip": round((grown - seen_set) / n_ips),
        "bans": len(engine.ledger),
        "state_keys": state.sizes(),
        "simulated_minutes": round((last - T0) / 60, 1),
    }
    if traced_bytes is not None:
        out["traced_mb"] = round(traced_bytes / 2**20, 1)
        out["traced_bytes_per_ip"] = round((traced_bytes - seen_set) / n_ips)
    # after the windows pass, sweeping gives the memory back (bans stay until they expire)
    engine.expire(last + 2 * 3600)
    out["state_keys_after_2h"] = state.sizes()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--ips", type=int, default=1_000_000)
    parser.add_argument("--traced-ips", type=int, default=50_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # Memory first, in a fresh process: RSS growth is only meaningful before other work has
    # grown the heap.
    result: dict[str, Any] = {"load_average": open("/proc/loadavg").read().split()[:3]}
    result["memory"] = memory(args.ips, traced=False)
    result["throughput"] = throughput(args.events)
    if args.traced_ips:
        result["memory_traced"] = memory(args.traced_ips, traced=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for name, part in result.items():
        if not isinstance(part, dict):
            print(f"{name}: {part}")
            continue
        print(f"{name}:")
        for key, value in part.items():
            print(f"  {key}: {value}")


if __name__ == "__main__":
    ip_address("127.0.0.1")  # warm the ipaddress module
    main()
