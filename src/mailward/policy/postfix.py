"""Postfix SMTP access policy delegation server (``check_policy_service``) on asyncio.

Framing per SMTPD_POLICY_README: ``name=value`` lines, an empty line ends a request, one
``action=...`` line and an empty line answer it; a connection carries many requests. A request
that is malformed, oversized or not ``request=smtpd_access_policy`` is logged and its connection
closed. Decisions come from ``PostfixPolicy`` (sans-IO); trouble inside it answers ``DUNNO``.

Compiled with mypyc; with a C compiler, one call into ``_scan.take`` frames, checks and reads
each well-formed request, and everything else takes the plain path (``_take_slowly``).
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import stat
from collections.abc import Callable
from itertools import repeat
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

from mailward.clock import Clock, SystemClock
from mailward.config.model import PostfixPolicySettings
from mailward.errors import ProtocolError
from mailward.events import Event
from mailward.policy.backend import DecisionSink, HostLink, PolicyBackend, bind_host
from mailward.policy.buffered import ReplyBatch, ReusedReadBuffer
from mailward.policy.postfix_rules import READS, CountryLookup, PostfixPolicy, encode_action

if TYPE_CHECKING:
    from mailward.notify.metrics import Metrics

_scan: Callable[[bytes | bytearray, tuple[str, ...], int, int, int], dict[str, str] | int] | None
_take: Callable[[bytearray, tuple[str, ...], int, int, int, dict[str, str]], int] | None
try:  # the C scanner, built next to the mypyc modules (setup.py); pure Python otherwise
    from mailward.policy import _scan as _scanner

    _scan = _scanner.scan
    _take = _scanner.take
except ImportError:
    _scan = _take = None

log = logging.getLogger(__name__)

# Final: compiled, constants rather than a module-dict lookup per request
REQUEST_KIND: Final = "smtpd_access_policy"
MAX_LINES: Final = 100  # Postfix 3.12 sends ~32 attributes
_READS: Final = READS


def _no_equals(raw: bytes) -> ProtocolError:
    """The error for a request with a line that has no ``=``, naming the first such line."""
    lines = raw.decode("utf-8", "surrogateescape").split("\n")
    bad = next(line for line in lines if "=" not in line)
    return ProtocolError(f"malformed attribute line {bad[:60]!r}")


def parse_request(raw: bytes, max_lines: int = MAX_LINES) -> dict[str, str]:
    """Split one request (without its terminating empty line) into attributes.

    Each line is split on its first ``=`` (values such as ``ccert_subject`` may contain ``=``);
    a repeated name keeps its last value. Raises ``ProtocolError`` for a line without ``=``,
    too many lines, or a ``request`` other than ``smtpd_access_policy``.
    """
    lines = raw.decode("utf-8", "surrogateescape").split("\n")
    if len(lines) > max_lines:
        raise ProtocolError(f"request has {len(lines)} lines (limit {max_lines})")
    try:
        # All in C: each line split once at its first "="; a line without one has length 1,
        # which dict() refuses. On a repeated name the last value wins (the README allows it).
        attrs: dict[str, str] = dict(map(str.split, lines, repeat("="), repeat(1)))
    except ValueError:
        raise _no_equals(raw) from None
    if "" in attrs:
        raise ProtocolError("attribute line without a name")
    kind = attrs.get("request")
    if kind != REQUEST_KIND:
        raise ProtocolError(f"unsupported request {str(kind)[:60]!r}")
    return attrs


# Every byte but "=" and newline goes: what is left shows each line as its run of "=".
_ALL_BUT_SHAPE = bytes(b for b in range(256) if b not in b"=\n")
_WANTED = tuple((name, b"\n" + name.encode() + b"=") for name in READS)


def read_request(
    raw: bytes | bytearray, max_lines: int = MAX_LINES, start: int = 0, end: int | None = None
) -> dict[str, str]:
    """``parse_request`` of ``raw[start:end]`` for the server's hot path: the same checks and
    the same errors, but only the attributes the decision reads (``postfix_rules.READS``) are
    taken out.

    Built with a C compiler, one call into ``_scan`` does it all in place (a tenth of the cost
    of the Python version); otherwise ``read_request_py``.
    """
    stop = len(raw) if end is None else end
    if _scan is None:
        attrs = read_request_py(bytes(raw[start:stop]), max_lines)
    else:
        found = _scan(raw, READS, max_lines, start, stop)
        if isinstance(found, int):
            raise _scan_error(found, bytes(raw[start:stop]), max_lines)
        attrs = found
    kind = attrs.get("request")
    if kind != REQUEST_KIND:
        raise ProtocolError(f"unsupported request {str(kind)[:60]!r}")
    return attrs


def _scan_error(code: int, raw: bytes, max_lines: int) -> ProtocolError:
    if code == 1:
        lines = raw.count(b"\n") + 1
        return ProtocolError(f"request has {lines} lines (limit {max_lines})")
    if code == 2:
        return _no_equals(raw)
    return ProtocolError("attribute line without a name")


def read_request_py(raw: bytes, max_lines: int = MAX_LINES) -> dict[str, str]:
    """``read_request`` without the C scanner, up to the ``request`` check: the checks are a
    few C passes over the bytes and each wanted value is one ``rfind`` (the last line that names
    it, as a repeated name keeps its last value) and one slice."""
    lines = raw.count(b"\n") + 1
    if lines > max_lines:
        raise ProtocolError(f"request has {lines} lines (limit {max_lines})")
    shape = raw.translate(None, _ALL_BUT_SHAPE)
    if not shape or shape[0] == 10 or shape[-1] == 10 or b"\n\n" in shape:
        raise _no_equals(raw)
    if raw[:1] == b"=" or b"\n=" in raw:
        raise ProtocolError("attribute line without a name")
    text = b"\n" + raw
    attrs: dict[str, str] = {}
    for name, marker in _WANTED:
        at = text.rfind(marker)
        if at >= 0:
            start = at + len(marker)
            end = text.find(b"\n", start)
            value = text[start:] if end < 0 else text[start:end]
            attrs[name] = value.decode("utf-8", "surrogateescape")
    return attrs


_INCOMPLETE: Final = -1
_SLOW: Final = -2
_DROPPED: Final = -3


class _PolicyConnection(ReusedReadBuffer):
    # compiled by mypyc (no __slots__ there: its classes have fixed attributes anyway)

    def __init__(self, server: PostfixPolicyServer) -> None:
        super().__init__()
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.peer = "?"
        # Refilled by the C scanner for each request: valid only while that request is
        # answered (nothing keeps it: ``decide`` reads values, and they are immutable).
        self.attrs: dict[str, str] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = str(transport.get_extra_info("peername") or "unix")
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)

    def data_received(self, data: bytes | memoryview) -> None:
        buf = self.buf
        buf += data
        server = self.server
        limit = server.max_request_bytes
        attrs = self.attrs
        start = 0
        try:
            while True:
                # The common case: one C call frames, checks and reads a well-formed request
                # where it lies in the buffer (cut once per read, not once per request).
                nxt = _SLOW if _take is None else _take(buf, _READS, MAX_LINES, start, limit, attrs)
                if nxt >= 0 and attrs.get("request") == REQUEST_KIND:
                    start = nxt
                    self._answer(attrs)
                elif nxt == _INCOMPLETE:
                    return
                else:  # without the C scanner, or a request it leaves to the careful path
                    nxt = self._take_slowly(start, limit)
                    if nxt < 0:
                        return
                    start = nxt
        finally:
            if start:
                del buf[:start]

    def _answer(self, attrs: dict[str, str]) -> None:
        server = self.server
        assert self.transport is not None
        # unmetered, straight to the core: compiled, a native call with no Python frame
        wire = server.answer(attrs) if server.metered else server.policy.reply(attrs, server.now())
        server.replies.put(self.transport, wire)

    def _take_slowly(self, start: int, limit: int) -> int:
        """The request at ``start`` the plain way, naming what is wrong with it: where the next
        begins, ``_INCOMPLETE``, or ``_DROPPED`` (the connection is closed)."""
        buf = self.buf
        end = buf.find(b"\n\n", start)
        if end < 0:
            if len(buf) - start > limit:
                self._drop(f"request larger than {limit} bytes")
                return _DROPPED
            return _INCOMPLETE
        if end - start > limit:
            self._drop(f"request larger than {limit} bytes")
            return _DROPPED
        try:
            attrs = read_request(buf, MAX_LINES, start, end)
        except ProtocolError as exc:
            self._drop(str(exc))
            return _DROPPED
        self._answer(attrs)
        return end + 2

    def _drop(self, why: str) -> None:
        self.server.core.stats.malformed += 1
        log.warning("postfix policy: closing connection from %s: %s", self.peer, why)
        self.buf.clear()
        if self.transport is not None:
            self.server.replies.flush()  # the answers before the bad request still go out
            self.transport.close()


def _parse_listen(item: str) -> tuple[str, str, int]:
    kind, _, rest = item.partition(":")
    if kind == "unix":
        return "unix", rest, 0
    host, _, port = rest.rpartition(":")
    return "inet", host.strip("[]"), int(port)


class PostfixPolicyServer:
    """The Postfix policy component: ``start(daemon)`` listens, ``stop()`` closes everything.

    Everything it needs can be given here (tests, ``mailward policy serve``); what is missing is
    taken from the daemon at start: its engine as backend, its clock, its decision intake, and
    its event stream (``disconnect``/``unknown_recipient`` lines feed ``observe``).
    """

    name = "policy-postfix"
    # set by start(); no connection exists before
    replies: ReplyBatch
    policy: PostfixPolicy  # the core, as a plain attribute: read for every request
    now: Callable[[], float]

    def __init__(
        self,
        settings: PostfixPolicySettings,
        *,
        backend: PolicyBackend | None = None,
        clock: Clock | None = None,
        on_decisions: DecisionSink | None = None,
        country: CountryLookup | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        # Bound once: per request only perf_counter() and the histogram's observe().
        self._observe = (
            None if metrics is None else metrics.policy_latency.labels(server="postfix").observe
        )
        self._backend = backend
        self._clock = clock
        self.clock: Clock = clock or SystemClock()
        self._on_decisions = on_decisions
        self._country = country
        self._core: PostfixPolicy | None = None
        self._link: HostLink | None = None
        self._servers: list[asyncio.Server] = []
        self._unix_paths: list[Path] = []
        self.connections: set[_PolicyConnection] = set()
        self.addresses: list[Any] = []
        # What a connection reads per request, as plain attributes (see start() for the rest).
        self.max_request_bytes = settings.max_request_bytes
        self.metered = metrics is not None

    @property
    def core(self) -> PostfixPolicy:
        if self._core is None:
            raise RuntimeError("PostfixPolicyServer not started")
        return self._core

    def answer(self, attrs: dict[str, str]) -> bytes:
        """The reply to one request, its decision timed when metrics are kept."""
        core = self.core
        observe = self._observe
        if observe is None:
            return core.reply(attrs, self.clock.now())
        start = perf_counter()
        try:
            return core.reply(attrs, self.clock.now())
        finally:
            observe(perf_counter() - start)

    def observe(self, event: Event) -> None:
        """Feed a log event (the daemon subscribes this to its event stream)."""
        if self._core is not None:
            self._core.observe(event, self.clock.now())

    async def start(self, daemon: object | None = None) -> None:
        link = bind_host(daemon, self._backend, self._clock, self._on_decisions, name=self.name)
        self._link = link
        self.clock = link.clock
        self._core = core = PostfixPolicy(
            self.settings, link.backend, country=self._country, on_decisions=link.decisions
        )
        self.policy = core
        self.now = self.clock.now  # bound once: a connection calls it for every request
        link.start()
        if daemon is not None and hasattr(daemon, "on_event"):
            daemon.on_event(self.observe)
        loop = asyncio.get_running_loop()
        self.replies = ReplyBatch(loop)
        try:
            for item in self.settings.listen:
                kind, host, port = _parse_listen(item)
                if kind == "unix":
                    server = await self._listen_unix(loop, Path(host))
                else:
                    server = await loop.create_server(
                        lambda: _PolicyConnection(self), host, port, reuse_address=True
                    )
                self._servers.append(server)
                self.addresses.extend(s.getsockname() for s in server.sockets)
        except OSError:
            await self.stop()
            raise
        log.info("postfix policy server listening on %s", ", ".join(map(str, self.addresses)))

    async def _listen_unix(self, loop: asyncio.AbstractEventLoop, path: Path) -> asyncio.Server:
        if path.exists() and stat.S_ISSOCK(path.stat().st_mode):
            path.unlink()  # a stale socket from a previous run
        server = await loop.create_unix_server(lambda: _PolicyConnection(self), str(path))
        self._unix_paths.append(path)
        os.chmod(path, int(self.settings.socket_mode, 8))
        if self.settings.socket_group:
            try:
                os.chown(path, -1, grp.getgrnam(self.settings.socket_group).gr_gid)
            except (KeyError, PermissionError) as exc:
                log.warning(
                    "postfix policy: cannot give %s to group %s: %s",
                    path,
                    self.settings.socket_group,
                    exc,
                )
        return server

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        if self._servers:
            self.replies.flush()  # answers already decided still reach Postfix
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for path in self._unix_paths:
            path.unlink(missing_ok=True)
        self._unix_paths.clear()
        self.addresses.clear()
        if self._link is not None:
            await self._link.stop()
            self._link = None


__all__ = ["PostfixPolicyServer", "encode_action", "parse_request", "read_request"]
