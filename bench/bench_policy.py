"""Benchmark of mailward's in-line policy servers against null responders on the same stack.

For each protocol (Postfix policy delegation, Dovecot auth policy over HTTP/1.1 keep-alive):
  * saturated decisions/s: N persistent connections, each sending its next request as soon as
    the previous reply arrives (Postfix's smtpd and Dovecot's HTTP client never pipeline);
  * p50/p99 latency at fixed offered loads (open loop, default 500, 2,000, 5,000 req/s): requests
    are due on a fixed schedule and latency counts from the due time, so a stalled server is
    charged for the queue it causes (no coordinated omission);
and the same for a null responder (answers DUNNO / {"status":0} with no logic) on the same stack:
plain asyncio Protocol for Postfix, mailward's ``HttpServer`` (asyncio Protocol + httptools) for
Dovecot. Saturated runs also record the server process's CPU time per request (utime + stime
from /proc/PID/stat over the measured window) and the load generator's, so the figures stay
honest when the generator, not the server, is the limit.

Saturated throughput is measured with mailward's server and its null up at once, on the same
core, driven in turn in short slices (AB BA AB BA..., 0.25 s each, rounds x seconds per side in
all): on a virtual machine the host takes the CPUs away for milliseconds at a time (steal), and
over 3-second rounds on fresh servers (how it was measured until 2026-11-22) one burst decided a
round: the ratio of single rounds ranged from 39 % to 102 %. Slices spread the bursts over both
sides; the quartiles of the per-slice ratios are reported beside the overall one. Latency points
are measured in rounds that alternate mailward and its null, each on a fresh server process, and
reported as the median with the rounds listed. Each measurement records the machine's steal
share over its window, and the run starts and ends with a platform probe: a busy loop on each
CPU that counts the pauses it sees (> 1 ms, > 2 ms). No server can answer faster than the
platform lets it run, so those counts are the floor under every p99 of the run.

The server runs in its own process (one core), the load generator in this one (the other core).
The generator runs on uvloop (a C event loop; ``--client-loop asyncio`` for the old one): on
CPython's own loop it costs ~50 µs a request, as much as the null, so it could not saturate the
nulls and every ratio against them came out flattering (2026-11-22, docs/benchmarks.md).
mailward's servers run with the real detector engine (default [detectors] settings; ``--engine
memory`` for the in-memory twin) holding 10,000 banned addresses and 1,000 banned /24s; requests come from 50,000 client
addresses (about 18 % of them banned), and a third of the Dovecot requests are reports (allow, allow, report: one login).

    .venv-compiled/bin/python bench/bench_policy.py [--seconds 3] [--rounds 5] [--pin] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import multiprocessing as mp
import os
import platform
import random
import socket
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

CLIENTS = 50_000
BANNED_IPS = 10_000
BANNED_NETS = 1_000


# ---------------------------------------------------------------------------- request mixes


def client_ip(i: int) -> str:
    return f"198.{18 + (i >> 16) % 2}.{(i >> 8) & 255}.{i & 255}"


def postfix_requests(n: int, seed: int = 1) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    states = ["CONNECT", "EHLO", "MAIL", "RCPT", "RCPT", "DATA"]
    for k in range(n):
        ip = client_ip(rnd.randrange(CLIENTS))
        state = states[k % len(states)]
        user = f"user{rnd.randrange(500)}" if state in ("MAIL", "RCPT", "DATA") and k % 3 else ""
        out.append(
            (
                "request=smtpd_access_policy\n"
                f"protocol_state={state}\nprotocol_name=ESMTP\nclient_address={ip}\n"
                "client_name=unknown\nclient_port=38989\nreverse_client_name=unknown\n"
                "server_address=127.0.0.1\nserver_port=587\nhelo_name=client.test\n"
                f"sender=a@example.org\nrecipient=r{k % 97}@example.org\nrecipient_count=0\n"
                f"queue_id=\ninstance=515d.6b0181d8.{k % 5000:x}.0\nsize=0\netrn_domain=\n"
                f"stress=\nsasl_method={'PLAIN' if user else ''}\nsasl_username={user}\n"
                "sasl_sender=\nccert_subject=\nccert_issuer=\nccert_fingerprint=\n"
                "ccert_pubkey_fingerprint=\nencryption_protocol=\nencryption_cipher=\n"
                "encryption_keysize=0\npolicy_context=submission-connect\n\n"
            ).encode()
        )
    return out


def dovecot_requests(n: int, seed: int = 2) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    for k in range(n):
        ip = client_ip(rnd.randrange(CLIENTS))
        login = f"user{rnd.randrange(2000)}"
        body: dict[str, Any] = {
            "device_id": "",
            "login": login,
            "protocol": "imap" if k % 4 else "smtp",
            "pwhash": f"{rnd.randrange(4096):04x}",
            "remote": ip,
            "session_id": f"s{k}",
            "tls": True,
        }
        command = "allow"
        if k % 3 == 2:
            command = "report"
            body.update(success=rnd.random() < 0.5, policy_reject=False)
        raw = json.dumps(body, separators=(",", ":")).encode()
        out.append(
            f"POST /?command={command} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "User-Agent: dovecot/auth-policy-client\r\nConnection: Keep-Alive\r\n"
            f"Content-Type: application/json\r\nX-API-Key: bench\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n".encode()
            + raw
        )
    return out


# ---------------------------------------------------------------------------- servers


def _serve(kind: str, port: int, ready: Any, cpu: int | None, freeze: bool, engine: str) -> None:
    """Child process: run one server until killed."""
    import logging

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})

    logging.disable(logging.WARNING)  # a bench logs nothing per request
    asyncio.run(_serve_async(kind, port, ready, freeze, engine))


def make_backend(engine: str) -> Any:
    """The servers' state: the real detector engine (or its in-memory twin) with the bench's
    bans (10,000 addresses drawn from the clients, 1,000 /24s)."""
    from mailward.decisions.model import Action, Decision
    from mailward.policy.backend import MemoryBackend

    backend: Any
    if engine == "real":
        from mailward.config.model import Settings
        from mailward.detectors.engine import Engine

        backend = Engine.from_settings(Settings())
    else:
        backend = MemoryBackend(ban_after=10**9, tarpit_after=10**9, protect_after=10**9)
    rnd = random.Random(3)
    for _ in range(BANNED_IPS):
        backend.apply(Decision(0, client_ip(rnd.randrange(CLIENTS)), Action.BAN, "bench"))
    for i in range(BANNED_NETS):
        backend.apply(Decision(0, f"203.{i >> 8}.{i & 255}.0/24", Action.BAN, "bench"))
    return backend


async def _serve_async(kind: str, port: int, ready: Any, freeze: bool, engine: str) -> None:
    from mailward.config.model import DovecotPolicySettings, PostfixPolicySettings
    from mailward.policy.dovecot import DovecotPolicyServer
    from mailward.policy.postfix import PostfixPolicyServer

    backend = make_backend(engine)
    server: Any
    if kind == "postfix":
        server = PostfixPolicyServer(
            PostfixPolicySettings(listen=[f"inet:127.0.0.1:{port}"], socket_group=None),
            backend=backend,
        )
        await server.start()
    elif kind == "dovecot":
        server = DovecotPolicyServer(
            DovecotPolicySettings.model_validate({"port": port, "api_key": "bench"}),
            backend=backend,
        )
        await server.start()
    elif kind == "postfix-null":
        loop = asyncio.get_running_loop()
        await loop.create_server(_NullPostfix, "127.0.0.1", port)
    elif kind == "dovecot-null":
        try:
            from mailward.policy.httpserver import HttpServer, Limits
        except ImportError:  # a tree from before the httptools server: its stack was aiohttp
            await _aiohttp_null(port)
        else:
            null = HttpServer("dovecot-null", _NullDovecot(), Limits())
            await null.start("127.0.0.1", port)
    if freeze:
        # What docs/benchmarks.md recommends for the daemon: state loaded at start is moved out
        # of the cyclic GC's reach, so full collections stay short (one took 68 ms over 140k
        # objects without it).
        gc.collect()
        gc.freeze()
    ready.set()
    await asyncio.Event().wait()


async def _aiohttp_null(port: int) -> None:
    from aiohttp import web

    body = b'{"status":0,"msg":""}'

    async def null(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", null)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()


class _NullDovecot:
    """The Dovecot server's HTTP stack with no logic: same parser, same limits, same framing;
    reads the same header (the API key) and answers status 0 without looking at the body."""

    wanted = frozenset({b"x-api-key"})

    def __init__(self) -> None:
        from mailward.policy.httpserver import Reply

        self.reply = Reply(200, b'{"status":0,"msg":""}')

    def head(self, method: bytes, target: bytes, headers: dict[bytes, bytes], peer: str) -> None:
        return None

    def answer(self, target: bytes, headers: dict[bytes, bytes], body: bytes, peer: str) -> Any:
        return self.reply


try:  # the servers' read path (one reused buffer per connection); older trees: plain Protocol
    from mailward.policy.buffered import ReusedReadBuffer as _NullBase
except ImportError:
    _NullBase = asyncio.Protocol  # type: ignore[assignment,misc]
try:  # the servers' write path (one batch of replies per loop pass); older trees: direct writes
    from mailward.policy.buffered import ReplyBatch
except ImportError:
    ReplyBatch = None  # type: ignore[assignment,misc]


try:  # the servers' framing in C (the same line walk their scanner does); older trees: find
    from mailward.policy._scan import frame as _frame
except ImportError:
    _frame = None


class _NullPostfix(_NullBase):  # type: ignore[misc,valid-type]
    """Same framing work as the real server (buffer, find the blank line with the same C line
    walk when it is built, replies written per loop pass), no parsing, no logic."""

    replies: Any = None  # one batch for the process, as the real server has one per server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buf = bytearray()
        if ReplyBatch is not None and _NullPostfix.replies is None:
            _NullPostfix.replies = ReplyBatch(asyncio.get_running_loop())

    def data_received(self, data: bytes | memoryview) -> None:
        buf = self.buf
        buf += data
        replies = self.replies
        start = 0
        while True:
            if _frame is not None:
                nxt = _frame(buf, start)
            else:
                end = buf.find(b"\n\n", start)
                nxt = end + 2 if end >= 0 else -1
            if nxt < 0:
                break
            start = nxt
            if replies is None:
                self.transport.write(b"action=DUNNO\n\n")
            else:
                replies.put(self.transport, b"action=DUNNO\n\n")
        if start:
            del buf[:start]


# ---------------------------------------------------------------------------- load generator


class _Conn(asyncio.Protocol):
    """One persistent client connection; one outstanding request at a time."""

    def __init__(self, is_http: bool, on_reply: Callable[[_Conn], None]) -> None:
        self.is_http = is_http
        self.on_reply = on_reply
        self.buf = bytearray()
        self.due = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes, due: float) -> None:
        self.due = due
        assert self.transport is not None
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.is_http:
                head = self.buf.find(b"\r\n\r\n")
                if head < 0:
                    return
                i = self.buf.find(b"Content-Length:", 0, head)
                if i < 0:
                    i = self.buf.lower().find(b"content-length:", 0, head)
                j = self.buf.find(b"\r\n", i)
                length = int(self.buf[i + 15 : j])
                end = head + 4 + length
                if len(self.buf) < end:
                    return
                if not self.buf.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(bytes(self.buf[:60]))
            else:
                e = self.buf.find(b"\n\n")
                if e < 0:
                    return
                end = e + 2
            del self.buf[:end]
            self.on_reply(self)


async def _connect(
    port: int, n: int, is_http: bool, on_reply: Callable[[_Conn], None]
) -> list[_Conn]:
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(n):
        _, proto = await loop.create_connection(lambda: _Conn(is_http, on_reply), "127.0.0.1", port)
        conns.append(proto)
    return conns


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_times() -> list[int]:
    """The machine's /proc/stat cpu line: user nice system idle iowait irq softirq steal ..."""
    with open("/proc/stat") as fh:
        return [int(x) for x in fh.readline().split()[1:]]


def steal_share(before: list[int], after: list[int]) -> float | None:
    """Share of the machine's CPU time the hypervisor took (another guest ran) between two reads."""
    spent = [b - a for a, b in zip(before, after, strict=False)]
    return round(spent[7] / max(1, sum(spent)), 3) if len(spent) > 7 else None


def _stall_loop(cpu: int | None, seconds: float, out: Any) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    # Normal scheduling even under `chrt`: a real-time busy loop is throttled by the kernel
    # (sched_rt_runtime_us, 50 ms a second), which would be counted as the platform's pause.
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    gaps = []
    clock = time.perf_counter
    last = start = clock()
    end = start + seconds
    while last < end:
        now = clock()
        if now - last > 0.0005:
            gaps.append(now - last)
        last = now
    out.send(gaps)


def platform_stalls(seconds: float, cpus: list[int | None]) -> dict[str, Any]:
    """Pauses a busy loop sees on each CPU at once: time the platform did not run it."""
    ends = []
    procs = []
    for cpu in cpus:
        recv, send = mp.Pipe(duplex=False)
        proc = mp.Process(target=_stall_loop, args=(cpu, seconds, send), daemon=True)
        proc.start()
        ends.append(recv)
        procs.append(proc)
    gaps = [g for end in ends for g in end.recv()]
    for proc in procs:
        proc.join()
    per_s = len(cpus) * seconds
    return {
        "seconds": seconds,
        "cpus": len(cpus),
        "over_1ms_per_cpu_s": round(sum(g > 0.001 for g in gaps) / per_s, 2),
        "over_2ms_per_cpu_s": round(sum(g > 0.002 for g in gaps) / per_s, 2),
        "paused_share": round(sum(gaps) / per_s, 4),
        "max_ms": round(max(gaps, default=0.0) * 1000, 2),
    }


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (clock ticks, 10 ms on Linux)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


async def interleaved(
    servers: dict[str, tuple[int, int]],
    reqs: list[bytes],
    conns: int,
    slices: int,
    slice_seconds: float,
    is_http: bool,
) -> dict[str, dict[str, Any]]:
    """Saturate each of two servers (kind -> (port, pid), both on the same core) in turn, in
    short slices ordered AB BA AB BA..., so both sample the host's steal alike: a burst that
    would decide a 3-second round lands on both sides over a run. Per side: replies counted
    inside its slices, its server's and the generator's CPU time, the steal share during its
    slices, and each slice's rate."""
    kinds = list(servers)
    pools: dict[str, list[_Conn]] = {}
    idle: dict[str, list[_Conn]] = {k: [] for k in kinds}
    done = dict.fromkeys(kinds, 0)
    active = dict.fromkeys(kinds, False)
    idx = 0

    def replier(kind: str) -> Callable[[_Conn], None]:
        def on_reply(c: _Conn) -> None:
            nonlocal idx
            done[kind] += 1
            if active[kind]:
                idx += 1
                c.send(reqs[idx % len(reqs)], 0.0)
            else:
                idle[kind].append(c)

        return on_reply

    for kind in kinds:
        pools[kind] = await _connect(servers[kind][0], conns, is_http, replier(kind))
        idle[kind].extend(pools[kind])

    async def run(kind: str, seconds: float) -> tuple[int, float, float, float, list[int]]:
        nonlocal idx
        active[kind] = True
        waiting, idle[kind] = idle[kind], []
        before, cpu0, own0 = cpu_times(), cpu_seconds(servers[kind][1]), time.process_time()
        start_done, start = done[kind], time.perf_counter()
        for c in waiting:
            idx += 1
            c.send(reqs[idx % len(reqs)], 0.0)
        await asyncio.sleep(seconds)
        n, spent = done[kind] - start_done, time.perf_counter() - start
        active[kind] = False
        cpu, own = cpu_seconds(servers[kind][1]) - cpu0, time.process_time() - own0
        after = cpu_times()
        deadline = time.perf_counter() + 5.0
        while len(idle[kind]) < conns and time.perf_counter() < deadline:
            await asyncio.sleep(0.0005)  # the requests in flight come back before the switch
        return n, spent, cpu, own, [b - a for a, b in zip(before, after, strict=False)]

    for kind in kinds:  # warm-up: caches, the first clients' state, the allocator
        await run(kind, 1.0)
    count = dict.fromkeys(kinds, 0)
    elapsed = dict.fromkeys(kinds, 0.0)
    cpu_used = dict.fromkeys(kinds, 0.0)
    own_used = dict.fromkeys(kinds, 0.0)
    machine: dict[str, list[int]] = {k: [0] * 10 for k in kinds}
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    for i in range(slices):
        for kind in kinds if i % 2 == 0 else kinds[::-1]:
            n, spent, cpu, own, times = await run(kind, slice_seconds)
            count[kind] += n
            elapsed[kind] += spent
            cpu_used[kind] += cpu
            own_used[kind] += own
            machine[kind] = [a + b for a, b in zip(machine[kind], times, strict=False)]
            rates[kind].append(n / spent)
    for pool in pools.values():
        for c in pool:
            assert c.transport is not None
            c.transport.close()
    return {
        kind: {
            "per_s": count[kind] / elapsed[kind],
            "server_cpu_us": cpu_used[kind] / max(1, count[kind]) * 1e6,
            "server_cpu_busy": cpu_used[kind] / elapsed[kind],  # 1.0: its core was saturated
            "client_cpu_us": own_used[kind] / max(1, count[kind]) * 1e6,
            "steal": round(machine[kind][7] / max(1, sum(machine[kind])), 3),
            "slice_rates": [round(r, 1) for r in rates[kind]],
        }
        for kind in kinds
    }


async def fixed_load(
    port: int, reqs: list[bytes], rate: float, seconds: float, conns: int, is_http: bool
) -> dict[str, float]:
    latencies: list[float] = []
    idle: deque[_Conn] = deque()
    backlog: deque[float] = deque()
    idx = 0
    measuring_from = 0.0

    def fire(c: _Conn, due: float, waited: bool) -> None:
        # Latency counts from the due time when the request had to wait for a free connection
        # (the server was slow: no coordinated omission), else from the moment it was sent (the
        # generator's own ~1 ms timer slack is not the server's latency).
        nonlocal idx
        idx += 1
        c.send(reqs[idx % len(reqs)], due if waited else time.perf_counter())

    def on_reply(c: _Conn) -> None:
        now = time.perf_counter()
        if c.due >= measuring_from:  # c.due: see fire()
            latencies.append(now - c.due)
        if backlog:
            fire(c, backlog.popleft(), True)
        else:
            idle.append(c)

    pool = await _connect(port, conns, is_http, on_reply)
    idle.extend(pool)
    interval = 1.0 / rate
    t0 = time.perf_counter()
    measuring_from = t0 + 0.5  # the first half second warms up
    end = t0 + 0.5 + seconds
    n = 0
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        while t0 + n * interval <= now:
            due = t0 + n * interval
            n += 1
            if idle:
                fire(idle.popleft(), due, False)
            else:
                backlog.append(due)  # no free connection: it waits, and the wait counts
        # 1 ms: what both loops can do (CPython's rounds up to its poll's millisecond; libuv
        # rounds a shorter timer down to zero and the generator would spin, and under `chrt`
        # a spinning real-time task is throttled 50 ms a second: tails that are nobody's).
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.5)
    for c in pool:
        assert c.transport is not None
        c.transport.close()
    latencies.sort()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    achieved = len(latencies) / seconds
    return {
        "offered": rate,
        "achieved": round(achieved, 1),
        "p50_ms": round(q[49] * 1000, 3),
        "p99_ms": round(q[98] * 1000, 3),
        "max_ms": round(latencies[-1] * 1000, 3),
        "unanswered": len(backlog),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(kind: str, args: argparse.Namespace) -> tuple[Any, int]:
    port = free_port()
    ready = mp.Event()
    proc = mp.Process(
        target=_serve,
        args=(kind, port, ready, args.server_cpu, args.gc_freeze, args.engine),
        daemon=True,
    )
    proc.start()
    if not ready.wait(30):
        proc.kill()
        raise RuntimeError(f"{kind} server did not start")
    return proc, port


def run_pair(kinds: list[str], reqs: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """Saturated throughput of mailward and its null, interleaved on fresh servers."""
    procs = {}
    try:
        for kind in kinds:
            procs[kind] = _start(kind, args)
        servers = {k: (port, proc.pid) for k, (proc, port) in procs.items()}
        slices = max(2, math.ceil(args.rounds * args.seconds / args.slice_seconds))
        return args.run(
            interleaved(
                servers,
                reqs,
                args.conns,
                slices,
                args.slice_seconds,
                kinds[0].startswith("dovecot"),
            )
        )
    finally:
        for proc, _ in procs.values():
            proc.kill()
            proc.join()


def run_loads(kind: str, reqs: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """p50/p99 at each fixed offered load, on a fresh server."""
    proc, port = _start(kind, args)
    try:
        is_http = kind.startswith("dovecot")
        result: dict[str, Any] = {"server": kind, "loads": []}
        for rate in args.rates:
            before = cpu_times()
            point = args.run(fixed_load(port, reqs, rate, args.seconds, args.load_conns, is_http))
            point["steal"] = steal_share(before, cpu_times())
            result["loads"].append(point)
        return result
    finally:
        proc.kill()
        proc.join()


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def summarise(kind: str, sat: dict[str, Any], loads: list[dict[str, Any]]) -> dict[str, Any]:
    """The interleaved saturated figures, and the median of the rounds for every load point
    with the rounds themselves kept beside it."""
    r: dict[str, Any] = {"server": kind}
    r["saturated_per_s"] = round(sat["per_s"], 1)
    r["saturated_slices"] = sat["slice_rates"]
    r["server_cpu_us"] = round(sat["server_cpu_us"], 1)
    r["server_cpu_busy"] = round(sat["server_cpu_busy"], 3)
    r["client_cpu_us"] = round(sat["client_cpu_us"], 1)
    r["saturated_steal"] = sat["steal"]
    points = []
    for i, rate in enumerate(x["offered"] for x in loads[0]["loads"]):
        rounds = [run["loads"][i] for run in loads]
        points.append(
            {
                "offered": rate,
                "achieved": _median([x["achieved"] for x in rounds]),
                "p50_ms": _median([x["p50_ms"] for x in rounds]),
                "p99_ms": _median([x["p99_ms"] for x in rounds]),
                "p99_ms_rounds": [x["p99_ms"] for x in rounds],
                "max_ms_rounds": [x["max_ms"] for x in rounds],
                "steal_rounds": [x["steal"] for x in rounds],
                "unanswered": sum(x["unanswered"] for x in rounds),
            }
        )
    r["loads"] = points
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per point")
    ap.add_argument("--conns", type=int, default=16, help="connections for the saturated run")
    ap.add_argument("--load-conns", type=int, default=32, help="connection pool at fixed loads")
    ap.add_argument("--rates", type=float, nargs="+", default=[500, 2000, 5000])
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument(
        "--slice-seconds",
        type=float,
        default=0.25,
        help="saturated runs: length of one slice (rounds x seconds per side in all)",
    )
    ap.add_argument(
        "--rounds", type=int, default=5, help="rounds per server and point (median reported)"
    )
    ap.add_argument(
        "--probe-seconds",
        type=float,
        default=3.0,
        help="platform probe at the start and the end (0: skip)",
    )
    ap.add_argument(
        "--engine",
        choices=["real", "memory"],
        default="real",
        help="detectors behind mailward's servers: the real Engine (default) or the memory twin",
    )
    ap.add_argument(
        "--gc-freeze", action="store_true", help="gc.freeze() the server after loading its state"
    )
    ap.add_argument(
        "--only", choices=["postfix", "dovecot"], help="benchmark one protocol (and its null)"
    )
    ap.add_argument(
        "--client-loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="the load generator's event loop (uvloop: the generator is never the limit)",
    )
    ap.add_argument(
        "--pin",
        action="store_true",
        help="server on CPU 1, load generator on CPU 0 (run under `chrt -r 10` on a shared box)",
    )
    args = ap.parse_args()
    if args.rounds < 1 or args.seconds <= 0 or args.slice_seconds <= 0:
        ap.error("--rounds must be at least 1, --seconds and --slice-seconds above 0")
    args.run = asyncio.run
    if args.client_loop == "uvloop":
        import uvloop

        args.run = uvloop.run
    args.server_cpu = None
    cpus: list[int | None] = [None, None]
    if args.pin:
        os.sched_setaffinity(0, {0})
        args.server_cpu = 1
        cpus = [0, 1]
    machine_before = cpu_times()
    probes = []
    if args.probe_seconds > 0:
        probes.append(platform_stalls(args.probe_seconds, cpus))
        print(json.dumps({"platform_probe": probes[-1]}), flush=True)
    pf = postfix_requests(20_000)
    dv = dovecot_requests(20_000)
    pairs = {"postfix": pf, "dovecot": dv}
    results = []
    ratios: dict[str, Any] = {}
    for proto, reqs in pairs.items():
        if args.only and proto != args.only:
            continue
        kinds = [proto, f"{proto}-null"]
        # Saturated: both servers up at once, driven in turn in short slices (``interleaved``).
        sat = run_pair(kinds, reqs, args)
        print(json.dumps({"protocol": proto, "saturated": sat}), flush=True)
        # Fixed loads: rounds alternate mailward and its null (and which goes first), each on a
        # fresh server, so a burst of the host's steal does not land on one side only.
        loads: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for n in range(args.rounds):
            for kind in kinds if n % 2 == 0 else kinds[::-1]:
                loads[kind].append(run_loads(kind, reqs, args))
            print(
                json.dumps(
                    {
                        "round": n + 1,
                        "protocol": proto,
                        **{
                            f"{k} p99 ms": [x["p99_ms"] for x in loads[k][-1]["loads"]]
                            for k in kinds
                        },
                    }
                ),
                flush=True,
            )
        for kind in kinds:
            results.append(summarise(kind, sat[kind], loads[kind]))
            print(json.dumps(results[-1]), flush=True)
        real, null = sat[proto], sat[f"{proto}-null"]
        ratios[f"{proto}_vs_null"] = round(real["per_s"] / null["per_s"], 3)
        # Each slice against the null's slice next to it: the spread says how much to trust it.
        paired = sorted(
            a / b for a, b in zip(real["slice_rates"], null["slice_rates"], strict=True) if b
        )
        ratios[f"{proto}_vs_null_slice_quartiles"] = [
            round(q, 3) for q in statistics.quantiles(paired, n=4, method="inclusive")
        ]
        # The same ratio from CPU time: what the server's core could do if the generator kept up.
        ratios[f"{proto}_vs_null_by_cpu"] = round(null["server_cpu_us"] / real["server_cpu_us"], 3)
    if args.probe_seconds > 0:
        probes.append(platform_stalls(args.probe_seconds, cpus))
        print(json.dumps({"platform_probe": probes[-1]}), flush=True)
    summary = {
        "python": sys.version.split()[0],
        # a virtual machine's stolen time (another guest ran) shows up as latency spikes
        "steal_share": steal_share(machine_before, cpu_times()),
        "platform_probes": probes,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "pinned": bool(args.pin),
        "gc_freeze": bool(args.gc_freeze),
        "engine": args.engine,
        "client_loop": args.client_loop,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "scheduler": {0: "other", 1: "fifo", 2: "rr"}.get(os.sched_getscheduler(0), "?"),
        **ratios,
    }
    print(json.dumps(summary))
    print()
    print(
        f"Medians of {args.rounds} rounds; p99 rounds under 2 ms in brackets."
        if args.rounds > 1
        else "One round."
    )
    print()
    print(
        "| server | saturated req/s | server CPU µs/req | "
        + " | ".join(f"{int(r)}/s p50 / p99 ms" for r in args.rates)
        + " |"
    )
    print("|---|---:|---:|" + "---:|" * len(args.rates))
    for r in results:
        cells = " | ".join(
            f"{x['p50_ms']:.2f} / {x['p99_ms']:.2f} "
            f"({sum(v < 2.0 for v in x['p99_ms_rounds'])}/{len(x['p99_ms_rounds'])})"
            for x in r["loads"]
        )
        print(
            f"| {r['server']} | {r['saturated_per_s']:,.0f} | {r['server_cpu_us']:.1f} | {cells} |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"summary": summary, "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
