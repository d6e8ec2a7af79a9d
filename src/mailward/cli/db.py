"""``mailward db stats|prune``: look at the history database and apply the retention to it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from mailward.cli.common import AppContext, emit_json, fail, json_option, pass_app
from mailward.errors import MailwardError
from mailward.storage import schema
from mailward.storage.reader import SqliteReader
from mailward.storage.sqlite import SqliteStore


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@click.group("db")
def db_group() -> None:
    """The history database (events, decisions, alerts, import positions)."""


@db_group.command("stats")
@json_option
@pass_app
def stats(app: AppContext, as_json: bool) -> None:
    """Row counts, time span, size on disk and schema version (read-only)."""
    path = app.settings.db_path
    try:
        with SqliteReader(path) as reader:
            data: dict[str, Any] = {"path": str(path), **reader.stats()}
            span = reader.span()
    except MailwardError as exc:
        fail(str(exc))
    data["latest_schema_version"] = schema.LATEST
    data["first_event"] = _iso(span[0] if span else None)
    data["last_event"] = _iso(span[1] if span else None)
    data["wal_bytes"] = _size(path.with_name(path.name + "-wal"))
    data["retention_days"] = app.settings.storage.retention_days
    if as_json:
        emit_json(data)
        return
    for key, value in data.items():
        click.echo(f"{key:22} {value}")


@db_group.command("prune")
@click.option("--compact", is_flag=True, help="Also drop unused strings and shrink the file.")
@json_option
@pass_app
def prune(app: AppContext, compact: bool, as_json: bool) -> None:
    """Delete what is older than storage.retention_days (the daemon also does this daily)."""
    try:
        store = SqliteStore.from_settings(app.settings)
    except MailwardError as exc:
        fail(str(exc))
    try:
        before = _size(store.path)
        result = store.prune(time.time(), compact=compact)
        after = _size(store.path)
    finally:
        store.close()
    data = {
        "cutoff": _iso(result.cutoff),
        "events": result.events,
        "decisions": result.decisions,
        "alerts": result.alerts,
        "strings": result.strings,
        "bytes_before": before,
        "bytes_after": after,
    }
    if as_json:
        emit_json(data)
        return
    click.echo(
        f"deleted {result.events} events, {result.decisions} decisions and {result.alerts} "
        f"alerts older than {data['cutoff']}"
        + (f"; {result.strings} unused strings; {before} -> {after} bytes" if compact else "")
    )


COMMANDS = [db_group]
