"""Real delivery sinks the notify tests run locally: an aiosmtpd SMTP server on 127.0.0.1 (with
STARTTLS and AUTH when asked) and a ``sendmail`` stand-in script that writes each message to a
file, the way Postfix's sendmail would take it on stdin."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Collect:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.arrived = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.arrived.set)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextmanager
def smtp_sink(
    tmp: Path | None = None, *, user: str | None = None, password: str | None = None
) -> Iterator[tuple[Collect, int, Path | None]]:
    """Yields (collector, port, ca_file). With ``tmp`` it offers STARTTLS (and AUTH if a user is
    given) with a self-signed certificate, whose path is the ca_file."""
    handler = Collect()
    handler.loop = asyncio.get_event_loop()
    kwargs: dict[str, Any] = {}
    cert: Path | None = None
    if tmp is not None:
        cert, key = self_signed(tmp)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        kwargs.update(tls_context=ctx, require_starttls=True)
        if user is not None:

            def check(
                server: Any, session: Any, envelope: Any, mechanism: str, data: Any
            ) -> AuthResult:
                ok = (
                    isinstance(data, LoginPassword)
                    and data.login.decode() == user
                    and data.password.decode() == password
                )
                return AuthResult(success=ok)

            kwargs.update(authenticator=check, auth_required=True)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield handler, port, cert
    finally:
        controller.stop()


def sendmail_stub(tmp: Path) -> tuple[Path, Path]:
    """A sendmail stand-in: each call writes argv and stdin to a new file in the outbox."""
    outbox = tmp / "sendmail-out"
    outbox.mkdir()
    script = tmp / "sendmail"
    script.write_text(
        "#!/bin/sh\n"
        f'f="{outbox}/$(date +%s%N)-$$.eml"\n'
        'echo "X-Argv: $*" > "$f.tmp"\n'
        'cat >> "$f.tmp" && mv "$f.tmp" "$f"\n'
    )
    script.chmod(0o755)
    return script, outbox


def read_outbox(outbox: Path) -> list[EmailMessage]:
    out = []
    for path in sorted(outbox.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out
