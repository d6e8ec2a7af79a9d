import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from mailward.policy.httpserver import HttpServer, Limits, Reply, text_reply


class Echo:
    """Answers each POST with its target and body; refuses other methods and a /deny target."""

    wanted = frozenset({b"x-token"})

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, bytes]] = []
        self.heads = 0
        self.fail = False

    def head(
        self, method: bytes, target: bytes, headers: dict[bytes, bytes], peer: str
    ) -> Reply | None:
        self.heads += 1
        if method != b"POST":
            return text_reply(405, "POST only", b"Allow: POST\r\n")
        if target == b"/deny":
            return text_reply(401, "no")
        return None

    def answer(self, target: bytes, headers: dict[bytes, bytes], body: bytes, peer: str) -> Reply:
        if self.fail:
            raise RuntimeError("handler bug")
        self.seen.append((target, body))
        return Reply(
            200, target + b"|" + headers.get(b"x-token", b"-") + b"|" + body, b"text/plain"
        )


def req(body: bytes = b"hi", target: str = "/a", extra: str = "", version: str = "1.1") -> bytes:
    return (
        f"POST {target} HTTP/{version}\r\nHost: x\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def serve(**limits: object) -> tuple[HttpServer, Echo]:
    echo = Echo()
    srv = HttpServer("test http", echo, Limits(**limits))  # type: ignore[arg-type]
    await srv.start("127.0.0.1", 0)
    return srv, echo


@pytest.fixture
async def server() -> AsyncIterator[tuple[HttpServer, Echo]]:
    srv, echo = await serve()
    try:
        yield srv, echo
    finally:
        await srv.stop()


_open: list["Client"] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _open:
        c = _open.pop()
        c.writer.close()
        try:
            await c.writer.wait_closed()
        except OSError:
            pass


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        _open.append(self)

    @classmethod
    async def to(cls, srv: HttpServer) -> "Client":
        return cls(*await asyncio.open_connection("127.0.0.1", srv.addresses[0][1]))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> tuple[int, dict[str, str], bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
        body = await self.reader.readexactly(int(headers["content-length"]))
        return status, headers, body

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""

    def close(self) -> None:
        self.writer.close()


async def test_keepalive_requests_on_one_connection(server: tuple[HttpServer, Echo]) -> None:
    srv, _ = server
    c = await Client.to(srv)
    for i in range(3):
        await c.send(req(f"n{i}".encode(), extra="X-Token: t\r\n"))
        status, headers, body = await c.reply()
        assert (status, body) == (200, f"/a|t|n{i}".encode())
        assert "connection" not in headers
    assert srv.stats.requests == 3 and len(srv.connections) == 1
    c.close()


async def test_two_requests_in_one_write_are_answered_in_order(
    server: tuple[HttpServer, Echo],
) -> None:
    srv, _ = server
    c = await Client.to(srv)
    await c.send(req(b"first", "/1") + req(b"second", "/2") + req(b"", "/3"))
    assert [(await c.reply())[2] for _ in range(3)] == [b"/1|-|first", b"/2|-|second", b"/3|-|"]
    c.close()


async def test_answers_before_garbage_in_the_same_write_still_arrive(
    server: tuple[HttpServer, Echo],
) -> None:
    srv, _ = server
    c = await Client.to(srv)
    await c.send(req(b"first", "/1") + req(b"second", "/2") + b"\x00\xff garbage\r\n\r\n")
    assert [(await c.reply())[:3:2] for _ in range(3)][:2] == [
        (200, b"/1|-|first"),
        (200, b"/2|-|second"),
    ]
    assert await c.closed()
    c.close()


async def test_a_request_split_into_one_byte_writes(server: tuple[HttpServer, Echo]) -> None:
    srv, _ = server
    c = await Client.to(srv)
    for byte in req(b'{"x": 1}', "/split?q=1", extra="X-Token: abc\r\n"):
        await c.send(bytes([byte]))
        await asyncio.sleep(0)
    assert (await c.reply())[2] == b'/split?q=1|abc|{"x": 1}'
    c.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello\r\n\r\n",
        b"\x00\xff" * 100,
        b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nBad Header Line\r\n\r\n",
        b"POST / HTTP/9.9\r\nContent-Length: 0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
    ],
)
async def test_garbage_gets_400_and_the_connection_closed(
    server: tuple[HttpServer, Echo], garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    srv, echo = server
    c = await Client.to(srv)
    with caplog.at_level(logging.WARNING, logger="mailward.policy.httpserver"):
        await c.send(garbage)
        status, headers, _ = await c.reply()
        assert status == 400 and headers["connection"] == "close"
        assert await c.closed()
    assert "not HTTP/1.x" in caplog.text
    assert echo.seen == [] and srv.stats.protocol_errors == 1
    c2 = await Client.to(srv)
    await c2.send(req())
    assert (await c2.reply())[0] == 200
    c2.close()


async def test_client_gone_mid_body_leaves_nothing_behind(server: tuple[HttpServer, Echo]) -> None:
    srv, echo = server
    c = await Client.to(srv)
    await c.send(req(b"x" * 100)[:-60])
    await asyncio.sleep(0.05)
    assert len(srv.connections) == 1
    c.writer.transport.abort()
    await asyncio.sleep(0.05)
    assert len(srv.connections) == 0 and echo.seen == []
    c2 = await Client.to(srv)
    await c2.send(req())
    assert (await c2.reply())[0] == 200
    c2.close()


async def test_connection_close_and_http_1_0(server: tuple[HttpServer, Echo]) -> None:
    srv, echo = server
    c = await Client.to(srv)
    await c.send(req(extra="Connection: close\r\n") + req(b"ignored", "/deny"))
    status, headers, _ = await c.reply()
    assert status == 200 and headers["connection"] == "close"
    assert await c.closed()
    assert echo.heads == 1 and echo.seen == [(b"/a", b"hi")]  # what followed was not handled

    c = await Client.to(srv)
    await c.send(req(version="1.0"))
    status, headers, _ = await c.reply()
    assert status == 200 and headers["connection"] == "close"
    assert await c.closed()

    c = await Client.to(srv)
    for _ in range(2):
        await c.send(req(version="1.0", extra="Connection: keep-alive\r\n"))
        status, headers, _ = await c.reply()
        assert status == 200 and headers["connection"] == "keep-alive"
    c.close()


async def test_chunked_body_is_reassembled(server: tuple[HttpServer, Echo]) -> None:
    srv, echo = server
    c = await Client.to(srv)
    await c.send(
        b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    assert (await c.reply())[2] == b"/c|-|abcdefg"
    c.close()


async def test_oversized_body_gets_413_before_it_is_read() -> None:
    srv, echo = await serve(max_body=300)
    try:
        c = await Client.to(srv)
        # the head alone announces it: answered without waiting for the body
        await c.send(b"POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n")
        status, headers, body = await c.reply()
        assert status == 413 and b"300" in body and headers["connection"] == "close"
        assert await c.closed()
        # chunked: counted as it arrives
        c = await Client.to(srv)
        await c.send(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(4):
            await c.send(b"64\r\n" + b"x" * 100 + b"\r\n")
        assert (await c.reply())[0] == 413
        assert await c.closed()
        assert echo.seen == [] and srv.stats.too_large == 2
    finally:
        await srv.stop()


async def test_oversized_head_gets_431() -> None:
    srv, _ = await serve(max_head=1024)
    try:
        big = "X-Filler: " + "a" * 2000 + "\r\n"
        c = await Client.to(srv)
        await c.send(req(extra=big))  # in one write
        status, headers, _ = await c.reply()
        assert status == 431 and headers["connection"] == "close"
        assert await c.closed()
        c = await Client.to(srv)  # trickled: many small headers, none complete the head
        await c.send(b"POST / HTTP/1.1\r\n")
        for i in range(100):
            await c.send(f"X-{i}: {'b' * 20}\r\n".encode())
        assert (await c.reply())[0] == 431
        c = await Client.to(srv)  # a long URL
        await c.send(b"POST /" + b"u" * 5000 + b" HTTP/1.1\r\n\r\n")
        assert (await c.reply())[0] == 431
        assert srv.stats.too_large == 3
    finally:
        await srv.stop()


async def test_refused_at_head_body_is_skipped_and_connection_kept(
    server: tuple[HttpServer, Echo],
) -> None:
    srv, echo = server
    c = await Client.to(srv)
    await c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" + req(b"secret", "/deny") + req(b"ok"))
    status, headers, _ = await c.reply()
    assert status == 405 and headers["allow"] == "POST"
    assert (await c.reply())[0] == 401
    assert (await c.reply())[2] == b"/a|-|ok"
    assert echo.seen == [(b"/a", b"ok")]
    c.close()


async def test_upgrade_is_refused(server: tuple[HttpServer, Echo]) -> None:
    srv, echo = server
    c = await Client.to(srv)
    await c.send(req(extra="Connection: Upgrade\r\nUpgrade: h2c\r\n"))
    assert (await c.reply())[0] == 400
    assert await c.closed()
    assert echo.seen == []


async def test_expect_100_continue(server: tuple[HttpServer, Echo]) -> None:
    srv, _ = server
    c = await Client.to(srv)
    await c.send(b"POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert await c.reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    await c.send(b"ok")
    assert (await c.reply())[2] == b"/e|-|ok"
    c.close()


async def test_slow_request_gets_408_and_idle_connection_is_closed() -> None:
    srv, _ = await serve(request_timeout=0.2, idle_timeout=0.4)
    try:
        slow = await Client.to(srv)
        idle = await Client.to(srv)
        await idle.send(req())
        assert (await idle.reply())[0] == 200
        await slow.send(b"POST / HTTP/1.1\r\n")
        for _ in range(2):  # trickling keeps nothing alive: the request as a whole is late
            await asyncio.sleep(0.08)
            await slow.send(b"X-A: b\r\n")
        status, headers, _ = await slow.reply()
        assert status == 408 and headers["connection"] == "close"
        assert await slow.closed()
        assert await idle.closed()  # no request for 0.4 s
        assert srv.stats.timeouts == 1 and len(srv.connections) == 0
    finally:
        await srv.stop()


async def test_connection_cap() -> None:
    srv, _ = await serve(max_connections=2)
    try:
        a, b = await Client.to(srv), await Client.to(srv)
        await a.send(req())
        await b.send(req())
        assert (await a.reply())[0] == (await b.reply())[0] == 200
        c = await Client.to(srv)
        status, headers, _ = await c.reply()
        assert status == 503 and await c.closed()
        assert srv.stats.refused_connections == 1
        a.close()
        await asyncio.sleep(0.05)
        d = await Client.to(srv)
        await d.send(req())
        assert (await d.reply())[0] == 200
        b.close()
        d.close()
    finally:
        await srv.stop()


async def test_a_handler_bug_answers_500_and_closes(server: tuple[HttpServer, Echo]) -> None:
    srv, echo = server
    echo.fail = True
    c = await Client.to(srv)
    await c.send(req())
    assert (await c.reply())[0] == 500
    assert await c.closed()
    echo.fail = False
    c = await Client.to(srv)
    await c.send(req())
    assert (await c.reply())[0] == 200


async def test_a_client_that_does_not_read_is_paused_not_buffered(
    server: tuple[HttpServer, Echo],
) -> None:
    srv, echo = server
    c = await Client.to(srv)
    c.writer.transport.set_write_buffer_limits(high=1 << 30)
    n = 40_000
    one = req(b"y" * 200)
    c.writer.write(one * n)  # ~10 MB of pipelined requests, no reply read yet
    paused = False
    for _ in range(200):
        await asyncio.sleep(0.01)
        (conn,) = srv.connections
        assert conn.transport is not None
        if not conn.transport.is_reading():
            paused = True
            break
    assert paused
    assert conn.transport.get_write_buffer_size() < 1 << 20
    for _ in range(n):
        assert (await c.reply())[0] == 200
    assert len(echo.seen) == n
    c.close()


async def test_stop_closes_open_connections() -> None:
    srv, _ = await serve()
    c = await Client.to(srv)
    await c.send(req())
    await c.reply()
    await srv.stop()
    assert await c.closed()
    assert srv.addresses == []
