"""The OnFailure notice: tells a human that a mailward unit died, when the daemon cannot.

Run by ``mailward-failure@.service`` (``mailward notify failure UNIT``). It must work while the
daemon, a library or the config is broken: only the standard library is needed on the way, the
config is used when it loads, its ``[notify]`` table is read leniently when it does not, and the
built-in defaults (local sendmail to root) are the last resort.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path("/etc/mailward/mailward.toml")
DEFAULT_SENDMAIL = Path("/usr/sbin/sendmail")


@dataclass
class Target:
    sendmail: Path = DEFAULT_SENDMAIL
    sender: str = "mailward@localhost"
    to: list[str] = field(default_factory=lambda: ["root"])
    state_dir: Path = Path("/var/lib/mailward")
    problems: list[str] = field(default_factory=list)


def resolve_target(config: Path | None, env: Mapping[str, str]) -> Target:
    """Where to send: the validated config if possible, else what can be read of it."""
    path = config or Path(env.get("MAILWARD_CONFIG", DEFAULT_CONFIG))
    target = Target()
    try:
        from mailward.config import load

        settings = load(config, env=env)
        return Target(
            sendmail=settings.notify.sendmail_path,
            sender=settings.notify.from_address,
            to=list(settings.notify.to),
            state_dir=settings.general.state_dir,
        )
    except Exception as exc:  # any failure here, even an ImportError, must not stop the notice
        target.problems.append(f"configuration could not be loaded ({path}): {exc}")
    raw: dict[str, Any] = {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        pass
    notify = raw.get("notify", {}) if isinstance(raw.get("notify"), dict) else {}
    general = raw.get("general", {}) if isinstance(raw.get("general"), dict) else {}
    sendmail = env.get("MAILWARD_NOTIFY_SENDMAIL_PATH") or notify.get("sendmail_path")
    if isinstance(sendmail, str) and sendmail:
        target.sendmail = Path(sendmail)
    to = notify.get("to")
    if env.get("MAILWARD_NOTIFY_TO"):
        to = [a.strip() for a in env["MAILWARD_NOTIFY_TO"].strip("[]").replace('"', "").split(",")]
    if isinstance(to, list) and to and all(isinstance(a, str) for a in to):
        target.to = list(to)
    sender = notify.get("from_address")
    if isinstance(sender, str) and sender:
        target.sender = sender
    state = general.get("state_dir")
    if isinstance(state, str) and state:
        target.state_dir = Path(state)
    return target


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"({argv[0]} unavailable: {exc})"
    return (done.stdout + done.stderr).strip()


def compose(
    unit: str, env: Mapping[str, str], problems: list[str], *, journal: bool
) -> tuple[str, str]:
    """Subject and body. systemd (v251+) passes the failed unit's result in MONITOR_* variables."""
    host = socket.gethostname()
    result = env.get("MONITOR_SERVICE_RESULT", "unknown")
    code = env.get("MONITOR_EXIT_CODE", "unknown")
    status = env.get("MONITOR_EXIT_STATUS", "unknown")
    subject = f"[mailward {host}] CRITICAL: {unit} failed ({result}, {code} {status})"
    lines = [
        f"The systemd unit {unit} on {host} failed: result={result}, exit code={code}, "
        f"status={status}.",
        "While it is down, attacks are NOT being detected or banned (bans already in nftables "
        "stay until they expire).",
        "systemd restarts it (Restart=always); if this repeats, run `mailward doctor` and read "
        f"`journalctl -u {unit}`.",
    ]
    if env.get("MONITOR_INVOCATION_ID"):
        lines.append(f"Invocation: {env['MONITOR_INVOCATION_ID']}")
    lines += [f"Also: {p}" for p in problems]
    if journal:
        lines += [
            "",
            f"Last log lines of {unit}:",
            _run(["journalctl", "-u", unit, "-n", "30", "--no-pager", "-o", "short-iso"]),
        ]
    return subject, "\n".join(lines) + "\n"


def deliver(target: Target, subject: str, body: str) -> None:
    """Send through sendmail; raises OSError/RuntimeError when it cannot."""
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    mail = EmailMessage()
    mail["Subject"] = subject
    mail["From"] = target.sender
    mail["To"] = ", ".join(target.to)
    mail["Date"] = formatdate(localtime=True)
    mail["Message-ID"] = make_msgid()
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-Priority"] = "1"
    mail.set_content(body)
    done = subprocess.run(
        [str(target.sendmail), "-i", "-f", target.sender, "--", *target.to],
        input=mail.as_bytes(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{target.sendmail} exited {done.returncode}: {done.stderr.decode(errors='replace')[:200]}"
        )


def spool_for_later(target: Target, subject: str, body: str) -> bool:
    """Leave the notice in the daemon's outbox, so it goes out once mailward runs again."""
    try:
        from mailward.notify.model import Message, Severity
        from mailward.notify.spool import Spool

        spool = Spool(target.state_dir / "notify.db")
        spool.add(
            "sendmail",
            Message(subject=subject, text=body, severity=Severity.CRITICAL),
            time.time(),
        )
        spool.close()
        return True
    except Exception:
        return False


def notify_failure(
    unit: str,
    *,
    config: Path | None = None,
    env: Mapping[str, str] | None = None,
    journal: bool = True,
) -> tuple[bool, str]:
    """Send the notice. Returns (delivered, one-line report)."""
    env = os.environ if env is None else env
    target = resolve_target(config, env)
    subject, body = compose(unit, env, target.problems, journal=journal)
    try:
        deliver(target, subject, body)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        spooled = spool_for_later(target, subject, body)
        return False, (
            f"could not send the failure notice for {unit} through {target.sendmail}: {exc}"
            + ("; queued in the outbox for the next start" if spooled else "")
        )
    return True, f"failure notice for {unit} sent to {', '.join(target.to)} via {target.sendmail}"
