"""``read_events``: expand inputs, read lines, parse, correlate; streaming, constant memory.

This is the ingest entry point for ``analyze``, ``replay`` and imports. It yields correlated
events in input order and keeps parse statistics on the returned stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from mailward.config.model import ParsingSettings
from mailward.events import Event
from mailward.parsers.base import ParseStats
from mailward.parsers.correlate import Correlator
from mailward.parsers.line import LineParser
from mailward.sources.files import Input, expand_inputs, input_size, read_lines

PROGRESS_EVERY = 65536  # lines between progress callbacks


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


class EventStream(Iterator[Event]):
    """The iterator ``read_events`` returns: events, plus ``stats`` (parse counts, complete once
    the stream is exhausted), ``inputs`` (the expanded inputs) and ``correlator``."""

    def __init__(
        self,
        inputs: list[Input],
        parser: LineParser,
        correlator: Correlator,
        progress: Callable[[Progress], None] | None,
    ) -> None:
        self.inputs = inputs
        self.parser = parser
        self.correlator = correlator
        self._progress = progress
        self._it = self._run()

    @property
    def stats(self) -> ParseStats:
        return self.parser.stats

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Event:
        return next(self._it)

    def _run(self) -> Iterator[Event]:
        parse_at = self.parser.parse_at
        push = self.correlator.push
        progress = self._progress
        total = 0
        n_inputs = len(self.inputs)
        for index, source in enumerate(self.inputs):
            name = str(source)
            size = input_size(source)
            self.parser.start_input()
            lineno = offset = 0
            for lineno, text, offset in read_lines(source):
                event = parse_at(text, name, lineno)
                if event is not None:
                    yield from push(event)
                if progress is not None and not lineno % PROGRESS_EVERY:
                    progress(Progress(name, lineno, offset, size, index, n_inputs, total + lineno))
            total += lineno
            if progress is not None:
                progress(Progress(name, lineno, offset, size, index, n_inputs, total, done=True))
        yield from self.correlator.flush()


def read_events(
    specs: Sequence[str],
    settings: ParsingSettings | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
    now: float | None = None,
    default_year: int | None = None,
) -> EventStream:
    """Expand ``specs`` (files, globs, directories, ``-``), read them oldest first, and yield
    correlated events. Raises ``InputError`` at once for a spec that matches nothing, and while
    iterating for an unreadable or corrupt input. ``now``/``default_year`` steer the year of
    RFC 3164 stamps (see ``LineParser``)."""
    inputs = expand_inputs(specs)
    parser = LineParser(settings, now=now, default_year=default_year)
    return EventStream(inputs, parser, Correlator(), progress)
