"""What every message parser shares: the rule registry, parse statistics and the cached IP
parser that applies ``parsing.trusted_proxies``.

Each parser rule has a name in ``RULES``; golden samples (tests/data/logs) must exercise every one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mailward.config.model import Network
from mailward.events import IPAddress, normalise_ip

# name -> one-line description; filled by each parser module at import time (a constant table,
# not configuration), and checked by tests against the golden samples and docs/events.md.
RULES: dict[str, str] = {}

# Rules whose lines are understood but deliberately produce no event.
IGNORED = "ignored"


def rule(name: str, description: str) -> str:
    """Register a rule name (unique) and return it, so modules keep the name in a constant."""
    if name in RULES:
        raise ValueError(f"duplicate parser rule {name!r}")
    RULES[name] = description
    return name


@dataclass(slots=True)
class ParseStats:
    """Counts kept by ``LineParser``: every line is exactly one of recognised (an event came
    out), ignored (a known line that carries nothing to count) or unrecognised."""

    lines: int = 0
    recognised: int = 0
    ignored: int = 0
    unrecognised: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_rule: Counter[str] = field(default_factory=Counter)

    def merge(self, other: ParseStats) -> None:
        self.lines += other.lines
        self.recognised += other.recognised
        self.ignored += other.ignored
        self.unrecognised += other.unrecognised
        self.by_kind.update(other.by_kind)
        self.by_rule.update(other.by_rule)

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "recognised": self.recognised,
            "ignored": self.ignored,
            "unrecognised": self.unrecognised,
            "by_kind": dict(sorted(self.by_kind.items())),
            "by_rule": dict(sorted(self.by_rule.items())),
        }


class _AddressTable(dict[str, "IPAddress | None"]):
    """text -> address; a miss parses the text (``__missing__``), so a hit is one C-level
    dict lookup with no Python frame: most lines name an address already seen."""

    __slots__ = ("_trusted",)

    def __init__(self, trusted: tuple[Network, ...]) -> None:
        super().__init__()
        self._trusted = trusted

    def __missing__(self, text: str) -> IPAddress | None:
        try:
            addr: IPAddress | None = normalise_ip(text)
        except ValueError:
            addr = None
        if addr is not None and any(addr in net for net in self._trusted):
            addr = None
        if len(self) >= IPCache.MAX:
            self.clear()
        self[text] = addr
        return addr


class IPCache:
    """Parse client addresses once: text -> address, or None when the text is not an address
    or is a trusted proxy (``parsing.trusted_proxies``: never attributed)."""

    MAX: ClassVar[int] = 65536

    def __init__(self, trusted: Iterable[Network] = ()) -> None:
        self._trusted = tuple(trusted)
        self._cache = _AddressTable(self._trusted)
        # ``get(text)``: the table's own ``__getitem__``, bound once (the hot path).
        self.get: Callable[[str], IPAddress | None] = self._cache.__getitem__

    def is_trusted(self, text: str) -> bool:
        try:
            addr = normalise_ip(text)
        except ValueError:
            return False
        return any(addr in net for net in self._trusted)
