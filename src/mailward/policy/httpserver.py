"""A small HTTP/1.1 server on ``asyncio.Protocol`` + ``httptools`` (llhttp) for fixed-shape requests.

One request in, one whole reply out, answered synchronously in arrival order (keep-alive and
pipelining need no per-request task). A ``Handler`` sees the method, target and the few headers
it asked for, then the body. Every limit is enforced here: body and header bytes, connections,
an idle and a per-request timeout, and output backpressure; a client cannot crash it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Protocol

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpRequestParser,
)

from mailward.policy.buffered import ReplyBatch, ReusedReadBuffer

log = logging.getLogger(__name__)

_REASONS = {
    100: b"Continue",
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
_KEEP, _KEEP10, _CLOSE = 0, 1, 2  # reply framing: HTTP/1.1 keep-alive, HTTP/1.0 keep-alive, close
_CONNECTION = (b"", b"Connection: keep-alive\r\n", b"Connection: close\r\n")


class Reply:
    """A complete response; its bytes are built once per framing and reused."""

    __slots__ = ("status", "body", "wire")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: bytes = b"application/json",
        extra: bytes = b"",
    ) -> None:
        self.status = status
        self.body = body
        head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s" % (
            status,
            _REASONS.get(status, b"Error"),
            content_type,
            len(body),
            extra,
        )
        self.wire = tuple(head + conn + b"\r\n" + body for conn in _CONNECTION)


def text_reply(status: int, text: str, extra: bytes = b"") -> Reply:
    return Reply(
        status, text.encode("utf-8", "replace") + b"\n", b"text/plain; charset=utf-8", extra
    )


class Handler(Protocol):
    """What the server asks of the application, per request."""

    #: lower-case names of the headers ``head``/``answer`` need; all others are skipped
    wanted: frozenset[bytes]

    def head(
        self, method: bytes, target: bytes, headers: dict[bytes, bytes], peer: str
    ) -> Reply | None:
        """Called once the headers are in: a ``Reply`` refuses now (the body is discarded)."""
        ...

    def answer(self, target: bytes, headers: dict[bytes, bytes], body: bytes, peer: str) -> Reply:
        """Called with the whole body; must not raise (it owns its errors)."""
        ...


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int = 16384
    max_head: int = 8192  # request line + headers
    max_connections: int = 256
    request_timeout: float = 10.0  # first byte of a request to its last
    idle_timeout: float = 120.0  # keep-alive connection with no request in flight


@dataclass(slots=True)
class HttpStats:
    connections: int = 0
    refused_connections: int = 0
    requests: int = 0
    protocol_errors: int = 0
    too_large: int = 0
    timeouts: int = 0


class _Refuse(Exception):
    def __init__(self, reply: Reply) -> None:
        self.reply = reply


class _Connection(ReusedReadBuffer):
    __slots__ = (
        "server",
        "transport",
        "parser",
        "peer",
        "url",
        "headers",
        "chunks",
        "size",
        "refusal",
        "head_raw",
        "head_size",
        "in_head",
        "busy",
        "since",
        "closing",
    )

    def __init__(self, server: HttpServer) -> None:
        super().__init__()
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = HttpRequestParser(self)
        self.peer = "?"
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.refusal: Reply | None = None
        # Head bytes two ways: as received while a head is incomplete (a head still arriving),
        # and as delivered by the parser (a whole oversized head arriving in one read).
        self.head_raw = 0
        self.head_size = 0
        self.in_head = True
        self.busy = False
        self.since = 0.0  # loop time: start of the request in flight, else of the idle period
        self.closing = False

    # -- transport ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        server = self.server
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else str(peer)
        self.since = server.loop.time()
        if len(server.connections) >= server.limits.max_connections:
            server.stats.refused_connections += 1
            if server.stats.refused_connections % 1000 == 1:
                log.warning("%s: connection limit reached, refusing %s", server.name, self.peer)
            self.closing = True
            transport.write(_BUSY.wire[_CLOSE])
            transport.close()
            return
        server.stats.connections += 1
        server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.chunks = []
        self.server.connections.discard(self)

    def pause_writing(self) -> None:
        # A client that sends without reading: stop reading until its replies have drained,
        # so our output buffer cannot grow without bound.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def data_received(self, data: bytes | memoryview) -> None:
        if self.closing:
            return
        if self.in_head:
            self.head_raw += len(data)
        try:
            self.parser.feed_data(data)
        except HttpParserCallbackError as exc:
            refusal = exc.__context__
            if isinstance(refusal, _Refuse):
                self._fail(refusal.reply)
            else:  # a bug of ours, not the client's: say so and drop the connection
                log.error("%s: request handling failed", self.server.name, exc_info=refusal)
                self._fail(_INTERNAL)
            return
        except HttpParserUpgrade:
            self._close()  # the request before it was answered; we speak no other protocol
            return
        except HttpParserError as exc:
            self.server.stats.protocol_errors += 1
            self._fail(text_reply(400, f"bad request: not HTTP/1.x ({exc})"))
            log.warning("%s: closing %s: not HTTP/1.x: %s", self.server.name, self.peer, exc)
            return
        if self.in_head and self.head_raw > self.server.limits.max_head:
            self._too_large_head()

    def _fail(self, reply: Reply) -> None:
        if self.transport is not None and not self.closing:
            self.server.replies.flush()  # this connection's earlier answers go out first
            self.transport.write(reply.wire[_CLOSE])
        self._close()

    def _close(self) -> None:
        self.closing = True
        self.chunks = []
        if self.transport is not None:
            self.transport.close()

    def _too_large_head(self) -> None:
        self._fail(self.server.head_too_large(self.peer))

    def expire(self, now: float) -> None:
        """Close a connection whose request is too slow, or that idled too long."""
        limits = self.server.limits
        if self.busy:
            if now - self.since > limits.request_timeout:
                self.server.stats.timeouts += 1
                log.warning("%s: closing %s: request timed out", self.server.name, self.peer)
                self._fail(_TIMEOUT)
        elif now - self.since > limits.idle_timeout:
            self._close()

    # -- parser callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.busy = True
        self.since = self.server.loop.time()
        self.in_head = True
        self.head_size = 0
        self.url = b""
        self.headers = {}
        self.refusal = None

    def on_url(self, url: bytes) -> None:
        self.url = self.url + url if self.url else url
        self.head_size += len(url)
        if self.head_size > self.server.limits.max_head:
            raise _Refuse(self.server.head_too_large(self.peer))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.server.limits.max_head:
            raise _Refuse(self.server.head_too_large(self.peer))
        key = name.lower()
        if key in self.server.wanted:
            self.headers[key] = value

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_raw = 0
        if self.closing:
            self.refusal = _UNANSWERED  # pipelined after "Connection: close": never answered
            return
        self.chunks = []
        self.size = 0
        parser = self.parser
        if parser.should_upgrade():
            raise _Refuse(text_reply(400, "bad request: protocol upgrade not supported"))
        server = self.server
        length = self.headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > server.limits.max_body:
            raise _Refuse(server.body_too_large(self.peer))
        self.refusal = server.handler.head(parser.get_method(), self.url, self.headers, self.peer)
        if (
            self.refusal is None
            and self.headers.get(b"expect", b"").lower() == b"100-continue"
            and self.transport is not None
        ):
            server.replies.put(self.transport, b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self.refusal is not None:
            return  # refused at the head: the body is read past, not kept
        self.size += len(body)
        if self.size > self.server.limits.max_body:
            raise _Refuse(self.server.body_too_large(self.peer))
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.busy = False
        self.in_head = True
        server = self.server
        self.since = server.loop.time()
        if self.closing:
            return
        server.stats.requests += 1
        parser = self.parser
        if not parser.should_keep_alive():
            framing = _CLOSE
        elif parser.get_http_version() == "1.1":
            framing = _KEEP
        else:
            framing = _KEEP10
        reply = self.refusal
        if reply is None:
            chunks = self.chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self.chunks = []
            reply = server.respond(self.url, self.headers, body, self.peer)
        assert self.transport is not None
        server.replies.put(self.transport, reply.wire[framing])
        if framing == _CLOSE:
            server.replies.flush()
            self._close()


_BUSY = text_reply(503, "too many connections")
_INTERNAL = text_reply(500, "internal error")
_TIMEOUT = text_reply(408, "request timed out")
_UNANSWERED = text_reply(400, "connection closing")


class HttpServer:
    """Listens on ``host:port`` and feeds each request to ``handler``. ``observe`` (a latency
    histogram's ``observe``) receives each answer's handling time in seconds."""

    loop: asyncio.AbstractEventLoop  # set by start(); no connection exists before
    replies: ReplyBatch  # answers are written once per pass of the loop (see ReplyBatch)

    def __init__(
        self,
        name: str,
        handler: Handler,
        limits: Limits,
        *,
        observe: Callable[[float], Any] | None = None,
        after_replies: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.after_replies = after_replies  # run after each batch of replies (ReplyBatch.after)
        self.handler = handler
        self.limits = limits
        # content-length is read here for an early 413; the handler's own names come along
        self.wanted = frozenset({b"content-length", b"expect", *handler.wanted})
        self.observe = observe
        self.stats = HttpStats()
        self.connections: set[_Connection] = set()
        self.addresses: list[Any] = []
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    def body_too_large(self, peer: str) -> Reply:
        self.stats.too_large += 1
        log.warning("%s: refused %s: body over %d bytes", self.name, peer, self.limits.max_body)
        return text_reply(413, f"body larger than {self.limits.max_body} bytes")

    def head_too_large(self, peer: str) -> Reply:
        self.stats.too_large += 1
        log.warning("%s: refused %s: head over %d bytes", self.name, peer, self.limits.max_head)
        return text_reply(431, f"request head larger than {self.limits.max_head} bytes")

    def respond(self, target: bytes, headers: dict[bytes, bytes], body: bytes, peer: str) -> Reply:
        observe = self.observe
        if observe is None:
            return self.handler.answer(target, headers, body, peer)
        start = perf_counter()
        try:
            return self.handler.answer(target, headers, body, peer)
        finally:
            observe(perf_counter() - start)

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.replies = ReplyBatch(loop, self.after_replies)
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, reuse_address=True
        )
        self.addresses = [s.getsockname() for s in self._server.sockets]
        self._schedule_sweep()

    def _schedule_sweep(self) -> None:
        period = max(0.05, min(1.0, self.limits.request_timeout / 4))
        self._sweeper = self.loop.call_later(period, self._sweep)

    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in list(self.connections):
            conn.expire(now)
        if self._server is not None:
            self._schedule_sweep()

    async def stop(self) -> None:
        server, self._server = self._server, None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if server is not None:
            server.close()
            self.replies.flush()  # answers already given still reach their clients
        for conn in list(self.connections):
            conn._close()
        if server is not None:
            await server.wait_closed()
        self.addresses = []


__all__ = ["Handler", "HttpServer", "HttpStats", "Limits", "Reply", "text_reply"]
