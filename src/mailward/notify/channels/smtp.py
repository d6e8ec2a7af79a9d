"""SMTP relay channel (aiosmtplib): STARTTLS or implicit TLS, the password from a $file/$env secret.

Plain SMTP (``security = "none"``) is refused for anything but loopback, so a password never
crosses a network in clear.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from ipaddress import ip_address
from pathlib import Path

import aiosmtplib

from mailward.errors import BackendUnavailable, ConfigError
from mailward.notify.model import Message
from mailward.notify.render import to_email


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class SmtpNotifier:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        to: Sequence[str],
        security: str = "starttls",
        username: str | None = None,
        password: str | None = None,
        verify: bool = True,
        ca_file: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        if security == "none" and not _is_loopback(host):
            raise ConfigError("notify.smtp_security", "'none' is only allowed for a loopback relay")
        self.name = "smtp"
        self.host, self.port = host, port
        self.sender, self.to = sender, list(to)
        self.security = security
        self.username, self.password = username, password
        self.timeout = timeout
        self.tls: ssl.SSLContext | None = None
        if security != "none":
            self.tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if not verify:
                self.tls.check_hostname = False
                self.tls.verify_mode = ssl.CERT_NONE

    async def send(self, message: Message) -> None:
        mail = to_email(message, sender=self.sender, to=self.to)
        try:
            await aiosmtplib.send(
                mail,
                sender=self.sender,
                recipients=self.to,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.security == "tls",
                start_tls=True if self.security == "starttls" else False,
                tls_context=self.tls,
                timeout=self.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise BackendUnavailable(f"smtp {self.host}:{self.port}: {exc}") from exc
