"""``mailward integrate postfix|dovecot``: print the Postfix and Dovecot settings that point the
mail server at mailward's policy servers, derived from the loaded config, failing open.

Nothing is written: the operator reviews and pastes. ``--json`` gives the snippets by file.
"""

from __future__ import annotations

import shutil
import subprocess

import click

from mailward.cli.common import AppContext, emit_json, json_option, pass_app
from mailward.config.model import DovecotPolicySettings, PostfixPolicySettings

QUEUE_PRIVATE = "/var/spool/postfix/private/"


def postfix_endpoint(listen: str) -> str:
    """The ``check_policy_service`` endpoint for one of mailward's listen entries.

    A socket under the queue directory is written ``unix:private/NAME`` so a chrooted smtpd (the
    Debian default) reaches it; any other path only works for a non-chrooted smtpd.
    """
    kind, _, rest = listen.partition(":")
    if kind == "unix":
        if rest.startswith(QUEUE_PRIVATE):
            return "unix:private/" + rest[len(QUEUE_PRIVATE) :]
        return f"unix:{rest}"
    host, _, port = rest.rpartition(":")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host.strip("[]"):
        host = f"[{host.strip('[]')}]"
    return f"inet:{host}:{port}"


def _policy_call(s: PostfixPolicySettings, context: str) -> str:
    return (
        f"check_policy_service {{ {postfix_endpoint(s.listen[0])}, timeout={s.timeout}s, "
        f"try_limit=1, default_action=DUNNO, policy_context={context} }}"
    )


def postfix_snippets(s: PostfixPolicySettings) -> dict[str, str]:
    main_cf = f"""\
# --- main.cf: mailward policy hooks (fail open: one try, {s.timeout}s, then DUNNO) ---
mailward_connect = {_policy_call(s, "submission-connect")}
mailward_rcpt = {_policy_call(s, "rcpt")}
mailward_data = {_policy_call(s, "submission-data")}

# Append $mailward_rcpt to your recipient restrictions, AFTER reject_unauth_destination and
# reject_unlisted_recipient: mailward then sees valid recipients only and counts unknown ones
# from Postfix's own "User unknown" rejects in the log (Postfix is the authority on who exists).
# Keep permit_sasl_authenticated out of this list (it is in smtpd_relay_restrictions), or
# authenticated senders skip the per-account checks. Example:
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination,
    reject_unlisted_recipient, $mailward_rcpt
disable_vrfy_command = yes

# SMTP AUTH through Dovecot: then Dovecot's auth policy (mailward integrate dovecot) sees every
# SMTP password attempt too; Postfix never sends AUTH to a policy server.
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
"""
    lines = ["# --- master.cf: add under each of your submission service lines ---"]
    for service in s.submission_services:
        lines.append(f"# {service} inet n - y - - smtpd   (your existing line and options stay)")
        opts = [
            "smtpd_sasl_auth_enable=yes",
            # CONNECT-stage decisions need client restrictions to run at connect time.
            "smtpd_delay_reject=no",
            "smtpd_client_restrictions=$mailward_connect",
            "smtpd_data_restrictions=$mailward_data",
        ]
        if s.anvil_connection_limit:
            opts.append(f"smtpd_client_connection_count_limit={s.anvil_connection_limit}")
        if s.anvil_auth_rate_limit:
            opts.append(f"smtpd_client_auth_rate_limit={s.anvil_auth_rate_limit}")
        lines += [f"  -o {o}" for o in opts]
    master_cf = "\n".join(lines) + "\n"
    return {"main.cf": main_cf, "master.cf": master_cf}


def dovecot_version() -> str:
    """``2.3`` or ``2.4`` from the installed ``dovecot --version``; 2.3 when unknown."""
    exe = shutil.which("dovecot")
    if exe is None:
        return "2.3"
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "2.3"
    return "2.4" if out.startswith("2.4") else "2.3"


def dovecot_snippet(s: DovecotPolicySettings, version: str) -> str:
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
    if ":" in host:
        host = f"[{host}]"
    userinfo = ""
    if s.basic_user:
        password = s.basic_password.get_secret_value() if s.basic_password else ""
        userinfo = f"{s.basic_user}:{password}@"
    out = [
        f"# --- conf.d/95-mailward.conf (Dovecot {version}): auth policy, failing open ---",
        f"auth_policy_server_url = http://{userinfo}{host}:{s.port}/",
    ]
    if s.api_key is not None:
        out.append(
            f"auth_policy_server_api_header = {s.api_header}: {s.api_key.get_secret_value()}"
        )
    if s.hash_nonce is None:
        out.append("# Set policy.dovecot.hash_nonce (openssl rand -hex 16), the same on all nodes:")
    nonce = s.hash_nonce.get_secret_value() if s.hash_nonce else "CHANGE-ME"
    out += [
        f"auth_policy_hash_nonce = {nonce}",
        "# If mailward is down or slow, logins go ahead (Dovecot's auth penalty still applies).",
        "auth_policy_reject_on_fail = no",
        "auth_policy_check_before_auth = yes",
        "auth_policy_check_after_auth = yes",
        "auth_policy_report_after_auth = yes",
    ]
    if version == "2.4":
        out += ["auth_policy {", f"  http_client_request_absolute_timeout = {s.timeout_ms}ms", "}"]
    else:
        out.append(f"auth_policy_server_timeout_msecs = {s.timeout_ms}")
    return "\n".join(out) + "\n"


@click.group("integrate")
def integrate() -> None:
    """Print the mail server settings that use mailward's policy servers."""


@integrate.command("postfix")
@json_option
@pass_app
def integrate_postfix(app: AppContext, as_json: bool) -> None:
    """main.cf and master.cf settings for [policy.postfix]."""
    snippets = postfix_snippets(app.settings.policy.postfix)
    if as_json:
        emit_json(snippets)
        return
    if not app.settings.policy.postfix.enabled:
        click.echo("# note: [policy.postfix] enabled = false in your config; enable it too.\n")
    click.echo(snippets["main.cf"])
    click.echo(snippets["master.cf"], nl=False)


@integrate.command("dovecot")
@click.option(
    "--version",
    "version",
    type=click.Choice(["auto", "2.3", "2.4"]),
    default="auto",
    show_default=True,
    help="Dovecot version to write for (auto: ask the installed dovecot).",
)
@json_option
@pass_app
def integrate_dovecot(app: AppContext, version: str, as_json: bool) -> None:
    """dovecot.conf (conf.d) settings for [policy.dovecot]."""
    if version == "auto":
        version = dovecot_version()
    text = dovecot_snippet(app.settings.policy.dovecot, version)
    if as_json:
        emit_json({"dovecot.conf": text, "version": version})
        return
    if not app.settings.policy.dovecot.enabled:
        click.echo("# note: [policy.dovecot] enabled = false in your config; enable it too.\n")
    click.echo(text, nl=False)


COMMANDS = [integrate]
