"""``mailward bans | ban | unban | nft``: through the daemon's control socket when it runs,
otherwise directly on the ledger and the firewall (the bans are then restored from the ledger as
one atomic batch, so nothing already banned is lost)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import click

from mailward.cli.common import AppContext, emit_json, fail, json_option, pass_app
from mailward.cli.run import make_enforcer, open_ledger
from mailward.config.model import Settings
from mailward.daemon import control
from mailward.daemon.app import overlapping
from mailward.daemon.durations import format_duration, parse_duration
from mailward.decisions.model import Action, Decision
from mailward.enforcers.bantable import as_network
from mailward.enforcers.nftables import NftablesEnforcer
from mailward.errors import BackendUnavailable, MailwardError


def _daemon(settings: Settings, cmd: str, **args: Any) -> Any:
    """The daemon's answer, or None when no daemon is running."""
    try:
        return control.request(settings.control_socket, cmd, **args)
    except control.DaemonNotRunning:
        return None
    except MailwardError as exc:
        fail(str(exc))


def _normalise(target: str) -> str:
    try:
        net = as_network(target)
    except ValueError:
        fail(f"not an IP address or CIDR prefix: {target!r}")
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _direct(settings: Settings, decisions: list[Decision]) -> None:
    """No daemon: record, then make the firewall match the ledger in one batch."""
    ledger = open_ledger(settings)
    try:
        ledger.commit([], decisions, {})
        active = ledger.active_decisions(time.time())
    finally:
        ledger.close()
    enforcer = make_enforcer(settings)
    try:
        asyncio.run(enforcer.restore(active))
    except BackendUnavailable as exc:
        fail(f"recorded in the ledger, but the firewall was not updated: {exc}", code=1)


def _row(d: dict[str, Any]) -> str:
    until = d.get("until")
    left = "permanent"
    if until:
        end = datetime.fromisoformat(until.replace("Z", "+00:00")).timestamp()
        left = format_duration(end - time.time())
    return f"{d['target']:<24} {d['rule']:<14} {left:>10}  {d.get('reason') or ''}"


@click.command("bans")
@json_option
@pass_app
def bans(app: AppContext, as_json: bool) -> None:
    """List the active bans."""
    result = _daemon(app.settings, "bans")
    if result is None:
        ledger = open_ledger(app.settings)
        try:
            result = [d.to_json() for d in ledger.active_decisions(time.time())]
        finally:
            ledger.close()
    if as_json:
        emit_json(result)
        return
    if not result:
        click.echo("no active bans")
        return
    click.echo(f"{'TARGET':<24} {'RULE':<14} {'LEFT':>10}  REASON")
    for d in result:
        click.echo(_row(d))


@click.command("ban")
@click.argument("target")
@click.option(
    "--for", "duration", default="1d", show_default=True, help="90s, 10m, 1h, 1d, 2w or permanent."
)
@click.option("--reason", default="", help="Why (kept with the decision).")
@json_option
@pass_app
def ban(app: AppContext, target: str, duration: str, reason: str, as_json: bool) -> None:
    """Ban an address or CIDR prefix now."""
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        fail(f"--for: {exc}")
    target = _normalise(target)
    result = _daemon(
        app.settings, "ban", target=target, reason=reason, by="cli", **{"for": seconds}
    )
    if result is None:
        for own in app.settings.general.server_addresses:
            net = as_network(target)
            if own.version == net.version and net.overlaps(own):
                fail(f"{net} overlaps the server's own addresses ({own}); not banned")
        now = time.time()
        decision = Decision(
            ts=now,
            target=target,
            action=Action.BAN,
            rule="manual",
            until=None if seconds is None else now + seconds,
            reason=reason or "manual ban",
            evidence={"by": "cli"},
        )
        _direct(app.settings, [decision])
        result = decision.to_json()
    if as_json:
        emit_json(result)
    else:
        click.echo(f"banned {result['target']} for {format_duration(seconds)}")


@click.command("unban")
@click.argument("target", required=False)
@click.option("--all", "everything", is_flag=True, help="Lift every active ban.")
@json_option
@pass_app
def unban(app: AppContext, target: str | None, everything: bool, as_json: bool) -> None:
    """Lift the ban on an address or prefix (and every ban inside it), or all bans."""
    if everything == (target is not None):
        fail("give either a TARGET or --all")
    if target is not None:
        target = _normalise(target)
    args: dict[str, Any] = {"all": True} if everything else {"target": target}
    result = _daemon(app.settings, "unban", by="cli", **args)
    if result is None:
        ledger = open_ledger(app.settings)
        try:
            current = {d.target for d in ledger.active_decisions(time.time())}
        finally:
            ledger.close()
        targets = sorted(current) if everything else overlapping(target or "", current)
        now = time.time()
        _direct(
            app.settings,
            [
                Decision(
                    ts=now,
                    target=t,
                    action=Action.UNBAN,
                    rule="manual",
                    reason="manual unban",
                    evidence={"by": "cli"},
                )
                for t in targets
            ],
        )
        result = targets
    if as_json:
        emit_json(result)
    else:
        click.echo(f"unbanned {len(result)}: {', '.join(result)}" if result else "nothing to unban")


@click.group("nft")
def nft() -> None:
    """mailward's own nftables table."""


@nft.command("show")
@json_option
@pass_app
def nft_show(app: AppContext, as_json: bool) -> None:
    """Element counts in mailward's sets, as the kernel reports them."""
    enforcer = NftablesEnforcer(app.settings.enforce)
    try:
        counts = asyncio.run(enforcer.kernel_elements())
    except BackendUnavailable as exc:
        if "No such file or directory" in str(exc):
            fail(
                f"nftables table inet {app.settings.enforce.table} does not exist "
                "(mailward run creates it at start)",
                code=1,
            )
        fail(str(exc), code=1)
    if as_json:
        emit_json({"table": f"inet {app.settings.enforce.table}", "elements": counts})
    else:
        for name, count in counts.items():
            click.echo(f"{name:<6} {count}")


@nft.command("remove")
@pass_app
def nft_remove(app: AppContext) -> None:
    """Delete mailward's table and every ban in it (the ledger keeps the decisions, so the next
    start restores them; run ``mailward unban --all`` first to forget them too)."""
    if _daemon(app.settings, "status") is not None:
        fail("the daemon is running and would recreate the table; stop it first")
    enforcer = NftablesEnforcer(app.settings.enforce)
    try:
        asyncio.run(enforcer.remove_table())
    except BackendUnavailable as exc:
        fail(str(exc), code=1)
    click.echo(f"removed table inet {app.settings.enforce.table}")


COMMANDS = [bans, ban, unban, nft]
