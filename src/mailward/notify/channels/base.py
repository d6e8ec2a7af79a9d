"""The ``Notifier`` protocol every channel implements, and the twins tests and dry runs use.

``send`` delivers one ``Message`` or raises; the dispatcher adds the timeout, the retries and the
persistence, so a channel is only the I/O.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from mailward.errors import BackendUnavailable
from mailward.notify.model import Message

log = logging.getLogger(__name__)


class Notifier(Protocol):
    name: str

    async def send(self, message: Message) -> None:
        """Deliver or raise (``BackendUnavailable`` for an unreachable backend)."""
        ...


class MemoryNotifier:
    """Keeps what it was sent. ``fail`` makes it raise, ``delay`` makes it slow."""

    def __init__(self, name: str = "memory", *, fail: bool = False, delay: float = 0.0) -> None:
        self.name = name
        self.fail = fail
        self.delay = delay
        self.sent: list[Message] = []
        self.attempts = 0
        self.arrived = asyncio.Event()

    async def send(self, message: Message) -> None:
        self.attempts += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise BackendUnavailable(f"{self.name}: configured to fail")
        self.sent.append(message)
        self.arrived.set()


class DryRunNotifier:
    """Logs instead of sending (``mailward run --dry-run``)."""

    name = "dry-run"

    async def send(self, message: Message) -> None:
        log.warning("notification (dry run): %s", message.subject)
