"""setup.py: without a C compiler the wheel is the pure-Python build (every module, no shim
left behind), unless MAILWARD_COMPILE=1 asks for a compiled build or an error."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _wheel(tmp_path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CC="/bin/false", MAILWARD_COMPILE=mode)
    return subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_no_compiler_gives_a_whole_pure_python_wheel(tmp_path: Path) -> None:
    done = _wheel(tmp_path, "auto")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "installing the pure-Python build" in done.stdout + done.stderr
    (wheel,) = tmp_path.glob("mailward-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith(".so")]
    assert "mailward/parsers/line.py" in names
    assert "mailward/speedups.py" in names


@pytest.mark.slow
def test_compile_required_fails_loudly_without_a_compiler(tmp_path: Path) -> None:
    done = _wheel(tmp_path, "1")
    assert done.returncode != 0
    assert not list(tmp_path.glob("mailward-*.whl"))
