"""Reader for the golden samples in tests/data/logs: ``# expect:`` lines before each log line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"
REFERENCE_NOW = 1764460800.0  # 2025-11-30T00:00:00Z: the "now" for year-less stamps


@dataclass
class Sample:
    file: str
    lineno: int
    line: str
    expect: dict[str, Any] | None  # None: no rule at all


def load(path: Path) -> tuple[dict[str, Any], list[Sample]]:
    settings: dict[str, Any] = {}
    samples: list[Sample] = []
    pending: dict[str, Any] | None | str = "unset"
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if raw.startswith("# settings:"):
            settings = json.loads(raw.split(":", 1)[1])
        elif raw.startswith("# expect:"):
            text = raw.split(":", 1)[1].strip()
            pending = None if text == "none" else json.loads(text)
        elif not raw.strip() or raw.startswith("#"):
            continue
        else:
            assert pending != "unset", f"{path.name}:{lineno}: log line without '# expect:'"
            assert not isinstance(pending, str)
            samples.append(Sample(path.name, lineno, raw, pending))
            pending = "unset"
    return settings, samples


def all_files() -> list[Path]:
    return sorted(LOGS.glob("*.log"))
