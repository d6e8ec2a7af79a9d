from __future__ import annotations

from pathlib import Path

import pytest
from tests.notify.sinks import free_port, smtp_sink

from mailward.errors import BackendUnavailable, ConfigError
from mailward.notify.channels.smtp import SmtpNotifier
from mailward.notify.model import Message

MSG = Message(subject="smtp test", text="hello")


async def test_starttls_with_auth_delivers_to_a_real_smtp_server(tmp_path: Path) -> None:
    with smtp_sink(tmp_path, user="alerts", password="s3cret") as (sink, port, ca):
        channel = SmtpNotifier(
            "127.0.0.1",
            port,
            sender="mailward@mx1.example",
            to=["ops@example.org"],
            security="starttls",
            username="alerts",
            password="s3cret",
            ca_file=ca,
        )
        await channel.send(MSG)
        assert sink.messages[0]["Subject"] == "smtp test"
        assert sink.envelopes[0] == ("mailward@mx1.example", ["ops@example.org"])


async def test_wrong_password_and_bad_certificate_fail_cleanly(tmp_path: Path) -> None:
    with smtp_sink(tmp_path, user="alerts", password="s3cret") as (_, port, ca):
        wrong = SmtpNotifier(
            "127.0.0.1",
            port,
            sender="a@b",
            to=["c@d"],
            username="alerts",
            password="nope",
            ca_file=ca,
            timeout=2,
        )
        with pytest.raises(BackendUnavailable):
            await wrong.send(MSG)
        untrusted = SmtpNotifier(
            "127.0.0.1",
            port,
            sender="a@b",
            to=["c@d"],
            username="alerts",
            password="s3cret",
            timeout=2,
        )
        with pytest.raises(BackendUnavailable):
            await untrusted.send(MSG)


async def test_unreachable_relay() -> None:
    channel = SmtpNotifier(
        "127.0.0.1", free_port(), sender="a@b", to=["c@d"], security="none", timeout=2
    )
    with pytest.raises(BackendUnavailable, match="smtp 127.0.0.1"):
        await channel.send(MSG)


def test_plain_smtp_only_on_loopback() -> None:
    with pytest.raises(ConfigError, match="notify.smtp_security"):
        SmtpNotifier("relay.example.org", 25, sender="a@b", to=["c@d"], security="none")
