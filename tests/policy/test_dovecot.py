import asyncio
import json
import logging
from collections.abc import AsyncIterator
from ipaddress import ip_address

import aiohttp
import pytest
from pydantic import SecretStr
from tests.conftest import shared_file

from mailward.clock import ManualClock
from mailward.config.model import DovecotPolicySettings
from mailward.decisions.model import Action, Decision
from mailward.events import AuthFailure, AuthSuccess, Event
from mailward.policy.backend import MemoryBackend
from mailward.policy.dovecot import DovecotPolicyServer, status_body
from mailward.policy.dovecot_rules import AuthRequest

ALLOW = "/?command=allow"
REPORT = "/?command=report"


def body(remote: str = "198.51.100.7", **extra: object) -> dict[str, object]:
    return {
        "login": "alice",
        "protocol": "imap",
        "pwhash": "0b60",
        "remote": remote,
        "session_id": "x",
        "tls": False,
        **extra,
    }


async def started(**settings: object) -> tuple[DovecotPolicyServer, MemoryBackend, list[Event]]:
    backend = MemoryBackend(ban_after=3, tarpit_after=2)
    events: list[Event] = []

    def feed(e: Event) -> None:
        events.append(e)
        backend.observe(e, e.ts)

    srv = DovecotPolicyServer(
        DovecotPolicySettings.model_validate({"port": 0, **settings}),
        backend=backend,
        clock=ManualClock(1000),
        feed=feed,
    )
    await srv.start()
    return srv, backend, events


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def post(
    s: aiohttp.ClientSession, srv: DovecotPolicyServer, path: str, data: object, **kw: object
) -> tuple[int, object]:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    async with s.post(
        f"http://127.0.0.1:{srv.port}{path}",
        data=raw,
        headers={"Content-Type": "application/json", **kw.get("headers", {})},
    ) as r:  # type: ignore[dict-item]
        text = await r.text()
        return r.status, (json.loads(text) if r.content_type == "application/json" else text)


def test_status_body_shape() -> None:
    assert json.loads(status_body(0)) == {"status": 0, "msg": ""}
    assert json.loads(status_body(3)) == {"status": 3, "msg": ""}
    assert json.loads(status_body(-1))["status"] == -1
    assert json.loads(status_body(100))["status"] == 100


async def test_allow_report_cycle_over_one_keepalive_connection(
    session: aiohttp.ClientSession,
) -> None:
    srv, backend, events = await started()
    try:
        assert await post(session, srv, ALLOW, body()) == (200, {"status": 0, "msg": ""})
        for _ in range(2):
            assert (await post(session, srv, REPORT, body(success=False, policy_reject=False)))[
                0
            ] == 200
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        # pwhash repeats: the same wrong password twice is fed once (stale client)
        assert [type(e) for e in events] == [AuthFailure]
        for i in range(2):
            await post(session, srv, REPORT, body(success=False, pwhash=f"{i:04x}"))
        await asyncio.sleep(0.01)
        assert len(events) == 3
        assert (await post(session, srv, ALLOW, body()))[1] == {
            "status": -1,
            "msg": "Authentication failed",
        }
        status, reply = await post(session, srv, ALLOW, body(remote="192.0.2.1", protocol="smtp"))
        assert reply == {"status": 0, "msg": ""}
    finally:
        await srv.stop()


async def test_tarpit_status_for_rising_suspicion(session: aiohttp.ClientSession) -> None:
    srv, backend, _ = await started()
    try:
        for i in range(2):
            await post(session, srv, REPORT, body(success=False, pwhash=f"{i:04x}"))
        await asyncio.sleep(0.01)
        assert (await post(session, srv, ALLOW, body()))[1] == {"status": 1, "msg": ""}
    finally:
        await srv.stop()


async def test_captured_dovecot_requests_are_all_accepted(session: aiohttp.ClientSession) -> None:
    srv, _, events = await started()
    srv.core.backend = MemoryBackend(ban_after=1000, tarpit_after=1000)
    try:
        path = shared_file("captured-mailstack/authpolicy_requests.jsonl")
        reports = 0
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            target = rec["requestline"].split()[1]
            status, reply = await post(session, srv, target, rec["body"].encode())
            assert status == 200 and reply == {"status": 0, "msg": ""}
            reports += "command=report" in target
        await asyncio.sleep(0.01)
        assert srv.core.stats.reports == reports
        assert srv.core.stats.bad_requests == 0
        assert any(isinstance(e, AuthSuccess) and e.username == "alice" for e in events)
        assert srv.core.stats.policy_rejects >= 1  # .53 and .55 were refused by the test policy
    finally:
        await srv.stop()


@pytest.mark.parametrize(
    ("path", "data", "why"),
    [
        ("/?command=allow", b"{not json", "not JSON"),
        ("/?command=allow", b"\xff\xfe", "not JSON"),
        ("/?command=allow", b"[1,2]", "Expected `object`, got `array`"),
        ("/?command=report", json.dumps({"remote": "999.1.1.1"}).encode(), "not an address"),
        ("/?command=frobnicate", b"{}", "unknown command"),
        ("/", b"{}", "unknown command"),
        ("/x?command=allow&command=nope", b"{}", "unknown command"),
        ("/?command=allow", json.dumps({"remote": 7}).encode(), "got `int` - at `$.remote`"),
        ("/?command=allow", json.dumps({"success": "yes"}).encode(), "at `$.success`"),
        ("/?command=allow", b'{"x":' + b"[" * 3000 + b"]" * 3000 + b"}", "not JSON"),
    ],
)
async def test_malformed_requests_get_400_and_a_log_line(
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    path: str,
    data: bytes,
    why: str,
) -> None:
    srv, _, _ = await started()
    try:
        with caplog.at_level(logging.WARNING, logger="mailward.policy.dovecot"):
            status, _ = await post(session, srv, path, data)
        assert status == 400
        assert why in caplog.text
        assert (await post(session, srv, ALLOW, body()))[0] == 200
    finally:
        await srv.stop()


async def test_oversized_body_gets_413_and_a_log_line(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    srv, _, _ = await started(max_body_bytes=1024)
    try:
        with caplog.at_level(logging.WARNING):
            status, reply = await post(session, srv, ALLOW, b"{" + b" " * 2000 + b"}")
        assert status == 413 and "larger than 1024" in str(reply)
        assert "body over 1024 bytes" in caplog.text
        assert (await post(session, srv, ALLOW, body()))[0] == 200
    finally:
        await srv.stop()


async def test_only_post_is_served(session: aiohttp.ClientSession) -> None:
    srv, _, _ = await started()
    try:
        async with session.get(f"http://127.0.0.1:{srv.port}{ALLOW}") as r:
            assert r.status == 405 and r.headers["Allow"] == "POST"
        assert srv.core.stats.bad_requests == 1 and srv.core.stats.allow == 0
    finally:
        await srv.stop()


def raw(command: str, data: dict[str, object], extra: str = "") -> bytes:
    payload = json.dumps(data).encode()
    return (
        f"POST /?command={command} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\n{extra}Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


async def read_json_replies(reader: asyncio.StreamReader, n: int) -> list[object]:
    out = []
    for _ in range(n):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 ")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        out.append(json.loads(await reader.readexactly(length)))
    return out


async def test_pipelined_allow_and_reports_are_answered_and_processed_in_order() -> None:
    srv, backend, events = await started()
    backend.apply(Decision(0, "192.0.2.9", Action.BAN, "manual"))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        burst = [raw("allow", body()), raw("allow", body(remote="192.0.2.9"))]
        burst += [raw("report", body(success=False, pwhash=f"{i:04x}")) for i in range(3)]
        burst += [raw("allow", body(remote="192.0.2.9")), raw("allow", body(remote="192.0.2.1"))]
        writer.write(b"".join(burst))  # one write: seven requests
        replies = await read_json_replies(reader, 7)
        assert [r["status"] for r in replies] == [0, -1, 0, 0, 0, -1, 0]  # type: ignore[index]
        await asyncio.sleep(0.01)
        assert [(e.origin.source, e.ip) for e in events] == [
            ("dovecot-policy", ip_address("198.51.100.7"))
        ] * 3
        writer.write(raw("allow", body()))  # three failures: banned by the backend
        assert (await read_json_replies(reader, 1))[0] == {
            "status": -1,
            "msg": "Authentication failed",
        }
        writer.close()
    finally:
        await srv.stop()


async def test_a_client_gone_mid_body_changes_nothing() -> None:
    srv, _, events = await started()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(raw("report", body(success=False))[:-10])
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.transport.abort()
        await asyncio.sleep(0.02)
        assert srv.core.stats.reports == 0 and srv.pending() == 0 and events == []
        assert len(srv.http.connections) == 0
    finally:
        await srv.stop()


async def test_latency_goes_to_the_metrics_histogram(session: aiohttp.ClientSession) -> None:
    from mailward.notify.metrics import Metrics

    metrics = Metrics()
    srv = DovecotPolicyServer(
        DovecotPolicySettings(port=0),
        backend=MemoryBackend(),
        clock=ManualClock(1),
        metrics=metrics,
    )
    await srv.start()
    try:
        for _ in range(3):
            await post(session, srv, ALLOW, body())
        hist = metrics.policy_latency.labels(server="dovecot")
        count = next(
            s.value for m in hist.collect() for s in m.samples if s.name.endswith("_count")
        )
        assert count == 3
    finally:
        await srv.stop()


async def test_raw_http_garbage_does_not_kill_the_server(session: aiohttp.ClientSession) -> None:
    srv, _, _ = await started()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"\x16\x03\x01 garbage not http\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.read(100), 5)
        assert head.startswith(b"HTTP/1.") and b" 400 " in head
        writer.close()
        assert (await post(session, srv, ALLOW, body()))[0] == 200
    finally:
        await srv.stop()


async def test_api_key_and_basic_auth(session: aiohttp.ClientSession) -> None:
    srv, _, _ = await started(
        api_key=SecretStr("k3y"), basic_user="dovecot", basic_password=SecretStr("pw")
    )
    try:
        good = {"X-API-Key": "k3y", "Authorization": aiohttp.encode_basic_auth("dovecot", "pw")}
        assert (await post(session, srv, ALLOW, body(), headers=good))[0] == 200
        for bad in (
            {},
            {"X-API-Key": "k3y"},
            {"X-API-Key": "nope", "Authorization": good["Authorization"]},
            {"X-API-Key": "k3y", "Authorization": aiohttp.encode_basic_auth("dovecot", "x")},
            {"X-API-Key": "k3y", "Authorization": "Basic !!!"},
        ):
            assert (await post(session, srv, ALLOW, body(), headers=bad))[0] == 401
        assert srv.core.stats.unauthorized == 5
    finally:
        await srv.stop()


async def test_report_queue_is_bounded_and_drained_on_stop(session: aiohttp.ClientSession) -> None:
    srv, _, events = await started(report_queue=2)
    srv.http.replies.after = None  # hold processing back so the queue fills
    for i in range(4):
        assert (await post(session, srv, REPORT, body(success=False, pwhash=f"{i:04x}")))[0] == 200
    assert srv.pending() == 2 and srv.core.stats.dropped == 2
    await srv.stop()
    assert len(events) == 2 and srv.pending() == 0


async def test_a_burst_of_reports_is_processed_in_order_over_several_passes() -> None:
    srv, _, events = await started(report_queue=1000)
    try:
        srv.http.replies.after = None  # hold processing back while the burst arrives
        for i in range(600):
            srv._enqueue(AuthRequest.from_json(body(success=True, session_id=f"s{i}")), 100 + i)
        srv._drain()  # one pass takes a batch and leaves the rest to the next ones
        assert 0 < srv.pending() < 600
        for _ in range(5):
            await asyncio.sleep(0)
        assert srv.pending() == 0
        assert [e.ts for e in events] == [100 + i for i in range(600)]
    finally:
        await srv.stop()


async def test_a_crash_inside_allow_answers_zero(session: aiohttp.ClientSession) -> None:
    srv, _, _ = await started()

    def broken(*_: object) -> object:
        raise RuntimeError("bug")

    srv.core.backend.standing = broken  # type: ignore[method-assign]
    try:
        assert (await post(session, srv, ALLOW, body()))[1] == {"status": 0, "msg": ""}
        assert srv.core.stats.errors == 1
    finally:
        await srv.stop()


async def test_started_by_a_daemon_reports_go_to_its_event_intake() -> None:
    class Daemon:
        def __init__(self) -> None:
            self.engine = MemoryBackend()
            self.clock = ManualClock(50)
            self.events: list[Event] = []
            self.decisions: list[Decision] = []

        async def feed(self, events: list[Event]) -> list[Decision]:
            self.events += events
            return []

        async def submit(self, ds: list[Decision]) -> None:
            self.decisions += ds

    d = Daemon()
    srv = DovecotPolicyServer(DovecotPolicySettings(port=0, pwhash_per_ip=1))
    await srv.start(d)
    try:
        async with aiohttp.ClientSession() as s:
            await post(s, srv, REPORT, body(success=True))
            await post(s, srv, REPORT, body(success=False))
        await asyncio.sleep(0.01)
        assert [e.ts for e in d.events] == [50, 50]
        assert [x.action for x in d.decisions] == [Action.BAN]
    finally:
        await srv.stop()
