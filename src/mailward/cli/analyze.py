"""``mailward analyze PATH…`` and ``mailward demo generate``: what happened in the logs you already have.

Reads files (rotated, compressed, globs, ``-``) through the ingest stage, aggregates in one pass,
and prints the report as text, ``--json`` or a self-contained ``--html`` file. ``--store`` also
keeps the events, resuming per file so a second import of the same file adds nothing.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click

from mailward.analyze.aggregate import Aggregator
from mailward.analyze.render_text import render_text
from mailward.analyze.report import GeoLookup, Report, build_report
from mailward.cli.common import AppContext, batch_gc, emit_json, fail, json_option, pass_app
from mailward.config import Settings
from mailward.demo.generator import DemoConfig, DemoLog, demo_end
from mailward.enrich.geoip import open_geo
from mailward.errors import MailwardError
from mailward.events import Event
from mailward.parsers import Correlator, LineParser, read_events
from mailward.parsers.pipeline import Progress as PipelineProgress
from mailward.sources.files import expand_inputs, file_identity, input_size, read_lines

DEMO_LINES = 150_000
DEMO_SEED = 7
STORE_BATCH = 5_000


_COMPRESSED = (".gz", ".bz2", ".xz")


class Progress:
    """One stderr line: input i of n, bytes read (of its size when not compressed), lines, rate.

    Called with the ingest stage's ``Progress`` records; redraws at most five times a second.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._last = 0.0
        self._start = time.monotonic()
        self.drawn = False

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        if now - self._last < 0.2 and not p.done:
            return
        self._last = now
        name = str(p.source)
        read = f"{p.offset / 1e6:,.1f} MB"
        if p.size and not name.endswith(_COMPRESSED):
            read += f" of {p.size / 1e6:,.1f} MB ({min(100.0, p.offset / p.size * 100):.0f}%)"
        rate = p.lines_total / max(now - self._start, 1e-6)
        short = name if len(name) <= 30 else "…" + name[-29:]
        text = f"[{p.index + 1}/{p.inputs}] {short}: {read}, {p.lines_total:,} lines, {rate:,.0f}/s"
        self.stream.write("\r" + text[:110].ljust(80))
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r" + " " * 80 + "\r")
            self.stream.flush()


@dataclass(slots=True)
class InputStats:
    files: int = 0
    lines: int = 0
    recognised: int = 0
    ignored: int = 0
    unrecognised: int = 0
    stored: int = 0
    already_stored_lines: int = 0


def read_inputs(
    specs: list[str],
    settings: Settings,
    stats: InputStats,
    *,
    progress: Progress | None = None,
    store: Any = None,
) -> Iterator[Event]:
    """Expand, read, parse and correlate ``specs``; with ``store``, keep the new events too."""
    if store is not None:
        yield from _read_and_store(specs, settings, stats, store, progress)
        return
    # The report never names a file or line, so skip building an Origin per event (10-20% of
    # parse time); --store keeps origins, above.
    stream = read_events(specs, settings.parsing, progress=progress, origins=False)
    stats.files = len(stream.inputs)
    yield from stream
    _copy_stats(stats, stream.stats)


def _copy_stats(stats: InputStats, parsed: Any) -> None:
    stats.lines = parsed.lines
    stats.recognised = parsed.recognised
    stats.ignored = parsed.ignored
    stats.unrecognised = parsed.unrecognised


def _read_and_store(
    specs: list[str], settings: Settings, stats: InputStats, store: Any, progress: Any
) -> Iterator[Event]:
    """File by file, so each file's import position can be stored with its events: lines up to
    the stored offset are analysed again but not stored again."""
    inputs = expand_inputs(specs)
    stats.files = len(inputs)
    parser = LineParser(settings.parsing)
    correlator = Correlator()
    skip: dict[str, int] = {}  # source name -> last line already in the store
    batch: list[Event] = []

    def keep(events: list[Event]) -> Iterator[Event]:
        for event in events:
            yield event
            origin = event.origin
            if origin is None or origin.line is None or origin.line > skip.get(origin.source, 0):
                batch.append(event)

    total = 0
    for index, source in enumerate(inputs):
        name = str(source)
        identity = None if name == "-" else file_identity(source)
        start = 0 if identity is None else store.import_position(identity)
        size = input_size(source)
        parser.start_input()
        lineno = offset = 0
        for lineno, text, offset in read_lines(source):
            if offset <= start:
                skip[name] = lineno
            event = parser.parse_at(text, name, lineno)
            if event is not None:
                yield from keep(correlator.push(event))
            if len(batch) >= STORE_BATCH:
                stats.stored += _commit(store, identity, offset, batch, name)
            if progress is not None and not lineno % 65536:
                progress(
                    PipelineProgress(name, lineno, offset, size, index, len(inputs), total + lineno)
                )
        total += lineno
        stats.stored += _commit(store, identity, offset, batch, name)
        stats.already_stored_lines += skip.get(name, 0)
    yield from keep(correlator.flush())
    if batch:
        stats.stored += int(store.add_events(batch))
        batch.clear()
    _copy_stats(stats, parser.stats)


def _commit(store: Any, identity: str | None, offset: int, batch: list[Event], name: str) -> int:
    if identity is None:
        n = int(store.add_events(batch))
    else:
        n = int(store.import_batch(identity, offset, batch, path=name))
    batch.clear()
    return n


def _open_geo(settings: Settings) -> tuple[GeoLookup | None, str]:
    try:
        geo: GeoLookup = open_geo(settings.geoip)
    except MailwardError as exc:
        click.echo(f"mailward: GeoIP unavailable, continuing without it: {exc}", err=True)
        return None, "none"
    return geo, "mmdb" if settings.geoip.country_db else "iptocc"


def _open_store(settings: Settings) -> Any:
    # Imported here: the store pulls in asyncio and sqlite (~0.2 s), which a plain analyze
    # without --store never needs.
    from mailward.storage.sqlite import open_store

    return open_store(settings)


def run_analysis(
    specs: list[str],
    settings: Settings,
    *,
    geo: GeoLookup | None,
    geo_name: str,
    progress: Progress | None = None,
    store: Any = None,
) -> Report:
    stats = InputStats()
    agg = Aggregator(
        rate_limit_per_minute=settings.analyze.rate_limit_per_minute,
        excluded=settings.general.server_addresses,
    )
    try:
        agg.add_all(read_inputs(specs, settings, stats, progress=progress, store=store))
    finally:
        if progress is not None:
            progress.close()
    inputs: dict[str, Any] = {
        "files": stats.files,
        "lines": stats.lines,
        "recognised": stats.recognised,
        "ignored": stats.ignored,
        "unrecognised": stats.unrecognised,
    }
    if store is not None:
        inputs["stored_events"] = stats.stored
        inputs["already_stored_lines"] = stats.already_stored_lines
    return build_report(
        agg,
        geo=geo,
        top=settings.analyze.top,
        sensitivity=settings.analyze.spike_sensitivity,
        inputs=inputs,
        geo_name=geo_name,
    )


@click.command("analyze")
@click.argument("paths", nargs=-1)
@json_option
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write a self-contained HTML report with charts.",
)
@click.option(
    "--store",
    "use_store",
    is_flag=True,
    help="Also keep the events in the database (re-importing a file adds nothing).",
)
@click.option(
    "--demo", is_flag=True, help="Analyse generated sample logs (seeded) instead of PATHs."
)
@click.option(
    "--seed", type=int, default=DEMO_SEED, show_default=True, help="Seed of the --demo data."
)
@click.option(
    "--demo-lines",
    type=click.IntRange(1000),
    default=DEMO_LINES,
    show_default=True,
    help="Lines of --demo data.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress on stderr (default: when stderr is a terminal).",
)
@pass_app
def analyze(
    app: AppContext,
    paths: tuple[str, ...],
    as_json: bool,
    html_path: Path | None,
    use_store: bool,
    demo: bool,
    seed: int,
    demo_lines: int,
    progress: bool | None,
) -> None:
    """Analyse mail logs: who attacked, when, how fast, which accounts, where defences failed.

    PATHs are files, globs or directories (rotated .gz/.bz2/.xz included, oldest first), or - for
    stdin. With --demo no PATH is needed.
    """
    settings = app.settings
    if demo and paths:
        fail("give PATHs or --demo, not both")
    if not demo and not paths:
        fail("no input: give log files (e.g. /var/log/mail.log*) or --demo")
    show = sys.stderr.isatty() if progress is None else progress
    meter = Progress(sys.stderr) if show else None
    store = None
    try:
        if use_store:
            store = _open_store(settings)
        with tempfile.TemporaryDirectory(prefix="mailward-demo-") as tmp:
            if demo:
                from mailward.demo.geo import DemoGeo

                log_path = Path(tmp) / "mail.log"
                config = DemoConfig(
                    lines=demo_lines, seed=seed, end=demo_end(time.time()), format="mixed"
                )
                truth = DemoLog(config).write(log_path)
                # The demo's year-less stamps are written in UTC.
                parsing = settings.parsing.model_copy(update={"timezone": "UTC"})
                settings = settings.model_copy(update={"parsing": parsing})
                specs = [str(log_path)]
                geo: GeoLookup | None = DemoGeo()
                geo_name = "demo"
            else:
                specs = list(paths)
                geo, geo_name = _open_geo(settings)
            with batch_gc():
                report = run_analysis(
                    specs, settings, geo=geo, geo_name=geo_name, progress=meter, store=store
                )
            if demo:
                report.inputs["demo"] = {"seed": seed, "ground_truth": truth.to_json()}
    except MailwardError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or 'input'}: {exc.strerror or exc}")
    finally:
        if store is not None:
            store.close()
    if html_path is not None:
        from mailward.analyze.render_html import render_html

        try:
            html_path.write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            fail(f"{html_path}: {exc.strerror or exc}")
    if as_json:
        emit_json(report.to_json())
    else:
        click.echo(render_text(report, color=sys.stdout.isatty()), nl=False)
        if html_path is not None:
            click.echo(f"HTML report written to {html_path}")


@click.group("demo")
def demo_group() -> None:
    """Generate realistic sample logs with known attacks in them."""


@demo_group.command("generate")
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.option(
    "--lines",
    type=click.IntRange(1),
    default=DEMO_LINES,
    show_default=True,
    help="Number of lines.",
)
@click.option("--seed", type=int, default=DEMO_SEED, show_default=True, help="Same seed, same log.")
@click.option(
    "--days",
    type=click.IntRange(1),
    default=None,
    help="Days covered (default: 28, or more for very long logs).",
)
@click.option(
    "--end",
    "end_text",
    default=None,
    metavar="YYYY-MM-DD",
    help="Day after the last line, UTC (default: today).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["rfc3164", "iso", "mixed"]),
    default="rfc3164",
    show_default=True,
    help="Timestamps: BSD syslog, ISO 8601, or BSD then ISO (an rsyslog upgrade halfway).",
)
@click.option(
    "--truth",
    "truth_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the ground truth (attempts per scenario, incidents) as JSON here.",
)
def generate_cmd(
    out: Path,
    lines: int,
    seed: int,
    days: int | None,
    end_text: str | None,
    fmt: str,
    truth_path: Path | None,
) -> None:
    """Write OUT (- for stdout): Postfix + Dovecot syslog with normal traffic and attacks."""
    from datetime import UTC, datetime

    if end_text is None:
        end = demo_end(time.time())
    else:
        try:
            end = datetime.strptime(end_text, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            fail(f"--end {end_text!r}: expected YYYY-MM-DD")
    config = DemoConfig(lines=lines, seed=seed, days=days, end=end, format=fmt)  # type: ignore[arg-type]
    log = DemoLog(config)
    if str(out) == "-":
        truth = log.write(sys.stdout)
    else:
        try:
            truth = log.write(out)
        except OSError as exc:
            fail(f"{out}: {exc.strerror or exc}")
    if truth_path is not None:
        import json

        truth_path.write_text(json.dumps(truth.to_json(), indent=2) + "\n", encoding="utf-8")


COMMANDS = [analyze, demo_group]
