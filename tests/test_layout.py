"""The test tree mirrors the source tree: every module src/mailward/x/y.py has tests/x/test_y.py."""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "mailward"
TESTS = Path(__file__).resolve().parent


def test_every_module_has_a_test_file() -> None:
    missing = []
    for module in sorted(SRC.rglob("*.py")):
        if module.name == "__init__.py" or module.name == "__main__.py":
            continue
        rel = module.relative_to(SRC)
        expected = TESTS / rel.parent / f"test_{rel.name}"
        if not expected.exists():
            missing.append(f"{rel} -> tests/{rel.parent / ('test_' + rel.name)}")
    assert not missing, "modules without a mirrored test file:\n" + "\n".join(missing)
