"""Named, owned tasks. ``spawn`` keeps a reference and a name, so nothing is garbage-collected
mid-flight and ``mailward status`` can list it; ``Supervisor`` restarts a crashed task with
exponential backoff and reports every crash through its hooks (alerting plugs in there).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_LIVE: set[asyncio.Task[Any]] = set()

CrashHook = Callable[[str, BaseException], Any]


def spawn(coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
    """Start ``coro`` as a named task and hold a reference until it ends."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _LIVE.add(task)
    task.add_done_callback(_LIVE.discard)
    return task


def live_tasks() -> list[str]:
    return sorted(t.get_name() for t in _LIVE if not t.done())


@dataclass
class TaskInfo:
    name: str
    state: str  # running | backoff | finished | failed | stopped
    restarts: int = 0
    started: float = 0.0
    last_error: str | None = None
    last_crash: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "restarts": self.restarts,
            "started": self.started,
            "last_error": self.last_error,
            "last_crash": self.last_crash,
        }


class Supervisor:
    """Runs factories as tasks; a task that raises is logged, reported and started again after
    ``min_backoff`` doubling to ``max_backoff`` (reset once it has run ``stable_after`` seconds)."""

    def __init__(
        self,
        *,
        on_crash: CrashHook | None = None,
        min_backoff: float = 0.5,
        max_backoff: float = 60.0,
        stable_after: float = 60.0,
    ) -> None:
        self._hooks: list[CrashHook] = [on_crash] if on_crash else []
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.info: dict[str, TaskInfo] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def add_crash_hook(self, hook: CrashHook) -> None:
        self._hooks.append(hook)

    def supervise(
        self,
        name: str,
        factory: Callable[[], Coroutine[Any, Any, Any]],
        *,
        restart_on_exit: bool = False,
    ) -> asyncio.Task[None]:
        """Run ``factory()``; restart it when it raises (and when it returns, if asked)."""
        if name in self._tasks and not self._tasks[name].done():
            raise ValueError(f"a task named {name!r} is already supervised")
        self.info[name] = TaskInfo(name=name, state="running", started=time.time())
        task = spawn(self._run(name, factory, restart_on_exit), name=name)
        self._tasks[name] = task
        return task

    async def _run(
        self,
        name: str,
        factory: Callable[[], Coroutine[Any, Any, Any]],
        restart_on_exit: bool,
    ) -> None:
        info = self.info[name]
        delay = self.min_backoff
        while True:
            info.state = "running"
            info.started = time.monotonic()
            try:
                await factory()
            except asyncio.CancelledError:
                info.state = "stopped"
                raise
            except Exception as exc:
                info.restarts += 1
                info.last_error = f"{type(exc).__name__}: {exc}"
                info.last_crash = time.time()
                log.error(
                    "task %s crashed (restart %d): %s\n%s",
                    name,
                    info.restarts,
                    info.last_error,
                    "".join(traceback.format_exception(exc, limit=-4)).rstrip(),
                )
                self._report(name, exc)
            else:
                if not restart_on_exit:
                    info.state = "finished"
                    return
                log.warning("task %s returned; starting it again", name)
            if time.monotonic() - info.started >= self.stable_after:
                delay = self.min_backoff
            info.state = "backoff"
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    def _report(self, name: str, exc: BaseException) -> None:
        for hook in self._hooks:
            try:
                result = hook(name, exc)
                if asyncio.iscoroutine(result):
                    spawn(result, name=f"crash-hook:{name}")
            except Exception:  # a broken hook must not stop the restart
                log.exception("crash hook failed for task %s", name)

    def status(self) -> list[dict[str, Any]]:
        return [i.to_json() for i in self.info.values()]

    async def stop(self, timeout: float = 5.0, names: list[str] | None = None) -> None:
        """Cancel the named tasks (all when None) and wait for them."""
        tasks = [
            t for n, t in self._tasks.items() if not t.done() and (names is None or n in names)
        ]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for name, info in self.info.items():
            if (names is None or name in names) and info.state in ("running", "backoff"):
                info.state = "stopped"
