"""``mailward``: the console entry point. Subcommands are discovered from ``mailward.cli.*``."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from pathlib import Path

import click

from mailward import __version__
from mailward.cli.common import AppContext
from mailward.errors import MailwardError

_NOT_COMMANDS = {"main", "common"}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Config file (default: $MAILWARD_CONFIG or /etc/mailward/mailward.toml if present).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override one setting; repeatable.",
)
@click.option("-v", "--verbose", count=True, help="More of mailward's own log on stderr.")
@click.version_option(__version__, prog_name="mailward")
@click.pass_context
def cli(
    ctx: click.Context, config_path: Path | None, overrides: tuple[str, ...], verbose: int
) -> None:
    """Defend Postfix + Dovecot against password guessing, enumeration and botnets."""
    logging.basicConfig(
        level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = AppContext(config_path, overrides)


def _register() -> None:
    import mailward.cli as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name in _NOT_COMMANDS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"mailward.cli.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            cli.add_command(command)


_register()


def main() -> None:
    try:
        cli.main(prog_name="mailward", standalone_mode=True)
    except MailwardError as exc:
        click.echo(f"mailward: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
