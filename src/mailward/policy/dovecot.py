"""Dovecot auth-policy HTTP server (``auth_policy_server_url``) on ``httptools`` + asyncio.

``POST <any path>?command=allow|report`` with a JSON body, optionally guarded by an API-key header
and/or HTTP Basic auth. ``allow`` is answered from memory at once; ``report`` is acknowledged at
once and processed right after, in arrival order, from a bounded queue. A malformed request gets
``400`` and one log line, a bad credential ``401``; nothing a client sends can crash the server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Callable
from hmac import compare_digest
from typing import TYPE_CHECKING, Any, Final

from mailward.clock import Clock, SystemClock
from mailward.config.model import DovecotPolicySettings
from mailward.errors import ProtocolError
from mailward.policy.backend import (
    DecisionSink,
    EventSink,
    HostLink,
    PolicyBackend,
    bind_host,
)
from mailward.policy.dovecot_rules import AuthRequest, DovecotPolicy, client_of
from mailward.policy.httpserver import HttpServer, Limits, Reply, text_reply

if TYPE_CHECKING:
    from mailward.notify.metrics import Metrics

log = logging.getLogger(__name__)

_STATUS_BODIES = {n: json.dumps({"status": n, "msg": ""}).encode() for n in range(0, 61)}
_REFUSE_BODY = json.dumps({"status": -1, "msg": "Authentication failed"}).encode()
_STATUS_REPLIES: Final = {n: Reply(200, body) for n, body in _STATUS_BODIES.items()}
_REFUSE_REPLY: Final = Reply(200, _REFUSE_BODY)
_OK: Final = _STATUS_REPLIES[0]
_UNAUTHORIZED: Final = text_reply(401, "unauthorized")
_NOT_POST: Final = text_reply(405, "only POST is served", b"Allow: POST\r\n")
_DRAIN_BATCH: Final = 256
# What Dovecot sends with auth_policy_server_url = http://host:port/ : no query to split.
_ALLOW_TARGET: Final = b"/?command=allow"
_REPORT_TARGET: Final = b"/?command=report"
# compiled, Final names are C statics: no module-dict lookup per request
_compare_digest: Final = compare_digest


def status_body(status: int) -> bytes:
    if status < 0:
        return _REFUSE_BODY
    return _STATUS_BODIES.get(status) or json.dumps({"status": status, "msg": ""}).encode()


def status_reply(status: int) -> Reply:
    if status < 0:
        return _REFUSE_REPLY
    return _STATUS_REPLIES.get(status) or Reply(200, status_body(status))


def command_of(target: bytes) -> bytes | None:
    """The ``command`` query parameter: Dovecot appends ``?command=...`` (or ``command=...``
    after a URL that ends in ``&``); the last one wins, like a query dict's."""
    # what Dovecot sends: compared as they are (a lookup would hash the new bytes each time)
    if target == _ALLOW_TARGET:
        return b"allow"
    if target == _REPORT_TARGET:
        return b"report"
    command = None
    for part in target.partition(b"?")[2].split(b"&"):
        if part.startswith(b"command="):
            command = part[8:]
    return command


class DovecotPolicyServer:
    """The Dovecot policy component: ``start(daemon)`` binds ``host:port``, ``stop()`` closes.

    Given nothing, it takes the daemon's engine (``check``/``observe``), clock, event intake
    (``submit_event``, so reports reach the store and every detector like log lines do) and
    decision intake (``submit_decisions``). It is the ``Handler`` of its ``HttpServer``.
    """

    name = "policy-dovecot"

    def __init__(
        self,
        settings: DovecotPolicySettings,
        *,
        backend: PolicyBackend | None = None,
        clock: Clock | None = None,
        on_decisions: DecisionSink | None = None,
        feed: EventSink | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        # Bound once: per request only perf_counter() and the histogram's observe().
        self._observe = (
            None if metrics is None else metrics.policy_latency.labels(server="dovecot").observe
        )
        self._backend = backend
        self._clock = clock
        self.clock: Clock = clock or SystemClock()
        self._now: Callable[[], float] = self.clock.now  # bound once: read for every request
        self._on_decisions = on_decisions
        self._feed = feed
        self._core: DovecotPolicy | None = None
        self._link: HostLink | None = None
        self._http: HttpServer | None = None
        # acknowledged reports, each stamped with when it came (``AuthRequest.at``): a list,
        # swapped out whole by ``_drain`` (compiled, an append is a C call; a deque's a
        # generic method call)
        self._pending: list[AuthRequest] = []
        self._report_queue = settings.report_queue  # read per report: a native attribute
        self._drain_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.addresses: list[Any] = []
        self._api_header = settings.api_header.lower().encode("latin-1")
        self._api_key = (
            settings.api_key.get_secret_value().encode() if settings.api_key is not None else None
        )
        self._basic: bytes | None = None
        self._basic_header = b""
        if settings.basic_user is not None:
            password = settings.basic_password.get_secret_value() if settings.basic_password else ""
            self._basic = f"{settings.basic_user}:{password}".encode()
            self._basic_header = b"Basic " + base64.b64encode(self._basic)
        wanted = set()
        if self._api_key is not None:
            wanted.add(self._api_header)
        if self._basic is not None:
            wanted.add(b"authorization")
        self.wanted = frozenset(wanted)

    @property
    def core(self) -> DovecotPolicy:
        if self._core is None:
            raise RuntimeError("DovecotPolicyServer not started")
        return self._core

    @property
    def http(self) -> HttpServer:
        if self._http is None:
            raise RuntimeError("DovecotPolicyServer not started")
        return self._http

    @property
    def port(self) -> int:
        return int(self.addresses[0][1])

    def limits(self) -> Limits:
        s = self.settings
        return Limits(
            max_body=s.max_body_bytes,
            max_head=s.max_header_bytes,
            max_connections=s.max_connections,
            request_timeout=s.request_timeout,
            idle_timeout=s.idle_timeout,
        )

    async def start(self, daemon: object | None = None) -> None:
        link = bind_host(
            daemon, self._backend, self._clock, self._on_decisions, self._feed, name=self.name
        )
        self._link = link
        self.clock = link.clock
        self._now = link.clock.now
        self._core = DovecotPolicy(
            self.settings, link.backend, feed=link.events, on_decisions=link.decisions
        )
        link.start()
        self._loop = asyncio.get_running_loop()
        # reports are processed right after each batch of replies is written (their
        # acknowledgements go out first), with no callback scheduled per pass for them
        http = HttpServer(
            "dovecot policy",
            self,
            self.limits(),
            observe=self._observe,
            after_replies=self._drain,
        )
        try:
            await http.start(self.settings.host, self.settings.port)
        except OSError:
            await link.stop()
            self._link = None
            raise
        self._http = http
        self.addresses = list(http.addresses)
        log.info("dovecot policy server listening on %s", self.addresses)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.stop()
        while self._pending:  # what was acknowledged is still processed
            self._drain()
        self.addresses = []
        if self._link is not None:
            await self._link.stop()
            self._link = None

    # -- HTTP (the Handler) ------------------------------------------------------------------

    def head(
        self, method: bytes, target: bytes, headers: dict[bytes, bytes], peer: str
    ) -> Reply | None:
        """Refuse what the body cannot change: method, command, credentials."""
        if method != b"POST":
            self.core.stats.bad_requests += 1
            log.warning("dovecot policy: bad request from %s: method %r", peer, method[:20])
            return _NOT_POST
        command = command_of(target)
        if command != b"allow" and command != b"report":
            shown = None if command is None else command.decode("latin-1")
            return self._bad(peer, f"unknown command {str(shown)[:40]!r}")
        if not self._authorized(headers):
            self.core.stats.unauthorized += 1
            log.warning("dovecot policy: unauthorized request from %s", peer)
            return _UNAUTHORIZED
        return None

    def answer(self, target: bytes, headers: dict[bytes, bytes], body: bytes, peer: str) -> Reply:
        core = self.core
        if command_of(target) == b"allow":
            try:
                # only what ``allow`` reads, checked as a report's whole body is
                key, login, protocol = client_of(body)
            except ProtocolError as exc:
                return self._bad(peer, str(exc))
            try:
                status = core.allow_client(key, login, protocol, self._now())
            except Exception:
                core.stats.errors += 1
                log.exception("dovecot policy: allow failed; answering 0")
                return _OK
            return _OK if status == 0 else status_reply(status)
        try:
            req = AuthRequest.from_raw(body)
        except ProtocolError as exc:
            return self._bad(peer, str(exc))
        self._enqueue(req, self._now())
        return _OK

    def _bad(self, peer: str, why: str) -> Reply:
        self.core.stats.bad_requests += 1
        log.warning("dovecot policy: bad request from %s: %s", peer, why)
        return text_reply(400, f"bad request: {why}")

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        if self._api_key is not None:
            got = headers.get(self._api_header, b"")
            if not _compare_digest(got, self._api_key):
                return False
        if self._basic is not None:
            value = headers.get(b"authorization", b"")
            if _compare_digest(value, self._basic_header):
                return True  # the canonical form, as Dovecot sends it: no decoding
            scheme, _, encoded = value.partition(b" ")
            try:
                given = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
            if scheme.lower() != b"basic" or not _compare_digest(given, self._basic):
                return False
        return True

    # -- reports: acknowledged first, processed right after ---------------------------------

    def _enqueue(self, req: AuthRequest, now: float) -> None:
        if len(self._pending) >= self._report_queue:
            self.core.stats.dropped += 1
            if self.core.stats.dropped % 1000 == 1:
                log.warning(
                    "dovecot policy: report queue full, %d dropped", self.core.stats.dropped
                )
            return
        req.at = now
        self._pending.append(req)
        if self._http is not None:
            return  # its reply batch drains the queue once this pass's answers are written
        if not self._drain_scheduled and self._loop is not None:
            self._drain_scheduled = True
            # A callback, not a task: reports are processed in order on the loop, after the
            # acknowledgement has been handed to the transport, and nothing is left dangling.
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        pending = self._pending
        if not pending:
            return
        if len(pending) > _DRAIN_BATCH:  # a burst: the rest in the next pass of the loop
            self._pending = pending[_DRAIN_BATCH:]
            pending = pending[:_DRAIN_BATCH]
        else:
            self._pending = []
        core = self.core
        for req in pending:
            try:
                core.report(req, req.at)
            except Exception:
                core.stats.errors += 1
                log.exception("dovecot policy: processing a report failed")
        if self._pending and self._loop is not None and not self._loop.is_closed():
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    def pending(self) -> int:
        return len(self._pending)


__all__ = ["DovecotPolicyServer", "command_of", "status_body", "status_reply"]
