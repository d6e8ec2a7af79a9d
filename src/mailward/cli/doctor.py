"""``mailward doctor [--json] [--send-test]``: a self-test of everything mailward needs.

Config, Python and library imports with versions, state directory, each configured log source,
nftables access, GeoIP database age, notification channels (and a real test message with
``--send-test``). Every problem is one line saying what is wrong and how to fix it; any problem
exits 1, so it serves as ``ExecStartPre=`` and as the check after an upgrade.
"""

from __future__ import annotations

import glob
import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from mailward.cli.common import AppContext, emit_json, json_option
from mailward.config import Settings, load
from mailward.errors import MailwardError

# Distributions whose import failing leaves mailward (or one of its stages) dead.
LIBRARIES = {
    "click": "click",
    "pydantic": "pydantic",
    "aiohttp": "aiohttp",
    "httptools": "httptools",
    "msgspec": "msgspec",
    "aiosmtplib": "aiosmtplib",
    "apprise": "apprise",
    "prometheus_client": "prometheus-client",
    "matplotlib": "matplotlib",
    "iptocc": "iptocc",
    "maxminddb": "maxminddb",
}


# Problems that leave the daemon unable to defend at all; with --startup only these fail.
FATAL = ("config", "python", "import ", "state_dir", "nftables")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    @property
    def fatal(self) -> bool:
        return self.name.startswith(FATAL)

    def line(self) -> str:
        if self.ok:
            return f"ok    {self.name}: {self.detail}"
        return f"FAIL  {self.name}: {self.detail}" + (f" -> {self.fix}" if self.fix else "")


def check_config(app: AppContext) -> tuple[Settings, Check]:
    where = str(app.config_path or os.environ.get("MAILWARD_CONFIG", "/etc/mailward/mailward.toml"))
    try:
        settings = load(app.config_path, overrides=app.overrides)
    except MailwardError as exc:
        return Settings(), Check(
            "config",
            False,
            f"{where}: {exc}",
            f"fix that key (see docs/configuration.md), then `mailward config check {where}`",
        )
    return settings, Check("config", True, f"{where} is valid")


def check_imports() -> list[Check]:
    out = []
    py = sys.version_info
    out.append(
        Check(
            "python",
            py >= (3, 11),
            f"{sys.version.split()[0]} at {sys.executable}",
            "mailward needs Python 3.11 or newer",
        )
    )
    import mailward
    import mailward.cli

    modules = [
        "mailward." + m
        for m in (
            "events",
            "config",
            "decisions.model",
            "notify.manager",
            "notify.metrics",
            "daemon.tasks",
        )
    ]
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            out.append(
                Check(
                    f"import {name}",
                    False,
                    f"{type(exc).__name__}: {exc}",
                    "reinstall mailward (pip install --force-reinstall mailward)",
                )
            )
    versions = [f"mailward {mailward.__version__}"]
    for module, dist in LIBRARIES.items():
        try:
            importlib.import_module(module)
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except Exception as exc:
            out.append(
                Check(
                    f"import {module}",
                    False,
                    f"{type(exc).__name__}: {exc}",
                    f"reinstall it: pip install --force-reinstall '{dist}'",
                )
            )
    out.append(Check("versions", True, ", ".join(versions)))
    from mailward.speedups import describe

    out.append(Check("speedups", True, describe()))
    return out


def check_state_dir(settings: Settings) -> Check:
    state = settings.general.state_dir
    if not state.exists():
        parent = next((p for p in state.parents if p.exists()), Path("/"))
        if os.access(parent, os.W_OK):
            return Check("state_dir", True, f"{state} does not exist yet; it will be created")
        return Check(
            "state_dir",
            False,
            f"{state} does not exist and {parent} is not writable",
            f"create {state} for the user mailward runs as (general.state_dir)",
        )
    try:
        probe = state / f".doctor-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return Check(
            "state_dir",
            False,
            f"{state} is not writable: {exc.strerror}",
            "create it and give it to the user mailward runs as (general.state_dir)",
        )
    return Check("state_dir", True, f"{state} is writable")


def check_sources(settings: Settings) -> list[Check]:
    out = []
    for spec in settings.sources.files:
        matches = sorted(glob.glob(spec)) if glob.has_magic(spec) else [spec]
        if glob.has_magic(spec) and not matches:
            out.append(
                Check(
                    f"source {spec}",
                    False,
                    "matches no file",
                    "fix sources.files or check that the mail server logs there",
                )
            )
            continue
        for path in matches:
            try:
                with open(path, "rb") as fh:
                    fh.read(1)
            except FileNotFoundError:
                out.append(
                    Check(
                        f"source {path}",
                        False,
                        "no such file",
                        "fix sources.files, or check that rsyslog writes the mail log",
                    )
                )
            except IsADirectoryError:
                out.append(
                    Check(
                        f"source {path}",
                        False,
                        "is a directory, not a log file",
                        "point sources.files at the file (or a glob)",
                    )
                )
            except OSError as exc:
                out.append(
                    Check(
                        f"source {path}",
                        False,
                        f"cannot read: {exc.strerror}",
                        "run mailward as root, or add its user to the group that owns the log "
                        "(usually adm)",
                    )
                )
            else:
                out.append(Check(f"source {path}", True, "readable"))
    if settings.sources.journald:
        out.append(
            _run_check(
                "journald",
                ["journalctl", "-q", "-n", "0"],
                "install systemd's journalctl, or add mailward's user to systemd-journal",
            )
        )
    return out


def _run_check(name: str, argv: list[str], fix: str) -> Check:
    exe = shutil.which(argv[0])
    if exe is None:
        return Check(name, False, f"{argv[0]} not found on PATH", fix)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(name, False, f"{' '.join(argv)}: {exc}", fix)
    if done.returncode != 0:
        err = (done.stderr or done.stdout).strip().splitlines()
        return Check(
            name,
            False,
            f"`{' '.join(argv)}` exited {done.returncode}: {err[0] if err else ''}",
            fix,
        )
    return Check(name, True, f"`{' '.join(argv)}` works ({exe})")


def check_nft(settings: Settings) -> Check | None:
    backend = getattr(getattr(settings, "enforce", None), "backend", "nftables")
    if backend != "nftables":
        return None
    return _run_check(
        "nftables",
        ["nft", "list", "tables"],
        "install nftables (apt-get install nftables) and run mailward as root or with "
        'CAP_NET_ADMIN; or set enforce.backend = "none"',
    )


def check_geoip(settings: Settings, now: float) -> list[Check]:
    """Each configured .mmdb: readable, the right kind of data for its setting, and not older
    than ``geoip.max_age_days`` by its build date (the metadata, not the file time: a copy or
    a package install resets the mtime of an old database)."""
    out = []
    try:
        from mailward.enrich.geoip import ASN_KINDS, COUNTRY_KINDS, mmdb_info
    except ImportError as exc:  # reported by the import checks too; never a traceback here
        return [Check("geoip", False, f"cannot load the GeoIP module: {exc}", "reinstall mailward")]
    limit = settings.geoip.max_age_days
    dbs = [
        ("geoip.country_db", settings.geoip.country_db, COUNTRY_KINDS),
        ("geoip.asn_db", settings.geoip.asn_db, ASN_KINDS),
    ]
    for key, path, kinds in dbs:
        if path is None:
            continue
        try:
            info = mmdb_info(path, key)
        except MailwardError as exc:
            out.append(
                Check(
                    key,
                    False,
                    str(exc).removeprefix(f"{key}: "),
                    f"install the database (geoipupdate) or unset {key}",
                )
            )
            continue
        if not any(k in info.database_type for k in kinds):
            out.append(
                Check(
                    key,
                    False,
                    f"{path} is a {info.database_type!r} database, not {' or '.join(kinds)} data",
                    f"point {key} at a {' or '.join(kinds)} .mmdb",
                )
            )
            continue
        age = info.age_days(now)
        built = time.strftime("%Y-%m-%d", time.gmtime(info.build_epoch))
        if age > limit:
            out.append(
                Check(
                    key,
                    False,
                    f"{path} ({info.database_type}) was built {built}, {age:.0f} days old "
                    f"(geoip.max_age_days = {limit})",
                    "update it (geoipupdate, weekly cron): stale data misplaces addresses",
                )
            )
        else:
            out.append(
                Check(
                    key, True, f"{path} ({info.database_type}), built {built}, {age:.0f} days old"
                )
            )
    if settings.geoip.country_db is None:
        try:
            importlib.import_module("iptocc")
            out.append(
                Check(
                    "geoip",
                    True,
                    f"offline country table (iptocc {importlib.metadata.version('iptocc')})",
                )
            )
        except Exception as exc:
            out.append(
                Check("geoip", False, f"iptocc: {exc}", "pip install --force-reinstall iptocc")
            )
    return out


def check_channels(settings: Settings) -> list[Check]:
    n = settings.notify
    out = []
    if not n.enabled:
        return [
            Check(
                "notify",
                False,
                "notifications are disabled: nobody hears about attacks or failures",
                "set notify.enabled = true",
            )
        ]
    if n.sendmail:
        if os.access(n.sendmail_path, os.X_OK):
            out.append(Check("notify sendmail", True, f"{n.sendmail_path}"))
        else:
            out.append(
                Check(
                    "notify sendmail",
                    False,
                    f"{n.sendmail_path} is missing or not executable",
                    "install Postfix's sendmail or fix notify.sendmail_path",
                )
            )
    if n.smtp_host and n.smtp_username and n.smtp_password is None:
        out.append(
            Check(
                "notify smtp",
                False,
                "smtp_username is set but smtp_password is not",
                'set notify.smtp_password = { "$file" = "/etc/mailward/smtp-password" }',
            )
        )
    if not (n.sendmail or n.smtp_host or n.apprise_urls):
        out.append(
            Check(
                "notify",
                False,
                "no channel configured",
                "enable notify.sendmail, set notify.smtp_host or notify.apprise_urls",
            )
        )
    try:
        from mailward.notify.manager import build_channels

        names = [c.name for c in build_channels(settings)]
        out.append(Check("notify channels", True, ", ".join(names) or "none"))
    except MailwardError as exc:
        out.append(Check("notify channels", False, str(exc), "fix the [notify] setting named"))
    return out


def run_checks(app: AppContext, *, send_test: bool) -> list[Check]:
    settings, config = check_config(app)
    checks = [config, *check_imports(), check_state_dir(settings), *check_sources(settings)]
    nft = check_nft(settings)
    if nft is not None:
        checks.append(nft)
    checks += check_geoip(settings, time.time())
    checks += check_channels(settings)
    if send_test and config.ok:
        from mailward.cli.notify import send_test as send

        for name, error in send(app).items():
            checks.append(
                Check(
                    f"test notification via {name}",
                    error is None,
                    error or "sent: check that it arrived",
                    f"fix the notify settings for {name}",
                )
            )
    return checks


@click.command("doctor")
@json_option
@click.option("--send-test", is_flag=True, help="Also send a test notification on every channel.")
@click.option(
    "--startup",
    is_flag=True,
    help="For ExecStartPre=: exit 1 only for problems that stop mailward from defending at all "
    "(config, imports, state directory, nftables); report the rest as warnings.",
)
@click.pass_obj
def doctor(app: AppContext, as_json: bool, send_test: bool, startup: bool) -> None:
    """Check config, imports, logs, nftables, GeoIP and notifications; exit 1 on any problem."""
    checks = run_checks(app, send_test=send_test)
    problems = [c for c in checks if not c.ok and (c.fatal or not startup)]
    if as_json:
        emit_json({"ok": not problems, "checks": [asdict(c) for c in checks]})
    else:
        # Everything on stdout, in order: under ExecStartPre= the journal keeps it together.
        for c in checks:
            line = c.line()
            if startup and not c.ok and not c.fatal:
                line = "WARN" + line[4:]
            click.echo(line)
        warnings = sum(1 for c in checks if not c.ok) - len(problems)
        summary = (
            f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found"
            if problems
            else "all checks passed"
        )
        click.echo(
            summary + (f" ({warnings} warning{'s' if warnings != 1 else ''})" if warnings else "")
        )
    if problems:
        raise SystemExit(1)


COMMANDS = [doctor]
