"""Generate the settings reference (``docs/configuration.md``) from the config model itself, so the
documentation cannot drift from the code. ``mailward config reference`` prints it; a test compares."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from mailward.config.model import Settings

HEADER = """# Configuration reference

Generated from `src/mailward/config/model.py` by `mailward config reference`; a test fails when this
file is out of date. The file is TOML (`--config`, default `/etc/mailward/mailward.toml`). Every key
can also be set with `MAILWARD_<SECTION>_<KEY>` or `--set section.key=value` (later wins). A secret
may be written as `{ "$env" = "NAME" }` or `{ "$file" = "/path" }`. `examples/mailward.toml` shows
every setting with its default.
"""


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(section)"
    try:
        return "`" + json.dumps(value, default=str) + "`"
    except TypeError:
        return f"`{value}`"


def _type_name(field: FieldInfo) -> str:
    text = str(field.annotation).replace("typing.", "").replace("pathlib.", "")
    text = text.replace("ipaddress.", "").replace("<class '", "").replace("'>", "")
    return text.replace("|", "\\|")


def _section(prefix: str, model: type[BaseModel], out: list[str]) -> None:
    rows = []
    nested: list[tuple[str, type[BaseModel]]] = []
    for key, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            nested.append((f"{prefix}.{key}", ann))
            continue
        desc = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{key}` | {_type_name(field)} | {_default(field)} | {desc} |")
    if rows:
        out.append(f"\n## [{prefix}]\n")
        if model.__doc__ and model.__doc__.strip() and not model.__doc__.startswith("!"):
            out.append(model.__doc__.strip().splitlines()[0] + "\n")
        out.append("| key | type | default | meaning |")
        out.append("|---|---|---|---|")
        out.extend(rows)
    for name, sub in nested:
        _section(name, sub, out)


def render() -> str:
    out = [HEADER]
    for name, field in Settings.model_fields.items():
        ann = field.annotation
        assert isinstance(ann, type) and issubclass(ann, BaseModel)
        _section(name, ann, out)
    return "\n".join(out) + "\n"
