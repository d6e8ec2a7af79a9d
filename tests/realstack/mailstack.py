"""Real Postfix 3.7 + Dovecot 2.3 on loopback, without systemd, pointed at mailward's policy servers.

Follows ../shared/docs/real-stack-testing.md: everything under a ``tempfile.mkdtemp()`` root
(chmod 755), free loopback ports, Dovecot as Postfix's SASL, a passwd-file passdb, logs in files,
and the Postfix/Dovecot policy settings taken from ``mailward integrate`` itself. mailward runs as
a real separate process (``mailward policy serve``), so stopping it is a real outage.
"""

from __future__ import annotations

import imaplib
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mailward.cli.integrate import dovecot_snippet, postfix_snippets
from mailward.config.model import DovecotPolicySettings, PostfixPolicySettings

DOMAIN = "mail.test.invalid"
USERS = {"alice": "alicepw", "bob": "bobpw", "carol": "carolpw", "dave": "davepw"}
API_KEY = "realstack-api-key"
POLL_IP = "127.0.0.1"  # port polling only: every poll leaves a log line


def available() -> str | None:
    """Why the real stack cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for exe in ("postfix", "dovecot", "doveadm", "postconf"):
        if shutil.which(exe) is None:
            return f"{exe} not installed"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((POLL_IP, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def wait_pid_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


class SrcIMAP(imaplib.IMAP4):
    """imaplib with a chosen source address (it has no source_address argument)."""

    def __init__(self, host: str, port: int, src: str) -> None:
        self._src = src
        super().__init__(host, port, timeout=30)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection(
            (self.host, self.port), timeout, source_address=(self._src, 0)
        )


@dataclass
class MailStack:
    root: Path
    smtp_port: int = field(default_factory=free_port)
    submission_port: int = field(default_factory=free_port)
    imap_port: int = field(default_factory=free_port)
    policy_port: int = field(default_factory=free_port)
    authpol_port: int = field(default_factory=free_port)
    mailward: subprocess.Popen[bytes] | None = None
    _next: int = 0

    # -- addresses: one per attempt, never reused (Dovecot's per-IP auth penalty) ------------

    def new_ip(self) -> str:
        # Each address in its own /24, so the detectors' prefix rule (5 failing addresses in one
        # /24) cannot turn the attack scenarios into a ban on the legitimate clients' addresses.
        self._next += 1
        return f"127.{100 + self._next // 250}.{self._next % 250}.1"

    # -- configuration -----------------------------------------------------------------------

    @property
    def postfix_dir(self) -> Path:
        return self.root / "postfix"

    @property
    def dovecot_conf(self) -> Path:
        return self.root / "dovecot" / "dovecot.conf"

    @property
    def config(self) -> Path:
        return self.root / "mailward.toml"

    @property
    def daemon_config(self) -> Path:
        return self.root / "mailward-run.toml"

    def log(self, name: str) -> Path:
        return self.root / "logs" / name

    def postfix_policy(self) -> PostfixPolicySettings:
        return PostfixPolicySettings(
            enabled=True,
            listen=[f"inet:127.0.0.1:{self.policy_port}"],
            submission_services=["submission"],
            anvil_connection_limit=10,
        )

    def dovecot_policy(self) -> DovecotPolicySettings:
        return DovecotPolicySettings.model_validate(
            {
                "enabled": True,
                "port": self.authpol_port,
                "api_key": API_KEY,
                "hash_nonce": "test-nonce-not-secret",
            }
        )

    def write_configs(self) -> None:
        r = self.root
        for d in ("postfix", "spool", "logs", "mail", "dovecot/run", "dovecot/state"):
            (r / d).mkdir(parents=True, exist_ok=True)
        os.chmod(r, 0o755)
        os.chown(r / "mail", 65534, 65534)
        snippets = postfix_snippets(self.postfix_policy())
        mailboxes = ", ".join(f"{u}@{DOMAIN}={u}/Maildir/" for u in USERS)
        (self.postfix_dir / "main.cf").write_text(
            f"""\
compatibility_level = 3.6
myhostname = {DOMAIN}
mydestination = localhost
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = {POLL_IP}/32
queue_directory = {r}/spool
data_directory = {r}/spool/data
relayhost =
default_transport = error:outbound mail disabled in test instance
relay_transport = error:outbound mail disabled in test instance
local_transport = discard:accepted by test instance
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {r}/mail
virtual_mailbox_maps = inline:{{ {mailboxes} }}
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
alias_maps =
alias_database =
smtputf8_enable = no
smtpd_peername_lookup = no
maillog_file = {r}/logs/postfix.log
maillog_file_prefixes = /var, /dev/stdout, {r}/logs
smtpd_sasl_auth_enable = no
smtpd_tls_security_level = none
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
{snippets["main.cf"]}"""
        )
        submission_opts = [
            line.strip()
            for line in snippets["master.cf"].splitlines()
            if line.strip().startswith("-o ")
        ]
        (self.postfix_dir / "master.cf").write_text(
            f"""\
127.0.0.1:{self.smtp_port} inet n - n - - smtpd
127.0.0.1:{self.submission_port} inet n - n - - smtpd
  -o syslog_name=postfix/submission
{"".join(f"  {o}{chr(10)}" for o in submission_opts)}pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
virtual   unix  - n n -  - virtual
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
"""
        )
        (r / "dovecot" / "users").write_text(
            "".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in USERS.items())
        )
        self.dovecot_conf.write_text(
            f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {r}/dovecot/run
state_dir = {r}/dovecot/state
log_path = {r}/logs/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
auth_failure_delay = 0
mail_location = maildir:{r}/mail/%u/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/dovecot/users
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={r}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
# No auth penalty (dovecot-auth-policy.md section 9, the documented switch; login_trusted_networks
# does not exempt from it in 2.3.19): the per-IP threshold scenario needs several attempts from
# one address without 2-4-8-15 s delays. Every other scenario still uses one address per attempt.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  unix_listener {r}/spool/private/auth {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
{dovecot_snippet(self.dovecot_policy(), "2.3")}"""
        )
        sendmail = r / "sendmail"
        sendmail.write_text(
            f"#!/bin/sh\ncat >> {r}/logs/alerts.mbox\necho >> {r}/logs/alerts.mbox\n"
        )
        sendmail.chmod(0o755)
        (r / "mailward").mkdir(exist_ok=True)
        self.config.write_text(
            f"""\
[general]
state_dir = "{r}/mailward"
# The test clients are on loopback: only the poll address is "the server itself".
server_addresses = ["127.0.0.1/32"]

[notify]
# A stand-in for /usr/sbin/sendmail that keeps each message: the notify channel really runs it.
sendmail_path = "{r}/sendmail"
to = ["postmaster@{DOMAIN}"]
group_seconds = 0

[detectors.short_ban]
failures = 3

[detectors.distributed]
user_sources = 3

[detectors.tarpit]
enabled = false

[policy.postfix]
enabled = true
listen = ["inet:127.0.0.1:{self.policy_port}"]
socket_group = "postfix"

[policy.dovecot]
enabled = true
port = {self.authpol_port}
api_key = "{API_KEY}"
hash_nonce = "test-nonce-not-secret"
"""
        )

    def write_daemon_config(self) -> None:
        """The same settings plus log sources: the daemon follows Postfix's log and feeds its
        ``unknown_recipient``/``disconnect`` events to the Postfix policy server. Only Postfix's
        log: Dovecot's failures already arrive through the auth policy reports."""
        r = self.root
        text = self.config.read_text().replace(
            "[policy.postfix]\nenabled = true\n",
            "[policy.postfix]\nenabled = true\nunknown_recipients_per_client = 3\n",
        )
        self.daemon_config.write_text(
            text
            + f"""
[sources]
files = ["{r}/logs/postfix.log"]

[daemon]
control_socket = "{r}/mailward/control.sock"
poll_interval = 0.05
"""
        )

    # -- processes, each by PID --------------------------------------------------------------

    def start_mailward(self, daemon: bool = False) -> None:
        """``mailward policy serve``, or with ``daemon`` the whole ``mailward run --dry-run``:
        log followers on the stack's logs, detectors, the policy servers; no firewall."""
        out = open(self.log("mailward.log"), "ab")  # noqa: SIM115 - owned by the child
        command = ["run", "--dry-run"] if daemon else ["policy", "serve"]
        config = self.daemon_config if daemon else self.config
        self.mailward = subprocess.Popen(
            [sys.executable, "-m", "mailward.cli.main", "-c", str(config), *command],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        wait_port(self.policy_port)
        wait_port(self.authpol_port)

    def stop_mailward(self) -> None:
        if self.mailward is not None and self.mailward.poll() is None:
            self.mailward.send_signal(signal.SIGTERM)
            try:
                self.mailward.wait(10)
            except subprocess.TimeoutExpired:
                self.mailward.kill()
                self.mailward.wait()
        self.mailward = None

    def start_mail(self) -> None:
        subprocess.run(["postfix", "-c", str(self.postfix_dir), "check"], check=True)
        subprocess.run(["dovecot", "-c", str(self.dovecot_conf)], check=True)
        subprocess.run(
            ["postfix", "-c", str(self.postfix_dir), "start"], check=True, capture_output=True
        )
        for port in (self.submission_port, self.imap_port):
            wait_port(port)

    def _pid(self, path: Path) -> int | None:
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop_all(self) -> None:
        self.stop_mailward()
        postfix_pid = self._pid(self.root / "spool" / "pid" / "master.pid")
        dovecot_pid = self._pid(self.root / "dovecot" / "run" / "master.pid")
        for pid in (postfix_pid, dovecot_pid):
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
                wait_pid_gone(pid)

    # -- clients -----------------------------------------------------------------------------

    def imap_login(self, user: str, password: str, src: str) -> tuple[bool, str, float]:
        """(logged in, server text, seconds) for one IMAP LOGIN from ``src``."""
        start = time.monotonic()
        conn = SrcIMAP("127.0.0.1", self.imap_port, src)
        try:
            try:
                typ, data = conn.login(user, password)
                ok, text = typ == "OK", b" ".join(data).decode()
            except imaplib.IMAP4.error as exc:
                ok, text = False, str(exc)
            return ok, text, time.monotonic() - start
        finally:
            try:
                conn.logout()
            except (imaplib.IMAP4.error, OSError):
                pass

    def smtp(self, src: str) -> smtplib.SMTP:
        return smtplib.SMTP(
            "127.0.0.1",
            self.submission_port,
            local_hostname="client.test",
            source_address=(src, 0),
            timeout=30,
        )

    def wait_log(self, name: str, needle: str, timeout: float = 10.0) -> str:
        """The first line of a log containing ``needle``, polled (logging is asynchronous)."""
        deadline = time.monotonic() + timeout
        path = self.log(name)
        while True:
            if path.exists():
                for line in path.read_text(errors="replace").splitlines():
                    if needle in line:
                        return line
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never appeared in {name}")
            time.sleep(0.1)


def make_stack() -> MailStack:
    return MailStack(Path(tempfile.mkdtemp(prefix="mailward-stack-")))
