"""``mailward digest [--send] [--json]``: the last 24 hours from the store, against the week before."""

from __future__ import annotations

import asyncio
import importlib
import time
from typing import Any, cast

import click

from mailward.cli.common import AppContext, emit_json, fail, json_option, pass_app
from mailward.errors import MailwardError
from mailward.notify.digest import DigestSource, build_digest, render_digest
from mailward.notify.manager import build_channels
from mailward.notify.spool import Spool


def open_store(app: AppContext) -> Any:
    try:
        module = importlib.import_module("mailward.storage.sqlite")
    except ImportError:
        fail("the event store is not available in this installation (mailward.storage.sqlite)")
    settings = app.settings
    if not settings.db_path.exists():
        fail(
            f"no database at {settings.db_path}: run `mailward run` or `mailward analyze --store` first"
        )
    try:
        return module.SqliteStore.from_settings(settings)
    except MailwardError as exc:
        fail(str(exc))


def open_geo(app: AppContext) -> Any:
    try:
        module = importlib.import_module("mailward.enrich.geoip")
        return module.open_geo(app.settings.geoip)
    except (ImportError, MailwardError):
        return None


@click.command("digest")
@click.option("--send", is_flag=True, help="Send it through the configured channels.")
@click.option("--no-chart", is_flag=True, help="Leave out the PNG chart.")
@json_option
@pass_app
def digest(app: AppContext, send: bool, no_chart: bool, as_json: bool) -> None:
    """The daily digest: top IPs, countries and usernames, bans, alerts, against the baseline."""
    store = open_store(app)
    now = time.time()
    try:
        data = build_digest(
            cast(DigestSource, store), now, geo=open_geo(app), top=app.settings.analyze.top
        )
    finally:
        store.close()
    message = render_digest(data, chart=not no_chart and app.settings.digest.chart)
    if as_json:
        emit_json(data.to_json())
    elif not send:
        click.echo(message.text, nl=False)
    if send:
        from mailward.cli.notify import _try_all

        settings = app.settings
        channels = build_channels(settings)
        if not channels:
            fail("no notification channel is configured")
        results = asyncio.run(_try_all(channels, message, settings.notify.timeout_seconds))
        failed = [n for n, err in results.items() if err is not None]
        if failed:
            # The daemon's dispatcher retries what is left in the outbox.
            spool = Spool(settings.general.state_dir / "notify.db")
            for name in failed:
                spool.add(name, message, now)
            spool.close()
        for name, err in results.items():
            click.echo(
                f"{name}: {'sent' if err is None else 'FAILED (queued for retry): ' + err}",
                err=True,
            )
        if failed:
            raise SystemExit(1)


COMMANDS = [digest]
