"""Load the configuration in layers: defaults in code, the TOML file, ``MAILWARD_<SECTION>_<KEY>``
environment variables, then ``--set section.key=value``. Validated once; errors name the key.

Secrets are written as ``{ "$env" = "NAME" }`` or ``{ "$file" = "/path" }`` anywhere a string goes.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mailward.config.model import Settings
from mailward.errors import ConfigError

DEFAULT_PATH = Path("/etc/mailward/mailward.toml")
ENV_PREFIX = "MAILWARD_"
# MAILWARD_* variables that are not settings: the config path, the build switch of setup.py and
# the test suite's check that it runs the compiled build. Any other unknown name is an error
# (a typo must not silently leave a setting at its default).
NOT_SETTINGS = frozenset({"MAILWARD_CONFIG", "MAILWARD_COMPILE", "MAILWARD_EXPECT_COMPILED"})


def _parse_scalar(text: str) -> Any:
    """Read an override value as TOML when it is one (``3``, ``true``, ``["a"]``), else as text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _resolve_secrets(node: Any, key: str, env: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        if set(node) == {"$env"}:
            name = node["$env"]
            if not isinstance(name, str) or name not in env:
                raise ConfigError(key, f"environment variable {name!r} is not set")
            return env[name]
        if set(node) == {"$file"}:
            path = Path(str(node["$file"]))
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(key, f"cannot read secret file {path}: {exc.strerror}") from exc
        return {k: _resolve_secrets(v, f"{key}.{k}" if key else k, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_secrets(v, f"{key}[{i}]", env) for i, v in enumerate(node)]
    return node


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        raise ConfigError(dotted, "empty key")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(dotted, f"{part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _env_path(model: type[BaseModel], rest: str) -> str | None:
    """Map ``policy_postfix_listen`` onto ``policy.postfix.listen`` by walking the model: section
    and key names contain underscores themselves, so splitting on the first one is not enough."""
    for name, field in sorted(model.model_fields.items(), key=lambda kv: -len(kv[0])):
        if rest == name:
            return name
        if rest.startswith(name + "_"):
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                sub = _env_path(ann, rest[len(name) + 1 :])
                if sub is not None:
                    return f"{name}.{sub}"
    return None


def _env_overrides(env: Mapping[str, str]) -> Iterable[tuple[str, Any]]:
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        path = _env_path(Settings, rest)
        if path is None:
            raise ConfigError(name, "environment variable names no known setting")
        if "." in path:
            yield path, _parse_scalar(value)


def _format_errors(exc: ValidationError) -> ConfigError:
    problems = []
    first = ""
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        first = first or key
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        problems.append(f"{key}: {msg}")
    error = ConfigError(first, "; ".join(problems))
    error.args = ("; ".join(problems),)
    return error


def load(
    path: Path | None = None,
    *,
    overrides: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build the validated settings. ``path`` None means the default path if it exists, else
    defaults only; an explicit path that does not exist is an error."""
    env = os.environ if env is None else env
    tree: dict[str, Any] = {}
    explicit = path is not None or "MAILWARD_CONFIG" in env
    if path is None:
        path = Path(env.get("MAILWARD_CONFIG", DEFAULT_PATH))
    if path.exists() or explicit:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from exc
        try:
            tree = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError("", f"{path}: not valid TOML: {exc}") from exc
    for dotted, value in _env_overrides(env):
        _set_dotted(tree, dotted, value)
    for item in overrides:
        dotted, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(item, "--set wants section.key=value")
        _set_dotted(tree, dotted.strip(), _parse_scalar(value.strip()))
    tree = _resolve_secrets(tree, "", env)
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        raise _format_errors(exc) from None
