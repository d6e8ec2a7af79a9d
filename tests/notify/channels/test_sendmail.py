from __future__ import annotations

from pathlib import Path

import pytest
from tests.notify.sinks import read_outbox, sendmail_stub

from mailward.errors import BackendUnavailable
from mailward.notify.channels.sendmail import SendmailNotifier, send_sync
from mailward.notify.model import Message, Severity

MSG = Message(
    subject="mailward test", text="line one\n.\nline three", severity=Severity.HIGH, html="<p>x</p>"
)


async def test_sendmail_delivers_mime_on_stdin(tmp_path: Path) -> None:
    script, outbox = sendmail_stub(tmp_path)
    await SendmailNotifier(
        script, sender="mailward@mx1.example", to=["root", "ops@example.org"]
    ).send(MSG)
    [mail] = read_outbox(outbox)
    assert mail["X-Argv"] == "-i -f mailward@mx1.example -- root ops@example.org"
    assert mail["Subject"] == "mailward test"
    assert mail["Auto-Submitted"] == "auto-generated"
    body = mail.get_body(("plain",))
    assert body is not None and "line one\n.\nline three" in body.get_content()


async def test_sendmail_failure_is_backend_unavailable(tmp_path: Path) -> None:
    bad = tmp_path / "bad-sendmail"
    bad.write_text("#!/bin/sh\necho 'fatal: no such user' >&2\nexit 75\n")
    bad.chmod(0o755)
    with pytest.raises(BackendUnavailable, match="exited 75: fatal: no such user"):
        await SendmailNotifier(bad, sender="a@b", to=["root"]).send(MSG)
    with pytest.raises(BackendUnavailable, match="cannot run"):
        await SendmailNotifier(tmp_path / "missing", sender="a@b", to=["root"]).send(MSG)


async def test_sendmail_timeout(tmp_path: Path) -> None:
    slow = tmp_path / "slow-sendmail"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    with pytest.raises(BackendUnavailable, match="took over"):
        await SendmailNotifier(slow, sender="a@b", to=["root"], timeout=0.3).send(MSG)


def test_send_sync(tmp_path: Path) -> None:
    script, outbox = sendmail_stub(tmp_path)
    send_sync(MSG, path=script, sender="a@b", to=["root"])
    assert len(read_outbox(outbox)) == 1
    with pytest.raises(BackendUnavailable):
        send_sync(MSG, path=tmp_path / "missing", sender="a@b", to=["root"])
