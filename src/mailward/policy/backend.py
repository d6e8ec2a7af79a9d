"""What the policy servers need from the detectors, as a Protocol, with an in-memory twin.

The daemon passes its ``Engine`` (``check`` answers from memory, ``observe`` feeds events);
tests and ``mailward policy serve --standalone`` use ``MemoryBackend``, which keeps bans, protected
usernames, known-good sources and per-IP failure counts with explicit, configurable thresholds.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Generic, Protocol, TypeVar

from mailward.clock import Clock, SystemClock
from mailward.decisions.model import USER_PREFIX, Action, Decision
from mailward.events import IPV6_KEY_FLAG, AuthFailure, AuthSuccess, Event, IPAddress, ip_key

log = logging.getLogger(__name__)


class VerdictLike(Protocol):
    """The answer to an in-line question (``Engine.check`` returns a ``Verdict`` of this shape)."""

    @property
    def allow(self) -> bool: ...

    @property
    def tarpit(self) -> float: ...

    @property
    def reason(self) -> str: ...

    @property
    def decision(self) -> Decision | None:
        """The ban or protection behind a refusal, when there is one."""
        ...


class PolicyBackend(Protocol):
    """The two calls the policy servers make. ``check`` must answer from memory, fast."""

    @property
    def generation(self) -> int:
        """Grows with every change of the bans: a server may remember ``check``'s answer for an
        address until it moves (or, for a refusal, until the ban's ``until``)."""
        ...

    def added_since(self, generation: int) -> list[tuple[int, int, int]] | None:
        """What moved ``standing`` since ``generation`` when it was only bans added, as
        ``(version, prefix length, network)``; None when anything else moved it (a server then
        drops all it remembered)."""
        ...

    def check(self, ip: IPAddress, username: str | None, now: float) -> VerdictLike: ...

    def standing(self, key: int, now: float) -> VerdictLike | None:
        """``check``'s part that depends on the address (its ``ip_key``) alone and moves only with
        ``generation``: a refusal (until its ban's ``until``), an allow that nothing else can
        change (an exempt address), or None when ``pressure`` decides."""
        ...

    def pressure(self, key: int, username: str | None, now: float) -> VerdictLike:
        """``check``'s part that moves with every event, for an address (its ``ip_key``)
        that ``standing`` left open: an attacked username's unknown sources, tarpits."""
        ...

    def observe(self, event: Event, now: float) -> list[Decision]: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    allow: bool
    tarpit: float = 0.0
    reason: str = ""
    decision: Decision | None = None


ALLOW = Verdict(True)


@dataclass
class _Ban:
    net: IPv4Network | IPv6Network
    until: float | None
    decision: Decision


def _key(net: IPv4Network | IPv6Network) -> tuple[int, int, int]:
    bits = 32 if net.version == 4 else 128
    return (net.version, net.prefixlen, int(net.network_address) >> (bits - net.prefixlen))


@dataclass
class MemoryBackend:
    """In-memory twin of the detector engine, enough to exercise every policy answer.

    - ``ban_after`` failures of one IP within ``window`` ban it for ``ban_seconds``;
    - from ``tarpit_after`` failures on, ``check`` asks for a tarpit of 1, 2, 4 … seconds (≤ 8);
    - ``protect_after`` distinct failing IPs on one username protect it for ``protect_seconds``:
      only IPs that logged in successfully as that user within ``known_good_seconds`` pass.
    """

    ban_after: int = 5
    tarpit_after: int = 3
    window: float = 600.0
    ban_seconds: float = 3600.0
    protect_after: int = 5
    protect_seconds: float = 3600.0
    known_good_seconds: float = 30 * 86400.0
    bans: dict[tuple[int, int, int], _Ban] = field(default_factory=dict)  # (version, len, net)
    _lengths: set[tuple[int, int]] = field(default_factory=set)
    protected: dict[str, float] = field(default_factory=dict)
    # keyed by ``ip_key``, as the engine's state is
    known_good: dict[tuple[str, int], float] = field(default_factory=dict)
    failures: dict[int, deque[float]] = field(default_factory=dict)
    user_failures: dict[str, dict[int, float]] = field(default_factory=dict)
    generation: int = 0

    def apply(self, decision: Decision) -> None:
        """Install an operator's or another detector's decision."""
        net = decision.network
        self.generation += 1
        if decision.action is Action.BAN and net is not None:
            self.bans[_key(net)] = _Ban(net, decision.until, decision)  # twice is harmless
            self._lengths.add((net.version, net.prefixlen))
        elif decision.action is Action.UNBAN and net is not None:
            self.bans.pop(_key(net), None)
        elif decision.action is Action.PROTECT_USER and decision.is_user:
            self.protected[decision.target[len(USER_PREFIX) :]] = decision.until or float("inf")

    def added_since(self, generation: int) -> list[tuple[int, int, int]] | None:
        return [] if generation == self.generation else None

    def check(self, ip: IPAddress, username: str | None, now: float) -> Verdict:
        key = ip_key(ip)
        verdict = self.standing(key, now)
        if verdict is not None:
            return verdict
        return self.pressure(key, username, now)

    def standing(self, key: int, now: float) -> Verdict | None:
        if self.bans:
            # One dict lookup per prefix length in use: O(1) in the number of bans.
            family, value, bits = (
                (4, key, 32) if key < IPV6_KEY_FLAG else (6, key ^ IPV6_KEY_FLAG, 128)
            )
            for version, length in self._lengths:
                if version != family:
                    continue
                ban = self.bans.get((version, length, value >> (bits - length)))
                if ban is not None and (ban.until is None or ban.until > now):
                    return Verdict(
                        False, reason=f"banned by {ban.decision.rule}", decision=ban.decision
                    )
        return None

    def pressure(self, key: int, username: str | None, now: float) -> Verdict:
        if username is not None and self.protected.get(username, 0.0) > now:
            seen = self.known_good.get((username, key))
            if seen is None or now - seen > self.known_good_seconds:
                return Verdict(False, reason=f"user {username} under attack, unknown source")
        recent = self._recent(key, now)
        if recent >= self.tarpit_after:
            return Verdict(True, tarpit=float(min(8, 1 << (recent - self.tarpit_after))))
        return ALLOW

    def _recent(self, key: int, now: float) -> int:
        times = self.failures.get(key)
        if not times:
            return 0
        while times and now - times[0] > self.window:
            times.popleft()
        return len(times)

    def observe(self, event: Event, now: float) -> list[Decision]:
        if event.ip is None:
            return []
        key = ip_key(event.ip)
        if isinstance(event, AuthSuccess) and event.username:
            self.known_good[(event.username, key)] = now
            self.failures.pop(key, None)
            return []
        if not isinstance(event, AuthFailure):
            return []
        out: list[Decision] = []
        self.failures.setdefault(key, deque()).append(now)
        if self._recent(key, now) >= self.ban_after and self.check(event.ip, None, now).allow:
            out.append(
                Decision(
                    now,
                    str(event.ip),
                    Action.BAN,
                    "memory_failures",
                    until=now + self.ban_seconds,
                    reason=f"{self.ban_after} failures in {self.window:g}s",
                )
            )
        if event.username:
            ips = self.user_failures.setdefault(event.username, {})
            ips[key] = now
            for old in [k for k, t in ips.items() if now - t > self.window]:
                del ips[old]
            if len(ips) >= self.protect_after and self.protected.get(event.username, 0.0) <= now:
                out.append(
                    Decision(
                        now,
                        USER_PREFIX + event.username,
                        Action.PROTECT_USER,
                        "memory_distributed",
                        until=now + self.protect_seconds,
                        reason=f"{len(ips)} distinct failing IPs",
                    )
                )
        for decision in out:
            self.apply(decision)
        return out


T = TypeVar("T")
DecisionSink = Callable[[list[Decision]], None]
EventSink = Callable[[Event], None]


class Outbox(Generic[T]):
    """Hands items from the synchronous answer path to an async handler (the daemon's ``feed`` or
    ``submit``), in order, from one owned task; the answer never waits for it. Bounded: when the
    daemon falls this far behind, items are dropped and counted rather than held without limit."""

    def __init__(
        self, name: str, handler: Callable[[list[T]], Awaitable[object]], maxsize: int = 10000
    ) -> None:
        self.name = name
        self.handler = handler
        self.queue: asyncio.Queue[list[T]] = asyncio.Queue(maxsize)
        self.dropped = 0
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    def put(self, items: list[T]) -> None:
        try:
            self.queue.put_nowait(items)
        except asyncio.QueueFull:
            self.dropped += len(items)
            if self.dropped % 1000 < len(items):
                log.warning("%s: daemon not keeping up, %d items dropped", self.name, self.dropped)

    def start(self) -> None:
        from mailward.daemon.tasks import spawn

        self._task = spawn(self._run(), name=self.name)

    async def _run(self) -> None:
        while True:
            items = list(await self.queue.get())
            while not self.queue.empty() and len(items) < 1000:  # coalesce what piled up
                items.extend(self.queue.get_nowait())
            await self._deliver(items)

    async def _deliver(self, items: list[T]) -> None:
        try:
            await self.handler(items)
        except Exception as exc:  # e.g. BackendUnavailable: recorded, enforced later
            self.failures += 1
            if self.failures in (1, 100) or self.failures % 10000 == 0:
                log.warning(
                    "%s: handing %d items to the daemon failed: %s", self.name, len(items), exc
                )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while not self.queue.empty():  # what was accepted is still handed over
            await self._deliver(self.queue.get_nowait())


@dataclass
class HostLink:
    """What a policy component uses of its host: detectors, clock, and where its own decisions
    and events go. Under the daemon these are outboxes to ``daemon.submit``/``daemon.feed``."""

    backend: PolicyBackend
    clock: Clock
    decisions: DecisionSink | None
    events: EventSink | None
    outboxes: list[Outbox[Any]] = field(default_factory=list)

    def start(self) -> None:
        for box in self.outboxes:
            box.start()

    async def stop(self) -> None:
        for box in self.outboxes:
            await box.stop()


def _decision_sink(
    daemon: object, backend: PolicyBackend, link: HostLink, name: str
) -> DecisionSink | None:
    submit_sync = getattr(daemon, "submit_decisions", None)
    if callable(submit_sync) and not inspect.iscoroutinefunction(submit_sync):
        # submit_decisions expects decisions already taken on the engine; the policy servers'
        # own rules (enumeration, pwhash, account) are not, so they are applied here first.
        apply = getattr(backend, "apply", None)

        def sink(decisions: list[Decision]) -> None:
            if apply is not None:
                for decision in decisions:
                    apply(decision)
            submit_sync(decisions)

        return sink
    submit = getattr(daemon, "submit", None)
    if submit is not None and inspect.iscoroutinefunction(submit):
        box: Outbox[Decision] = Outbox(f"{name}-decisions", submit)
        link.outboxes.append(box)
        return box.put
    return None


def bind_host(
    daemon: object | None,
    backend: PolicyBackend | None,
    clock: Clock | None,
    sink: DecisionSink | None,
    feed: EventSink | None = None,
    *,
    name: str = "policy",
) -> HostLink:
    """Fill what a policy component was not given from the daemon it is started by.

    Explicit arguments win. The daemon supplies ``engine``, ``clock``, and where decisions and
    events go: ``submit_decisions``/``submit_event`` (non-blocking) when it has them, else the
    coroutines ``submit``/``feed`` through outboxes, so the answer path never awaits.
    """
    if backend is None:
        backend = getattr(daemon, "engine", None)
        if backend is None:
            raise RuntimeError(
                "policy server needs a backend: pass one or start it from the daemon"
            )
    if clock is None:
        clock = getattr(daemon, "clock", None) or SystemClock()
    link = HostLink(backend, clock, sink, feed)
    if daemon is None:
        return link
    if sink is None:
        link.decisions = _decision_sink(daemon, backend, link, name)
    if feed is None:
        submit_event = getattr(daemon, "submit_event", None)
        daemon_feed = getattr(daemon, "feed", None)
        if callable(submit_event) and not inspect.iscoroutinefunction(submit_event):
            link.events = submit_event  # the daemon queues it: detected, stored, published
        elif daemon_feed is not None and inspect.iscoroutinefunction(daemon_feed):
            events: Outbox[Event] = Outbox(f"{name}-events", daemon_feed)
            link.outboxes.append(events)
            link.events = lambda event: events.put([event])
    return link
