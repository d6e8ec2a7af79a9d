"""Turn alerts into one human message, and a ``Message`` into a MIME e-mail.

E-mail is ``multipart/alternative`` (text, then HTML) with images as ``multipart/related`` parts
of the HTML, referenced by ``cid:`` so mail clients show them inline and offline.
"""

from __future__ import annotations

import html
import socket
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from mailward.notify.model import Alert, Message, Severity, iso


def hostname() -> str:
    return socket.gethostname()


def render_alerts(
    alerts: Sequence[Alert],
    *,
    suppressed: Mapping[str, tuple[int, float]] | None = None,
    host: str | None = None,
) -> Message:
    """One message for a batch of alerts, worst first. ``suppressed`` maps an alert key to the
    (count, since) of repeats held back by the cooldown; they are reported, not lost."""
    host = host or hostname()
    ordered = sorted(alerts, key=lambda a: (-a.severity, a.ts))
    worst = ordered[0].severity
    if len(ordered) == 1:
        subject = f"[mailward {host}] {worst.label.upper()}: {ordered[0].title}"
    else:
        subject = (
            f"[mailward {host}] {worst.label.upper()}: {len(ordered)} alerts: {ordered[0].title}"
        )
    text_parts = []
    html_parts = []
    for alert in ordered:
        extra = ""
        if suppressed and alert.key in suppressed:
            n, since = suppressed[alert.key]
            extra = f"(+{n} repeat{'s' if n != 1 else ''} held back since {iso(since)})"
        lines = [f"{alert.severity.label.upper()} {iso(alert.ts)}: {alert.title}"]
        lines += [f"  {d}" for d in alert.details]
        if extra:
            lines.append(f"  {extra}")
        text_parts.append("\n".join(lines))
        items = "".join(f"<li>{html.escape(d)}</li>" for d in alert.details)
        html_parts.append(
            f"<h3 style='color:{_COLOURS[alert.severity]}'>{html.escape(alert.severity.label.upper())}: "
            f"{html.escape(alert.title)}</h3><p>{html.escape(iso(alert.ts))}</p><ul>{items}</ul>"
            + (f"<p><i>{html.escape(extra)}</i></p>" if extra else "")
        )
    footer = f"-- mailward on {host}. `mailward status` and `mailward bans` show the current state."
    text = "\n\n".join(text_parts) + "\n\n" + footer + "\n"
    body = "".join(html_parts) + f"<hr><p><small>{html.escape(footer)}</small></p>"
    return Message(
        subject=subject,
        text=text,
        severity=worst,
        html=f"<html><body>{body}</body></html>",
        alerts=tuple(ordered),
    )


_COLOURS = {
    Severity.INFO: "#555",
    Severity.WARNING: "#b58900",
    Severity.HIGH: "#cb4b16",
    Severity.CRITICAL: "#dc322f",
}


def to_email(message: Message, *, sender: str, to: Sequence[str]) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Date"] = formatdate(localtime=True)
    mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to alerts
    if message.severity >= Severity.HIGH:
        mail["X-Priority"] = "1"
    mail.set_content(message.text)
    if message.html is not None:
        mail.add_alternative(message.html, subtype="html")
        if message.images:
            html_part = next(p for p in mail.iter_parts() if p.get_content_type() == "text/html")
            assert isinstance(html_part, EmailMessage)
            for image in message.images:
                html_part.add_related(
                    image.data, maintype="image", subtype=image.subtype, cid=f"<{image.cid}>"
                )
    return mail
