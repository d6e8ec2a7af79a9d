"""``mailward status``: what the running daemon is doing, from its control socket."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from mailward.cli.common import AppContext, emit_json, fail, json_option, pass_app
from mailward.daemon import control
from mailward.daemon.durations import format_duration
from mailward.errors import MailwardError

NOT_RUNNING = 3  # as ``systemctl status`` for a stopped unit


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return f"{n:.1f} TiB"


def render(h: dict[str, Any]) -> str:
    out = []
    state = "OK" if h["ok"] else f"{len(h['problems'])} problem(s)"
    out.append(f"mailward: running for {format_duration(h['uptime_seconds'] or 0)}, {state}")
    for p in h["problems"]:
        out.append(f"  ! {p}")
    out.append("sources:")
    for s in h["sources"]:
        lag = "-" if s["newest_line_ts"] is None else f"{s['lag_seconds']:.1f}s"
        out.append(
            f"  {s['name']:<34} lag {lag:>7}  unread {_size(s['unread_bytes']):>9}  "
            f"lines {s['lines']}  events {s['events']}"
        )
    if not h["sources"]:
        out.append("  (none)")
    tasks = ", ".join(
        f"{t['name']} {t['state']}" + (f" ({t['restarts']} restarts)" if t["restarts"] else "")
        for t in h["tasks"]
    )
    out.append(f"tasks: {tasks}")
    e = h["enforcer"]
    detail = ", ".join(f"{k} {v}" for k, v in e.items() if k != "backend" and v is not None)
    out.append(f"enforcer: {e['backend']}" + (f" ({detail})" if detail else ""))
    out.append(f"active bans: {h['active_bans']}")
    d = h["last_decision"]
    if d:
        out.append(
            f"last decision: {d['time']} {d['action']} {d['target']} ({d['rule']}) until {d['until']}"
        )
    c = h["counters"]
    out.append(
        f"processed: {c['lines']} lines, {c['events']} events, {c['decisions']} decisions"
        + (f", {c['parse_errors']} parser errors" if c["parse_errors"] else "")
    )
    if h["components"]:
        out.append(
            "components: "
            + ", ".join(x["name"] + (" FAILED" if x["error"] else "") for x in h["components"])
        )
    return "\n".join(out)


@click.command("status")
@json_option
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """Show what the daemon is doing: sources and their lag, tasks, bans, components."""
    path = app.settings.control_socket
    try:
        health = control.request(path, "status", timeout=10)
    except control.DaemonNotRunning:
        if as_json:
            emit_json({"running": False, "socket": str(path)})
        else:
            click.echo(f"mailward is not running (no daemon on {path})")
        raise SystemExit(NOT_RUNNING) from None
    except MailwardError as exc:
        fail(str(exc))
    if as_json:
        emit_json({"running": True, "checked": datetime.now(UTC).isoformat(), **health})
    else:
        click.echo(render(health))


COMMANDS = [status]
