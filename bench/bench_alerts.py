#!/usr/bin/env python3
"""Benchmark for issue 5: what alerting costs the daemon.

* events/s through the attack alert rules (``AttackRules.observe``) for 200,000 failures from
  random addresses against 1,000 usernames, plus one ``tick`` per simulated 15 s;
* the time ``Dispatcher.submit`` takes (the only part on the defence's path: a spool insert per
  channel), with three channels, one of them dead;
* time to seed the spike baseline from 8 weeks of hourly counts.

Prints JSON. Benchmarks are not tests: nothing here asserts a time.

    .venv/bin/python bench/bench_alerts.py
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC
from pathlib import Path

from mailward.clock import SystemClock
from mailward.config.model import AlertSettings
from mailward.events import AuthFailure, Service, normalise_ip
from mailward.notify.alerts import AttackRules
from mailward.notify.channels.base import MemoryNotifier
from mailward.notify.dispatch import Dispatcher
from mailward.notify.model import Message
from mailward.notify.spool import Spool


def rules_throughput(n: int = 200_000) -> float:
    rnd = random.Random(1)
    events = [
        AuthFailure(
            ts=1e9 + i * 0.01,
            service=Service.IMAP,
            ip=normalise_ip(
                f"{rnd.randrange(1, 223)}.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
            ),
            username=f"user{rnd.randrange(1000)}",
        )
        for i in range(n)
    ]
    rules = AttackRules(AlertSettings(), tz=UTC)
    next_tick = events[0].ts
    start = time.perf_counter()
    for ev in events:
        if ev.ts >= next_tick:
            rules.tick(ev.ts)
            next_tick += 15
        rules.observe(ev, ev.ts)
    return n / (time.perf_counter() - start)


async def submit_latency(n: int = 2000) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "notify.db")
        d = Dispatcher(
            [
                MemoryNotifier("sendmail"),
                MemoryNotifier("smtp", fail=True),
                MemoryNotifier("apprise"),
            ],
            spool,
            clock=SystemClock(),
            retry_initial=3600,
            max_pending=n * 2,
        )
        d.start()
        times = []
        for i in range(n):
            t = time.perf_counter()
            d.submit(Message(subject=f"alert {i}", text="x" * 800))
            times.append(time.perf_counter() - t)
            if i % 50 == 0:
                await asyncio.sleep(0)
        await d.stop(drain=0)
        spool.close()
    times.sort()
    return {
        "median_ms": round(statistics.median(times) * 1000, 3),
        "p99_ms": round(times[int(0.99 * len(times))] * 1000, 3),
    }


def seed_time() -> float:
    rules = AttackRules(AlertSettings(), tz=UTC)
    hours = [(1e9 + h * 3600, h % 17) for h in range(8 * 168)]
    start = time.perf_counter()
    rules.spike.seed(hours, until=1e9 + 8 * 168 * 3600)
    return time.perf_counter() - start


def main() -> None:
    out = {
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "rules_events_per_s": round(rules_throughput()),
        "submit_3_channels": asyncio.run(submit_latency()),
        "seed_8_weeks_ms": round(seed_time() * 1000, 2),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
