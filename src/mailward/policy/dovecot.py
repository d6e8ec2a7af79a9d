"""Dovecot auth-policy HTTP server (``auth_policy_server_url``) on aiohttp.

``POST <any path>?command=allow|report`` with a JSON body, optionally guarded by an API-key header
and/or HTTP Basic auth. ``allow`` is answered from memory at once; ``report`` is acknowledged at
once and processed right after, in arrival order, from a bounded queue. A malformed request gets
``400`` and one log line, a bad credential ``401``; nothing a client sends can crash the server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

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
from mailward.policy.dovecot_rules import AuthRequest, DovecotPolicy

if TYPE_CHECKING:
    from mailward.notify.metrics import Metrics

log = logging.getLogger(__name__)

_JSON = "application/json"
_STATUS_BODIES = {n: json.dumps({"status": n, "msg": ""}).encode() for n in range(0, 61)}
_REFUSE_BODY = json.dumps({"status": -1, "msg": "Authentication failed"}).encode()
_DRAIN_BATCH = 256


def status_body(status: int) -> bytes:
    if status < 0:
        return _REFUSE_BODY
    return _STATUS_BODIES.get(status) or json.dumps({"status": status, "msg": ""}).encode()


class DovecotPolicyServer:
    """The Dovecot policy component: ``start(daemon)`` binds ``host:port``, ``stop()`` closes.

    Given nothing, it takes the daemon's engine (``check``/``observe``), clock, event intake
    (``submit_event``, so reports reach the store and every detector like log lines do) and
    decision intake (``submit_decisions``).
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
        self._on_decisions = on_decisions
        self._feed = feed
        self._core: DovecotPolicy | None = None
        self._link: HostLink | None = None
        self._runner: web.AppRunner | None = None
        self._pending: deque[tuple[AuthRequest, float]] = deque()
        self._drain_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.addresses: list[Any] = []
        self._api_key = (
            settings.api_key.get_secret_value().encode() if settings.api_key is not None else None
        )
        self._basic: bytes | None = None
        if settings.basic_user is not None:
            password = settings.basic_password.get_secret_value() if settings.basic_password else ""
            self._basic = f"{settings.basic_user}:{password}".encode()

    @property
    def core(self) -> DovecotPolicy:
        if self._core is None:
            raise RuntimeError("DovecotPolicyServer not started")
        return self._core

    @property
    def port(self) -> int:
        return int(self.addresses[0][1])

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_post("/{tail:.*}", self._handle)
        return app

    async def start(self, daemon: object | None = None) -> None:
        link = bind_host(
            daemon, self._backend, self._clock, self._on_decisions, self._feed, name=self.name
        )
        self._link = link
        self.clock = link.clock
        self._core = DovecotPolicy(
            self.settings, link.backend, feed=link.events, on_decisions=link.decisions
        )
        link.start()
        self._loop = asyncio.get_running_loop()
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.addresses = list(runner.addresses)
        log.info("dovecot policy server listening on %s", self.addresses)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        while self._pending:  # what was acknowledged is still processed
            self._drain()
        self.addresses = []
        if self._link is not None:
            await self._link.stop()
            self._link = None

    # -- HTTP --------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        observe = self._observe
        if observe is None:
            return await self._answer(request)
        start = perf_counter()
        try:
            return await self._answer(request)
        finally:
            observe(perf_counter() - start)

    async def _answer(self, request: web.Request) -> web.Response:
        core = self.core
        # Dovecot appends "?command=..." (or "command=..." after a URL ending in "&"); reading
        # the raw query is far cheaper than building yarl's query MultiDict per request.
        command = None
        for part in request.query_string.split("&"):
            if part.startswith("command="):
                command = part[8:]
        if command not in ("allow", "report"):
            return self._bad(request, f"unknown command {str(command)[:40]!r}")
        if not self._authorized(request):
            core.stats.unauthorized += 1
            log.warning("dovecot policy: unauthorized request from %s", request.remote)
            return web.Response(status=401, text="unauthorized\n")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._bad(request, f"body larger than {self.settings.max_body_bytes} bytes")
        try:
            # orjson: a third of json.loads' cost per request; strict UTF-8 and RFC 8259 JSON.
            req = AuthRequest.from_json(orjson.loads(raw))
        except ValueError as exc:  # orjson.JSONDecodeError, bad UTF-8 included
            return self._bad(request, f"body is not JSON: {exc}")
        except ProtocolError as exc:
            return self._bad(request, str(exc))
        now = self.clock.now()
        if command == "allow":
            try:
                status = core.allow(req, now)
            except Exception:
                core.stats.errors += 1
                log.exception("dovecot policy: allow failed; answering 0")
                status = 0
            return web.Response(body=status_body(status), content_type=_JSON)
        self._enqueue(req, now)
        return web.Response(body=_STATUS_BODIES[0], content_type=_JSON)

    def _bad(self, request: web.Request, why: str) -> web.Response:
        self.core.stats.bad_requests += 1
        log.warning("dovecot policy: bad request from %s: %s", request.remote, why)
        return web.Response(status=400, text=f"bad request: {why}\n")

    def _authorized(self, request: web.Request) -> bool:
        if self._api_key is not None:
            got = request.headers.get(self.settings.api_header, "").encode()
            if not hmac.compare_digest(got, self._api_key):
                return False
        if self._basic is not None:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            try:
                given = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
            if scheme.lower() != "basic" or not hmac.compare_digest(given, self._basic):
                return False
        return True

    # -- reports: acknowledged first, processed right after ---------------------------------

    def _enqueue(self, req: AuthRequest, now: float) -> None:
        if len(self._pending) >= self.settings.report_queue:
            self.core.stats.dropped += 1
            if self.core.stats.dropped % 1000 == 1:
                log.warning(
                    "dovecot policy: report queue full, %d dropped", self.core.stats.dropped
                )
            return
        self._pending.append((req, now))
        if not self._drain_scheduled and self._loop is not None:
            self._drain_scheduled = True
            # A callback, not a task: reports are processed in order on the loop, after the
            # acknowledgement has been handed to the transport, and nothing is left dangling.
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        pending = self._pending
        for _ in range(min(_DRAIN_BATCH, len(pending))):
            req, now = pending.popleft()
            try:
                self.core.report(req, now)
            except Exception:
                self.core.stats.errors += 1
                log.exception("dovecot policy: processing a report failed")
        if pending and self._loop is not None and not self._loop.is_closed():
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    def pending(self) -> int:
        return len(self._pending)
