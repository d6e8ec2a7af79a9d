"""Enumeration: unknown-recipient rejects and unknown-user logins, per address and per prefix.

A harvester probing which mailboxes exist, or which logins do, gets the address banned after
``per_ip`` misses in the window, and its whole prefix after ``per_prefix`` misses from inside it.
"""

from __future__ import annotations

from typing import Final

from mailward.config.model import DetectorSettings
from mailward.decisions.model import Action
from mailward.detectors.base import Finding, Source, fmt_duration, need
from mailward.detectors.state import StateStore

ENUM_IP: Final = "enum"
ENUM_NET: Final = "enumnet"


class Enumeration:
    def __init__(self, settings: DetectorSettings) -> None:
        self.cfg = settings.enumeration

    def on_miss(self, state: StateStore, src: Source, now: float, kind: str) -> list[Finding]:
        """``kind`` is ``recipient`` or ``login``, kept as evidence."""
        cfg = self.cfg
        if not cfg.enabled:
            return []
        findings: list[Finding] = []
        per_ip = need(cfg.per_ip, src.factor)
        seen = state.hit(ENUM_IP, src.key, now, window=cfg.window, cap=per_ip)
        if seen >= per_ip and not src.banned:
            findings.append(
                Finding(
                    "enumeration",
                    src.address,
                    Action.BAN,
                    cfg.ban,
                    f"{seen} unknown users or recipients in {fmt_duration(cfg.window)}",
                    {"misses": seen, "window": cfg.window, "last": kind},
                )
            )
        per_net = need(cfg.per_prefix, src.factor)
        seen_net = state.hit(ENUM_NET, src.prefix, now, window=cfg.window, cap=per_net)
        if seen_net >= per_net:
            findings.append(
                Finding(
                    "enumeration",
                    src.prefix_target,
                    Action.BAN,
                    cfg.ban,
                    f"{seen_net} unknown users or recipients from the prefix in "
                    f"{fmt_duration(cfg.window)}",
                    {"misses": seen_net, "window": cfg.window, "last": kind},
                )
            )
        return findings
