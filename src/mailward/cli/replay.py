"""``mailward replay LOG…``: what the detectors would have done on your own history.

Runs the configured detectors over the logs on the logs' own clock (no sleeping) and reports each
decision and, per attacker and campaign, the attempts that got through before and after the ban.
``--json`` prints JSON Lines, one object per decision and a final summary (docs/replay-format.md).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

import click

from mailward.cli.common import AppContext, batch_gc, fail, json_option, pass_app
from mailward.config.model import Settings
from mailward.detectors.engine import Engine
from mailward.detectors.replay import Replay, ReplayResult, decision_line, event_from_json, iso
from mailward.enrich.geoip import GeoLookup, open_geo
from mailward.errors import MailwardError
from mailward.events import Event
from mailward.parsers import read_events


def _log_events(settings: Settings, specs: Sequence[str]) -> Iterator[Event]:
    # No file/line origins: the report does not show them, and parsing is faster without.
    return read_events(list(specs), settings.parsing, origins=False)


def _json_events(specs: Sequence[str]) -> Iterator[Event]:
    for spec in specs:
        stream: TextIO
        if spec == "-":
            stream = sys.stdin
        else:
            try:
                stream = open(spec, encoding="utf-8", errors="replace")
            except OSError as exc:
                fail(f"{spec}: cannot read: {exc.strerror}")
        with stream:
            for number, line in enumerate(stream, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                    if not isinstance(obj, dict):
                        raise ValueError("not a JSON object")
                    yield event_from_json(obj)
                except ValueError as exc:
                    fail(f"{spec}:{number}: not an event: {exc}")


def _geo(settings: Settings) -> GeoLookup | None:
    det = settings.detectors
    wanted = (
        det.geo.deny_countries
        or det.geo.allow_countries
        or det.geo.deny_asns
        or det.geo.country_failures
        or det.distributed.asn_sources
    )
    return open_geo(settings.geoip) if wanted else None


def _text_report(result: ReplayResult, top: int) -> None:
    echo = click.echo
    echo(
        f"Replayed {result.events} events from {iso(result.first_event)} to "
        f"{iso(result.last_event)}."
    )
    echo(f"Attempts: {result.attempts} seen, {result.blocked} would have been refused.")
    echo(f"Decisions: {len(result.decisions)}")
    for d in result.decisions[:top]:
        until = iso(d.until) or "permanent"
        echo(
            f"  {iso(d.ts)}  {d.action.value:<12} {d.target:<40} {d.rule:<18} until {until}"
            f"  ({d.reason})"
        )
    if len(result.decisions) > top:
        echo(f"  … {len(result.decisions) - top} more (--top N or --json for all)")
    echo(
        f"Attempts that reached the server after their campaign's first ban: "
        f"{result.after_first_ban_total}"
    )
    if result.legit_logins_blocked:
        echo(f"Successful logins that would have been refused: {result.legit_logins_blocked}")
    for signal in result.signals:
        echo(f"Circuit breaker: {json.dumps(signal)}")
    if result.campaigns:
        echo("Campaigns (attempts through before / after the first ban, refused):")
        for c in result.campaigns[:top]:
            echo(
                f"  {c['campaign']:<40} {c['attackers']:>6} attackers  first ban "
                f"{c['first_ban'] or 'never':<20}  {c['before']:>6} / {c['after_first_ban']:<6} {c['blocked']:>7}"
            )
    if result.attackers:
        echo("Attackers (attempts through before / after its ban, refused):")
        for a in result.attackers[:top]:
            echo(
                f"  {a['ip']:<40} first ban {a['first_ban'] or 'never':<20}  {a['before']:>6} / "
                f"{a['after']:<6} {a['blocked']:>7}"
            )


@click.command("replay")
@click.argument("logs", nargs=-1, required=True)
@json_option
@click.option(
    "--events",
    "as_events",
    is_flag=True,
    help="LOGS are JSON Lines of events (`mailward parse --json`), not raw logs.",
)
@click.option(
    "--firewall-only",
    is_flag=True,
    help="Simulate log-following bans only (no in-line policy server): refusals of "
    "protected usernames and denied countries do not apply.",
)
@click.option(
    "--top",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rows in each table of the text report.",
)
@pass_app
def replay(
    app: AppContext,
    logs: tuple[str, ...],
    as_json: bool,
    as_events: bool,
    firewall_only: bool,
    top: int,
) -> None:
    """Run the detectors over historical LOGS on their own timestamps and report what would have
    been banned, and when, and how many attempts each attacker got through before and after."""
    settings = app.settings
    try:
        engine = Engine.from_settings(settings, geo=_geo(settings))
        events = _json_events(logs) if as_events else _log_events(settings, logs)
        run = Replay(engine, inline=not firewall_only)
        with batch_gc():
            for event in events:
                for decision in run.feed(event):
                    if as_json:
                        click.echo(json.dumps(decision_line(decision)))
    except MailwardError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read input: {exc}")
    result = run.result()
    if as_json:
        summary: dict[str, Any] = result.summary()
        click.echo(json.dumps(summary))
    else:
        _text_report(result, top)


COMMANDS = [replay]
