#!/usr/bin/env python3
"""Store benchmark: insert rate (events/s), bytes per event on disk, read-back and report queries.

    python bench/bench_store.py [--events 1000000] [--dir /tmp] [--keep]

Events are generated first (not timed) as a seeded, realistic mix: connections and disconnects
with Postfix-style counters, SASL failures from a skewed pool of attacking addresses (10% IPv6),
a few successes, unknown-recipient probes, lost connections and PREGREET violations, each with a
file+line origin, spread over 30 days. They are then imported the way ``analyze --store`` does:
``import_batch`` calls of 10,000 events, each atomic with its import position.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from mailward.events import (
    AuthFailure,
    AuthSuccess,
    Connection,
    Disconnect,
    Event,
    FailReason,
    LostConnection,
    Origin,
    ProtocolViolation,
    Service,
    UnknownRecipient,
    Violation,
)
from mailward.storage.sqlite import SqliteStore

T_START = 1_760_000_000.0


def generate(n: int, seed: int = 1) -> list[Event]:
    rnd = random.Random(seed)
    attackers: list[IPv4Address | IPv6Address] = [
        IPv4Address(rnd.getrandbits(32)) for _ in range(18_000)
    ]
    attackers += [IPv6Address((0x2001_0DB8 << 96) | rnd.getrandbits(64)) for _ in range(2_000)]
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(attackers))]
    users = [f"user{i}@example.org" for i in range(3_000)] + ["admin", "info", "test", "root"]
    src = Origin("/var/log/mail.log")
    services = (Service.SMTP, Service.SUBMISSION, Service.IMAP, Service.POP3)
    out: list[Event] = []
    span = 30 * 86400.0
    ips = rnd.choices(attackers, weights, k=n)
    for i in range(n):
        ts = float(int(T_START + span * i / n))  # syslog stamps are whole seconds
        ip = ips[i]
        origin = Origin(src.source, i + 1)
        r = rnd.random()
        svc = services[i % 4]
        if r < 0.28:
            out.append(Connection(ts=ts, service=svc, ip=ip, origin=origin))
        elif r < 0.55:
            out.append(
                Disconnect(
                    ts=ts,
                    service=svc,
                    ip=ip,
                    auth_ok=0,
                    auth_total=rnd.randint(0, 3),
                    commands_ok=rnd.randint(1, 5),
                    commands_total=rnd.randint(2, 6),
                    origin=origin,
                )
            )
        elif r < 0.83:
            session = (
                None if svc in (Service.SMTP, Service.SUBMISSION) else f"{rnd.getrandbits(64):016x}"
            )
            out.append(
                AuthFailure(
                    ts=ts,
                    service=svc,
                    ip=ip,
                    username=rnd.choice(users),
                    mechanism=rnd.choice(("LOGIN", "PLAIN")),
                    reason=rnd.choice((FailReason.BAD_PASSWORD, FailReason.UNKNOWN_USER)),
                    session=session,
                    origin=origin,
                )
            )
        elif r < 0.86:
            out.append(
                AuthSuccess(
                    ts=ts,
                    service=Service.IMAP,
                    ip=ip,
                    username=rnd.choice(users[:50]),
                    mechanism="PLAIN",
                    session=f"{rnd.getrandbits(64):016x}",
                    origin=origin,
                )  # fmt: skip
            )
        elif r < 0.93:
            out.append(
                UnknownRecipient(
                    ts=ts,
                    service=Service.SMTP,
                    ip=ip,
                    recipient=f"probe{rnd.randint(0, 20000)}@example.org",
                    sender="<>",
                    helo="localhost",
                    origin=origin,
                )  # fmt: skip
            )
        elif r < 0.97:
            out.append(LostConnection(ts=ts, service=svc, ip=ip, stage="AUTH", origin=origin))
        else:
            out.append(
                ProtocolViolation(
                    ts=ts,
                    service=Service.POSTSCREEN,
                    ip=ip,
                    violation=Violation.PREGREET,
                    detail="11 after CONNECT: EHLO x",
                    origin=origin,
                )  # fmt: skip
            )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--chunk", type=int, default=10_000)
    ap.add_argument(
        "--dir", default=None, help="where to create the database (default: a temp dir)"
    )
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    t = time.perf_counter()
    events = generate(args.events)
    gen_s = time.perf_counter() - t

    tmpdir = tempfile.mkdtemp(prefix="mailward-bench-", dir=args.dir)
    path = Path(tmpdir) / "bench.db"
    store = SqliteStore(path)
    t, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(events), args.chunk):
        chunk = events[start : start + args.chunk]
        store.import_batch("bench-file", start + len(chunk), chunk)
    insert_s = time.perf_counter() - t
    # CPU seconds of this process: on a shared machine wall time measures the neighbours too.
    insert_cpu = time.process_time() - cpu
    store.checkpoint()
    size = os.path.getsize(path)

    t, cpu = time.perf_counter(), time.process_time()
    back = sum(1 for _ in store.events())
    read_s = time.perf_counter() - t
    read_cpu = time.process_time() - cpu
    day = T_START + 86400
    t = time.perf_counter()
    top = store.top_ips(T_START, day, kinds=["auth_failure"], limit=10)
    hours = store.counts_per_hour(T_START, day)
    users = store.top_usernames(T_START, day, kinds=["auth_failure"])
    day_query_s = time.perf_counter() - t
    store.close()
    assert back == len(events) and top and hours and users

    result = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "python": sys.version.split()[0],
        "events": len(events),
        "generate_s": round(gen_s, 2),
        "insert_s": round(insert_s, 2),
        "insert_events_per_s": round(len(events) / insert_s),
        "insert_cpu_s": round(insert_cpu, 2),
        "insert_events_per_cpu_s": round(len(events) / insert_cpu),
        "db_bytes": size,
        "bytes_per_event": round(size / len(events), 1),
        "read_events_per_s": round(back / read_s),
        "read_events_per_cpu_s": round(back / read_cpu),
        "one_day_report_queries_s": round(day_query_s, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, indent=2))
    if args.keep:
        print(f"kept {path}", file=sys.stderr)
    else:
        shutil.rmtree(tmpdir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
