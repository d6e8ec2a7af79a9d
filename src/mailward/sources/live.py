"""What a live source hands the daemon: batches of lines with their origin and the position to
persist once the batch is processed. Positions are opaque strings only the source interprets."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol

from mailward.events import Origin


@dataclass(frozen=True, slots=True)
class Batch:
    source: str
    lines: list[tuple[str, Origin]]
    position: str  # where this source stands after the last line of the batch
    # The source's own timestamp of the newest line when it has one (journald does).
    newest_ts: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class LiveSource(Protocol):
    name: str
    kind: str
    last_error: str | None

    def resume(self, position: str | None) -> None:
        """Continue after ``position`` (None: a first start)."""
        ...

    def batches(self) -> AsyncGenerator[Batch, None]:
        """Yield batches forever; may be called again after a crash to continue."""
        ...

    def unread_bytes(self) -> int | None:
        """Bytes written but not read yet, when the source can know it."""
        ...

    def status(self) -> dict[str, Any]: ...
