"""Alerts: what a rule found, how bad it is, and the key that deduplicates it.

Rules (``alerts.py``, ``health.py``) produce ``Alert`` values; the ``AlertManager`` gates them by key
(cooldown, grouping) and renders them into one ``Message`` per batch for every channel.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any


class Severity(IntEnum):
    INFO = 10
    WARNING = 20
    HIGH = 30
    CRITICAL = 40  # possible breach, mailward itself down

    @classmethod
    def parse(cls, name: str) -> Severity:
        return cls[name.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class Alert:
    """One finding. ``key`` identifies "the same alert" for cooldowns (e.g. one per username);
    ``details`` are the message lines: counts against the baseline, top sources, what mailward did."""

    ts: float
    kind: str
    key: str
    severity: Severity
    title: str
    details: tuple[str, ...] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "time": datetime.fromtimestamp(self.ts, UTC).isoformat().replace("+00:00", "Z"),
            "kind": self.kind,
            "key": self.key,
            "severity": self.severity.label,
            "title": self.title,
            "details": list(self.details),
            "facts": dict(self.facts),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Alert:
        ts = datetime.fromisoformat(str(data["time"]).replace("Z", "+00:00")).timestamp()
        return cls(
            ts=ts,
            kind=str(data["kind"]),
            key=str(data["key"]),
            severity=Severity.parse(str(data["severity"])),
            title=str(data["title"]),
            details=tuple(str(x) for x in data.get("details", ())),
            facts=dict(data.get("facts", {})),
        )


@dataclass(frozen=True, slots=True)
class Inline:
    """An image shown inside the HTML part (``cid:`` reference), e.g. the digest chart."""

    cid: str
    data: bytes
    subtype: str = "png"


@dataclass(frozen=True, slots=True)
class Message:
    """What a channel delivers: a subject, a plain-text body, optionally HTML with inline images."""

    subject: str
    text: str
    severity: Severity = Severity.WARNING
    html: str | None = None
    images: tuple[Inline, ...] = ()
    alerts: tuple[Alert, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "text": self.text,
            "severity": self.severity.label,
            "html": self.html,
            "images": [
                {"cid": i.cid, "subtype": i.subtype, "data": base64.b64encode(i.data).decode()}
                for i in self.images
            ],
            "alerts": [a.to_json() for a in self.alerts],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        return cls(
            subject=str(data["subject"]),
            text=str(data["text"]),
            severity=Severity.parse(str(data.get("severity", "warning"))),
            html=data.get("html"),
            images=tuple(
                Inline(str(i["cid"]), base64.b64decode(i["data"]), str(i.get("subtype", "png")))
                for i in data.get("images", ())
            ),
            alerts=tuple(Alert.from_json(a) for a in data.get("alerts", ())),
        )
