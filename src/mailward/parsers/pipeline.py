"""``read_events``: expand inputs, read lines, parse, correlate; streaming, constant memory.

This is the ingest entry point for ``analyze``, ``replay`` and imports. It yields correlated
events in input order and keeps parse statistics on the returned stream.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from mailward.config.model import ParsingSettings
from mailward.events import Event
from mailward.parsers.base import ParseStats
from mailward.parsers.correlate import Correlator
from mailward.parsers.line import LineParser
from mailward.sources.files import (
    Input,
    InputSpec,
    expand_inputs,
    input_size,
    read_blocks,
    rotation_key,
)


@dataclass(frozen=True, slots=True)
class Progress:
    """Where reading stands: the current input, its line and decompressed byte offset, the
    input's on-disk size (None for stdin), and the running totals over all inputs."""

    source: str
    line: int
    offset: int
    size: int | None
    index: int  # 0-based index of the current input
    inputs: int  # number of inputs
    lines_total: int
    done: bool = False  # True once for each input, at its end


def group_inputs(inputs: Sequence[Input]) -> list[list[Input]]:
    """Split expanded inputs into rotation sets (``mail.log*`` vs ``dovecot.log*``), each
    already oldest first; stdin is a set of its own."""
    groups: dict[tuple[str, str], list[Input]] = {}
    for source in inputs:
        key = ("", "-") if isinstance(source, InputSpec) else rotation_key(source)[:2]
        groups.setdefault(key, []).append(source)
    return list(groups.values())


class EventStream(Iterator[Event]):
    """The iterator ``read_events`` returns: events, plus ``stats`` (parse counts, complete once
    the stream is exhausted), ``inputs`` (the expanded inputs) and ``correlator``.

    Several rotation sets (say ``mail.log*`` and Dovecot's own ``dovecot.log*``) are read side
    by side and merged by time before correlation, so the Postfix and Dovecot lines of one SMTP
    AUTH attempt meet in the correlator and are counted once.
    """

    def __init__(
        self,
        inputs: list[Input],
        parsers: list[LineParser],
        correlator: Correlator,
        progress: Callable[[Progress], None] | None,
        *,
        origins: bool = True,
    ) -> None:
        self.origins = origins
        self.inputs = inputs
        self.parsers = parsers
        self.correlator = correlator
        self._progress = progress
        self._total = 0
        self._it = self._run()

    @property
    def stats(self) -> ParseStats:
        if len(self.parsers) == 1:
            return self.parsers[0].stats
        total = ParseStats()
        for p in self.parsers:
            total.merge(p.stats)
        return total

    def __iter__(self) -> Iterator[Event]:
        # The generator itself: a for-loop then skips the Python-level __next__ per event.
        return self._it

    def __next__(self) -> Event:
        return next(self._it)

    def _blocks(self, group: list[Input], parser: LineParser) -> Iterator[list[Event]]:
        """Parsed events of one rotation set, one list per ~1 MiB block."""
        parse_block = parser.parse_block
        origins = self.origins
        progress = self._progress
        n_inputs = len(self.inputs)
        for source in group:
            index = self.inputs.index(source)
            name = str(source)
            size = input_size(source)
            parser.start_input()
            lines = offset = 0
            for first, block, offset in read_blocks(source):
                yield parse_block(block, name, first, origins=origins)
                lines = first + len(block) - 1
                if progress is not None:
                    progress(
                        Progress(name, lines, offset, size, index, n_inputs, self._total + lines)
                    )
            self._total += lines
            if progress is not None:
                progress(
                    Progress(name, lines, offset, size, index, n_inputs, self._total, done=True)
                )

    def _run(self) -> Iterator[Event]:
        groups = group_inputs(self.inputs)
        correlator = self.correlator
        if len(groups) == 1:
            push_many = correlator.push_many
            for events in self._blocks(groups[0], self.parsers[0]):
                yield from push_many(events)
        else:
            streams = [
                _flatten(self._blocks(g, p)) for g, p in zip(groups, self.parsers, strict=True)
            ]
            push = correlator.push
            for event in heapq.merge(*streams, key=_by_time):
                yield from push(event)
        yield from correlator.flush()


def _flatten(blocks: Iterator[list[Event]]) -> Iterator[Event]:
    for block in blocks:
        yield from block


def _by_time(event: Event) -> float:
    return event.ts


def read_events(
    specs: Sequence[str],
    settings: ParsingSettings | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
    now: float | None = None,
    default_year: int | None = None,
    origins: bool = True,
) -> EventStream:
    """Expand ``specs`` (files, globs, directories, ``-``), read them oldest first, and yield
    correlated events. Raises ``InputError`` at once for a spec that matches nothing, and while
    iterating for an unreadable or corrupt input. ``now``/``default_year`` steer the year of
    RFC 3164 stamps (see ``LineParser``). ``origins=False`` skips the file/line ``Origin`` of
    RFC 3164 events, for bulk analysis that does not report them (faster)."""
    inputs = expand_inputs(specs)
    parsers = [
        LineParser(settings, now=now, default_year=default_year)
        for _ in group_inputs(inputs) or [[]]
    ]
    return EventStream(inputs, parsers, Correlator(), progress, origins=origins)
