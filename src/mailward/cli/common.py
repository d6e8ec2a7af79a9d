"""What every command shares: the settings in the click context, JSON output, fatal errors."""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from mailward.config import Settings, load
from mailward.errors import MailwardError


class AppContext:
    """Carried in ``click.Context.obj``: where the config comes from, loaded on first use."""

    def __init__(self, config_path: Path | None, overrides: tuple[str, ...]) -> None:
        self.config_path = config_path
        self.overrides = overrides
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load(self.config_path, overrides=self.overrides)
            except MailwardError as exc:
                fail(f"configuration error: {exc}")
        return self._settings


pass_app = click.make_pass_decorator(AppContext)

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"mailward: {message}", err=True)
    sys.exit(code)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


@contextmanager
def batch_gc(threshold: int = 100_000) -> Iterator[None]:
    """Garbage-collector settings for one-shot bulk commands (analyze, parse, replay).

    They allocate a few short-lived objects per line and keep long-lived tables; the default
    schedule (a young collection every 700 allocations, full ones as the tables grow) spent
    about a tenth of ``analyze``'s time re-scanning those tables. Start-up objects are frozen
    out of collection and young collections run less often; cycles are rare here, and freed
    objects still go at once by reference counting. The daemon keeps the defaults.
    """
    old = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()
