"""The docs and the example config cannot drift from the model."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from mailward.config import load
from mailward.config.model import Settings
from mailward.config.reference import render

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "mailward.toml"


def test_configuration_doc_is_current() -> None:
    doc = ROOT / "docs" / "configuration.md"
    assert doc.read_text() == render(), "run: mailward config reference > docs/configuration.md"


def test_example_config_loads() -> None:
    load(EXAMPLE, env={})


def _model_keys(prefix: str, model: type[BaseModel]) -> set[str]:
    keys: set[str] = set()
    for key, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys |= _model_keys(f"{prefix}.{key}", ann)
        else:
            keys.add(f"{prefix}.{key}")
    return keys


def _example_keys() -> set[str]:
    keys: set[str] = set()
    section = ""
    header = re.compile(r"^#?\s*\[{1,2}([A-Za-z0-9_.]+)\]{1,2}\s*$")
    assignment = re.compile(r"^#?\s*([A-Za-z0-9_]+)\s*=")
    for line in EXAMPLE.read_text().splitlines():
        if m := header.match(line):
            section = m.group(1)
        elif (m := assignment.match(line)) and section:
            keys.add(f"{section}.{m.group(1)}")
    return keys


def test_every_setting_is_in_the_example() -> None:
    expected = set()
    for name, field in Settings.model_fields.items():
        ann = field.annotation
        assert isinstance(ann, type) and issubclass(ann, BaseModel)
        expected |= _model_keys(name, ann)
    missing = sorted(expected - _example_keys())
    assert not missing, f"settings missing from examples/mailward.toml: {missing}"
