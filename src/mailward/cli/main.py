"""``mailward``: the console entry point. Each verb lives in its own ``mailward.cli.*`` module and is
imported only when it runs: importing every verb (aiohttp, the policy servers) cost a second of CPU
on every invocation. ``COMMAND_MODULES`` maps verbs to modules; a test checks it against the
modules' own ``COMMANDS`` lists."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

import click

from mailward import __version__
from mailward.cli.common import AppContext
from mailward.errors import MailwardError

COMMAND_MODULES: dict[str, str] = {
    "analyze": "analyze",
    "demo": "analyze",
    "bans": "bans",
    "ban": "bans",
    "unban": "bans",
    "nft": "bans",
    "config": "config",
    "db": "db",
    "digest": "digest",
    "doctor": "doctor",
    "integrate": "integrate",
    "notify": "notify",
    "parse": "parse",
    "policy": "policy",
    "replay": "replay",
    "run": "run",
    "status": "status",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"mailward.cli.{module_name}")
        for command in getattr(module, "COMMANDS", ()):
            if command.name == cmd_name:
                return command  # type: ignore[no-any-return]
        return None


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from mailward.speedups import describe  # imports the parsers: only when asked

    click.echo(f"mailward {__version__} ({describe()})")
    ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and whether the ingest path is compiled, then exit.",
)
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


def main() -> None:
    try:
        cli.main(prog_name="mailward", standalone_mode=True)
    except MailwardError as exc:
        click.echo(f"mailward: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
