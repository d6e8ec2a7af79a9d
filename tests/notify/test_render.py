from __future__ import annotations

from email import message_from_bytes, policy

from mailward.notify.model import Alert, Inline, Message, Severity
from mailward.notify.render import render_alerts, to_email


def alert(kind: str, sev: Severity, key: str, ts: float = 1_700_000_000) -> Alert:
    return Alert(
        ts=ts, kind=kind, key=key, severity=sev, title=f"{kind} <b>", details=(f"{kind} detail",)
    )


def test_batch_is_worst_first_with_held_back_counts() -> None:
    msg = render_alerts(
        [
            alert("login_spike", Severity.HIGH, "a"),
            alert("possible_breach", Severity.CRITICAL, "b"),
        ],
        suppressed={"a": (4, 1_700_000_000)},
        host="mx1",
    )
    assert msg.subject.startswith("[mailward mx1] CRITICAL: 2 alerts: possible_breach")
    assert msg.severity is Severity.CRITICAL
    assert msg.text.index("possible_breach") < msg.text.index("login_spike")
    assert "(+4 repeats held back since 2023-11-14" in msg.text
    assert msg.html is not None and "login_spike &lt;b&gt;" in msg.html  # escaped


def test_email_has_text_html_and_inline_image() -> None:
    png = b"\x89PNG\r\n\x1a\nfake"
    msg = Message(
        subject="digest",
        text="plain",
        html="<img src='cid:chart'>",
        images=(Inline("chart", png),),
        severity=Severity.HIGH,
    )
    mail = to_email(msg, sender="mailward@mx1.example", to=["root"])
    parsed = message_from_bytes(mail.as_bytes(), policy=policy.default)
    types = [p.get_content_type() for p in parsed.walk()]
    assert types == [
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
    ]
    image = [p for p in parsed.walk() if p.get_content_type() == "image/png"][0]
    assert image["Content-ID"] == "<chart>" and image.get_content() == png
    assert parsed["X-Priority"] == "1" and parsed["Auto-Submitted"] == "auto-generated"
