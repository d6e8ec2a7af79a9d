"""The compiled-module list matches the tree, and an install reports truthfully what it runs."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import mailward
from mailward import speedups

SRC = Path(__file__).resolve().parents[1] / "src"


def test_every_listed_module_exists_in_the_tree() -> None:
    for name in speedups.COMPILED_MODULES:
        assert (SRC / (name.replace(".", "/") + ".py")).is_file(), name
        assert importlib.import_module(name).__name__ == name


def test_every_c_module_has_its_source_and_a_stub() -> None:
    for name, source in speedups.C_MODULES.items():
        path = SRC.parent / source
        assert path.is_file(), source
        assert path.with_suffix(".pyi").is_file(), f"{name}: mypy needs a stub beside {source}"
        assert source == "src/" + name.replace(".", "/") + ".c"


def test_state_is_read_from_where_each_module_loads() -> None:
    state = speedups.compiled_modules()
    assert list(state) == list(speedups.COMPILED_MODULES)
    for name, compiled in state.items():
        origin = importlib.import_module(name).__file__ or ""
        assert compiled == (not origin.endswith(".py")), (name, origin)


def test_description_matches_the_state() -> None:
    state = speedups.compiled_modules()
    text = speedups.describe()
    if all(state.values()):
        assert text.startswith("ingest path compiled with mypyc")
    elif not any(state.values()):
        assert text.startswith("ingest path interpreted")
    else:
        assert "rebuild mailward" in text


def test_the_compiled_ci_run_really_runs_compiled_code() -> None:
    # scripts/check sets this for its second run (.venv-compiled): a build that silently fell
    # back to pure Python would otherwise pass every test and ship slow.
    expected = os.environ.get("MAILWARD_EXPECT_COMPILED")
    state = speedups.compiled_modules()
    if expected == "1":
        assert all(state.values()), state
        assert all(speedups.c_modules().values()), speedups.c_modules()
        assert not Path(mailward.__file__).is_relative_to(SRC)
    else:
        assert expected in (None, "0")
