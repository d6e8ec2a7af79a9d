"""The daemon: live sources -> parser -> correlator -> detectors -> decisions -> enforcer, ledger
and subscribers. Each source, the pipeline, enforcement, expiry and the watchdog are supervised
tasks; components (policy servers, alerting, metrics, the control socket) plug in through
``Component``. Events and decisions reach subscribers through isolated queues, never inline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mailward.clock import Clock
from mailward.config.model import Settings
from mailward.daemon.dedupe import ReportDedupe
from mailward.daemon.fanout import Fanout
from mailward.daemon.heap import CHECK_INTERVAL, HeapFreezer
from mailward.daemon.ledger import Ledger
from mailward.daemon.systemd import SystemdNotifier
from mailward.daemon.tasks import Supervisor, spawn
from mailward.decisions.model import Action, Decision
from mailward.enforcers.bantable import as_network
from mailward.enforcers.base import Enforcer
from mailward.errors import BackendUnavailable, InputError
from mailward.events import Event, Origin
from mailward.sources.live import Batch, LiveSource

log = logging.getLogger(__name__)

LIVE_WINDOW = 300.0  # events older than this are a backlog: detectors see them at their own time
COMMIT_LINES = 5000  # at most this many lines between two ledger commits
SLICE = 0.02  # seconds of detector work before the pipeline yields to the event loop
RELEASE_INTERVAL = 1.0  # seconds between correlator ticks (held events released on a quiet log)


def overlapping(target: str, bans: set[str] | list[str]) -> list[str]:
    """The ban targets that contain ``target`` or lie inside it."""
    try:
        net = as_network(target)
    except ValueError:
        raise InputError(f"not an IP address or CIDR prefix: {target!r}") from None
    out = []
    for ban in bans:
        try:
            other = as_network(ban)
        except ValueError:
            continue
        if other.version == net.version and other.overlaps(net):
            out.append(ban)
    return sorted(out)


class Parser(Protocol):
    def parse(self, line: str, origin: Origin | None = None) -> Event | None: ...


class Correlator(Protocol):
    def push(self, event: Event) -> list[Event]: ...

    def tick(self, now: float) -> list[Event]:
        """Release what was held longer than its window at log time ``now`` (a quiet log)."""
        ...

    def flush(self) -> list[Event]: ...


class Detector(Protocol):
    """The part of ``detectors.engine.Engine`` the daemon drives."""

    def observe(self, event: Event, now: float) -> list[Decision]: ...

    def apply(self, decision: Decision) -> None: ...

    def active(self, now: float) -> list[Decision]: ...

    def expire(self, now: float) -> list[Decision]: ...


@runtime_checkable
class Component(Protocol):
    """Something the daemon starts after its pipeline and stops before it (policy servers,
    alerting, metrics, the control socket). ``status()`` is optional."""

    name: str

    async def start(self, daemon: Daemon) -> None: ...

    async def stop(self) -> None: ...


class PassThrough:
    """A correlator that emits each event as it comes (when none is configured)."""

    def push(self, event: Event) -> list[Event]:
        return [event]

    def tick(self, now: float) -> list[Event]:
        return []

    def flush(self) -> list[Event]:
        return []


@dataclass
class SourceStatus:
    name: str
    kind: str
    newest_line_ts: float | None = None  # log time of the newest line processed
    processed_ts: float | None = None  # wall time that line was processed
    # How far behind: while lines wait (unread in the file, or read but not yet processed),
    # how long the oldest has waited; otherwise the delay of the last line processed.
    lag_seconds: float = 0.0
    unread_bytes: int = 0  # 0 also when the source cannot tell (journald)
    delay_seconds: float = 0.0  # processed_ts - newest_line_ts of the last batch
    last_error: str | None = None
    lines: int = 0
    events: int = 0
    unparsed: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "newest_line_ts": self.newest_line_ts,
            "processed_ts": self.processed_ts,
            "lag_seconds": round(self.lag_seconds, 3),
            "unread_bytes": self.unread_bytes,
            "delay_seconds": round(self.delay_seconds, 3),
            "last_error": self.last_error,
            "lines": self.lines,
            "events": self.events,
            "unparsed": self.unparsed,
            "detail": self.detail,
        }


@dataclass
class _Counters:
    lines: int = 0
    events: int = 0
    decisions: int = 0
    parse_errors: int = 0
    detector_errors: int = 0
    commit_errors: int = 0
    enforce_errors: int = 0
    expired: int = 0
    prunes: int = 0
    watcher_errors: int = 0


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock,
        enforcer: Enforcer,
        store: Ledger,
        engine: Detector,
        parser: Parser | None = None,
        correlator: Correlator | None = None,
        sources: Sequence[LiveSource] = (),
        notifier: SystemdNotifier | None = None,
        dedupe: ReportDedupe | None = None,
    ) -> None:
        self.settings = settings
        # With the Dovecot auth-policy server on, an attempt arrives as a report and again
        # from the logs: counted once.
        self.dedupe = dedupe
        self.clock = clock
        self.enforcer = enforcer
        self.store = store
        self.engine = engine
        self.parser = parser
        self.correlator: Correlator = correlator or PassThrough()
        self.sources = list(sources)
        if self.sources and parser is None:
            raise ValueError("log sources need a parser")
        self.notifier = notifier or SystemdNotifier({})
        self.supervisor = Supervisor()
        self.components: list[Component] = []
        self.component_errors: dict[str, str] = {}
        self.events: Fanout[Event] = Fanout("event")
        self.decisions: Fanout[Decision] = Fanout("decision")
        self.counters = _Counters()
        self.started_at: float | None = None
        self.last_decision: Decision | None = None
        self.last_enforce_error: str | None = None
        self._status = {s.name: SourceStatus(s.name, s.kind) for s in self.sources}
        self._queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=64)
        self._pending_enforce: list[Decision] = []
        self._pending_batches: dict[str, deque[float]] = {}  # enqueue times, per source
        self._feed: asyncio.Queue[Event] = asyncio.Queue(maxsize=100_000)
        self.feed_dropped = 0
        self._enforce_wakeup = asyncio.Event()
        self._restore_pending = False
        self._stop = asyncio.Event()
        self._last_obs = 0.0
        self._commit_lock = asyncio.Lock()
        self.heap = HeapFreezer()
        self._line_watchers: list[Callable[[list[str]], None]] = []
        self._log_anchor: tuple[float, float] | None = None  # (newest log ts, wall time seen)

    # -- wiring ------------------------------------------------------------------------------
    def add_component(self, component: Component) -> None:
        self.components.append(component)

    def on_event(self, callback: Callable[[Event], Awaitable[None] | None], name: str = "") -> None:
        """Call ``callback`` for every correlated event (own queue; failures are contained)."""
        self.events.subscribe(callback, name or None)

    def on_decision(
        self, callback: Callable[[Decision], Awaitable[None] | None], name: str = ""
    ) -> None:
        """Call ``callback`` for every decision: detector, operator and expiry alike."""
        self.decisions.subscribe(callback, name or None)

    def watch_lines(self, callback: Callable[[list[str]], None]) -> None:
        """Call ``callback(texts)`` with every batch of followed log lines, in the pipeline,
        before parsing (e.g. policy-outage lines). It must be cheap (a batch is up to thousands
        of lines: scan it whole first); its failures are counted and logged."""
        self._line_watchers.append(callback)

    def on_task_crash(self, hook: Callable[[str, BaseException], Any]) -> None:
        """``hook(task_name, exception)`` after a supervised task crashed (it is restarted)."""
        self.supervisor.add_crash_hook(hook)

    # -- life cycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self.started_at = self.clock.now()
        positions = await asyncio.to_thread(self.store.load_positions)
        for source in self.sources:
            source.resume(positions.get(source.name))
        await self._restore()
        # The restored state is long-lived: keep full GC passes off it (tail latency).
        self.heap.freeze()
        self.events.start()
        self.decisions.start()
        self.supervisor.supervise("pipeline", self._pipeline)
        self.supervisor.supervise("feed", self._feed_loop)
        self.supervisor.supervise("enforce", self._enforce_loop)
        self.supervisor.supervise("expire", self._expire_loop)
        self.supervisor.supervise("prune", self._prune_loop)
        self.supervisor.supervise("heap", self._heap_loop)
        self.supervisor.supervise("correlate", self._release_loop)
        if self.notifier.watchdog_interval:
            self.supervisor.supervise("watchdog", self._watchdog_loop)
        # Components (policy servers answer in-line) start before the sources, so a log backlog
        # being caught up never delays them.
        for component in self.components:
            try:
                await component.start(self)
            except Exception as exc:  # one component must not take the defence down
                self.component_errors[component.name] = f"{type(exc).__name__}: {exc}"
                log.exception("component %s failed to start", component.name)
        for source in self.sources:
            self.supervisor.supervise(
                f"source:{source.name}", self._source_factory(source), restart_on_exit=True
            )
        self.notifier.ready(self._status_line())
        log.info(
            "mailward running: %d sources, %d components, enforcer %s",
            len(self.sources),
            len(self.components),
            self.enforcer.name,
        )

    async def run(self) -> None:
        """Start, run until ``request_stop()`` (SIGTERM), then stop gracefully."""
        await self.start()
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()

    def request_stop(self) -> None:
        self._stop.set()

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Stop reading, finish what was read (processed, recorded, enforced, delivered to
        subscribers), then stop the components, in reverse order of start."""
        self.notifier.stopping()
        await self.supervisor.stop(names=[f"source:{s.name}" for s in self.sources])
        deadline = time.monotonic() + timeout
        pipeline = self.supervisor.info.get("pipeline")
        while (
            not self._queue.empty()
            and pipeline is not None
            and pipeline.state == "running"
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.02)
        await self.supervisor.stop(names=["pipeline", "feed", "correlate"])
        while not self._feed.empty():
            await self._handle([self._feed.get_nowait() for _ in range(self._feed.qsize())], {}, {})
        tail = self.correlator.flush()
        if tail:
            await self._handle(tail, {}, {})
        await self._flush_enforcement()
        await self.events.drain()
        await self.decisions.drain()
        for component in reversed(self.components):
            try:
                await asyncio.wait_for(component.stop(), timeout)
            except Exception:
                log.exception("component %s failed to stop", component.name)
        await self.supervisor.stop()
        await self.events.stop()
        await self.decisions.stop()
        for source in self.sources:
            close = getattr(source, "close", None)
            if callable(close):
                close()

    async def _restore(self) -> None:
        now = self.clock.now()
        active = await asyncio.to_thread(self.store.active_decisions, now)
        for decision in active:
            self.engine.apply(decision)
        try:
            await self.enforcer.restore(active)
            self._restore_pending = False
            log.info("restored %d active bans", len(active))
        except BackendUnavailable as exc:
            self._restore_pending = True
            self.last_enforce_error = str(exc)
            log.error("cannot restore bans yet (will retry): %s", exc)

    # -- feeding -----------------------------------------------------------------------------
    def _source_factory(self, source: LiveSource) -> Callable[[], Coroutine[Any, Any, None]]:
        async def read() -> None:
            pending = self._pending_batches.setdefault(source.name, deque())
            async with contextlib.aclosing(source.batches()) as batches:
                async for batch in batches:
                    pending.append(self.clock.now())
                    await self._queue.put(batch)

        return read

    async def _pipeline(self) -> None:
        while True:
            batches = [await self._queue.get()]
            lines = len(batches[0].lines)
            while lines < COMMIT_LINES and not self._queue.empty():
                batch = self._queue.get_nowait()
                batches.append(batch)
                lines += len(batch.lines)
            await self._process(batches)

    async def _process(self, batches: list[Batch]) -> None:
        assert self.parser is not None
        wall = self.clock.now()
        positions: dict[str, str] = {}
        newest: dict[str, float] = {}
        correlated: list[Event] = []
        for batch in batches:
            await asyncio.sleep(0)  # parsing a batch is CPU work: let others in between
            status = self._status[batch.source]
            if self._line_watchers:
                self._watch(batch)
            for event in self._parse(batch):
                status.events += 1
                newest[batch.source] = max(newest.get(batch.source, event.ts), event.ts)
                correlated.extend(self.correlator.push(event))
            status.unparsed = status.lines + len(batch.lines) - status.events
            status.lines += len(batch.lines)
            self.counters.lines += len(batch.lines)
            positions[batch.source] = batch.position
            if batch.newest_ts is not None:
                newest[batch.source] = max(newest.get(batch.source, 0.0), batch.newest_ts)
            status.processed_ts = wall
            pending = self._pending_batches.get(batch.source)
            if pending:
                pending.popleft()
        for name, ts in newest.items():
            st = self._status[name]
            st.newest_line_ts = ts
            st.delay_seconds = max(0.0, wall - ts)
        if newest:
            top = max(newest.values())
            if self._log_anchor is None or top >= self._log_anchor[0]:
                self._log_anchor = (top, wall)
        await self._handle(correlated, positions, {})

    def _parse(self, batch: Batch) -> list[Event]:
        assert self.parser is not None
        lines = batch.lines
        block = getattr(self.parser, "parse_block", None)
        first = lines[0][1] if lines else None
        if block is not None and first is not None and first.line is not None:
            # The parser's bulk path: a file batch is consecutive lines of one file.
            try:
                return list(block([text for text, _ in lines], first.source, first.line))
            except Exception:
                self._parse_failed(batch.source)
        events = []
        for text, origin in lines:
            try:
                event = self.parser.parse(text, origin)
            except Exception:
                self._parse_failed(batch.source)
                continue
            if event is not None:
                events.append(event)
        return events

    def _watch(self, batch: Batch) -> None:
        texts = [text for text, _ in batch.lines]
        for watcher in self._line_watchers:
            try:
                watcher(texts)
            except Exception:
                self.counters.watcher_errors += 1
                if (
                    self.counters.watcher_errors in (1, 100)
                    or not self.counters.watcher_errors % 10000
                ):
                    log.exception("line watcher failed on a line from %s", batch.source)

    def _parse_failed(self, source: str) -> None:
        self.counters.parse_errors += 1
        if self.counters.parse_errors in (1, 100) or self.counters.parse_errors % 10000 == 0:
            log.exception("parser failed on a line from %s", source)

    def submit_event(self, event: Event) -> None:
        """Hand over one event from a component (Dovecot ``report``) without waiting; it is
        detected, stored and published like a log line. Dropped and counted when 100,000 wait."""
        try:
            self._feed.put_nowait(event)
        except asyncio.QueueFull:
            self.feed_dropped += 1
            if self.feed_dropped == 1 or self.feed_dropped % 1000 == 0:
                log.error("component events dropped: %d (detectors too slow)", self.feed_dropped)

    def submit_decisions(self, decisions: list[Decision]) -> None:
        """Decisions a component already took on the daemon's engine (policy servers): enforced
        with the next batch, recorded and published, without waiting."""
        if not decisions:
            return
        self._queue_enforcement(decisions)
        spawn(self._commit([], list(decisions), {}), name="commit:component-decisions")
        self._published(decisions)

    async def _feed_loop(self) -> None:
        while True:
            events = [await self._feed.get()]
            while len(events) < COMMIT_LINES and not self._feed.empty():
                events.append(self._feed.get_nowait())
            await self._handle(events, {}, {})

    async def feed(self, events: Sequence[Event]) -> list[Decision]:
        """Events from a component (e.g. Dovecot ``report``): detect, store, publish."""
        return await self._handle(list(events), {}, {})

    async def _handle(
        self, events: list[Event], positions: dict[str, str], _: dict[str, Any]
    ) -> list[Decision]:
        wall = self.clock.now()
        if self.dedupe is not None:
            events = self.dedupe.admit(events, wall)
        decisions: list[Decision] = []
        slice_start = time.monotonic()
        for event in events:
            if time.monotonic() - slice_start > SLICE:
                # A backlog must not starve the loop: policy answers and the watchdog share it.
                await asyncio.sleep(0)
                slice_start = time.monotonic()
            now = wall if wall - event.ts < LIVE_WINDOW else min(wall, event.ts)
            now = max(self._last_obs, now)
            self._last_obs = now
            try:
                decisions.extend(self.engine.observe(event, now))
            except Exception:
                self.counters.detector_errors += 1
                if (
                    self.counters.detector_errors in (1, 100)
                    or self.counters.detector_errors % 10000 == 0
                ):
                    log.exception("detector failed on %s", event.kind)
        self.counters.events += len(events)
        if decisions:
            self._queue_enforcement(decisions)
        await self._commit(events, decisions, positions)
        for event in events:
            self.events.publish(event)
        self._published(decisions)
        return decisions

    async def _commit(
        self, events: Sequence[Event], decisions: Sequence[Decision], positions: dict[str, str]
    ) -> None:
        if not (events or decisions or positions):
            return
        async with self._commit_lock:  # positions must be written in order
            try:
                await asyncio.to_thread(self.store.commit, events, decisions, positions)
            except Exception:
                # Positions are not advanced, so these lines are read again after a restart.
                self.counters.commit_errors += 1
                log.exception("cannot record %d events / %d decisions", len(events), len(decisions))

    def _published(self, decisions: Sequence[Decision]) -> None:
        for decision in decisions:
            self.decisions.publish(decision)
        if decisions:
            self.counters.decisions += len(decisions)
            self.last_decision = decisions[-1]

    # -- enforcement -------------------------------------------------------------------------
    def _queue_enforcement(self, decisions: Sequence[Decision]) -> None:
        self._pending_enforce.extend(decisions)
        self._enforce_wakeup.set()

    async def _enforce_loop(self) -> None:
        delay = 1.0
        while True:
            await self._enforce_wakeup.wait()
            self._enforce_wakeup.clear()
            # Collect what arrives in the next moment into the same atomic batch.
            await asyncio.sleep(self.settings.enforce.batch_interval)
            if await self._flush_enforcement():
                delay = 1.0
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                self._enforce_wakeup.set()

    async def _flush_enforcement(self) -> bool:
        batch, self._pending_enforce = self._pending_enforce, []
        try:
            if self._restore_pending:
                await self._restore()
                if self._restore_pending:
                    raise BackendUnavailable(self.last_enforce_error or "restore failed")
            if batch:
                await self.enforcer.apply(batch)
            self.last_enforce_error = None
            return True
        except BackendUnavailable as exc:
            self.counters.enforce_errors += 1
            self.last_enforce_error = str(exc)
            log.error("enforcement failed (%d decisions kept for retry): %s", len(batch), exc)
            self._pending_enforce[:0] = batch
            return False

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.daemon.expire_interval)
            ended = self.engine.expire(self.clock.now())
            self.counters.expired += len(ended)

    async def _prune_loop(self) -> None:
        """Retention (``storage.retention_days``): once at start, then every ``prune_interval``
        (a day), in a worker thread so the event loop never waits for the DELETEs."""
        while True:
            result = await asyncio.to_thread(self.store.prune, self.clock.now())
            self.counters.prunes += 1
            log.info("retention applied: %s", result)
            await asyncio.sleep(self.settings.daemon.prune_interval)

    def log_now(self) -> float:
        """The log's clock: the newest log time seen, advanced by the wall time since. A log
        with a constant offset (wrong ``parsing.timezone``) or a backlog then never makes the
        correlator release an event before its partner line could have been read."""
        wall = self.clock.now()
        if self._log_anchor is None:
            return wall
        ts, seen = self._log_anchor
        return ts + max(0.0, wall - seen)

    async def _release_loop(self) -> None:
        while True:
            await asyncio.sleep(RELEASE_INTERVAL)
            released = self.correlator.tick(self.log_now())
            if released:
                await self._handle(released, {}, {})

    async def _heap_loop(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            self.heap.maybe_freeze()

    async def _watchdog_loop(self) -> None:
        interval = self.notifier.watchdog_interval or 10.0
        beats = 0
        while True:
            self.notifier.watchdog()
            if beats % max(1, int(30 / interval)) == 0:
                self.notifier.status(self._status_line())
            beats += 1
            await asyncio.sleep(interval)

    # -- operator actions --------------------------------------------------------------------
    def _check_target(self, target: str) -> str:
        try:
            net = as_network(target)
        except ValueError:
            raise InputError(f"not an IP address or CIDR prefix: {target!r}") from None
        for own in self.settings.general.server_addresses:
            if own.version == net.version and (net.overlaps(own)):
                raise InputError(f"{net} overlaps the server's own addresses ({own}); not banned")
        return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)

    async def ban(
        self, target: str, duration: float | None, reason: str = "", by: str = "operator"
    ) -> Decision:
        now = self.clock.now()
        decision = Decision(
            ts=now,
            target=self._check_target(target),
            action=Action.BAN,
            rule="manual",
            until=None if duration is None else now + duration,
            reason=reason or "manual ban",
            evidence={"by": by},
        )
        await self.submit([decision])
        return decision

    async def unban(self, target: str | None, by: str = "operator") -> list[Decision]:
        """Lift every active ban that covers or lies inside ``target`` (all when None); one
        UNBAN decision per lifted ban, naming it exactly."""
        now = self.clock.now()
        active = await asyncio.to_thread(self.store.active_decisions, now)
        current = {d.target for d in active} | {d.target for d in self.active_bans()}
        targets = sorted(current) if target is None else overlapping(target, current)
        decisions = [
            Decision(
                ts=now,
                target=t,
                action=Action.UNBAN,
                rule="manual",
                reason="manual unban",
                evidence={"by": by},
            )
            for t in targets
        ]
        if decisions:
            await self.submit(decisions)
        return decisions

    async def submit(self, decisions: Sequence[Decision]) -> None:
        """Operator or component decisions: applied to the detectors, enforced now (not at
        the next batch), recorded and published."""
        for decision in decisions:
            self.engine.apply(decision)
        self._pending_enforce.extend(decisions)
        ok = await self._flush_enforcement()
        await self._commit([], decisions, {})
        self._published(decisions)
        if not ok:
            self._enforce_wakeup.set()
            raise BackendUnavailable(f"recorded, but not enforced yet: {self.last_enforce_error}")

    # -- status ------------------------------------------------------------------------------
    def sources_status(self) -> list[SourceStatus]:
        now = self.clock.now()
        out = []
        for source in self.sources:
            st = self._status[source.name]
            unread = source.unread_bytes()
            st.unread_bytes = unread or 0
            st.last_error = source.last_error
            st.detail = source.status()
            waiting = 0.0
            if unread:
                caught_up = getattr(source, "caught_up_at", None) or self.started_at or now
                waiting = now - caught_up
            pending = self._pending_batches.get(source.name)
            if pending:
                waiting = max(waiting, now - pending[0])
            st.lag_seconds = max(0.0, waiting) if waiting > 0 else st.delay_seconds
            out.append(st)
        return out

    def active_bans(self) -> list[Decision]:
        now = self.clock.now()
        return [d for d in self.engine.active(now) if d.action is Action.BAN]

    def health(self) -> dict[str, Any]:
        now = self.clock.now()
        tasks = self.supervisor.status()
        problems = []
        for task in tasks:
            if task["state"] not in ("running",) and task["name"] != "watchdog":
                problems.append(f"task {task['name']} is {task['state']}: {task['last_error']}")
        sources = [s.to_json() for s in self.sources_status()]
        for s in sources:
            if s["last_error"]:
                problems.append(f"source {s['name']}: {s['last_error']}")
        if self.last_enforce_error:
            problems.append(f"enforcement: {self.last_enforce_error}")
        for name, err in self.component_errors.items():
            problems.append(f"component {name}: {err}")
        components = []
        for c in self.components:
            item: dict[str, Any] = {"name": c.name, "error": self.component_errors.get(c.name)}
            status = getattr(c, "status", None)
            if callable(status):
                try:
                    item["status"] = status()
                except Exception as exc:
                    item["status"] = {"error": str(exc)}
            components.append(item)
        return {
            "ok": not problems,
            "problems": problems,
            "now": now,
            "uptime_seconds": None if self.started_at is None else round(now - self.started_at, 1),
            "sources": sources,
            "tasks": tasks,
            "enforcer": self.enforcer.status(),
            "active_bans": len(self.active_bans()),
            "last_decision": None if self.last_decision is None else self.last_decision.to_json(),
            "counters": vars(self.counters).copy(),
            "heap": self.heap.status(),
            "dedupe": None if self.dedupe is None else self.dedupe.status(),
            "components": components,
            "subscribers": self.events.status() + self.decisions.status(),
        }

    def _status_line(self) -> str:
        lag = [s.lag_seconds for s in self._status.values()]
        return (
            f"{self.counters.lines} lines, {self.counters.events} events, "
            f"{self.counters.decisions} decisions, max lag {max(lag, default=0):.1f}s"
        )
