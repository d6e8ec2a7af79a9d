"""``mailward config check|show``: validate a config file and show the effective settings."""

from __future__ import annotations

from pathlib import Path

import click

from mailward.cli.common import AppContext, emit_json, fail, json_option
from mailward.config import DEFAULT_PATH, load
from mailward.errors import MailwardError


@click.group("config")
def config_group() -> None:
    """Validate and show configuration."""


@config_group.command("check")
@click.argument("path", required=False, type=click.Path(path_type=Path, dir_okay=False))
@json_option
@click.pass_obj
def check(app: AppContext, path: Path | None, as_json: bool) -> None:
    """Validate PATH (default: the --config file). Exit 0 when valid, 2 with the key when not."""
    target = path or app.config_path
    try:
        load(target, overrides=app.overrides)
    except MailwardError as exc:
        if as_json:
            emit_json({"ok": False, "error": str(exc)})
            raise SystemExit(2) from None
        fail(f"{target or DEFAULT_PATH}: {exc}")
    if as_json:
        emit_json({"ok": True, "path": str(target) if target else None})
    else:
        click.echo(f"{target or 'defaults'}: OK")


@config_group.command("show")
@click.pass_obj
def show(app: AppContext) -> None:
    """Print the effective settings as JSON (secrets masked)."""
    emit_json(app.settings.model_dump(mode="json"))


@config_group.command("reference")
def reference() -> None:
    """Print the settings reference (docs/configuration.md) generated from the model."""
    from mailward.config.reference import render

    click.echo(render(), nl=False)


COMMANDS = [config_group]
