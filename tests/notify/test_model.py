from __future__ import annotations

from mailward.notify.model import Alert, Message, Severity


def test_alert_and_message_round_trip_through_json() -> None:
    alert = Alert(
        ts=1_700_000_000.0,
        kind="possible_breach",
        key="k",
        severity=Severity.CRITICAL,
        title="t",
        details=("a", "b"),
        facts={"ip": "192.0.2.1"},
    )
    assert Alert.from_json(alert.to_json()) == alert
    msg = Message(
        subject="s", text="body", severity=Severity.HIGH, html="<p>x</p>", alerts=(alert,)
    )
    assert Message.from_json(msg.to_json()) == msg


def test_severity_order_and_names() -> None:
    assert Severity.parse("critical") > Severity.parse("HIGH") > Severity.WARNING > Severity.INFO
    assert Severity.HIGH.label == "high"
