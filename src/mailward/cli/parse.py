"""``mailward parse FILE...``: the line-level view, like fail2ban-regex.

Each recognised line is printed with its event (JSON Lines with ``--json``, format in
docs/parse-format.md), then a summary of recognised, ignored and unrecognised lines.
"""

from __future__ import annotations

import json
import re
import sys
from typing import IO, Any

import click

from mailward.cli.common import AppContext, fail, json_option, pass_app
from mailward.errors import InputError
from mailward.parsers.line import LineParser
from mailward.sources.files import expand_inputs, read_lines

# auth_verbose_passwords text must not be echoed back, not even for unrecognised lines.
_PASSWORD = re.compile(r"\((?:SHA1 of )?given password: .*", re.DOTALL)


def redact(line: str) -> str:
    return _PASSWORD.sub("(given password: <redacted>)", line)


def _text_row(obj: dict[str, Any]) -> str:
    extra = [
        f"{k}={v}"
        for k, v in obj.items()
        if k not in ("file", "line", "time", "kind", "service", "ip", "username", "rule")
        and v not in (None, "", False)
    ]
    return (
        f"{obj['file']}:{obj['line']}  {obj['time']}  {obj['kind']}  {obj['service']}  "
        f"{obj['ip'] or '-'}  {obj['username'] if obj['username'] is not None else '-'}  "
        f"[{obj['rule']}]" + ("  " + " ".join(extra) if extra else "")
    )


@click.command("parse")
@click.argument("inputs", nargs=-1, required=True, metavar="FILE...")
@json_option
@click.option(
    "--unrecognised",
    "show_unrecognised",
    is_flag=True,
    help="Also print the lines no rule recognised (passwords redacted).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary.")
@click.option(
    "--year",
    type=click.IntRange(1970, 9999),
    default=None,
    help="Year of year-less (RFC 3164) stamps; default: inferred from the current date.",
)
@pass_app
def parse_command(
    app: AppContext,
    inputs: tuple[str, ...],
    as_json: bool,
    show_unrecognised: bool,
    quiet: bool,
    year: int | None,
) -> None:
    """Show what mailward reads in FILE... (files, globs, directories, .gz/.bz2/.xz, - for
    stdin): one row per recognised line, then a summary."""
    try:
        sources = expand_inputs(inputs)
    except InputError as exc:
        fail(str(exc))
    parser = LineParser(app.settings.parsing, default_year=year)
    out: IO[str] = sys.stdout
    try:
        for source in sources:
            name = str(source)
            parser.start_input()
            try:
                for lineno, text, _ in read_lines(source):
                    before = parser.stats.unrecognised
                    event = parser.parse_at(text, name, lineno)
                    if event is not None:
                        if quiet:
                            continue
                        obj = event.to_json()
                        obj["rule"] = parser.last_rule
                        if as_json:
                            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
                        else:
                            out.write(_text_row(obj) + "\n")
                    elif show_unrecognised and parser.stats.unrecognised != before:
                        if as_json:
                            row = {"file": name, "line": lineno, "kind": None}
                            row["text"] = redact(text)
                            out.write(json.dumps(row, ensure_ascii=False) + "\n")
                        else:
                            out.write(f"{name}:{lineno}  unrecognised  {redact(text)}\n")
            except InputError as exc:
                fail(str(exc))
        stats = parser.stats
        if as_json:
            summary = {"summary": True, "inputs": [str(s) for s in sources], **stats.to_json()}
            out.write(json.dumps(summary) + "\n")
        else:
            out.write(
                f"\nLines: {stats.lines}, recognised: {stats.recognised}, "
                f"ignored: {stats.ignored}, unrecognised: {stats.unrecognised}\n"
            )
            for kind, count in sorted(stats.by_kind.items()):
                out.write(f"  {kind}: {count}\n")
        out.flush()
    except BrokenPipeError:
        # `mailward parse ... | head`: the reader left; not an error.
        sys.stderr.close()
        raise SystemExit(0) from None


COMMANDS = [parse_command]
