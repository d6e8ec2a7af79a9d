"""``mailward notify test|failure``: try every channel; send the OnFailure notice for a unit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mailward.cli.common import AppContext, emit_json, fail, json_option, pass_app
from mailward.notify.failure import notify_failure
from mailward.notify.model import Message, Severity

if TYPE_CHECKING:
    from mailward.notify.channels.base import Notifier

# The channel and manager modules (aiohttp, apprise, prometheus) are imported inside the commands:
# every `mailward` invocation imports this module, and the failure hook must start fast.


@click.group("notify")
def notify_group() -> None:
    """Notification channels: test them, or send a unit-failure notice."""


async def _try_all(
    channels: list[Notifier], message: Message, timeout: float
) -> dict[str, str | None]:
    async def one(channel: Notifier) -> str | None:
        try:
            await asyncio.wait_for(channel.send(message), timeout)
        except TimeoutError:
            return f"timed out after {timeout:.0f} s"
        except Exception as exc:
            return str(exc) or type(exc).__name__
        return None

    results = await asyncio.gather(*(one(c) for c in channels))
    return {c.name: r for c, r in zip(channels, results, strict=True)}


def send_test(app: AppContext) -> dict[str, str | None]:
    """Send a test message through every configured channel; channel name -> error or None."""
    from mailward.notify.manager import build_channels
    from mailward.notify.render import hostname

    settings = app.settings
    channels = build_channels(settings)
    message = Message(
        subject=f"[mailward {hostname()}] test notification",
        text="This is a test notification from `mailward notify test` (or `mailward doctor "
        "--send-test`). If you read this, alerts reach you through this channel.\n",
        severity=Severity.INFO,
    )
    return asyncio.run(_try_all(channels, message, settings.notify.timeout_seconds))


@notify_group.command("test")
@json_option
@pass_app
def test_cmd(app: AppContext, as_json: bool) -> None:
    """Send a test notification through every configured channel."""
    results = send_test(app)
    if not results:
        fail(
            "no notification channel is configured ([notify] enabled, sendmail, smtp_host, apprise_urls)"
        )
    if as_json:
        emit_json({"channels": results, "ok": all(r is None for r in results.values())})
    else:
        for name, error in results.items():
            click.echo(f"{name}: {'sent' if error is None else 'FAILED: ' + error}")
    if any(r is not None for r in results.values()):
        raise SystemExit(1)


@notify_group.command("failure")
@click.argument("unit")
@click.option("--no-journal", is_flag=True, help="Do not attach the unit's last log lines.")
@pass_app
def failure_cmd(app: AppContext, unit: str, no_journal: bool) -> None:
    """Send the failure notice for UNIT (used by mailward-failure@.service via OnFailure=).

    Works with a broken or missing config: it falls back to local sendmail to root."""
    config: Path | None = app.config_path
    delivered, report = notify_failure(unit, config=config, journal=not no_journal)
    click.echo(f"mailward: {report}", err=not delivered)
    if not delivered:
        raise SystemExit(1)


COMMANDS = [notify_group]
