"""Human durations for the CLI and the control API: ``90s``, ``10m``, ``1h``, ``1d``, ``2w``,
combinations such as ``1h30m``, and ``permanent``. Errors are ``ValueError`` naming the text."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_PERMANENT = {"permanent", "forever", "never"}


def parse_duration(text: str) -> float | None:
    """Seconds in ``text``; None for ``permanent``. A bare number means seconds."""
    raw = text.strip().lower()
    if raw in _PERMANENT:
        return None
    if not raw:
        raise ValueError("empty duration (use e.g. 90s, 10m, 1h, 1d, 2w or 'permanent')")
    try:
        seconds = float(raw)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _PART.finditer(raw):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(raw) or pos == 0:
            raise ValueError(
                f"bad duration {text!r}: use a number with a unit s, m, h, d or w "
                "(e.g. 90s, 10m, 1h30m, 1d, 2w) or 'permanent'"
            ) from None
    if seconds <= 0:
        raise ValueError(f"bad duration {text!r}: must be more than zero")
    return seconds


def format_duration(seconds: float | None) -> str:
    """The inverse for display: ``1d2h``, ``45s``, ``permanent``."""
    if seconds is None:
        return "permanent"
    left = max(0, int(round(seconds)))
    if left == 0:
        return "0s"
    out = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            out.append(f"{left // size}{unit}")
            left %= size
        if len(out) == 2:
            break
    return "".join(out)
