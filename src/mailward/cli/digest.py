"""``mailward digest [--send] [--json]``: the last 24 hours from the store, against the week before."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import click

from mailward.cli.common import AppContext, emit_json, fail, json_option, pass_app
from mailward.errors import MailwardError

if TYPE_CHECKING:
    from mailward.enrich.geoip import GeoLookup
    from mailward.storage.sqlite import SqliteStore

# Heavy modules (store, analysis, matplotlib, channels) load only when the command runs.


def open_store(app: AppContext) -> SqliteStore:
    from mailward.storage.sqlite import SqliteStore

    settings = app.settings
    if not settings.db_path.exists():
        fail(
            f"no database at {settings.db_path}: run `mailward run` or "
            "`mailward analyze --store` first"
        )
    try:
        return SqliteStore.from_settings(settings)
    except MailwardError as exc:
        fail(str(exc))


def geo_or_none(app: AppContext) -> GeoLookup | None:
    from mailward.enrich.geoip import open_geo

    try:
        return open_geo(app.settings.geoip)
    except MailwardError as exc:
        click.echo(f"mailward: GeoIP unavailable, countries left out: {exc}", err=True)
        return None


@click.command("digest")
@click.option("--send", is_flag=True, help="Send it through the configured channels.")
@click.option("--no-chart", is_flag=True, help="Leave out the PNG chart.")
@json_option
@pass_app
def digest(app: AppContext, send: bool, no_chart: bool, as_json: bool) -> None:
    """The daily digest: top IPs, countries and usernames, bans, alerts, against the baseline."""
    from mailward.notify.digest import build_digest, render_digest
    from mailward.notify.manager import build_channels
    from mailward.notify.spool import Spool

    settings = app.settings
    store = open_store(app)
    now = time.time()
    try:
        data = build_digest(
            store,
            now,
            geo=geo_or_none(app),
            top=settings.analyze.top,
            rate_limit_per_minute=settings.analyze.rate_limit_per_minute,
        )
    finally:
        store.close()
    message = render_digest(data, chart=not no_chart and settings.digest.chart)
    if as_json:
        emit_json(data.to_json())
    elif not send:
        click.echo(message.text, nl=False)
    if not send:
        return
    from mailward.cli.notify import _try_all

    channels = build_channels(settings)
    if not channels:
        fail("no notification channel is configured")
    results = asyncio.run(_try_all(channels, message, settings.notify.timeout_seconds))
    failed = [name for name, err in results.items() if err is not None]
    if failed:
        # The daemon's dispatcher retries what is left in the outbox.
        spool = Spool(settings.general.state_dir / "notify.db")
        for name in failed:
            spool.add(name, message, now)
        spool.close()
    for name, err in results.items():
        state = "sent" if err is None else f"FAILED (queued for retry): {err}"
        click.echo(f"{name}: {state}", err=True)
    if failed:
        raise SystemExit(1)


COMMANDS = [digest]
