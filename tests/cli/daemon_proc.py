"""Start and stop a real ``mailward run`` process for CLI tests (not a test module)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def write_config(root: Path, backend: str = "dry-run", extra: str = "", enforce: str = "") -> Path:
    """A config under ``root``; ``enforce`` adds lines to [enforce], ``extra`` whole sections."""
    (root / "mail.log").touch()
    cfg = root / "mailward.toml"
    cfg.write_text(
        f"""
[general]
state_dir = "{root}"
[sources]
files = ["{root / "mail.log"}"]
[enforce]
backend = "{backend}"
batch_interval = 0.05
{enforce}
[daemon]
poll_interval = 0.05
[notify]
enabled = false
{extra}
"""
    )
    return cfg


def pipeline() -> str:
    """The real parser and detectors when this build has them, else the in-package twins."""
    have = all(
        importlib.util.find_spec(m) is not None
        for m in ("mailward.parsers.line", "mailward.detectors.engine")
    )
    return "real" if have else "twin"


def start(cfg: Path, *args: str, mode: str | None = None) -> subprocess.Popen[bytes]:
    root = cfg.parent
    with open(root / "daemon.err", "ab") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mailward.cli.main",
                "-c",
                str(cfg),
                "run",
                "--pipeline",
                mode or pipeline(),
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.monotonic() + 15
    while not (root / "control.sock").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("daemon did not start: " + (root / "daemon.err").read_text())
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(15)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        code = proc.wait()
    return code
