"""``mailward policy serve|probe``: run the policy servers on their own, and check from outside
that they answer (for cron or a systemd timer: a dead mailward fails open, silently otherwise).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import signal
import subprocess
import time
from typing import Any

import click

from mailward.cli.common import AppContext, emit_json, fail, json_option, pass_app
from mailward.config.model import Settings
from mailward.decisions.model import Decision
from mailward.notify.model import Alert
from mailward.policy.backend import MemoryBackend
from mailward.policy.dovecot import DovecotPolicyServer
from mailward.policy.postfix import PostfixPolicyServer
from mailward.policy.probe import ProbeResult, probe_alert, probe_dovecot, probe_postfix

log = logging.getLogger(__name__)


@click.group("policy")
def policy_group() -> None:
    """In-line policy servers for Postfix and Dovecot."""


@policy_group.command("serve")
@click.option(
    "--engine",
    "engine_kind",
    type=click.Choice(["real", "memory"]),
    default="real",
    show_default=True,
    help="'real': the detector engine configured in [detectors]; 'memory': the in-memory twin "
    "with the thresholds below.",
)
@click.option("--ban-after", default=5, show_default=True, help="memory: failures that ban an IP.")
@click.option(
    "--tarpit-after", default=3, show_default=True, help="memory: failures before tarpit."
)
@click.option(
    "--protect-after",
    default=5,
    show_default=True,
    help="memory: distinct failing IPs that put a username under attack.",
)
@click.option("--window", default=600.0, show_default=True, help="memory: counting window, s.")
@pass_app
def serve(
    app: AppContext,
    engine_kind: str,
    ban_after: int,
    tarpit_after: int,
    protect_after: int,
    window: float,
) -> None:
    """Run the enabled policy servers in the foreground, without log followers or firewall.

    For trials and tests; ``mailward run`` starts the same servers inside the daemon, with the
    store, the log followers and the enforcer.
    """
    settings = app.settings
    if not (settings.policy.postfix.enabled or settings.policy.dovecot.enabled):
        fail("neither policy.postfix.enabled nor policy.dovecot.enabled is true")
    backend: Any
    if engine_kind == "memory":
        backend = MemoryBackend(
            ban_after=ban_after,
            tarpit_after=tarpit_after,
            protect_after=protect_after,
            window=window,
        )
    else:
        from mailward.detectors.engine import Engine

        backend = Engine.from_settings(settings)
    logging.getLogger("mailward").setLevel(logging.INFO)
    try:
        asyncio.run(_serve(settings, backend))
    except OSError as exc:
        fail(f"cannot listen: {exc}")


async def _serve(settings: Settings, backend: Any) -> None:
    def apply(decisions: list[Decision]) -> None:
        for d in decisions:
            log.warning("decision: %s %s rule=%s until=%s", d.action, d.target, d.rule, d.until)
            if d.rule.startswith("policy_"):  # the engine already holds its own decisions
                backend.apply(d)

    components: list[PostfixPolicyServer | DovecotPolicyServer] = []
    if settings.policy.postfix.enabled:
        components.append(
            PostfixPolicyServer(settings.policy.postfix, backend=backend, on_decisions=apply)
        )
    if settings.policy.dovecot.enabled:
        components.append(
            DovecotPolicyServer(settings.policy.dovecot, backend=backend, on_decisions=apply)
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started: list[PostfixPolicyServer | DovecotPolicyServer] = []
    try:
        for c in components:
            await c.start()
            started.append(c)
            click.echo(f"{c.name} listening on {c.addresses}", nl=True)
        await stop.wait()
    finally:
        for c in reversed(started):
            await c.stop()


def _dovecot_url_and_headers(settings: Settings) -> tuple[str, dict[str, str]]:
    s = settings.policy.dovecot
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
    headers: dict[str, str] = {}
    if s.api_key is not None:
        headers[s.api_header] = s.api_key.get_secret_value()
    if s.basic_user is not None:
        password = s.basic_password.get_secret_value() if s.basic_password else ""
        token = base64.b64encode(f"{s.basic_user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return f"http://{host}:{s.port}/", headers


async def run_probes(settings: Settings, timeout: float) -> list[ProbeResult]:
    jobs = []
    if settings.policy.postfix.enabled:
        jobs += [probe_postfix(item, timeout) for item in settings.policy.postfix.listen]
    if settings.policy.dovecot.enabled:
        url, headers = _dovecot_url_and_headers(settings)
        jobs.append(probe_dovecot(url, timeout, headers))
    return list(await asyncio.gather(*jobs))


@policy_group.command("probe")
@click.option("--timeout", default=2.0, show_default=True, help="Seconds per endpoint.")
@click.option(
    "--on-failure",
    metavar="COMMAND",
    help="Shell command run with the failure report on stdin when an endpoint is down "
    '(e.g. "sendmail -t" with a prepared header, or a notifier script).',
)
@click.option(
    "--notify",
    "notify",
    is_flag=True,
    help="Also deliver the alert through the [notify] channels (sendmail, SMTP, apprise), with "
    "their cooldown, so a probe run every minute does not mail every minute.",
)
@json_option
@pass_app
def probe(
    app: AppContext, timeout: float, on_failure: str | None, notify: bool, as_json: bool
) -> None:
    """Ask each enabled policy endpoint a harmless question. Exit 1 if one does not answer."""
    settings = app.settings
    results = asyncio.run(run_probes(settings, timeout))
    if not results:
        fail("no policy server is enabled in the configuration")
    alert = probe_alert(results, time.time())
    if as_json:
        emit_json(
            {
                "ok": alert is None,
                "endpoints": [r.to_json() for r in results],
                "alert": None if alert is None else alert.to_json(),
            }
        )
    else:
        for r in results:
            state = f"up ({r.latency_ms:.1f} ms)" if r.ok else f"DOWN: {r.error}"
            click.echo(f"{r.name} {r.endpoint}: {state}")
    if alert is not None:
        if notify:
            asyncio.run(_notify(settings, alert))
        if on_failure:
            report = "\n".join((f"[{alert.severity.label}] {alert.title}", *alert.details)) + "\n"
            done = subprocess.run(on_failure, shell=True, input=report, text=True, check=False)
            if done.returncode != 0:
                click.echo(f"mailward: --on-failure command exited {done.returncode}", err=True)
        raise SystemExit(1)


async def _notify(settings: Settings, alert: Alert) -> None:
    # The alert manager's gate keeps its cooldown in the state directory, across probe runs.
    from mailward.notify.manager import AlertManager

    manager = AlertManager(settings)
    await manager.start(None)
    try:
        manager.raise_alert(alert)
    finally:
        await manager.stop()  # flushes the gate and lets the channels deliver


COMMANDS = [policy_group]
